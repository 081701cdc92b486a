"""Email Flow Settings and the site-wide facts the pipeline needs."""

import hashlib
import hmac
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import frappe
from frappe.utils.password import get_encryption_key

from email_flow_app.mail import LoopSettings

SETTINGS = "Email Flow Settings"
TOKEN_CONTEXT = b"email-flow ticket token v1"


@contextmanager
def run_cache() -> Iterator[dict]:
	"""Within a poll run (or a batch), site facts are read once: settings, addresses, queues.

	Outside it every call reads the database, so a Desk request or a test that
	changed a setting sees the change. Nested use shares the outer cache.
	"""
	outer = getattr(frappe.local, "email_flow_run_cache", None)
	if outer is not None:
		yield outer
		return
	frappe.local.email_flow_run_cache = cache = {}
	try:
		yield cache
	finally:
		frappe.local.email_flow_run_cache = None


def cached(key: Any, compute: Callable[[], Any]) -> Any:
	"""`compute()` once per run cache; every time when no run cache is active."""
	cache = getattr(frappe.local, "email_flow_run_cache", None)
	if cache is None:
		return compute()
	if key not in cache:
		cache[key] = compute()
	return cache[key]


def run_state(key: str) -> dict:
	"""A dict that lives as long as the run cache (per-batch lookups); a fresh one without it."""
	cache = getattr(frappe.local, "email_flow_run_cache", None)
	if cache is None:
		return {}
	return cache.setdefault(key, {})


def token_secret() -> bytes:
	"""The HMAC key for signed ticket tokens, derived from the site's encryption key.

	Derived (not stored) so that it is per-site, never shown in the Desk and
	survives a restore of the site with its site_config.
	"""
	return derived_key(TOKEN_CONTEXT)


def derived_key(context: bytes) -> bytes:
	"""A per-purpose HMAC key derived from the site's encryption key (never stored)."""
	return hmac.new(get_encryption_key().encode(), context, hashlib.sha256).digest()


def blocked_addresses() -> set[str]:
	return set(cached("blocked_addresses", _blocked_addresses))


def _blocked_addresses() -> frozenset[str]:
	return frozenset(
		(address or "").strip().lower()
		for address in frappe.get_all(
			"Email Flow Blocked Address",
			filters={"parenttype": SETTINGS},
			pluck="email_address",
		)
		if address
	)


def own_addresses() -> set[str]:
	"""Every address we receive at or send from: mail from them is our own."""
	return set(cached("own_addresses", _own_addresses))


def _own_addresses() -> frozenset[str]:
	addresses: set[str] = set()
	for row in frappe.get_all("Incoming Email Queue", fields=["email_address", "creation_address"]):
		addresses.update(a.strip().lower() for a in (row.email_address, row.creation_address) if a)
	for address in frappe.get_all("Outgoing Channel", pluck="from_address"):
		if address:
			addresses.add(address.strip().lower())
	return frozenset(addresses)


def loop_settings() -> LoopSettings:
	return cached("loop_settings", _loop_settings)


def _loop_settings() -> LoopSettings:
	return LoopSettings(
		blocked_addresses=frozenset(blocked_addresses()),
		max_messages_per_sender=get_int("max_tickets_per_sender_per_hour", 20),
		rate_window_minutes=60,
	)


def get_value(fieldname: str):
	return cached(("single", fieldname), lambda: frappe.db.get_single_value(SETTINGS, fieldname))


def get_int(fieldname: str, default: int) -> int:
	value = get_value(fieldname)
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
	cache = getattr(frappe.local, "email_flow_run_cache", None)
	if cache is not None:
		cache.pop("blocked_addresses", None)
		cache.pop("loop_settings", None)
	return True
