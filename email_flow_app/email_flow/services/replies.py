"""An agent's reply on a Ticket sets it Replied (DESIGN.md flow, status rule)."""

import frappe

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
