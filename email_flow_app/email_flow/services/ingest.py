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

import datetime
import hashlib
import json
from dataclasses import dataclass

import frappe
from frappe import _
from frappe.automation.doctype.assignment_rule.assignment_rule import apply as apply_assignment_rule
from frappe.core.doctype.communication.communication import get_emails
from frappe.model.document import Document
from frappe.utils import add_days, add_to_date, get_datetime, now_datetime

from email_flow_app.email_flow.services import (
	acknowledge,
	attachments,
	contacts,
	desk,
	notify,
	routing,
	settings,
	store,
	threads,
)
from email_flow_app.email_flow.services.store import INBOUND, load_raw
from email_flow_app.mail import ParsedMessage, desk_text, loop_verdict, parse_message, rate_cap_exceeded
from email_flow_app.mail.parse import MAX_BODY_CHARS

PROCESSABLE = ("Received", "Failed", "Filtered")
FILED = ("Ticket Created", "Appended")
LOCK_SECONDS = 30
BATCH_STATE = (
	"message_ids",
	"contacts",
	"recent_tickets",
	"timeline_contacts",
	"contact_links",
	"spam_senders",
)


@dataclass
class Outcome:
	status: str
	reason: str | None = None
	ticket: str | None = None
	communication: str | None = None
	thread_rule: str | None = None
	error_type: str | None = None  # Failed: the kind of error (the list groups Failed rows by it)
	processed: bool = True  # False: left as it was (filed before, or being filed by another worker)


def process_inbound(name: str) -> Outcome:
	"""Process one Inbound Email; the caller commits. Never raises for bad mail."""
	return process_batch([(name, None)])[0]


def process_batch(items: list[tuple[str, bytes | None]]) -> list[Outcome]:
	"""Process Inbound Emails in order, each with its raw message if the caller holds it.

	Filing runs in a transaction of its own: what the caller had open is
	committed first (see `_begin_filing_transaction`). The caller commits the
	filing (and then calls :func:`release_locks`). What every
	message of the batch needs from the database is read once: the records,
	the Message-ID locks and duplicates, thread evidence, Contacts, rate-cap
	counts; site settings once per run (`settings.run_cache`). Each message
	runs under its own savepoint: a failure leaves it Failed with its reason
	and does not undo the others.
	"""
	_begin_filing_transaction()
	try:
		return _file_claimed(items)
	finally:
		_end_filing_transaction()


def _file_claimed(items: list[tuple[str, bytes | None]]) -> list[Outcome]:
	with settings.run_cache():
		for key in BATCH_STATE:
			settings.run_state(key).clear()  # batch lookups: never older than the batch
		settings.run_state("series").clear()
		names = [name for name, _raw in items]
		rows = _claim(names)
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
				if not frappe.db.exists(INBOUND, name):
					raise frappe.DoesNotExistError(f"{INBOUND} {name} not found")
				# Claimed by another filer right now: it files it, we leave it alone.
				outcomes.append(Outcome("Received", _("Being filed by another worker"), processed=False))
				continue
			if name not in parsed:
				outcomes.append(
					Outcome(
						row.status,
						row.reason,
						row.ticket,
						row.communication,
						row.thread_rule,
						processed=False,
					)
				)
				continue
			outcome = _process_one(row, parsed.pop(name))
			row.update(status=outcome.status)  # a second copy of the name in `items` is not processed again
			outcomes.append(outcome)
		store.flush_series()  # Ticket numbers taken by this batch (the caller commits)
		return outcomes


CLAIM_FIELDS = (
	"name",
	"status",
	"reason",
	"ticket",
	"communication",
	"thread_rule",
	"attempts",
	"email_queue",
	"raw_file",
)


