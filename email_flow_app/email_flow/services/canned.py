"""Canned responses: Frappe's Email Templates, inserted into a reply on a Ticket.

The template's body is rendered on the server with the ticket as it is stored
(Jinja: `{{ doc.customer_name }}`, `{{ doc.name }}`, `{{ doc.subject }}`, or the
fields by name), after a read check on that ticket: an agent renders only
tickets they may see. The reply keeps its own subject ("Re: ..."), so the
customer's thread stays whole.
"""

import frappe

from email_flow_app.mail import desk_text
from email_flow_app.mail.sanitize import sanitize_html

TEMPLATE = "Email Template"
LIMIT = 200


@frappe.whitelist()
def list_canned_responses() -> list[str]:
	"""Names of the Email Templates the user may read."""
	frappe.has_permission("Ticket", "read", throw=True)
	return frappe.get_list(TEMPLATE, pluck="name", order_by="name asc", limit_page_length=LIMIT)


@frappe.whitelist()
def render_canned_response(template: str, ticket: str) -> str:
	"""The template's body (HTML) with the ticket's fields filled in."""
	doc = frappe.get_doc("Ticket", ticket)
	doc.check_permission("read")
	email_template = frappe.get_doc(TEMPLATE, template)
	email_template.check_permission("read")
	context = doc.as_dict()
	# Stored as desk text (escaped when it holds < or >): in HTML it reads as written.
	context["first_name"] = desk_text.stored((desk_text.plain(doc.customer_name or "").split() or [""])[0])
	body = email_template.response_html if email_template.use_html else email_template.response
	# The editor takes it as HTML: whatever a field of the ticket holds, nothing in it runs.
	return sanitize_html(frappe.render_template(body or "", {"doc": context, **context}))
