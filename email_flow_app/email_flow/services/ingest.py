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
FILED = ("Ticket Created", "Appended")
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
	return process_batch([(name, None)])[0]


def process_batch(items: list[tuple[str, bytes | None]]) -> list[Outcome]:
	"""Process Inbound Emails in order, each with its raw message if the caller holds it.

	The caller commits (and then calls :func:`release_locks`). What every
	message of the batch needs from the database is read once: the records,
	the Message-ID locks and duplicates, thread evidence, Contacts, rate-cap
	counts; site settings once per run (`settings.run_cache`). Each message
	runs under its own savepoint: a failure leaves it Failed with its reason
	and does not undo the others.
	"""
	with settings.run_cache():
		for key in ("message_ids", "contacts", "recent_tickets"):
			settings.run_state(key).clear()  # batch lookups: never older than the batch
		names = [name for name, _raw in items]
		rows = {
			row.name: row
			for row in frappe.get_all(
				INBOUND,
				filters={"name": ("in", names)},
				fields=[
					"name",
					"status",
					"reason",
					"ticket",
					"communication",
					"thread_rule",
					"attempts",
					"email_queue",
					"raw_file",
				],
			)
		}
		parsed: dict[str, ParsedMessage | Exception] = {}
		for name, raw in items:
			row = rows.get(name)
			if row is None or row.status not in PROCESSABLE or name in parsed:
				continue
			try:
				parsed[name] = parse_message(raw if raw is not None else load_raw(name, row.raw_file))
			except Exception as exc:
				parsed[name] = exc
		messages = [m for m in parsed.values() if isinstance(m, ParsedMessage)]
		_prefetch(messages, [n for n, m in parsed.items() if isinstance(m, ParsedMessage)])
		outcomes = []
		for name, _raw in items:
			row = rows.get(name)
			if row is None:
				raise frappe.DoesNotExistError(f"{INBOUND} {name} not found")
			if name not in parsed:
				outcomes.append(
					Outcome(row.status, row.reason, row.ticket, row.communication, row.thread_rule)
				)
				continue
			outcome = _process_one(row, parsed.pop(name))
			row.update(status=outcome.status)  # a second copy of the name in `items` is not processed again
			outcomes.append(outcome)
		return outcomes


def _process_one(inbound, msg: ParsedMessage | Exception) -> Outcome:
	name = inbound.name
	frappe.db.savepoint("email_flow_inbound")
	try:
		if isinstance(msg, Exception):
			raise msg
		outcome = _process(inbound, msg)
	except Exception as exc:
		frappe.db.rollback(save_point="email_flow_inbound")
		for key in ("message_ids", "contacts", "recent_tickets"):
			settings.run_state(key).clear()  # may name records the rollback removed
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
		message_id = threads.normalize_message_id(msg.message_id)[:255] or None
		values.update(subject=(msg.subject or "")[:255], sender=msg.from_address, message_id=message_id)
		if message_id and outcome.status in FILED:
			_filed_message_ids()[message_id] = (name, outcome.ticket)
	_update(INBOUND, name, values)
	return outcome


def _update(doctype: str, name: str, values: dict) -> None:
	"""frappe.db.set_value(update_modified=False) without its DocType lookup: one UPDATE."""
	table = frappe.qb.DocType(doctype)
	query = frappe.qb.update(table).where(table.name == name)
	for field, value in values.items():
		query = query.set(field, value)
	query.run()


def _prefetch(messages: list[ParsedMessage], names: list[str]) -> None:
	"""One query each for what the batch's messages would otherwise ask one by one."""
	message_ids = sorted({mid for m in messages if (mid := threads.normalize_message_id(m.message_id))})
	_lock_message_ids(message_ids)
	filed = _filed_message_ids()
	filed.clear()
	if message_ids:
		for message_id, name, ticket in frappe.get_all(
			INBOUND,
			filters={"message_id": ("in", message_ids), "status": ("in", FILED), "name": ("not in", names)},
			fields=["message_id", "name", "ticket"],
			order_by="modified desc",
			as_list=True,
		):
			filed.setdefault(message_id, (name, ticket))
	for message_id in message_ids:
		filed.setdefault(message_id, None)
	threads.prefetch(messages)
	contacts.prefetch(m.from_address for m in messages)
	senders = sorted({m.from_address.lower() for m in messages if m.from_address})
	recent = settings.run_state("recent_tickets")
	if senders:
		window = settings.loop_settings().rate_window_minutes
		for raised_by, count in frappe.get_all(
			"Ticket",
			filters={
				"raised_by": ("in", senders),
				"creation": (">", add_to_date(now_datetime(), minutes=-window)),
			},
			fields=["raised_by", "count(*) as count"],
			group_by="raised_by",
			as_list=True,
		):
			recent[(raised_by or "").lower()] = recent.get((raised_by or "").lower(), 0) + count
		for sender in senders:
			recent.setdefault(sender, 0)


def _filed_message_ids() -> dict:
	return settings.run_state("filed_message_ids")


