"""Install and uninstall steps (wired in hooks.py)."""

import frappe

from email_flow_app.email_flow.services.channel_admin import PROXY_PREFIX

AGENT_ROLE = "Support Agent"


SUPPORT_WORKSPACE = "Support"
SUPPORT_ROLES = {"Support Agent", "Support Manager"}


def after_install() -> None:
	grant_agents_contact_read()
	setup_agent_desk()


def setup_agent_desk() -> None:
	"""Agents land on the Support workspace; the Ticket list has room for its columns."""
	for user in frappe.get_all(
		"Has Role",
		filters={"role": ("in", list(SUPPORT_ROLES)), "parenttype": "User"},
		pluck="parent",
		distinct=True,
	):
		if not frappe.db.get_value("User", user, "default_workspace"):
			frappe.db.set_value("User", user, "default_workspace", SUPPORT_WORKSPACE, update_modified=False)
	if not frappe.db.exists("List View Settings", "Ticket"):
		# Subject, status, customer, queue and "customer wrote" fit a 1366-pixel screen.
		frappe.get_doc({"doctype": "List View Settings", "name": "Ticket", "total_fields": "6"}).insert(
			ignore_permissions=True
		)


def default_support_workspace(user, method=None) -> None:
	"""User.validate: a Support Agent or Manager without a default workspace gets Support (by role;
	a user's own choice stays)."""
	if user.default_workspace or not frappe.db.exists("Workspace", SUPPORT_WORKSPACE):
		return
	if SUPPORT_ROLES & {row.role for row in user.get("roles") or []}:
		user.default_workspace = SUPPORT_WORKSPACE


def grant_agents_contact_read() -> None:
	"""Support Agents read Contacts: the ticket's customer and, from there, their other tickets.

	Read and select only (no write, create, export or delete), as a Custom DocPerm:
	Frappe then takes Contact's permissions from Custom DocPerm, so its standard
	rules are copied there first (frappe.permissions.setup_custom_perms).
	"""
	from frappe.permissions import setup_custom_perms

	if not frappe.db.exists("Role", AGENT_ROLE):
		return
	setup_custom_perms("Contact")
	if frappe.db.exists("Custom DocPerm", {"parent": "Contact", "role": AGENT_ROLE, "permlevel": 0}):
		return
	frappe.get_doc(
		{
			"doctype": "Custom DocPerm",
			"parent": "Contact",
			"parenttype": "DocType",
			"parentfield": "permissions",
			"role": AGENT_ROLE,
			"permlevel": 0,
			"read": 1,
			"select": 1,
		}
	).insert(ignore_permissions=True)
	frappe.clear_cache(doctype="Contact")


def contact_dashboard(data: dict) -> dict:
	"""override_doctype_dashboards: a Contact's form shows their tickets (Connections)."""
	data = frappe._dict(data or {})
	data.setdefault("fieldname", "contact")
	data.setdefault("non_standard_fieldnames", {})["Ticket"] = "contact"
	transactions = data.setdefault("transactions", [])
	if not any("Ticket" in (group.get("items") or []) for group in transactions):
		transactions.append({"label": frappe._("Support"), "items": ["Ticket"]})
	return data


def before_uninstall() -> None:
	"""Remove the proxy Email Accounts of our Outgoing Channels.

	Without the app nothing would hand their mail to a channel, and Frappe
	would try their placeholder SMTP host instead.
	"""
	for name in frappe.get_all("Email Account", filters={"name": ("like", f"{PROXY_PREFIX}%")}, pluck="name"):
		frappe.delete_doc("Email Account", name, ignore_permissions=True, force=True)
