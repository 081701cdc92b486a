"""The poll job of an Office 365 queue read through Microsoft Graph (channels.graph).

Per folder, one delta round of pages (channels.graph.GraphMailbox.pages):
store a page's messages (dedupe key: mailbox + immutable Graph id, the Graph
id kept on the row) and the folder's next/delta link in ONE commit, file
them as an IMAP batch is filed (commit per chunk), then acknowledge on the
server (mark read or move) and record that on the rows. So:

- killed between pages: the next run resumes from the stored next link
  (inside a round) or delta link (the next round);
- killed inside a page: the page is asked for again and the dedupe key
  drops what was already stored; Message-ID dedupe in ingest does the rest;
- killed after the commit, before the acknowledgement: the next delta round
  does not list those messages again (acks are updates, the round asks for
  created only), so each run first acknowledges the folder's stored rows not
  yet acknowledged, by Graph id;
- a link Graph no longer knows (410) starts a full round, deduplicated;
- throttled for longer than a job may wait (Throttled): the queue's health
  shows it and no poll runs before Retry-After has passed.
"""

import frappe
from frappe import _

from email_flow_app.channels.graph import (
	DEFAULT_MAX_WAIT,
	GRAPH_BASE,
	DeltaPage,
	GraphClient,
	GraphFolderState,
	GraphMailbox,
	Throttling,
)
from email_flow_app.email_flow.services import connect, health, polling
from email_flow_app.email_flow.services.store import INBOUND, store_graph_batch

GRAPH = "Microsoft Graph"
FOLDER = "Incoming Email Queue Folder"
PAGE_SIZE = 100  # messages per delta page, stored in one transaction
ACK_MODES = {"Mark as seen": "read", "Move to folder": "move", "Leave on server": "leave"}
ACK_CATCH_UP = 1000  # stored-but-unacknowledged rows acknowledged per pass
WELL_KNOWN_FOLDERS = ("inbox", "archive", "junkemail", "deleteditems", "sentitems", "drafts")


def reads_graph(queue) -> bool:
	return queue.channel_type == "Office 365" and queue.get("o365_read_via") == GRAPH


def poll(queue, run: dict) -> None:
	"""Read every folder of `queue` over Graph; records health; commits."""
	throttling: list[Throttling] = []
	with health.recording(queue, run):
		box = mailbox(queue, throttling.append)
		for row in queue.folders or [frappe._dict(name=None, folder_name="inbox")]:
			_poll_folder(queue, box, row, run)
	if throttling:
		run["throttled"] = [str(event) for event in throttling]
	frappe.db.commit()


def mailbox(queue, on_throttle=None) -> GraphMailbox:
	"""The queue's mailbox over Graph, signed in with its Office 365 app (delegated or app only)."""
	client = GraphClient(
		connect.token_provider(queue),
		graph_base=frappe.conf.get("email_flow_graph_base") or GRAPH_BASE,
		http_session=connect.http_session(),
		max_wait=float(frappe.conf.get("email_flow_graph_max_wait") or DEFAULT_MAX_WAIT),
		on_throttle=on_throttle,
	)
	return GraphMailbox(client, queue.email_address, page_size=PAGE_SIZE)


def folder_ref(box: GraphMailbox, name: str) -> str:
	"""What Graph's folder paths take: a well-known name (INBOX → inbox) or the folder's id."""
	lowered = (name or "inbox").strip().lower()
	return lowered if lowered in WELL_KNOWN_FOLDERS else box.folder_id(name)


def _poll_folder(queue, box: GraphMailbox, row, run: dict) -> None:
	_catch_up_acks(queue, box, row, run)
	state = GraphFolderState(
		folder_ref(box, row.folder_name), row.get("delta_link") or None, row.get("next_link") or None
	)
	noted = False
	for page in box.pages(state):
		if page.restarted and not noted:
			noted = True
			health.record_note(
				queue,
				_(
					"Microsoft Graph no longer knew where reading folder {0} had stopped; it is read again from the start, duplicates are filtered."
				).format(row.folder_name),
			)
		_file_page(queue, box, row, page, run)


def _file_page(queue, box: GraphMailbox, row, page: DeltaPage, run: dict) -> None:
	"""Store a page and the folder's sync state (one commit), file it, then acknowledge it."""
	names = store_graph_batch(
		queue=queue.name, mailbox=box.mailbox, folder=row.folder_name, messages=list(page.messages)
	)
	_save_state(row, page.state)
	frappe.db.commit()  # stored + state advanced together
	if not names:
		return
	run["stored"] += sum(1 for _name, created in names if created)
	health.record_success(queue)  # progress: a later error backs off from the first step
	frappe.db.commit()
	raws = {name: m.raw for (name, _created), m in zip(names, page.messages, strict=True)}
	run["filed"] += polling._process_in_chunks([(name, raws.pop(name, None)) for name, _created in names])
	_ack(queue, box, [m.id for m in page.messages])
	polling._mark_acknowledged([name for name, _created in names])
	run["acknowledged"] += len(names)


def _catch_up_acks(queue, box: GraphMailbox, row, run: dict) -> None:
	"""Acknowledge what was stored but never acknowledged (a worker died between commit and ack)."""
	while True:
		pending = frappe.get_all(
			INBOUND,
			filters={
				"email_queue": queue.name,
				"folder": row.folder_name,
				"acknowledged": 0,
				"graph_id": ("is", "set"),
			},
			fields=["name", "graph_id"],
			order_by="creation asc",
			limit=ACK_CATCH_UP,
		)
		if not pending:
			return
		_ack(queue, box, [p.graph_id for p in pending])
		polling._mark_acknowledged([p.name for p in pending])
		run["acknowledged"] += len(pending)
		if len(pending) < ACK_CATCH_UP:
			return


def _ack(queue, box: GraphMailbox, graph_ids: list[str]) -> None:
	mode = ACK_MODES.get(queue.after_import or "Mark as seen", "read")
	if not graph_ids or mode == "leave":
		return
	move_to = folder_ref(box, queue.move_to_folder) if mode == "move" else None
	box.ack(graph_ids, mode, move_to=move_to)


def _save_state(row, state: GraphFolderState) -> None:
	values = {"delta_link": state.delta_link, "next_link": state.next_link}
	if row.name:
		frappe.db.set_value(FOLDER, row.name, values, update_modified=False)
	row.update(values)
