"""Which ticket a message belongs to: exact evidence only, in the order of DESIGN.md rule 3."""

import html
from collections.abc import Iterable
from dataclasses import dataclass

import frappe

from email_flow_app.email_flow.services import settings
from email_flow_app.mail import ParsedMessage, parse_ticket_token, thread_candidates
from email_flow_app.mail import normalize_message_id as _normalize


@dataclass(frozen=True)
class TicketMatch:
	ticket: str
	rule: str  # which evidence matched: in_reply_to, references, reply_address_token, subject_tag
	in_reply_to: str | None = None  # the Communication the message answers, when known


def normalize_message_id(value: str | None) -> str:
	"""Message-IDs are stored without angle brackets, as Frappe stores them."""
	return _normalize(value) if value else ""


def find_ticket(msg: ParsedMessage, include_bounced_original: bool = False) -> TicketMatch | None:
	"""The ticket `msg` belongs to, by the evidence of `thread_candidates` (nothing fuzzy).

	With `include_bounced_original` (bounces and delivery reports), the message
	it returns decides first: its Message-ID, then In-Reply-To/References (the
	report's own and the returned message's), then our X-Email-Flow-Ticket
	header in the returned part, verified by its token.
	"""
	if include_bounced_original and (msg.original_message_id or msg.returned):
		return _bounced_ticket(msg)
	for evidence in thread_candidates(msg):
		kind, value = evidence.kind, evidence.value
		if kind in ("in_reply_to", "references"):
			found = communication_for_message_id(value)
			if found:
				return TicketMatch(found[1], kind, found[0])
		elif kind == "reply_address_token":
			ticket = parse_ticket_token(value, settings.token_secret())
			if ticket and frappe.db.exists("Ticket", ticket):
				return TicketMatch(ticket, kind)
		elif kind == "subject_tag":
			if frappe.db.exists("Ticket", value) and is_participant(value, msg.from_address):
				return TicketMatch(value, kind)
	return None


def _bounced_ticket(msg: ParsedMessage) -> TicketMatch | None:
	returned = msg.returned
	if msg.original_message_id:
		found = communication_for_message_id(msg.original_message_id)
		if found:
			return TicketMatch(found[1], "returned_message_id", found[0])
	ids = [msg.in_reply_to, *reversed(msg.references)]
	if returned:
		ids += [returned.in_reply_to, *reversed(returned.references)]
	for message_id in dict.fromkeys(filter(None, ids)):
		found = communication_for_message_id(message_id)
		if found:
			return TicketMatch(found[1], "returned_in_reply_to", found[0])
	ticket = verified_ticket_header(returned.ticket_header if returned else None)
	if ticket:
		return TicketMatch(ticket, "returned_ticket_header")
	return None


def verified_ticket_header(value: str | None) -> str | None:
	"""The ticket our X-Email-Flow-Ticket header ("TKT-00001; t=<token>") names, if its token is ours."""
	if not value or "t=" not in value:
		return None
	name, _sep, rest = value.partition(";")
	token = rest.split("t=", 1)[1].split(";", 1)[0].strip() if "t=" in rest else ""
	ticket = parse_ticket_token(token, settings.token_secret()) if token else None
	if ticket and ticket == name.strip() and frappe.db.exists("Ticket", ticket):
		return ticket
	return None


def prefetch(messages: Iterable[ParsedMessage]) -> None:
	"""Look up every In-Reply-To / References of a batch in one query (kept for the run).

	Same answer as :func:`communication_for_message_id` one by one: the
	oldest Communication on a Ticket with that Message-ID.
	"""
	known = settings.run_state("message_ids")
	if getattr(frappe.local, "email_flow_run_cache", None) is None:
		return
	wanted = {
		normalize_message_id(e.value)
		for msg in messages
		for e in thread_candidates(msg)
		if e.kind in ("in_reply_to", "references")
	}
	wanted = {mid for mid in wanted if mid} - known.keys()
	if not wanted:
		return
	variants = [v for mid in sorted(wanted) for v in (mid, f"<{mid}>")]
	for message_id, name, ticket in frappe.db.sql(
		"""select message_id, name, reference_name from `tabCommunication`
		where message_id in %(ids)s and reference_doctype = 'Ticket'
		order by creation""",
		{"ids": variants},
	):
		known.setdefault(normalize_message_id(message_id), (name, ticket))
	for mid in wanted:
		known.setdefault(mid, None)


def remember(message_id: str | None, communication: str, ticket: str) -> None:
	"""A Communication filed in this run answers later lookups of its Message-ID."""
	message_id = normalize_message_id(message_id)
	known = settings.run_state("message_ids")
	if message_id and known.get(message_id) is None:
		known[message_id] = (communication, ticket)


def communication_for_message_id(message_id: str) -> tuple[str, str] | None:
	"""(Communication, Ticket) for a Message-ID we received or sent on a ticket."""
	message_id = normalize_message_id(message_id)
	if not message_id:
		return None
	known = settings.run_state("message_ids")
	if message_id in known:
		return known[message_id]
	rows = frappe.db.sql(
		"""select name, reference_name from `tabCommunication`
		where message_id in (%s, %s) and reference_doctype = 'Ticket'
		order by creation limit 1""",
		(message_id, f"<{message_id}>"),
	)
	return (rows[0][0], rows[0][1]) if rows else None


def ticket_emails(ticket: str, sent_or_received: str, fields: list[str], limit: int) -> list[frappe._dict]:
	"""The ticket's emails that were "Sent" or "Received", newest first."""
	return frappe.get_all(
		"Communication",
		filters={
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"communication_type": "Communication",
			"sent_or_received": sent_or_received,
		},
		fields=fields,
		order_by="communication_date desc, creation desc",
		limit=limit,
	)


def is_participant(ticket: str, address: str | None) -> bool:
	"""The customer who raised the ticket, or anyone who wrote or was written to on it."""
	address = (address or "").lower()
	if not address:
		return False
	if (frappe.db.get_value("Ticket", ticket, "raised_by") or "").lower() == address:
		return True
	for sender, recipients, cc in frappe.get_all(
		"Communication",
		filters={
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"communication_type": "Communication",
		},
		fields=["sender", "recipients", "cc"],
		as_list=True,
	):
		people = " ".join(filter(None, (sender, recipients, cc))).lower()
		if address in {p.strip(" <>\"'") for p in people.replace(",", " ").split()}:
			return True
	return False


def text_to_html(text: str | None) -> str:
	return "<p>" + html.escape(text or "").replace("\n", "<br>\n") + "</p>"
