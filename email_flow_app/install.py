"""Install and uninstall steps (wired in hooks.py)."""

import frappe

from email_flow_app.email_flow.services.channel_admin import PROXY_PREFIX


def before_uninstall() -> None:
	"""Remove the proxy Email Accounts of our Outgoing Channels.

	Without the app nothing would hand their mail to a channel, and Frappe
	would try their placeholder SMTP host instead.
	"""
	for name in frappe.get_all("Email Account", filters={"name": ("like", f"{PROXY_PREFIX}%")}, pluck="name"):
		frappe.delete_doc("Email Account", name, ignore_permissions=True, force=True)