def _begin_filing_transaction() -> None:
	"""Filing runs in a transaction of its own, at READ COMMITTED (MariaDB's default is REPEATABLE READ).

	Another filer's committed ticket must be visible the moment its Message-ID
	lock is released, not hidden by an older snapshot of this transaction; and
	READ COMMITTED takes no gap locks, so filers working side by side do not
	deadlock on the Message-ID index. (PostgreSQL reads committed data anyway.)
	"""
	if frappe.db.db_type == "mariadb":
		if not getattr(frappe.local, "email_flow_isolation", None):
			frappe.local.email_flow_isolation = frappe.db.sql("SELECT @@SESSION.tx_isolation")[0][0]
		# For the transactions this session starts from now on (Frappe begins one right at commit).
		frappe.db.sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
	frappe.db.commit()


ISOLATION_LEVELS = ("READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")


def _end_filing_transaction() -> None:
	"""The session's later transactions (after the caller's commit) are back at the level they had."""
	previous = getattr(frappe.local, "email_flow_isolation", None)
	frappe.local.email_flow_isolation = None
	level = (previous or "").replace("-", " ").upper()
	if frappe.db.db_type == "mariadb" and level in ISOLATION_LEVELS:
		frappe.db.sql(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")


def _claim(names: list[str]) -> dict[str, frappe._dict]:
	"""Lock the batch's Inbound Email rows for this transaction; rows another filer holds are skipped.

	One filer per row: the scheduler tick's sweep, a poll job, a webhook request
	or a reprocess can reach the same Received rows at the same time. The row
	lock (SELECT ... FOR UPDATE SKIP LOCKED) is held until the caller commits, and
	a filer that dies loses it with its connection, so its rows are taken over by
	the next one. Being a locking read, it sees the rows' latest committed status,
	never an older snapshot of the transaction.
	"""
	if not names:
		return {}
	columns = ", ".join(f"`{field}`" for field in CLAIM_FIELDS)
	placeholders = ", ".join(["%s"] * len(names))
	rows = frappe.db.sql(
		f"SELECT {columns} FROM `tab{INBOUND}` WHERE `name` IN ({placeholders}) "
		f"ORDER BY `name` FOR UPDATE SKIP LOCKED",
		tuple(names),
		as_dict=True,
	)
	return {row.name: row for row in rows}


def _current_filed(message_ids: list[str], exclude: list[str]) -> list[tuple[str, str, str]]:
	"""(message_id, Inbound Email, Ticket) of filed rows, as committed now.

	Called with the Message-ID locks held, in the filing transaction (READ
	COMMITTED): whoever filed these ids before has committed, and this read sees it.
	"""
	if not message_ids:
		return []
	return frappe.get_all(
		INBOUND,
		filters={
			"message_id": ("in", message_ids),
			"status": ("in", FILED),
			"name": ("not in", exclude or [""]),
		},
		fields=["message_id", "name", "ticket"],
		order_by="modified desc",
		as_list=True,
	)


def _process_one(inbound, msg: ParsedMessage | Exception) -> Outcome:
	name = inbound.name
	frappe.db.savepoint("email_flow_inbound")
	series = store.series_snapshot()
	state = _batch_state_snapshot()
	try:
		if isinstance(msg, Exception):
			raise msg
		outcome = _process(inbound, msg)
	except frappe.QueryDeadlockError:
		raise  # the database rolled the whole chunk back: the caller files it again
	except Exception as exc:
		frappe.db.rollback(save_point="email_flow_inbound")
		store.restore_series(series)  # the rolled back ticket's number is free again
		_restore_batch_state(state)  # forget what names records the rollback removed
		reason = f"{type(exc).__name__}: {exc}"[:500]
		_log_failure(name, reason)
		outcome = Outcome("Failed", _("Processing failed: {0}").format(reason), error_type=type(exc).__name__)
		msg = msg if isinstance(msg, ParsedMessage) else None
	values = {
		"status": outcome.status,
		"error_type": outcome.error_type,
		"reason": outcome.reason,
		"ticket": outcome.ticket,
		"communication": outcome.communication,
		"thread_rule": outcome.thread_rule,
		"attempts": (inbound.attempts or 0) + 1,
	}
	if msg is not None:
		values.update(store.header_fields(msg))
		message_id = values["message_id"]
		if message_id and outcome.status in FILED:
			_filed_message_ids()[message_id] = (name, outcome.ticket)
	_update(INBOUND, name, values)
	return outcome


def _batch_state_snapshot() -> dict:
	return {key: dict(settings.run_state(key)) for key in BATCH_STATE}


def _restore_batch_state(snapshot: dict) -> None:
	"""After a rollback to the message's savepoint: the batch lookups as they were before it.

	What the failed message added may name records the rollback removed; what
	the batch read before it still holds, so the rest of the batch does not read
	it all again one by one.
	"""
	for key, value in snapshot.items():
		state = settings.run_state(key)
		state.clear()
		state.update(value)


def _log_failure(name: str, reason: str) -> None:
	"""One concise Error Log: title, reason and the traceback, without local variables.

	(frappe.log_error alone formats every frame's locals: slow, and it copies
	mail content into the log.)
	"""
	import traceback

	frappe.log_error(
		title=f"Email Flow: could not process {name}",
		message=f"{reason}\n\n{traceback.format_exc()}",
		reference_doctype=INBOUND,
		reference_name=name,
	)


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
	for message_id, name, ticket in _current_filed(message_ids, names):
		filed.setdefault(message_id, (name, ticket))
	for message_id in message_ids:
		filed.setdefault(message_id, None)
	threads.prefetch(messages)
	contacts.prefetch(m.from_address for m in messages)
	if _fast_communication() is not None:
		contacts.prefetch_timeline([address for m in messages for address in get_emails(list(_addresses(m)))])
		_prefetch_spam_senders(m.from_address for m in messages)
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

	forced = _forced_note(inbound.name)
	if forced:
		return _file_forced(msg, inbound, forced)

	loop_settings = settings.loop_settings()
	verdict = loop_verdict(msg, settings.own_addresses(), loop_settings)
	if verdict:
		return _filtered_as_note(msg, verdict)

	oversize = attachments.oversize_to_quarantine(msg)
	if oversize:
		return Outcome(
			"Filtered",
			_(
				"Quarantined: attachments over the {0} MB limit ({1}). Raise the limit or choose "
				"'Keep the message, drop the attachment' in Email Flow Settings, then Reprocess."
			).format(settings.get_int("max_attachment_size_mb", 25), oversize),
		)

	queue = routing.target_queue(msg, inbound.email_queue)
	match = threads.find_ticket(msg)
	facts = _ticket_facts(match.ticket) if match else None
	if match and _is_past_reopen_window(facts, queue):
		outcome = _create_ticket(msg, queue, inbound, follows_up_on=match.ticket)
		_note(
			match.ticket,
			_("The customer wrote again after the reopen window: the follow-up is ticket {0}.").format(
				outcome.ticket
			),
		)
		return outcome
	if match:
		comm = _append(facts, msg, match.in_reply_to)
		desk.customer_replied(facts, now_datetime())
		_after_customer_reply(facts)
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


# -- "Create ticket anyway": a manager files a Filtered message as a new ticket ------------------


def process_forced(name: str, note: str) -> Outcome:
	"""File Inbound Email `name` as a new ticket past the loop verdict, rate cap, Cc policy and
	threading; `note` goes on the ticket and the Inbound Email. The duplicate check stays: a
	Message-ID that is already a ticket is not filed twice. The caller commits."""
	with settings.run_cache():
		settings.run_state("forced")[name] = note
		try:
			return process_inbound(name)
		finally:
			settings.run_state("forced").pop(name, None)


def _forced_note(name: str) -> str | None:
	return settings.run_state("forced").get(name)


def _file_forced(msg: ParsedMessage, inbound, note: str) -> Outcome:
	oversize = attachments.oversize_to_quarantine(msg)
	if oversize:  # the size limit protects the site, not the loop firewall: it still holds
		return Outcome("Filtered", _("Quarantined: attachments over the size limit ({0})").format(oversize))
	outcome = _create_ticket(msg, routing.target_queue(msg, inbound.email_queue), inbound)
	_note(outcome.ticket, note)
	return Outcome("Ticket Created", note, outcome.ticket, outcome.communication, "forced")


REOPENS = ("Closed", "Resolved")


def _after_customer_reply(facts: frappe._dict) -> None:
	"""A reopen is an entry in the timeline; the ticket's people are told of the reply."""
	if facts.status in REOPENS:
		_note(
			facts.name,
			_("Reopened: the customer wrote again (the ticket was {0}).").format(_(facts.status)),
		)
		notify.ticket_event(facts.name, "reopened")
	else:
		notify.ticket_event(facts.name, "reply")


def _filed_before(message_id: str, name: str) -> tuple[str, str] | None:
	"""(Inbound Email, Ticket) that already filed this Message-ID; the lock is held by the caller."""
	filed = _filed_message_ids()
	if message_id in filed:
		return filed[message_id]
	_lock_message_ids([message_id])
	rows = _current_filed([message_id], [name])
	return (rows[0][1], rows[0][2]) if rows else None


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
	"""A caught message stays visible; an auto-reply or bounce to a ticket becomes a note on it.

	A bounce's note names the failed recipients with their status code and the
	mail system's words; the Communication that bounced shows "Bounced" (or
	"Soft-Bounced" for a delay), and the ticket's people are told.
	"""
	match = threads.find_ticket(msg, include_bounced_original=True)
	if not (match and (msg.auto_submitted or msg.is_bounce)):
		return Outcome("Filtered", verdict)
	esc = frappe.utils.escape_html
	content = _("Automatic message from {0} (not a customer reply): {1}<br><b>{2}</b>").format(
		esc(msg.from_address or "?"), esc(verdict), esc(msg.subject or "")
	)
	if msg.is_bounce:
		content = _("Delivery failed: {0} reports that the reply did not reach {1}.").format(
			esc(msg.from_address or "?"),
			esc(", ".join(b.address for b in msg.bounce) or _("a recipient it does not name")),
		) + _bounce_details(msg)
	note = frappe.get_doc(
		{
			"doctype": "Comment",
			"comment_type": "Comment",
			"reference_doctype": "Ticket",
			"reference_name": match.ticket,
			"comment_email": msg.from_address,
			"comment_by": desk_text.fit(msg.from_name or msg.from_address or "", 140),
			"content": content,
		}
	)
	note.insert(ignore_permissions=True)
	if msg.is_bounce:
		bounced = _bounced_communication(match, msg)
		if bounced:
			permanent = any(b.permanent for b in msg.bounce) or not msg.bounce
			frappe.db.set_value(
				"Communication",
				bounced,
				"delivery_status",
				"Bounced" if permanent else "Soft-Bounced",
				update_modified=False,
			)
		notify.ticket_event(match.ticket, "bounce", content)
	return Outcome("Filtered", verdict, match.ticket, None, "note:" + match.rule)


def _bounce_details(msg: ParsedMessage) -> str:
	esc = frappe.utils.escape_html
	rows = []
	for bounce in msg.bounce or []:
		kind = _("permanent") if bounce.permanent else _("temporary, the mail system may retry")
		parts = [f"<b>{esc(bounce.address)}</b>", esc(bounce.status or _("no status code")), kind]
		if bounce.diagnostic and bounce.diagnostic.lower() != bounce.address:
			parts.append(esc(bounce.diagnostic[:300]))
		rows.append("<li>" + " · ".join(parts) + "</li>")
	subject = f"<br>{esc(msg.subject)}" if msg.subject else ""
	return (f"<ul>{''.join(rows)}</ul>" if rows else "") + subject


def _bounced_communication(match, msg: ParsedMessage) -> str | None:
	"""Our sent Communication the bounce returns: the one its Message-ID names, else the latest
	sent one on the ticket to a failed recipient, else the latest sent one."""
	if match.rule == "returned_message_id" and match.in_reply_to:
		return match.in_reply_to  # the Communication whose Message-ID the report returns
	sent = threads.ticket_emails(match.ticket, "Sent", ["name", "recipients", "cc"], limit=20)
	failed = {b.address for b in msg.bounce or []}
	for row in sent:
		people = f"{row.recipients or ''} {row.cc or ''}".lower()
		if any(address in people for address in failed):
			return row.name
	return sent[0].name if sent else None


def _ticket_facts(ticket: str) -> frappe._dict:
	"""What filing a message on an existing Ticket reads from it, in one query."""
	return frappe.db.get_value(
		"Ticket", ticket, ["name", "status", "modified", "owner", "_comments", "_assign"], as_dict=True
	)


def _is_past_reopen_window(facts: frappe._dict, queue: str) -> bool:
	if facts.status != "Closed":
		return False
	row = routing.queue_settings(queue)
	days = row.reopen_window_days if row else None
	days = 14 if days is None else int(days)
	return get_datetime(facts.modified) < add_days(now_datetime(), -days)


SUBJECT_MAX = 140  # a Ticket's title: longer subjects are cut (the Inbound Email keeps them whole)
SUBJECT_COLUMN = 255  # Ticket.subject's length: what the stored (escaped) subject must fit


def ticket_subject(subject: str | None, limit: int | None = SUBJECT_MAX) -> str:
	"""The subject as a Desk field keeps it (`mail.desk_text`): escaped when it holds < or >, its
	text cut to `limit` characters with an ellipsis; "(no subject)" when only blanks and control
	characters were left."""
	text = " ".join("".join(ch if ch >= " " else " " for ch in subject or "").split())
	if not text:
		return _("(no subject)")
	if limit is None:
		return desk_text.stored(text)
	if len(text) > limit:
		text = text[: limit - 1].rstrip() + "…"
	return desk_text.fit(text, SUBJECT_COLUMN)  # escaped, it still fits the column


def _create_ticket(msg: ParsedMessage, queue: str, inbound, follows_up_on: str | None = None) -> Outcome:
	contact = contacts.ensure_contact(msg.from_address, msg.from_name)
	ticket = frappe.get_doc(
		{
			"doctype": "Ticket",
			"subject": ticket_subject(msg.subject),
			"raised_by": msg.from_address,
			"customer_name": contacts.display_name(msg.from_name),
			"contact": contact,
			"email_queue": queue,
			"status": "Open",
			"needs_reply": 1,
			"last_customer_message_on": now_datetime(),
			"message_id": threads.normalize_message_id(msg.message_id) or None,
			"reopened_from": follows_up_on,
		}
	)
	ticket.flags.ignore_links = True  # contact, queue and the followed-up ticket were just read or made
	# Named first, so that the attachment files (and the body's links to them) exist before the
	# insert and the body goes in with it: it is sanitized already (mail.sanitize_html, or escaped
	# text) and the Ticket controller leaves it as it is (Ticket._sanitize_content).
	name = store.series_name(ticket) if attachments.direct_writes() else None
	prepared = attachments.prepare_attachments(name, msg) if name else None
	if prepared is not None:
		saved, finish = prepared
		ticket.description = _body_html(msg, saved)
		ticket.flags.email_flow_sanitized_description = True
		ticket.insert(ignore_permissions=True, set_name=name)
		finish()
	else:  # Frappe names it (naming rule, hook), or files go through the File controller
		ticket.insert(ignore_permissions=True)
		saved = attachments.save_attachments(ticket.name, msg)
		ticket.description = _body_html(msg, saved)
		_update("Ticket", ticket.name, {"description": ticket.description})
	recent = settings.run_state("recent_tickets")
	sender = (msg.from_address or "").lower()
	if sender in recent:
		recent[sender] += 1
	comm = _append(ticket, msg, None, new_ticket=True, saved=saved)
	if msg.from_address and not contact:
		_note(
			ticket.name,
			_("The sender address {0} is not one Frappe accepts, so no Contact was made for it.").format(
				msg.from_address
			),
		)
	routing.assign(ticket, queue)
	row = routing.queue_settings(queue)
	if row is None or row.send_acknowledgement:
		acknowledge.schedule(ticket.name, msg, queue)
	rule = "reopen window passed: follows up on " + follows_up_on if follows_up_on else "new"
	return Outcome("Ticket Created", None, ticket.name, comm, rule)


def communication_date(date) -> "datetime.datetime":
	"""When the message was written, in the site's time zone (Frappe stores naive local times).

	The received time when the Date header is missing, unparsable, naive, or more
	than a day in the future (`store.local_date`).
	"""
	return store.local_date(date) or now_datetime()


def _note(ticket: str, text: str) -> None:
	frappe.get_doc(
		{
			"doctype": "Comment",
			"comment_type": "Info",
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"content": frappe.utils.escape_html(text),
		}
	).insert(ignore_permissions=True)


def _body_html(msg: ParsedMessage, saved: dict[str, str]) -> str:
	return attachments.rewrite_cid_links(msg.html, saved) if msg.html else threads.text_to_html(msg.text)


def _addresses(msg: ParsedMessage) -> tuple[str | None, str, str | None]:
	"""sender, recipients, cc as the Communication stores them."""
	return (
		msg.from_address,
		", ".join(address for _name, address in msg.to),
		", ".join(address for _name, address in msg.cc) or None,
	)


def _append(
	ticket,
	msg: ParsedMessage,
	in_reply_to: str | None,
	new_ticket: bool = False,
	saved: dict[str, str] | None = None,
) -> str:
	"""Add the message to the ticket's timeline (Communication) with its attachments as Files.

	`ticket` is the Ticket document just created (its attachments already
	`saved`) or the `_ticket_facts` of an existing one; Communication's hooks
	use them instead of loading the Ticket again.
	"""
	if isinstance(ticket, Document):
		facts = frappe._dict(
			name=ticket.name, status=ticket.status, owner=ticket.owner, modified=ticket.modified, doc=ticket
		)
	else:
		facts = ticket
	if saved is None:
		saved = attachments.save_attachments(facts.name, msg)
	html = _body_html(msg, saved)
	message_id = threads.normalize_message_id(msg.message_id) or None
	sender, recipients, cc = _addresses(msg)
	# An address Frappe refuses is kept where the timeline shows it, as written; cut to the column.
	usable = contacts.usable_address(sender)
	shown_name = desk_text.fit(msg.from_name or (None if usable else sender) or "", 140) or None
	values = {
		"doctype": "Communication",
		"communication_type": "Communication",
		"communication_medium": "Email",
		"sent_or_received": "Received",
		"email_status": "Open",
		"subject": ticket_subject(msg.subject, limit=None),
		"sender": sender if usable else None,
		"sender_full_name": shown_name,
		"recipients": recipients,
		"cc": cc,
		"content": html,
		"text_content": msg.text,
		"message_id": message_id,
		"in_reply_to": in_reply_to,
		"reference_doctype": "Ticket",
		"reference_name": facts.name,
		"reference_owner": facts.owner,  # Communication.validate_reference would read it
		"has_attachment": 1 if saved else 0,
		"communication_date": communication_date(msg.date),
	}
	fast = _fast_communication()
	comm = fast(values) if fast is not None else frappe.get_doc(values)
	comm.flags.ignore_links = True  # the ticket and the answered Communication were just read or made
	# Received mail, as Frappe's own receiving marks it: recipients and Cc are kept as written
	# (Communication.validate would refuse an address Frappe does not accept, e.g. "bob@extern").
	comm.flags.in_receive = True
	comm.flags.email_flow_ticket = facts
	comm.flags.email_flow_reopen = not new_ticket
	if facts.doc is not None:
		comm.parent_doc = facts.doc  # frappe.core.utils.get_parent_doc
	comm.insert(ignore_permissions=True)
	threads.remember(message_id, comm.name, facts.name)
	if msg.body_truncated:
		_note(
			facts.name,
			_(
				"This message was longer than {0} characters of text and is cut here; the whole "
				"message, attachments included, is kept as it arrived (raw .eml)."
			).format(f"{MAX_BODY_CHARS:,}"),
		)
	if fast is None and not new_ticket:
		_reopen_on_customer_reply(facts.name)
	return comm.name


def _reopen_on_customer_reply(ticket: str) -> None:
	"""A customer reply makes the ticket Open again (Closed ones only within the reopen window)."""
	status = frappe.db.get_value("Ticket", ticket, "status")
	if status != "Open":
		frappe.db.set_value("Ticket", ticket, "status", "Open")


# -- the inbound Communication without the lookups its controller makes one by one -------------
#
# Communication (frappe/core/doctype/communication/communication.py, v15 and develop) is
# inserted with its full Document machinery (validation, after_insert, doc_events hooks,
# notifications, webhooks, server scripts, realtime). A subclass of the site's controller
# replaces only these methods, each with the same effect for a received email on a Ticket:
#
# - parse_email_for_timeline_links: returns at once unless an Email Account has
#   enable_automatic_linking; then the subclass is not used (checked once per run).
# - set_timeline_links: Contact timeline links of sender, recipients and cc, and each
#   Contact's Dynamic Links: Frappe's get_contacts/add_contact_links_to_communication (no
#   contact creation: no email_account), with the batch's lookups (contacts.prefetch_timeline).
# - mark_email_as_spam: the sender's Email Rule (is_spam), looked up for the whole batch.
# - before_save: set_signature_in_email_content only acts on a <div class="ql-editor
#   read-mode">; skipped when "ql-editor" is not in the content (no BeautifulSoup parse).
# - _sanitize_content: every field but `content`, which is sanitized already: our bleach
#   allow-list (mail/sanitize.py) is narrower than Frappe's (frappe.utils.html_utils.sanitize_html)
#   except that it keeps tel: links; data: images are still extracted into Files by
#   _extract_images_from_editor, which runs before it.
# - on_update: update_comment_in_doc (the Ticket's `_comments`) and
#   update_parent_document_on_communication (Replied -> Open and the Assignment Rules then,
#   parent.notify_update; first/average response times apply to Sent mail only), written in
#   one UPDATE with our own reopen rule, from what ingest read already.
#
# If another app overrides any of these methods (override_doctype_class), or the Ticket has
# what update_parent_document_on_communication would call, the plain controller is used.

_REPLACED = (
	"parse_email_for_timeline_links",
	"set_timeline_links",
	"mark_email_as_spam",
	"before_save",
	"on_update",
	"_sanitize_content",
)
_FAST_CLASSES: dict[type, type] = {}


def _fast_communication() -> type | None:
	return settings.cached("fast_communication", _build_fast_communication)


def _build_fast_communication() -> type | None:
	from frappe.core.doctype.communication.communication import Communication
	from frappe.model.base_document import get_controller

	controller = get_controller("Communication")
	if any(getattr(controller, method) is not getattr(Communication, method) for method in _REPLACED):
		return None
	if frappe.db.get_value("Email Account", {"enable_automatic_linking": 1}):
		return None
	ticket_class = get_controller("Ticket")
	parent_methods = ("on_communication_update", "handle_hold_time", "notify_communication")
	hooks = frappe.get_doc_hooks()
	if any(callable(getattr(ticket_class, method, None)) for method in parent_methods) or any(
		hooks.get(key, {}).get(method) for key in ("Ticket", "*") for method in parent_methods
	):
		return None  # update_parent_document_on_communication would call them (run_method)
	meta = frappe.get_meta("Ticket")
	if meta.issingle or meta.get("is_virtual") or meta.has_field("route"):
		return None  # update_comments_in_parent would skip `_comments` or clear a route cache
	if controller not in _FAST_CLASSES:
		_FAST_CLASSES[controller] = type(
			"InboundCommunication",
			(controller,),
			{
				"parse_email_for_timeline_links": _no_automatic_linking,
				"set_timeline_links": _set_timeline_links,
				"mark_email_as_spam": _mark_email_as_spam,
				"before_save": _before_save,
				"_sanitize_content": _sanitize_all_but_content,
				"on_update": _on_update,
			},
		)
	return _FAST_CLASSES[controller]


def _no_automatic_linking(comm) -> None:
	pass  # no Email Account has enable_automatic_linking (_build_fast_communication)


def _set_timeline_links(comm) -> None:
	# Communication.set_timeline_links with create_contact off (no email_account) and no
	# automatic linking (get_email_without_link returns the address as it is).
	for email in get_emails([comm.sender, comm.recipients, comm.cc, comm.bcc]):
		contact = contacts.timeline_contact(email)
		if contact:
			comm.add_link("Contact", contact)
			for link_doctype, link_name in contacts.contact_links(contact):
				comm.add_link(link_doctype, link_name)


def _mark_email_as_spam(comm) -> None:
	if (
		comm.communication_type == "Communication"
		and comm.communication_medium == "Email"
		and comm.sent_or_received == "Received"
		and _is_spam_sender(comm.sender)
	):
		comm.email_status = "Spam"


def _before_save(comm) -> None:
	if "ql-editor" in (comm.content or ""):
		super(type(comm), comm).before_save()


def _sanitize_all_but_content(comm) -> None:
	content, comm.content = comm.content, None
	try:
		super(type(comm), comm)._sanitize_content()
	finally:
		comm.content = content


def _on_update(comm) -> None:
	facts = comm.flags.email_flow_ticket
	values = {}
	# frappe.core.doctype.comment.comment.update_comment_in_doc
	if comm.content:
		try:
			comments = json.loads(facts.get("_comments") or "[]")
		except ValueError:
			comments = []
		truncated = (comm.content[:97] + "...") if len(comm.content) > 100 else comm.content
		for entry in comments:
			if entry.get("name") == comm.name:
				entry["comment"] = truncated
				break
		else:
			comments.append({"comment": truncated, "by": comm.sender or comm.owner, "name": comm.name})
		values["_comments"] = json.dumps(comments[-100:])
	# update_parent_document_on_communication: Replied -> Open; ours: any status but Open
	reopen = comm.flags.email_flow_reopen and facts.status != "Open"
	modified = now_datetime() if reopen else facts.modified
	if reopen:
		values["status"] = "Open"
	if values:
		frappe.db.set_value("Ticket", facts.name, values, update_modified=reopen, modified=modified)
	if reopen and facts.status == "Replied" and _has_assignment_rules("Ticket"):
		apply_assignment_rule(frappe.get_doc("Ticket", facts.name))
	parent = facts.doc or frappe.get_doc({"doctype": "Ticket", "name": facts.name, "modified": modified})
	parent.notify_update()


def _has_assignment_rules(doctype: str) -> bool:
	from frappe.cache_manager import get_doctype_map

	# the lookup frappe.automation.doctype.assignment_rule.assignment_rule.apply starts with
	return bool(
		get_doctype_map(
			"Assignment Rule",
			doctype,
			filters={"document_type": doctype, "disabled": 0},
			order_by="priority desc",
		)
	)


def _prefetch_spam_senders(senders) -> None:
	known = settings.run_state("spam_senders")
	wanted = {s.lower() for s in senders if s} - known.keys()
	if not wanted or getattr(frappe.local, "email_flow_run_cache", None) is None:
		return
	for email_id in frappe.get_all(
		"Email Rule", filters={"email_id": ("in", sorted(wanted)), "is_spam": 1}, pluck="email_id"
	):
		known[(email_id or "").lower()] = True
	for sender in wanted:
		known.setdefault(sender, False)


def _is_spam_sender(sender: str | None) -> bool:
	known = settings.run_state("spam_senders")
	key = (sender or "").lower()
	if key in known:
		return known[key]
	return bool(frappe.db.exists("Email Rule", {"email_id": sender, "is_spam": 1}))


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
