"""Email Flow Settings and the site-wide facts the pipeline needs."""

import hashlib
import hmac

import frappe
from frappe.utils.password import get_encryption_key

from email_flow_app.mail import LoopSettings

SETTINGS = "Email Flow Settings"
TOKEN_CONTEXT = b"email-flow ticket token v1"


def token_secret() -> bytes:
	"""The HMAC key for signed ticket tokens, derived from the site's encryption key.

	Derived (not stored) so that it is per-site, never shown in the Desk and
	survives a restore of the site with its site_config.
	"""
	return hmac.new(get_encryption_key().encode(), TOKEN_CONTEXT, hashlib.sha256).digest()


def blocked_addresses() -> set[str]:
	return {
		(address or "").strip().lower()
		for address in frappe.get_all(
			"Email Flow Blocked Address",
			filters={"parenttype": SETTINGS},
			pluck="email_address",
		)
		if address
	}


def own_addresses() -> set[str]:
	"""Every address we receive at or send from: mail from them is our own."""
	addresses: set[str] = set()
	for row in frappe.get_all("Incoming Email Queue", fields=["email_address", "creation_address"]):
		addresses.update(a.strip().lower() for a in (row.email_address, row.creation_address) if a)
	for address in frappe.get_all("Outgoing Channel", pluck="from_address"):
		if address:
			addresses.add(address.strip().lower())
	return addresses


def loop_settings() -> LoopSettings:
	return LoopSettings(
		blocked_addresses=frozenset(blocked_addresses()),
		max_messages_per_sender=get_int("max_tickets_per_sender_per_hour", 20),
		rate_window_minutes=60,
	)


def get_int(fieldname: str, default: int) -> int:
	value = frappe.db.get_single_value(SETTINGS, fieldname)
	return default if value is None else int(value)


def add_blocked_address(address: str, source: str, reference: str) -> bool:
	"""Put `address` on the 'Filter Outgoing Email' list once; True when it was added."""
	address = (address or "").strip().lower()
	if not address or address in blocked_addresses():
		return False
	settings = frappe.get_single(SETTINGS)
	settings.append("blocked_addresses", {"email_address": address, "source": source, "reference": reference})
	settings.flags.ignore_permissions = True
	settings.save()
	return True
