"""What the Desk gets at login (hook `extend_bootinfo`)."""

import frappe

from email_flow_app.email_flow import permissions


def extend_bootinfo(bootinfo) -> None:
	"""Queue colours, so the Ticket list paints its queue pills on the first render."""
	if frappe.session.user == "Guest":
		return
	bootinfo.email_flow_queue_colours = queue_colours()


@frappe.whitelist()
def queue_colours() -> dict[str, str]:
	"""Name → colour of the queues whose tickets the user may see (nothing else of a queue)."""
	if frappe.session.user == "Guest" or not frappe.has_permission("Ticket", "read"):
		return {}
	hidden = set(permissions.hidden_for(frappe.session.user))
	rows = frappe.get_all("Incoming Email Queue", fields=["name", "color"], as_list=True)
	return {name: colour for name, colour in rows if name not in hidden}
