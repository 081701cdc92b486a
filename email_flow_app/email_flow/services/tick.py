"""The per-minute tick (scheduler): look at every due queue cheaply, queue poll jobs only where mail came.

Kept apart from the poll job (services/polling.py) on purpose: the tick runs in
a freshly forked RQ work horse every minute, and what it imports is paid on
every run. Everything here is light (no ingest, no parsing, no HTTP client);
the poll job's heavy modules are loaded only by the poll jobs themselves.
"""

import datetime
import time
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import frappe
from frappe.utils import add_to_date, now_datetime
from frappe.utils.background_jobs import get_job_status
from rq.job import JobStatus

from email_flow_app.channels.errors import ChannelError
from email_flow_app.channels.imap import IMAPSource
from email_flow_app.email_flow.services import health, listener, mailboxes

INBOUND = "Inbound Email"
POLL_JOB = "email_flow_app.email_flow.services.polling.poll_queue"

PROBE_STATE = "email_flow:probe"  # cache: queue → when the tick last probed it
PROBE_THREADS = 8  # mailboxes probed at once by the per-minute tick
RELAXED_MINUTES = 10  # a queue a live IDLE listener watches is probed this often (safety net)
AGAIN_TTL_SECONDS = 600  # an unanswered "look again" is dropped after this
PENDING_MINUTES = 2  # stored but unfiled this long: filed by the tick (polling.process_pending)


def every_minute() -> None:
	"""The app's one scheduler job a minute: the polls' tick, then the SLA sweep.

	One job, not two: with a single `bench worker` (the default), every
	scheduled job is a forked work horse that new mail's poll job waits behind.
	"""
	now = site_now()
	try:
		enqueue_polls(now)
	finally:
		from email_flow_app.email_flow.services import sla

		sla.mark_overdue(now)


def site_now() -> datetime.datetime:
	"""frappe.utils.now_datetime() without loading the System Settings document.

	The first now_datetime() of a process unpickles that document, which
	imports its controller: a quarter second of CPU in the tick's fresh work
	horse. The time zone itself is one read of a Single's value.
	"""
	zone = frappe.db.get_single_value("System Settings", "time_zone")
	if not zone:
		return now_datetime()
	return datetime.datetime.now(ZoneInfo(zone)).replace(tzinfo=None)


def enqueue_polls(now: datetime.datetime | None = None) -> None:
	"""Every minute, in this one job: look at every due queue cheaply, queue a poll only where mail may be.

	A queue that is failing, new, or has stored mail left to acknowledge gets a
	poll job (it records health and backs off). A healthy queue is probed: one
	login and a STATUS per folder, a few mailboxes at once (IMAPSource.has_new:
	SELECT and SEARCH only where UIDNEXT moved past the last UID fetched); it
	gets a poll job when a folder holds mail above that UID or was renumbered.
	Queues whose IDLE a live listener holds are probed every RELAXED_MINUTES
	only, as a safety net; when the listener's heartbeat expires they are
	probed every minute again.
	"""
	now = now or site_now()
	clock = time.time()
	boxes = mailboxes.polled_queues()
	watched = listener.watched_queues()
	seen = frappe.cache.get_value(PROBE_STATE) or {}
	unacknowledged = _queues_with_unacknowledged([box.name for box in boxes])
	to_probe = []
	for box in boxes:
		queue = box.queue
		if queue.next_poll_after and queue.next_poll_after > now:
			continue  # backing off after failures
		if queue.status != health.HEALTHY or box.name in unacknowledged:
			enqueue_poll(box.name)
			continue
		last = seen.get(box.name)
		if box.name in watched and last and clock - last["at"] < RELAXED_MINUTES * 60:
			continue
		to_probe.append(box)
	if to_probe:
		seen.update(_probe_and_enqueue(to_probe, clock))
	for queue in mailboxes.graph_queues():  # no cheap probe over Graph: its delta round is one
		if queue.next_poll_after and queue.next_poll_after > now:
			continue
		if not mailboxes.graph_push_watches(queue, now):  # change notifications queue its polls
			enqueue_poll(queue.name)
	names = {box.name for box in boxes}
	frappe.cache.set_value(PROBE_STATE, {name: look for name, look in seen.items() if name in names})
	if _has_pending(now):
		from email_flow_app.email_flow.services.polling import process_pending

		process_pending()


def _has_pending(now: datetime.datetime) -> bool:
	"""Stored messages left unfiled for two minutes (a worker or request died in between)."""
	return bool(
		frappe.db.exists(
			INBOUND, {"status": "Received", "creation": ("<", add_to_date(now, minutes=-PENDING_MINUTES))}
		)
	)


def _queues_with_unacknowledged(names: list[str]) -> set[str]:
	"""Queues with stored mail not yet acknowledged on the server (their poll catches it up)."""
	if not names:
		return set()
	return set(
		frappe.get_all(
			INBOUND,
			filters={"acknowledged": 0, "uid": (">", 0), "email_queue": ("in", names)},
			pluck="email_queue",
			distinct=True,
		)
	)


def _probe_and_enqueue(boxes: list, clock: float) -> dict:
	"""Probe `boxes`, queue a poll for each that has new mail; returns when each was probed."""
	context = mailboxes.tls_context()
	logins = mailboxes.password_logins(boxes, context)
	work = []
	for box in boxes:
		try:
			work.append((box, *mailboxes.login(box, context, logins)))
		except Exception:  # the poll job reports it on the queue (Reconnect needed, back-off)
			enqueue_poll(box.name)
	probed = {}
	with ThreadPoolExecutor(max_workers=max(1, min(PROBE_THREADS, len(work)))) as pool:
		for (box, _config, _auth), outcome in zip(work, pool.map(lambda w: _probe(*w), work), strict=True):
			if outcome is not False:  # new mail, or an error the poll job records (and backs off)
				enqueue_poll(box.name)
			if not isinstance(outcome, ChannelError):
				probed[box.name] = {"at": clock}
	return probed


def _probe(box, config, auth) -> "bool | ChannelError":
	"""In a probe thread (no frappe here): one login; whether any folder of `box` has new mail."""
	try:
		with IMAPSource(config, auth) as source:
			return any(source.has_new(state) for state in box.folders)
	except ChannelError as exc:
		return exc


def enqueue_poll(queue_name: str) -> None:
	"""Queue a poll unless one is already waiting.

	A job that is running (or whose worker died: RQ keeps it 'started' until
	its timeout) does not block a new one; the per-queue lock in poll_queue
	makes sure two never run at once, and a job that finds one running asks it
	for one more pass (mail that came after it looked is not left waiting).
	"""
	job_id = f"email_flow_poll::{queue_name}"
	status = get_job_status(job_id)
	if status == JobStatus.QUEUED:
		return
	if status == JobStatus.STARTED:
		# The running poll makes one more pass before it stops (no new work horse to
		# fork and wait for); the job queued below catches what a pass that already
		# ended would miss.
		ask_running_poll_again(queue_name)
	frappe.enqueue(
		POLL_JOB,
		queue="long",
		job_id=job_id,
		queue_name=queue_name,
	)


def again_key(queue_name: str) -> str:
	"""Cache key: new mail was signalled while this queue's poll was running."""
	return f"email_flow:poll_again:{queue_name}"


def ask_running_poll_again(queue_name: str) -> None:
	frappe.cache.set_value(again_key(queue_name), 1, expires_in_sec=AGAIN_TTL_SECONDS)


def poll_again_asked(queue_name: str) -> bool:
	return bool(frappe.cache.get_value(again_key(queue_name), expires=True))
