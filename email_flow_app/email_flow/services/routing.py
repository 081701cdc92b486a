"""Which queue a message belongs to, and who gets its ticket."""

import frappe
from frappe.desk.form.assign_to import add as add_assignment

from email_flow_app.email_flow.services.settings import cached
from email_flow_app.mail import ParsedMessage, canonical_address

QUEUE = "Incoming Email Queue"


def queue_addresses() -> dict[str, str]:
	"""address -> queue, for every enabled queue's inbox and creation address."""
	return cached("queue_addresses", _queue_addresses)


def queue_settings(queue: str) -> frappe._dict | None:
	"""The queue fields the pipeline reads for every message (once per run)."""
	return cached(
		("queue", queue),
		lambda: frappe.db.get_value(
			QUEUE,
			queue,
			[
				"email_address",
				"creation_address",
				"cc_only_creates_ticket",
				"reopen_window_days",
				"send_acknowledgement",
			],
			as_dict=True,
		),
	)


def _queue_addresses() -> dict[str, str]:
	mapping: dict[str, str] = {}
	for row in frappe.get_all(
		QUEUE,
		filters={"enabled": 1},
		fields=["name", "email_address", "creation_address"],
		order_by="creation",
	):
		for address in (row.email_address, row.creation_address):
			if address:
				mapping.setdefault(canonical_address(address.strip()), row.name)
	return mapping


def target_queue(msg: ParsedMessage, fetched_by: str) -> str:
	"""The queue of the first To address we own, else Cc, else the original recipient, else the fetcher.

	One email sent to two connected queues is filed once, in the queue of its
	first To address, whichever queue fetched it first.
	"""
	owned = queue_addresses()
	for _name, address in [*msg.to, *msg.cc]:
		if canonical_address(address) in owned:
			return owned[canonical_address(address)]
	if msg.delivered_to and canonical_address(msg.delivered_to) in owned:
		return owned[canonical_address(msg.delivered_to)]
	return fetched_by


def addressed_directly(msg: ParsedMessage, queue: str) -> bool:
	"""False when the queue's inbox is only in Cc and the queue creates no tickets from Cc-only mail."""
	row = queue_settings(queue)
	if not row or row.cc_only_creates_ticket:
		return True
	ours = {canonical_address(a) for a in (row.email_address, row.creation_address) if a}
	in_cc = any(canonical_address(a) in ours for _n, a in msg.cc)
	in_to = any(canonical_address(a) in ours for _n, a in msg.to)
	return in_to or not in_cc


def assign(ticket, queue: str) -> str | None:
	"""Round robin over the queue's agents; returns the user assigned."""
	agents = cached(
		("agents", queue),
		lambda: frappe.get_all(
			"Incoming Email Queue Agent",
			filters={"parenttype": QUEUE, "parent": queue, "parentfield": "assign_to"},
			pluck="user",
			order_by="idx",
		),
	)
	if not agents:
		return None
	last = frappe.db.get_value(QUEUE, queue, "last_assigned_to")
	user = agents[(agents.index(last) + 1) % len(agents)] if last in agents else agents[0]
	add_assignment(
		{"assign_to": [user], "doctype": "Ticket", "name": ticket.name, "description": ticket.subject},
		ignore_permissions=True,
	)
	frappe.db.set_value(QUEUE, queue, "last_assigned_to", user, update_modified=False)
	return user
