"""An agent's reply on a Ticket sets it Replied (DESIGN.md flow, status rule)."""

import frappe

from email_flow_app.mail import desk_text

AGENT_REPLY_SETS = {"Open", "Pending"}


def on_communication_insert(doc, method=None) -> None:
	if (
		doc.reference_doctype != "Ticket"
		or doc.communication_type != "Communication"
		or doc.sent_or_received != "Sent"
	):
		return
	status = frappe.db.get_value("Ticket", doc.reference_name, "status")
	if status in AGENT_REPLY_SETS:
		frappe.db.set_value("Ticket", doc.reference_name, "status", "Replied")


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
