"""Tell the people on a ticket that something needs them: a customer reply, a reopen, a bounce.

Who: the ticket's assignees; with none, the agents of its queue ("Assign to").
How: a Desk notification (Notification Log, type Alert) per user, which Frappe
also sends by email when the user's Notification Settings say so. The user
who caused the event (an agent) is not told about it.
"""

import json

import frappe
from frappe import _
from frappe.desk.doctype.notification_settings.notification_settings import is_notifications_enabled
from frappe.utils import escape_html

from email_flow_app.mail import desk_text


def recipients(ticket: frappe._dict) -> list[str]:
	"""Assignees of the ticket, else the agents of its queue; enabled users only."""
	try:
		users = json.loads(ticket.get("_assign") or "[]") or []
	except ValueError:
		users = []
	if not users and ticket.get("email_queue"):
		users = frappe.get_all(
			"Incoming Email Queue Agent",
			filters={"parenttype": "Incoming Email Queue", "parent": ticket.email_queue},
			pluck="user",
		)
	users = [u for u in dict.fromkeys(users) if u and u != frappe.session.user]
	if not users:
		return []
	enabled = set(frappe.get_all("User", filters={"name": ("in", users), "enabled": 1}, pluck="name"))
	return [u for u in users if u in enabled and is_notifications_enabled(u)]


def ticket_event(name: str, kind: str, detail: str = "") -> list[str]:
	"""Notify the ticket's people of `kind` ("reply", "reopened", "bounce"); the users told.

	`detail` is HTML (escaped by the caller) shown in the notification's email.
	"""
	ticket = frappe.db.get_value(
		"Ticket",
		name,
		["name", "subject", "email_queue", "_assign", "customer_name", "raised_by"],
		as_dict=True,
	)
	if not ticket:
		return []
	users = recipients(ticket)
	if not users:
		return []
	who = escape_html(ticket.customer_name or ticket.raised_by or _("The customer"))
	# The subject is stored as desk text already (escaped when it holds < or >).
	subject = desk_text.stored(desk_text.plain(ticket.subject))
	texts = {
		"reply": _("{0} replied on {1}: {2}"),
		"reopened": _("{0} wrote again: {1} is reopened: {2}"),
		"bounce": _("A reply on {1} bounced: {2}"),
	}
	text = texts[kind].format(who, frappe.bold(name), subject)
	for user in users:
		frappe.get_doc(
			{
				"doctype": "Notification Log",
				"for_user": user,
				"type": "Alert",
				"document_type": "Ticket",
				"document_name": name,
				"subject": text,
				"email_content": detail or None,
			}
		).insert(ignore_permissions=True)
	return users
