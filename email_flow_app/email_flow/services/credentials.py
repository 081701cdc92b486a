"""A stored secret belongs to the server it was entered for.

A queue's or channel's secrets (password, client secrets, refresh token, msal
token cache) are bound to its *server identity*: channel type, host, port,
security, user name, auth method and the OAuth app (tenant, client id). When a
save changes that identity without typing the secret again, the secrets are
erased and the record shows "Reconnect needed" (`on_identity_change`).

Defence in depth: each record keeps, in Frappe's encrypted `__Auth` store, an
HMAC of the identity its secrets were entered for (`bind`). Before a secret
leaves for a server, `check_binding` recomputes it from the document at hand
(saved or not, e.g. "Test connection" on an unsaved form) and refuses when it
differs, so no code path can send a stored secret to another server.
"""

import hashlib
import hmac
import json

import frappe
from frappe import _
from frappe.utils.password import (
	get_decrypted_password,
	remove_encrypted_password,
	set_encrypted_password,
)

from email_flow_app.channels.errors import FORBIDDEN_IN_SETTINGS, ReconnectNeeded
from email_flow_app.email_flow.services import settings

BINDING_FIELD = "email_flow_credential_binding"
TOKEN_CACHE_FIELD = "oauth_token_cache"
SECRET_FIELDS = ("password", "o365_client_secret", "google_client_secret", "google_refresh_token")
DEFAULT_PORTS = {"SSL": (993, 465), "STARTTLS": (143, 587), "Plain": (143, 25)}
BINDING_CONTEXT = b"email-flow credential binding v1"


def _incoming(doc) -> bool:
	return doc.doctype == "Incoming Email Queue"


def effective_port(doc) -> int:
	"""The port a connection really uses (the same defaults as services.connect)."""
	if doc.get("port"):
		return int(doc.port)
	security = doc.get("security") or ("SSL" if _incoming(doc) else "STARTTLS")
	imap_port, smtp_port = DEFAULT_PORTS.get(security, (993, 587))
	return imap_port if _incoming(doc) else smtp_port


def identity(doc) -> dict:
	"""What a stored secret is bound to, as the connection code would use it."""
	address = doc.get("email_address") if _incoming(doc) else doc.get("from_address")
	return {
		"doctype": doc.doctype,  # not the name: a renamed record keeps its secrets
		"channel_type": doc.get("channel_type") or "",
		"host": (doc.get("host") or "").strip().lower(),
		"port": effective_port(doc),
		"security": doc.get("security") or "",
		"auth_method": doc.get("auth_method") or "",
		"username": (doc.get("username") or address or "").strip().lower(),
		"o365_tenant": (doc.get("o365_tenant") or "").strip().lower(),
		"o365_client_id": (doc.get("o365_client_id") or "").strip(),
		"o365_mode": doc.get("o365_mode") or "",
		"google_client_id": (doc.get("google_client_id") or "").strip(),
	}


def _fingerprint(doc) -> str:
	key = settings.derived_key(BINDING_CONTEXT)
	payload = json.dumps(identity(doc), sort_keys=True).encode()
	return hmac.new(key, payload, hashlib.sha256).hexdigest()


def bind(doc) -> None:
	"""Record that the secrets stored now were entered for the server `doc` names now."""
	set_encrypted_password(doc.doctype, doc.name, _fingerprint(doc), BINDING_FIELD)


def unbind(doc) -> None:
	remove_encrypted_password(doc.doctype, doc.name, BINDING_FIELD)


def check_binding(doc) -> None:
	"""Raise ReconnectNeeded unless `doc`'s stored secrets were entered for the server it names."""
	stored = get_decrypted_password(doc.doctype, doc.name, BINDING_FIELD, raise_exception=False)
	if not stored or not hmac.compare_digest(stored, _fingerprint(doc)):
		raise ReconnectNeeded(
			_(
				"The server settings of {0} changed after its password or sign-in was stored. "
				"Enter the password again (or sign in again) for the new server."
			).format(doc.name)
		)


def _typed(doc, fieldname: str) -> bool:
	value = doc.get(fieldname)
	return bool(value) and not doc.is_dummy_password(value)


def secret_fields(doc) -> list[str]:
	return [f for f in SECRET_FIELDS if doc.meta.has_field(f)]


def on_validate(doc) -> None:
	"""Controller hook (validate): refuse unsafe values, erase secrets orphaned by a server change."""
	for fieldname in ("host", "username", "email_address", "from_address"):
		value = doc.get(fieldname) or ""
		if any(ch in value for ch in FORBIDDEN_IN_SETTINGS):
			frappe.throw(
				_("{0} must not contain spaces, tabs or line breaks.").format(
					_(doc.meta.get_label(fieldname))
				),
				title=_("Invalid value"),
			)
	doc.flags.email_flow_rebind = doc.is_new() or any(_typed(doc, f) for f in secret_fields(doc))
	before = doc.get_doc_before_save()
	if doc.is_new() or before is None or identity(before) == identity(doc):
		return
	# The server changed: keep only what was typed again in this same save.
	erased = [f for f in secret_fields(doc) if not _typed(doc, f) and doc.get(f)]
	for fieldname in erased:
		doc.set(fieldname, None)  # Document._save_passwords removes it from __Auth
	doc.flags.email_flow_clear_token_cache = True
	doc.flags.email_flow_rebind = True
	if not _has_needed_secret(doc):
		doc.status = "Reconnect needed"
		if erased or before.get("auth_method") == "OAuth":
			frappe.msgprint(
				_(
					"The server changed, so the stored password or sign-in was removed. Reconnect to enter it again."
				),
				indicator="orange",
				alert=True,
			)


def _has_needed_secret(doc) -> bool:
	if doc.get("channel_type") == "Forwarding":
		return True
	if doc.get("auth_method") == "OAuth":
		return False  # a token cache / refresh token always needs a new sign-in for a new server
	return _typed(doc, "password")


def on_update(doc) -> None:
	"""Controller hook (on_update): drop the old server's tokens, bind what is stored now."""
	if doc.flags.email_flow_clear_token_cache:
		remove_encrypted_password(doc.doctype, doc.name, TOKEN_CACHE_FIELD)
	if doc.flags.email_flow_rebind:
		bind(doc)


def on_trash(doc) -> None:
	unbind(doc)
	remove_encrypted_password(doc.doctype, doc.name, TOKEN_CACHE_FIELD)
