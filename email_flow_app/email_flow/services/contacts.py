"""The customer behind an address, as a Frappe Contact."""

import frappe


def ensure_contact(address: str | None, full_name: str | None) -> str | None:
	"""The Contact with this email address; created with the sender's name when there is none."""
	if not address:
		return None
	existing = frappe.db.get_value("Contact Email", {"email_id": address, "parenttype": "Contact"}, "parent")
	if existing:
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
	contact.insert(ignore_permissions=True)
	return contact.name
