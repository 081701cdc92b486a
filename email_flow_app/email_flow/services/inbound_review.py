"""What a manager does with one stored Inbound Email: preview it, force a ticket, unblock its sender.

Every function here expects the caller to have checked the role (Support Manager or
System Manager) and read permission on the Inbound Email; they commit their own work,
as reprocessing does.
"""

import frappe
from frappe import _

from email_flow_app.email_flow.services import settings, threads
from email_flow_app.email_flow.services.ingest import FILED, process_forced, process_inbound, release_locks
from email_flow_app.email_flow.services.store import INBOUND, load_raw
from email_flow_app.mail import parse_message
from email_flow_app.mail.loops import canonical_address

PREVIEW_CHARS = 4000  # of the text body; the whole message stays in the raw .eml
REVIEWABLE = ("Failed", "Filtered")
BLOCKED = "Email Flow Blocked Address"


def body_preview(inbound) -> dict:
	"""The text body of the stored raw message, HTML-escaped and cut to PREVIEW_CHARS.

	Mail HTML is never rendered: an HTML-only message shows the text the parser
	derives from it. A message that cannot be read says so instead.
	"""
	try:
		text = parse_message(load_raw(inbound.name, inbound.raw_file)).text or ""
	except Exception as exc:  # a missing file or a parser bug: the form still opens
		return {"ok": False, "html": "", "message": _("No preview: {0}").format(type(exc).__name__)}
	text = text.strip()
	cut = len(text) > PREVIEW_CHARS
	if cut:
		text = text[:PREVIEW_CHARS].rstrip() + "…"
	return {
		"ok": True,
		"html": frappe.utils.escape_html(text),
		"truncated": cut,
		"message": _("The first {0} characters of the text; the whole message is the raw .eml.").format(
			PREVIEW_CHARS
		)
		if cut
		else "",
	}


def create_ticket_anyway(inbound) -> dict:
	"""A Filtered message becomes a new ticket although a rule caught it (the manager decides).

	Exactly one ticket per message still holds: a message whose Message-ID is
	already a ticket is refused (ingest checks it again under the Message-ID lock).
	"""
	if inbound.status != "Filtered":
		frappe.throw(
			_("Only a Filtered message can be made a ticket anyway; this one is {0}.").format(
				_(inbound.status)
			)
		)
	existing = _ticket_of_message(inbound)
	if existing:
		frappe.throw(
			_("This message is already ticket {0}: a message becomes one ticket only.").format(existing),
			title=_("Already a ticket"),
		)
	note = _("{0} created this ticket from {1} although it was filtered ({2}).").format(
		frappe.utils.get_fullname(frappe.session.user), inbound.name, inbound.reason or _("no reason given")
	)
	outcome = process_forced(inbound.name, note)
	frappe.db.commit()
	release_locks()
	return _answer(outcome)


def unblock_sender_and_reprocess(inbound) -> dict:
	"""Take the sender off the block list (if it is there), then reprocess the message.

	Our own connected inboxes and From addresses stay blocked: unblocking them
	would let the app file (and answer) its own mail.
	"""
	if inbound.status not in REVIEWABLE:
		frappe.throw(_("Only Failed or Filtered messages can be reprocessed."))
	sender = canonical_address(inbound.sender or "")
	if not sender or "@" not in sender:
		frappe.throw(_("This message has no sender address to unblock."))
	if sender in {canonical_address(a) for a in settings.own_addresses()}:
		frappe.throw(
			_(
				"{0} is one of this site's own inboxes or From addresses. It stays blocked: "
				"unblocking it would make the app file its own mail and loop."
			).format(sender),
			title=_("Not unblocked"),
		)
	removed = remove_blocked_sender(sender)
	frappe.db.commit()  # the list is changed even if processing then fails
	outcome = process_inbound(inbound.name)
	frappe.db.commit()
	release_locks()
	answer = _answer(outcome)
	answer["unblocked"] = removed
	return answer


def remove_blocked_sender(address: str) -> list[str]:
	"""Remove every block-list row that names `address` (compared as the loop rule compares)."""
	wanted = canonical_address(address)
	doc = frappe.get_single(settings.SETTINGS)
	rows = [row for row in doc.blocked_addresses if canonical_address(row.email_address) == wanted]
	if not rows:
		return []
	for row in rows:
		doc.remove(row)
	doc.flags.ignore_permissions = True
	doc.save()
	return [row.email_address for row in rows]


def _ticket_of_message(inbound) -> str | None:
	"""The ticket this message already is: its Message-ID filed by any Inbound Email, or on a Ticket."""
	message_id = threads.normalize_message_id(inbound.message_id) if inbound.message_id else None
	if not message_id:
		return None
	filed = frappe.db.get_value(
		INBOUND, {"message_id": message_id, "status": ("in", FILED), "ticket": ("is", "set")}, "ticket"
	)
	return filed or frappe.db.get_value("Ticket", {"message_id": message_id}, "name")


def _answer(outcome) -> dict:
	return {
		"status": outcome.status,
		"ticket": outcome.ticket,
		"reason": outcome.reason,
	}
