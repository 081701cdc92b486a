"""The customer behind an address, as a Frappe Contact."""

import re
from collections.abc import Iterable

import frappe
from frappe.contacts.doctype.contact.contact import get_contact_name
from frappe.utils import validate_email_address

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


NAME_PART_MAX = 60  # first and last name: a Contact's full name stays within 140
_NOT_IN_NAMES = re.compile(r"[<>\"\\\x00-\x1f\x7f]+")


def usable_address(address: str | None) -> bool:
	"""Frappe accepts it as an email address (Contact Email, Communication sender)."""
	return bool(address) and bool(validate_email_address(address))


def display_name(full_name: str | None, limit: int = 140) -> str | None:
	"""A sender's display name as a Desk field shows it: no <, >, quotes or control characters, cut."""
	cleaned = " ".join(_NOT_IN_NAMES.sub(" ", full_name or "").split())
	return cleaned[:limit].strip() or None


def name_parts(full_name: str | None, address: str) -> tuple[str, str | None]:
	"""(first, last) for a Contact: no <, >, quotes or control characters, cut to fit."""
	cleaned = " ".join(_NOT_IN_NAMES.sub(" ", full_name or "").split())
	first, _sep, last = cleaned.partition(" ")
	first = (
		first[:NAME_PART_MAX] or _NOT_IN_NAMES.sub("", address.split("@")[0])[:NAME_PART_MAX] or "Customer"
	)
	return first, (last[:NAME_PART_MAX].strip() or None)


def ensure_contact(address: str | None, full_name: str | None) -> str | None:
	"""The Contact with this email address; created with the sender's name when there is none.

	None when Frappe would refuse the address (`usable_address`): the ticket keeps
	the address as written, without a Contact.
	"""
	if not usable_address(address):
		return None
	known = run_state("contacts")
	key = address.lower()
	existing = known[key] if key in known else _lookup(address)
	if existing:
		known[key] = existing
		return existing
	first_name, last_name = name_parts(full_name, address)
	contact = frappe.get_doc(
		{
			"doctype": "Contact",
			"first_name": first_name,
			"last_name": last_name,
			"email_ids": [{"email_id": address, "is_primary": 1}],
		}
	)
	contact.flags.ignore_links = True  # a new Contact links to nothing yet
	contact.insert(ignore_permissions=True)
	known[key] = contact.name
	run_state("timeline_contacts")[key] = contact.name
	run_state("contact_links")[contact.name] = [(link.link_doctype, link.link_name) for link in contact.links]
	return contact.name


def _lookup(address: str) -> str | None:
	return frappe.db.get_value("Contact Email", {"email_id": address, "parenttype": "Contact"}, "parent")


# -- the Contacts a Communication's timeline links to ------------------------------------------
# Frappe's Communication.set_timeline_links asks, per address, get_contact_name (the Contact
# Email rows of that address, newest first, the first whose Contact exists) and then, per
# Contact, its Dynamic Links. These answer the same questions for a whole batch.


def prefetch_timeline(addresses: Iterable[str | None]) -> None:
	"""get_contact_name for many addresses in one query, their Contacts' Dynamic Links in another."""
	found = run_state("timeline_contacts")
	wanted = {a.lower() for a in addresses if a} - found.keys()
	if not wanted or getattr(frappe.local, "email_flow_run_cache", None) is None:
		return
	for email_id, parent in frappe.db.sql(
		"""select ce.email_id, ce.parent from `tabContact Email` ce
		where ce.parenttype = 'Contact' and ce.email_id in %(emails)s
		and exists (select 1 from `tabContact` c where c.name = ce.parent)
		order by ce.modified desc""",
		{"emails": sorted(wanted)},
	):
		found.setdefault((email_id or "").lower(), parent)
	for address in wanted:
		found.setdefault(address, None)
	links = run_state("contact_links")
	new = sorted({c for c in found.values() if c} - links.keys())
	if new:
		for contact in new:
			links[contact] = []
		for parent, link_doctype, link_name in frappe.get_all(
			"Dynamic Link",
			filters={"parenttype": "Contact", "parent": ("in", new)},
			fields=["parent", "link_doctype", "link_name"],
			as_list=True,
		):
			links[parent].append((link_doctype, link_name))


def timeline_contact(email: str) -> str | None:
	"""frappe.contacts.doctype.contact.contact.get_contact_name, from the batch's lookups."""
	found = run_state("timeline_contacts")
	key = (email or "").lower()
	if key not in found:
		found[key] = get_contact_name(email)
	return found[key]


def contact_links(contact: str) -> list[tuple[str, str]]:
	"""The Contact's Dynamic Links (frappe...communication.add_contact_links_to_communication)."""
	links = run_state("contact_links")
	if contact not in links:
		links[contact] = frappe.get_all(
			"Dynamic Link",
			filters={"parenttype": "Contact", "parent": contact},
			fields=["link_doctype", "link_name"],
			as_list=True,
		)
	return links[contact]
