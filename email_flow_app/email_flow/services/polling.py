"""Scheduler entry point and the per-queue poll job (RQ).

Per folder, one FETCH batch (BATCH_SIZE messages, UID order) at a time:
store every message of the batch + advance the folder's last UID in ONE
commit (so a killed worker neither skips nor repeats), then process them in
chunks of PROCESS_CHUNK, one commit per chunk (a chunk cut short by a dying
worker is rolled back and its messages, still Received, are filed by the
next run); acknowledge on the server only after those commits, and record
that on the rows (`acknowledged`), so a kill between the commit and the
acknowledgement is caught up by the next poll before it fetches new mail.
One job drains the whole backlog: batches bound memory, not the work per
run. Every stored batch counts as progress for the queue's health: an
interrupted drain does not back off as if nothing had worked.
"""

import frappe
from frappe import _
from frappe.utils import add_to_date, now_datetime

from email_flow_app.channels.errors import UIDValidityChanged
from email_flow_app.channels.imap import FolderState
from email_flow_app.email_flow.services import (
	channel_admin,
	connect,
	health,
	settings,
	tick,
)
from email_flow_app.email_flow.services.ingest import process_batch, release_locks
from email_flow_app.email_flow.services.store import INBOUND, store_batch

QUEUE = "Incoming Email Queue"
FOLDER = "Incoming Email Queue Folder"
POLLED_TYPES = ("IMAP", "Office 365", "Google")
BATCH_SIZE = 100  # messages per UID FETCH, stored in one transaction
PROCESS_CHUNK = 20  # messages filed per commit
ACK_MODES = {"Mark as seen": "seen", "Move to folder": "move", "Leave on server": "leave"}
DEADLOCK_RETRIES = 3
ACK_CATCH_UP = 1000  # stored-but-unacknowledged messages acknowledged per statement
LOCK_WAIT_SECONDS = 10  # a poll queued while another runs waits this long for it


def poll_queue(queue_name: str) -> dict:
	"""Fetch and file everything new in the queue's folders.

	Returns what this run did, also when it ended with an error: messages
	stored, filed, acknowledged on the server, and the error (None if none).
	"""
	run = {"stored": 0, "filed": 0, "acknowledged": 0, "error": None}
	if frappe.session.user != "Administrator":
		# Queued by "Poll Now": RQ runs the job as the manager who clicked, but the
		# mail is filed by the system (a ticket is not "created by" that manager).
		frappe.set_user("Administrator")
	if not _acquire_queue_lock(queue_name):
		# Another poll of this queue runs (a second worker): it may have looked
		# at the server before the mail that queued this job came. Ask it to look
		# once more before it stops, then wait a little for its lock.
		tick.ask_running_poll_again(queue_name)
		if not _acquire_queue_lock(queue_name, wait=LOCK_WAIT_SECONDS):
			run["error"] = "another poll of this queue is running"
			return run
	try:
		with settings.run_cache():
			frappe.cache.delete_value(tick.again_key(queue_name))
			_poll(queue_name, run)
			# New mail signalled while this run was on the server: one more pass.
			while not run["error"] and tick.poll_again_asked(queue_name):
				frappe.cache.delete_value(tick.again_key(queue_name))
				_poll(queue_name, run)
	finally:
		_release_queue_lock(queue_name)
	channel_admin.record_poll_outcome(queue_name, run)  # what "Poll Now" shows
	return run


def _poll(queue_name: str, run: dict) -> None:
	queue = frappe.get_doc(QUEUE, queue_name)
	# Stored by a run that died before filing them: file them first, in order.
	run["filed"] += _process_received(queue_name)
	if queue.channel_type == "Office 365" and queue.get("o365_read_via") == "Microsoft Graph":
		# Imported here: the Graph client (requests) costs an IMAP poll job half a second.
		from email_flow_app.email_flow.services import graph_poll

		graph_poll.poll(queue, run)
		return
	with health.recording(queue, run), connect.imap_source(queue) as source:
		for row in queue.folders or [
			frappe._dict(name=None, folder_name="INBOX", uidvalidity=None, last_uid=0)
		]:
			_poll_folder(queue, source, row, run)
	frappe.db.commit()


def _poll_folder(queue, source, row, run: dict) -> None:
	state = FolderState(
		folder=row.folder_name,
		uidvalidity=int(row.uidvalidity) if row.uidvalidity else None,
		last_uid=int(row.last_uid or 0),
	)
	try:
		_catch_up_acks(queue, source, row, run)
		fetch = source.fetch_new(row.folder_name, state, batch_size=BATCH_SIZE)
		batch: list[tuple[int, bytes]] = []
		for uid, raw in fetch:
			batch.append((uid, raw))
			if len(batch) >= BATCH_SIZE:
				_file_batch(queue, source, row, fetch.state.uidvalidity, batch, run)
				batch = []
		_file_batch(queue, source, row, fetch.state.uidvalidity, batch, run)
	except UIDValidityChanged as exc:
		# The server renumbered the folder. Start over at UID 0 under the new
		# UIDVALIDITY: Message-ID dedupe keeps already filed mail from being
		# filed twice, and the change is visible on the queue.
		_save_folder_state(row, exc.new, 0)
		health.record_note(
			queue,
			_(
				"Folder {0} was renumbered by the server (UIDVALIDITY {1} → {2}); it is read again from the start, duplicates are filtered."
			).format(row.folder_name, exc.old, exc.new),
		)
		frappe.db.commit()


