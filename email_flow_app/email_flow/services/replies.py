"""An agent's reply on a Ticket sets it Replied (DESIGN.md flow, status rule) and clears "needs reply"."""

import frappe

from email_flow_app.email_flow.services import desk
from email_flow_app.mail import desk_text


def on_communication_insert(doc, method=None) -> None:
	if (
		doc.reference_doctype != "Ticket"
		or doc.communication_type != "Communication"
		or doc.sent_or_received != "Sent"
	):
		return
	desk.agent_replied(doc.reference_name)


def reply_defaults(ticket) -> dict:
	"""What the Desk's composer starts with on a Ticket (Ticket.onload, read by email_flow_desk.js).

	recipients: the customer; cc: the ticket's Cc, everyone else the customer's
	messages went to (To and Cc, without our own addresses: a Cc stays on the
	ticket when a later reply of the customer drops it); subject: "Re: <subject>" as text;
	last_email: the customer's latest message, quoted below the reply; signature: the signature of
	the Outgoing Channel the reply leaves through (none: the agent's own).
	"""
	from frappe.core.doctype.communication.communication import get_emails

	from email_flow_app.email_flow.services import contacts, outbound, settings, threads

	received = threads.ticket_emails(ticket.name, "Received", ["name", "recipients", "cc"], limit=50)
	last = received[:1]
	customer = (ticket.raised_by or "").lower()
	own = settings.own_addresses()
	cc = []
	for row in reversed(received):  # oldest first: the order people joined the conversation
		for address in get_emails([row.recipients, row.cc]):
			address = address.strip().lower()
			if address and address not in own and address != customer and contacts.usable_address(address):
				cc.append(address)
	channel = outbound.ticket_channel(ticket.name) if ticket.name else None
	signature = frappe.db.get_value("Outgoing Channel", channel, "signature") if channel else None
	subject = desk_text.plain(ticket.subject or "")
	return {
		"recipients": customer if contacts.usable_address(customer) else "",
		"cc": ", ".join(dict.fromkeys(cc)),
		"subject": subject if subject.lower().startswith("re:") else f"Re: {subject}",
		"last_email": last[0].name if last else None,
		"signature": signature or "",
	}


def store_text_safely(doc, method=None) -> None:
	"""Communication.validate on a Ticket: its subject and sender name as desk text.

	The timeline header renders them as HTML, and the subject of a reply is the
	customer's subject: stored escaped (mail.desk_text), it reads as written and
	nothing in it runs. The mail that leaves carries the plain text
	(outbound.thread_headers).
	"""
	if doc.reference_doctype != "Ticket":
		return
	if doc.subject:
		doc.subject = desk_text.stored(doc.subject)
	if doc.sender_full_name:
		doc.sender_full_name = desk_text.stored(doc.sender_full_name)


def send_ticket_mail_now(doc, method=None) -> None:
	"""Email Queue after_insert: a reply on a Ticket leaves right after the commit, not at the next flush.

	It is queued for a worker once the request commits; Frappe's Email Queue keeps
	its retries (a failed send stays Not Sent and the scheduler's flush tries again).
	"""
	if doc.reference_doctype != "Ticket" or doc.status != "Not Sent" or doc.send_after:
		return
	frappe.enqueue(
		"email_flow_app.email_flow.services.replies.send_queued_mail",
		queue="short",
		email_queue=doc.name,
		enqueue_after_commit=True,
	)


def send_queued_mail(email_queue: str) -> None:
	if frappe.db.get_value("Email Queue", email_queue, "status") == "Not Sent":
		frappe.get_doc("Email Queue", email_queue).send()