def _process(inbound, msg: ParsedMessage) -> Outcome:
	message_id = threads.normalize_message_id(msg.message_id)
	if message_id:
		duplicate = _filed_before(message_id, inbound.name)
		if duplicate:
			return Outcome(
				"Filtered",
				_("Duplicate: the same message (Message-ID) was already filed by {0}").format(duplicate[0]),
				ticket=duplicate[1],
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
	recent = _recent_tickets(msg.from_address, loop_settings.rate_window_minutes)
	if rate_cap_exceeded(recent, loop_settings):
		return Outcome(
			"Filtered",
			_("Rate cap: {0} opened {1} tickets in the last {2} minutes").format(
				msg.from_address, recent, loop_settings.rate_window_minutes
			),
		)
	return _create_ticket(msg, queue, inbound)


def _filed_before(message_id: str, name: str) -> tuple[str, str] | None:
	"""(Inbound Email, Ticket) that already filed this Message-ID; the lock is held by the caller."""
	filed = _filed_message_ids()
	if message_id in filed:
		return filed[message_id]
	_lock_message_ids([message_id])
	row = frappe.db.get_value(
		INBOUND,
		{"message_id": message_id, "status": ("in", FILED), "name": ("!=", name)},
		["name", "ticket"],
	)
	return tuple(row) if row else None


def _recent_tickets(sender: str | None, window_minutes: int) -> int:
	recent = settings.run_state("recent_tickets")
	key = (sender or "").lower()
	if key and key in recent:
		return recent[key]
	return frappe.db.count(
		"Ticket",
		{"raised_by": sender, "creation": (">", add_to_date(now_datetime(), minutes=-window_minutes))},
	)


def _filtered_as_note(msg: ParsedMessage, verdict: str) -> Outcome:
	"""A caught message stays visible; an auto-reply or bounce to a ticket becomes a note on it."""
	match = threads.find_ticket(msg, include_bounced_original=True)
	if match and (msg.auto_submitted or msg.is_bounce):
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
	row = routing.queue_settings(queue)
	days = row.reopen_window_days if row else None
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
	ticket.flags.ignore_links = True  # contact, queue and the followed-up ticket were just read or made
	ticket.insert(ignore_permissions=True)
	saved = attachments.save_attachments(ticket.name, msg)
	# Written after insert: the body is already sanitized (mail.sanitize_html, or escaped text);
	# Document._sanitize_content would run bleach over it a second time (~40% of a message's CPU).
	ticket.description = _body_html(msg, saved)
	_update("Ticket", ticket.name, {"description": ticket.description})
	recent = settings.run_state("recent_tickets")
	sender = (msg.from_address or "").lower()
	if sender in recent:
		recent[sender] += 1
	comm = _append(ticket, msg, None, new_ticket=True, saved=saved)
	routing.assign(ticket, queue)
	row = routing.queue_settings(queue)
	if row is None or row.send_acknowledgement:
		acknowledge.schedule(ticket.name, msg, queue)
	rule = "reopen window passed: follows up on " + follows_up_on if follows_up_on else "new"
	return Outcome("Ticket Created", None, ticket.name, comm, rule)


def _body_html(msg: ParsedMessage, saved: dict[str, str]) -> str:
	return attachments.rewrite_cid_links(msg.html, saved) if msg.html else threads.text_to_html(msg.text)


def _append(
	ticket,
	msg: ParsedMessage,
	in_reply_to: str | None,
	new_ticket: bool = False,
	saved: dict[str, str] | None = None,
) -> str:
	"""Add the message to the ticket's timeline (Communication) with its attachments as Files.

	`ticket` is a name, or the Ticket document just created (its attachments
	already `saved`; Communication's hooks use the document instead of
	loading it again).
	"""
	ticket_doc = None if isinstance(ticket, str) else ticket
	ticket = ticket if isinstance(ticket, str) else ticket.name
	if saved is None:
		saved = attachments.save_attachments(ticket, msg)
	html = _body_html(msg, saved)
	message_id = threads.normalize_message_id(msg.message_id) or None
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
			"message_id": message_id,
			"in_reply_to": in_reply_to,
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"has_attachment": 1 if saved else 0,
			"communication_date": msg.date.replace(tzinfo=None) if msg.date else now_datetime(),
		}
	)
	comm.flags.ignore_links = True  # the ticket and the answered Communication were just read or made
	if ticket_doc is not None:
		comm.parent_doc = ticket_doc  # frappe.core.utils.get_parent_doc
	comm.insert(ignore_permissions=True)
	threads.remember(message_id, comm.name, ticket)
	if not new_ticket:
		_reopen_on_customer_reply(ticket)
	return comm.name


def _reopen_on_customer_reply(ticket: str) -> None:
	"""A customer reply makes the ticket Open again (Closed ones only within the reopen window)."""
	status = frappe.db.get_value("Ticket", ticket, "status")
	if status != "Open":
		frappe.db.set_value("Ticket", ticket, "status", "Open")


def _lock_message_ids(message_ids: list[str]) -> None:
	"""Serialise workers filing the same Message-ID (one email sent to two queues).

	MariaDB named locks, all of a batch in one statement and in sorted order
	(two workers never wait on each other in a cycle); held until the caller
	has committed and calls :func:`release_locks` (or the worker dies).
	"""
	if frappe.db.db_type != "mariadb":
		return
	held = getattr(frappe.local, "email_flow_locks", [])
	keys = sorted(
		{"ef-mid-" + hashlib.sha1(m.encode("utf-8", "surrogateescape")).hexdigest() for m in message_ids}
		- set(held)
	)
	if not keys:
		return
	frappe.db.sql(
		"SELECT " + ", ".join(["GET_LOCK(%s, %s)"] * len(keys)),
		tuple(value for key in keys for value in (key, LOCK_SECONDS)),
	)
	frappe.local.email_flow_locks = [*held, *keys]


def release_locks() -> None:
	keys = getattr(frappe.local, "email_flow_locks", [])
	frappe.local.email_flow_locks = []
	if keys:
		frappe.db.sql("SELECT " + ", ".join(["RELEASE_LOCK(%s)"] * len(keys)), tuple(keys))
