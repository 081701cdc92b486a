"""What the Desk gets at login (hook `extend_bootinfo`)."""

import frappe


def extend_bootinfo(bootinfo) -> None:
	"""Queue colours, so the Ticket list paints its queue pills on the first render."""
	if frappe.session.user == "Guest":
		return
	bootinfo.email_flow_queue_colours = dict(
		frappe.get_all("Incoming Email Queue", fields=["name", "color"], as_list=True)
	)
