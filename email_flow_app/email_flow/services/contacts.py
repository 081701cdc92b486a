"""The customer behind an address, as a Frappe Contact."""

from collections.abc import Iterable

import frappe

from email_flow_app.email_flow.services.settings import run_state


def prefetch(addresses: Iterable[str | None]) -> None:
	"""Look up the Contacts of many senders in one query (kept for the run)."""
	known = run_state("contacts")
	wanted = {a.lower() for a in addresses if a} - known.keys()
	if not wanted or getattr(frappe.local, "email_flow_run_cache", None) is None:
		return
	for email_id, parent in frappe.get_all(
		"Contact Email",
		filters={"email_id": ("in", sorted(wanted)), "parenttype": "Contact"},
		fields=["email_id", "parent"],
		order_by="modified desc",
		as_list=True,
	):
		known.setdefault((email_id or "").lower(), parent)
	for address in wanted:
		known.setdefault(address, None)


def ensure_contact(address: str | None, full_name: str | None) -> str | None:
	"""The Contact with this email address; created with the sender's name when there is none."""
	if not address:
		return None
	known = run_state("contacts")
	key = address.lower()
	existing = known[key] if key in known else _lookup(address)
	if existing:
		known[key] = existing
		return existing
	first_name, _sep, last_name = (full_name or "").strip().partition(" ")
	contact = frappe.get_doc(
		{
			"doctype": "Contact",
			"first_name": first_name or address.split("@")[0],
			"last_name": last_name or None,
			"email_ids": [{"email_id": address, "is_primary": 1}],
		}
	)
	contact.flags.ignore_links = True  # a new Contact links to nothing yet
	contact.insert(ignore_permissions=True)
	known[key] = contact.name
	return contact.name


def _lookup(address: str) -> str | None:
	return frappe.db.get_value("Contact Email", {"email_id": address, "parenttype": "Contact"}, "parent")