def _file_batch(queue, source, row, uidvalidity: int, batch: list[tuple[int, bytes]], run: dict) -> None:
	"""Store a FETCH batch and the folder state (commit), file it (commit per chunk), then ack."""
	if not batch:
		return
	names = store_batch(queue=queue.name, folder=row.folder_name, uidvalidity=uidvalidity, messages=batch)
	_save_folder_state(row, uidvalidity, batch[-1][0])
	frappe.db.commit()  # stored + state advanced together: rule 1 and 2
	run["stored"] += sum(1 for _name, created in names if created)
	health.record_success(queue)  # progress: a later error backs off from the first step
	frappe.db.commit()
	raws = {name: raw for (name, _created), (_uid, raw) in zip(names, batch, strict=True)}
	run["filed"] += _process_in_chunks([(name, raws.pop(name, None)) for name, _created in names])
	_ack(queue, source, row.folder_name, [uid for uid, _raw in batch], uidvalidity)
	_mark_acknowledged([name for name, _created in names])
	run["acknowledged"] += len(batch)


def _catch_up_acks(queue, source, row, run: dict) -> None:
	"""Acknowledge what was stored but never acknowledged (a worker died between commit and ack)."""
	if not row.uidvalidity:
		return
	while True:
		pending = frappe.get_all(
			INBOUND,
			filters={
				"email_queue": queue.name,
				"folder": row.folder_name,
				"uidvalidity": str(row.uidvalidity),
				"acknowledged": 0,
				"uid": (">", 0),
			},
			fields=["name", "uid"],
			order_by="uid asc",
			limit=ACK_CATCH_UP,
		)
		if not pending:
			return
		_ack(queue, source, row.folder_name, [p.uid for p in pending], int(row.uidvalidity))
		_mark_acknowledged([p.name for p in pending])
		run["acknowledged"] += len(pending)
		if len(pending) < ACK_CATCH_UP:
			return


def _mark_acknowledged(names: list[str]) -> None:
	if names:
		frappe.db.set_value(INBOUND, {"name": ("in", names)}, "acknowledged", 1, update_modified=False)
		frappe.db.commit()


def _process_in_chunks(items: list[tuple[str, bytes | None]]) -> int:
	"""File `items` in chunks, one commit each; returns how many this filer filed.

	A chunk the database rolls back as a deadlock victim is filed again (its rows
	are still Received), a few times before the error is let through.
	"""
	filed = 0
	for start in range(0, len(items), PROCESS_CHUNK):
		chunk = items[start : start + PROCESS_CHUNK]
		for attempt in range(DEADLOCK_RETRIES):
			try:
				outcomes = process_batch(chunk)
				frappe.db.commit()
				filed += sum(1 for o in outcomes if o.processed)
				break
			except frappe.QueryDeadlockError:
				frappe.db.rollback()
				if attempt == DEADLOCK_RETRIES - 1:
					raise
			finally:
				release_locks()
	return filed


def _save_folder_state(row, uidvalidity: int | None, last_uid: int) -> None:
	values = {"uidvalidity": str(uidvalidity) if uidvalidity is not None else None, "last_uid": last_uid}
	if row.name:
		frappe.db.set_value(FOLDER, row.name, values, update_modified=False)
	row.update(values)


def _ack(queue, source, folder: str, uids: list[int], uidvalidity: int | None = None) -> None:
	if not uids:
		return
	mode = ACK_MODES.get(queue.after_import or "Mark as seen", "seen")
	if mode != "leave":
		source.ack(folder, uids, mode, move_to=queue.move_to_folder, uidvalidity=uidvalidity)


def process_pending(limit: int = 500) -> int:
	"""File messages that were stored but not processed (a worker or request died in between).

	Only records older than two minutes: younger ones may still be in the
	hands of the request or job that stored them.
	"""
	return _process_received(None, limit, older_than_minutes=tick.PENDING_MINUTES)


def _process_received(queue_name: str | None, limit: int = 500, older_than_minutes: int = 0) -> int:
	filters = {"status": "Received"}
	if queue_name:
		filters["email_queue"] = queue_name
	if older_than_minutes:
		filters["creation"] = ("<", add_to_date(now_datetime(), minutes=-older_than_minutes))
	names = frappe.get_all(INBOUND, filters=filters, pluck="name", order_by="creation", limit=limit)
	with settings.run_cache():
		return _process_in_chunks([(name, None) for name in names])


def _acquire_queue_lock(queue_name: str, wait: int = 0) -> bool:
	if frappe.db.db_type != "mariadb":
		return True
	got = frappe.db.sql("SELECT GET_LOCK(%s, %s)", (f"ef-poll-{queue_name}"[:64], wait))[0][0]
	return bool(got)


def _release_queue_lock(queue_name: str) -> None:
	if frappe.db.db_type == "mariadb":
		frappe.db.sql("SELECT RELEASE_LOCK(%s)", (f"ef-poll-{queue_name}"[:64],))
