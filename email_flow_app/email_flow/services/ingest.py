"""Turn one stored Inbound Email into a Ticket, a reply on a Ticket, or a visible filter verdict.

The steps, in order (DESIGN.md rules 2-4):
1. parse the raw message (never raises);
2. drop a second copy of a Message-ID we already filed (exactly one ticket per message);
3. loop verdict: block list, our own addresses, auto-replies, bounces, our own
   headers. Auto-replies and bounces that thread to a ticket become a note on it;
4. route to a queue: the queue of the first To address we own, else Cc, else
   the original recipient of forwarded mail, else the queue that fetched it;
5. thread: In-Reply-To / References against Message-IDs we stored or issued,
   then the signed reply-address token, then a subject tag whose sender is a
   participant of that ticket. Nothing fuzzy;
6. append a Communication to that Ticket, or create a Ticket (rate cap per sender).

A failure of any step leaves the Inbound Email as Failed with its reason; it
can be reprocessed from the Desk.
"""

import hashlib
from dataclasses import dataclass

import frappe
from frappe import _
from frappe.utils import add_days, add_to_date, get_datetime, now_datetime

from email_flow_app.email_flow.services import acknowledge, attachments, contacts, routing, settings, threads
from email_flow_app.email_flow.services.store import INBOUND, load_raw
from email_flow_app.mail import ParsedMessage, loop_verdict, parse_message, rate_cap_exceeded

PROCESSABLE = ("Received", "Failed", "Filtered")
LOCK_SECONDS = 30


@dataclass
class Outcome:
	status: str
	reason: str | None = None
	ticket: str | None = None
	communication: str | None = None
	thread_rule: str | None = None


def process_inbound(name: str) -> Outcome:
	"""Process one Inbound Email; the caller commits. Never raises for bad mail."""
	inbound = frappe.get_doc(INBOUND, name)
	if inbound.status not in PROCESSABLE:
		return Outcome(
			inbound.status, inbound.reason, inbound.ticket, inbound.communication, inbound.thread_rule
		)
	frappe.db.savepoint("email_flow_inbound")
	try:
		msg = parse_message(load_raw(name))
		outcome = _process(inbound, msg)
	except Exception as exc:
		frappe.db.rollback(save_point="email_flow_inbound")
		frappe.log_error(
			title=f"Email Flow: could not process {name}", reference_doctype=INBOUND, reference_name=name
		)
		outcome = Outcome("Failed", _("Processing failed: {0}").format(f"{type(exc).__name__}: {exc}"[:500]))
		msg = None
	values = {
		"status": outcome.status,
		"reason": outcome.reason,
		"ticket": outcome.ticket,
		"communication": outcome.communication,
		"thread_rule": outcome.thread_rule,
		"attempts": (inbound.attempts or 0) + 1,
	}
	if msg is not None:
		values.update(
			subject=(msg.subject or "")[:255],
			sender=msg.from_address,
			message_id=threads.normalize_message_id(msg.message_id)[:255] or None,
		)
	frappe.db.set_value(INBOUND, name, values, update_modified=False)
	return outcome


def _process(inbound, msg: ParsedMessage) -> Outcome:
	message_id = threads.normalize_message_id(msg.message_id)
	if message_id:
		_lock_message_id(message_id)
		duplicate = frappe.db.get_value(
			INBOUND,
			{
				"message_id": message_id,
				"status": ("in", ("Ticket Created", "Appended")),
				"name": ("!=", inbound.name),
			},
			["name", "ticket"],
			as_dict=True,
		)
		if duplicate:
			return Outcome(
				"Filtered",
				_("Duplicate: the same message (Message-ID) was already filed by {0}").format(duplicate.name),
				ticket=duplicate.ticket,
				thread_rule="duplicate",
			)

	loop_settings = settings.loop_settings()
	verdict = loop_verdict(msg, settings.own_addresses(), loop_settings)
	if verdict:
		return _filtered_as_note(msg, verdict)

	queue = routing.target_queue(msg, inbound.email_queue)
	match = threads.find_ticket(msg)
	if match and _is_past_reopen_window(match.ticket, queue):
		return _create_ticket(msg, queue, inbound, follows_up_on=match.ticket)
	if match:
		comm = _append(match.ticket, msg, match.in_reply_to)
		return Outcome("Appended", None, match.ticket, comm, match.rule)

	if not routing.addressed_directly(msg, queue):
		return Outcome(
			"Filtered",
			_(
				"The inbox of queue {0} is only in Cc, and the queue does not create tickets from Cc-only mail"
			).format(queue),
		)
	recent = frappe.db.count(
		"Ticket",
		{
			"raised_by": msg.from_address,
			"creation": (">", add_to_date(now_datetime(), minutes=-loop_settings.rate_window_minutes)),
		},
	)
	if rate_cap_exceeded(recent, loop_settings):
		return Outcome(
			"Filtered",
			_("Rate cap: {0} opened {1} tickets in the last {2} minutes").format(
				msg.from_address, recent, loop_settings.rate_window_minutes
			),
		)
	return _create_ticket(msg, queue, inbound)


