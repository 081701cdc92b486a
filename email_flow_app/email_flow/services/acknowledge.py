"""The optional acknowledgement on a new ticket (off by default, per queue).

Never to machine-written, bounce, bulk/list or suppress-auto-reply mail; at
most once per sender per window; always `Auto-Submitted: auto-replied` (the
mail core sets it for automatic mail), so the customer's responder does not
answer it. Sent after the ticket is committed, as an RQ job.
"""

import frappe
from frappe import _
from frappe.utils import add_to_date, now_datetime

from email_flow_app.mail import ParsedMessage, compose_reply

WINDOW_HOURS = 24
MARKER = "email-flow-acknowledgement"


def may_acknowledge(msg: ParsedMessage, queue: str) -> str | None:
	"""None when an acknowledgement may go out; else why not."""
	if not frappe.db.get_value("Incoming Email Queue", queue, "send_acknowledgement"):
		return "queue sends no acknowledgements"
	if msg.auto_submitted or msg.bounce is not None:
		return "machine-written mail"
	if msg.suppress_auto_reply:
		return f"sender asks for no automatic replies ({msg.suppress_auto_reply})"
	recent = frappe.db.exists(
		"Comment",
		{
			"comment_type": "Info",
			"comment_email": msg.from_address,
			"content": ("like", f"%{MARKER}%"),
			"creation": (">", add_to_date(now_datetime(), hours=-WINDOW_HOURS)),
		},
	)
	if recent:
		return "already acknowledged within the window"
	return None


def schedule(ticket: str, msg: ParsedMessage, queue: str) -> bool:
	"""Queue the acknowledgement; the marker Comment written now is what 'once per window' checks."""
	if may_acknowledge(msg, queue):
		return False
	frappe.get_doc(
		{
			"doctype": "Comment",
			"comment_type": "Info",
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"comment_email": msg.from_address,
			"content": _("Acknowledgement queued for {0}").format(frappe.utils.escape_html(msg.from_address))
			+ f"<!-- {MARKER} -->",
		}
	).insert(ignore_permissions=True)
	frappe.enqueue(
		"email_flow_app.email_flow.services.acknowledge.send_acknowledgement",
		queue="short",
		enqueue_after_commit=True,
		ticket=ticket,
		message_id=msg.message_id,
		subject=msg.subject,
		to_address=msg.from_address,
		to_name=msg.from_name,
	)
	return True


def send_acknowledgement(
	ticket: str, message_id: str | None, subject: str, to_address: str, to_name: str
) -> None:
	from email_flow_app.email_flow.services.outbound import deliver, ticket_channel

	channel = frappe.get_doc("Outgoing Channel", ticket_channel(ticket))
	text = _(
		"Hello {0},\n\nthank you for writing to us. We have received your message and opened ticket {1}; "
		"we will answer as soon as we can. Please keep {1} in the subject if you write again.\n"
	).format(to_name or to_address, ticket)
	reply = compose_reply(
		from_address=channel.from_address,
		from_name=channel.from_name or "",
		ticket_name=ticket,
		text=text,
		to=[(to_name or "", to_address)],
		subject=subject,
		in_reply_to=message_id,
		references=[message_id] if message_id else [],
		automatic=True,
		site=frappe.local.site,
	)
	deliver(channel, reply.as_bytes(), to_address)
	frappe.get_doc(
		{
			"doctype": "Communication",
			"communication_type": "Automated Message",
			"communication_medium": "Email",
			"sent_or_received": "Sent",
			"subject": str(reply["Subject"]),
			"sender": channel.from_address,
			"recipients": to_address,
			"content": frappe.utils.escape_html(text).replace("\n", "<br>"),
			"message_id": str(reply["Message-ID"]).strip("<>"),
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"delivery_status": "Sent",
		}
	).insert(ignore_permissions=True)
