"""Build channel objects (email_flow_app.channels) from queue and channel documents."""

import ssl

import frappe
from frappe.utils.password import get_decrypted_password

from email_flow_app.channels.auth import OAuthAuth, PasswordAuth
from email_flow_app.channels.errors import ChannelError
from email_flow_app.channels.imap import IMAPConfig, IMAPSource
from email_flow_app.channels.smtp import SMTPConfig, SMTPSink

SECURITY = {"SSL": "ssl", "STARTTLS": "starttls", "Plain": "plain"}
TOKEN_CACHE_FIELD = "oauth_token_cache"


def secret(doc, fieldname: str) -> str | None:
	return get_decrypted_password(doc.doctype, doc.name, fieldname, raise_exception=False)


def store_secret(doc, fieldname: str, value: str) -> None:
	from frappe.utils.password import set_encrypted_password

	set_encrypted_password(doc.doctype, doc.name, value, fieldname)


def _auth(doc):
	if doc.auth_method != "OAuth":
		return PasswordAuth(secret(doc, "password") or "")
	return OAuthAuth(token_provider(doc))


def token_provider(doc):
	"""An access-token source for a queue or channel that signs in with OAuth."""
	kind = doc.channel_type
	if kind.startswith("Office 365"):
		from email_flow_app.channels.office365 import O365TokenProvider

		return _PersistingProvider(
			doc,
			O365TokenProvider(
				tenant=doc.o365_tenant,
				client_id=doc.o365_client_id,
				client_secret=secret(doc, "o365_client_secret"),
				scopes=None,
				cache=secret(doc, TOKEN_CACHE_FIELD),
				mode="app" if doc.o365_mode == "App only" else "delegated",
				account=doc.get("email_address") or doc.get("from_address"),
				**_authority_override(),
			),
		)
	if kind == "Google":
		from email_flow_app.channels.google import GoogleTokenProvider

		return _PersistingProvider(
			doc,
			GoogleTokenProvider(
				client_id=doc.google_client_id,
				client_secret=secret(doc, "google_client_secret"),
				refresh_token=secret(doc, "google_refresh_token"),
				**_google_override(),
			),
		)
	raise ChannelError(f"{doc.doctype} {doc.name}: OAuth is not available for channel type {kind}")


def _authority_override() -> dict:
	host = frappe.conf.get("email_flow_o365_authority_host")
	return {"authority_host": host} if host else {}


def _google_override() -> dict:
	uri = frappe.conf.get("email_flow_google_token_uri")
	return {"token_uri": uri} if uri else {}


class _PersistingProvider:
	"""Wraps a token provider and writes a rotated token cache back (encrypted)."""

	def __init__(self, doc, provider):
		self.doc = doc
		self.provider = provider

	def access_token(self) -> str:
		token = self.provider.access_token()
		self._persist()
		return token

	def force_refresh(self) -> str:
		token = self.provider.force_refresh()
		self._persist()
		return token

	def _persist(self) -> None:
		serialized = getattr(self.provider, "serialized_cache", None)
		if callable(serialized) and getattr(self.provider, "cache_changed", False):
			store_secret(self.doc, TOKEN_CACHE_FIELD, serialized())
		rotated = getattr(self.provider, "rotated_refresh_token", None)
		if rotated:
			store_secret(self.doc, "google_refresh_token", rotated)


def ssl_context() -> ssl.SSLContext | None:
	"""The system trust store, plus the CA bundle in site config `email_flow_ca_bundle` if set.

	For mail servers whose certificates come from a private CA.
	"""
	bundle = frappe.conf.get("email_flow_ca_bundle")
	if not bundle:
		return None
	context = ssl.create_default_context()
	context.load_verify_locations(cafile=bundle)
	return context


def imap_source(queue) -> IMAPSource:
	config = IMAPConfig(
		host=queue.host,
		port=int(queue.port or (993 if queue.security == "SSL" else 143)),
		security=SECURITY.get(queue.security or "SSL", "ssl"),
		username=queue.username or queue.email_address,
		timeout=float(frappe.conf.get("email_flow_timeout") or 30),
		ssl_context=ssl_context(),
	)
	return IMAPSource(config, _auth(queue))


def smtp_sink(channel) -> SMTPSink:
	security = SECURITY.get(channel.security or "STARTTLS", "starttls")
	config = SMTPConfig(
		host=channel.host,
		port=int(channel.port or (465 if security == "ssl" else 587)),
		security=security,
		username=channel.username or channel.from_address,
		timeout=float(frappe.conf.get("email_flow_timeout") or 30),
		ssl_context=ssl_context(),
	)
	return SMTPSink(config, _auth(channel))