def _filtered_as_note(msg: ParsedMessage, verdict: str) -> Outcome:
	"""A caught message stays visible; an auto-reply or bounce to a ticket becomes a note on it."""
	match = threads.find_ticket(msg, include_bounced_original=True)
	if match and (msg.auto_submitted or msg.bounce):
		note = frappe.get_doc(
			{
				"doctype": "Comment",
				"comment_type": "Comment",
				"reference_doctype": "Ticket",
				"reference_name": match.ticket,
				"comment_email": msg.from_address,
				"comment_by": msg.from_name or msg.from_address,
				"content": _("Automatic message from {0} (not a customer reply): {1}<br><b>{2}</b>").format(
					frappe.utils.escape_html(msg.from_address or "?"),
					frappe.utils.escape_html(verdict),
					frappe.utils.escape_html(msg.subject or ""),
				),
			}
		)
		note.insert(ignore_permissions=True)
		return Outcome("Filtered", verdict, match.ticket, None, "note:" + match.rule)
	return Outcome("Filtered", verdict)


def _is_past_reopen_window(ticket: str, queue: str) -> bool:
	status, modified = frappe.db.get_value("Ticket", ticket, ["status", "modified"])
	if status != "Closed":
		return False
	days = frappe.db.get_value("Incoming Email Queue", queue, "reopen_window_days")
	days = 14 if days is None else int(days)
	return get_datetime(modified) < add_days(now_datetime(), -days)


def _create_ticket(msg: ParsedMessage, queue: str, inbound, follows_up_on: str | None = None) -> Outcome:
	contact = contacts.ensure_contact(msg.from_address, msg.from_name)
	ticket = frappe.get_doc(
		{
			"doctype": "Ticket",
			"subject": (msg.subject or _("(no subject)"))[:255],
			"raised_by": msg.from_address,
			"customer_name": msg.from_name or None,
			"contact": contact,
			"email_queue": queue,
			"status": "Open",
			"message_id": threads.normalize_message_id(msg.message_id) or None,
			"reopened_from": follows_up_on,
		}
	)
	ticket.insert(ignore_permissions=True)
	comm = _append(ticket.name, msg, None, new_ticket=True)
	routing.assign(ticket, queue)
	acknowledge.schedule(ticket.name, msg, queue)
	rule = "reopen window passed: follows up on " + follows_up_on if follows_up_on else "new"
	return Outcome("Ticket Created", None, ticket.name, comm, rule)


def _append(ticket: str, msg: ParsedMessage, in_reply_to: str | None, new_ticket: bool = False) -> str:
	"""Add the message to the ticket's timeline (Communication) with its attachments as Files."""
	saved = attachments.save_attachments(ticket, msg)
	html = attachments.rewrite_cid_links(msg.html, saved) if msg.html else threads.text_to_html(msg.text)
	comm = frappe.get_doc(
		{
			"doctype": "Communication",
			"communication_type": "Communication",
			"communication_medium": "Email",
			"sent_or_received": "Received",
			"email_status": "Open",
			"subject": msg.subject or _("(no subject)"),
			"sender": msg.from_address,
			"sender_full_name": msg.from_name or None,
			"recipients": ", ".join(address for _name, address in msg.to),
			"cc": ", ".join(address for _name, address in msg.cc) or None,
			"content": html,
			"text_content": msg.text,
			"message_id": threads.normalize_message_id(msg.message_id) or None,
			"in_reply_to": in_reply_to,
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"has_attachment": 1 if saved else 0,
			"communication_date": msg.date.replace(tzinfo=None) if msg.date else now_datetime(),
		}
	)
	comm.insert(ignore_permissions=True)
	if new_ticket:
		frappe.db.set_value("Ticket", ticket, "description", html, update_modified=False)
	else:
		_reopen_on_customer_reply(ticket)
	return comm.name


def _reopen_on_customer_reply(ticket: str) -> None:
	"""A customer reply makes the ticket Open again (Closed ones only within the reopen window)."""
	status = frappe.db.get_value("Ticket", ticket, "status")
	if status != "Open":
		frappe.db.set_value("Ticket", ticket, "status", "Open")


def _lock_message_id(message_id: str) -> None:
	"""Serialise workers filing the same Message-ID (one email sent to two queues).

	MariaDB's named lock lives as long as this connection's transaction work;
	it is released at commit by the caller (or when the worker dies).
	"""
	if frappe.db.db_type != "mariadb":
		return
	key = "ef-mid-" + hashlib.sha1(message_id.encode("utf-8", "surrogateescape")).hexdigest()
	frappe.db.sql("SELECT GET_LOCK(%s, %s)", (key, LOCK_SECONDS))
	frappe.local.email_flow_locks = [*getattr(frappe.local, "email_flow_locks", []), key]


def release_locks() -> None:
	for key in getattr(frappe.local, "email_flow_locks", []):
		frappe.db.sql("SELECT RELEASE_LOCK(%s)", (key,))
	frappe.local.email_flow_locks = []
