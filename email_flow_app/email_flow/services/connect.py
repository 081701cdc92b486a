"""Build channel objects (email_flow_app.channels) from queue and channel documents."""

import functools
import os
import ssl
import tempfile

import frappe
from frappe.utils.password import get_decrypted_password

from email_flow_app.channels.auth import OAuthAuth, PasswordAuth
from email_flow_app.channels.errors import ChannelError
from email_flow_app.channels.imap import IMAPConfig, IMAPSource
from email_flow_app.channels.smtp import SMTPConfig, SMTPSink
from email_flow_app.email_flow.services import credentials

SECURITY = {"SSL": "ssl", "STARTTLS": "starttls", "Plain": "plain"}
TOKEN_CACHE_FIELD = credentials.TOKEN_CACHE_FIELD


def secret(doc, fieldname: str) -> str | None:
	return get_decrypted_password(doc.doctype, doc.name, fieldname, raise_exception=False)


def store_secret(doc, fieldname: str, value: str) -> None:
	from frappe.utils.password import set_encrypted_password

	set_encrypted_password(doc.doctype, doc.name, value, fieldname)


def token_cache_owner(doc) -> tuple[str, str]:
	"""Where the msal token cache of an Office 365 queue or channel lives.

	A queue and the channel it sends through, signed in as the same account
	with the same app registration, share ONE cache (on the queue): msal
	rotates refresh tokens, and two copies would drift apart.
	"""
	if doc.doctype == "Outgoing Channel" and doc.get("o365_mode") != "App only":
		queue = frappe.db.get_value(
			"Incoming Email Queue",
			{
				"outgoing_channel": doc.name,
				"channel_type": "Office 365",
				"email_address": (doc.get("from_address") or "").lower(),
				"o365_client_id": doc.get("o365_client_id"),
			},
			"name",
		)
		if queue:
			return "Incoming Email Queue", queue
	return doc.doctype, doc.name


def read_token_cache(doc) -> str | None:
	doctype, name = token_cache_owner(doc)
	return get_decrypted_password(doctype, name, TOKEN_CACHE_FIELD, raise_exception=False)


def write_token_cache(doc, value: str) -> None:
	from frappe.utils.password import set_encrypted_password

	doctype, name = token_cache_owner(doc)
	set_encrypted_password(doctype, name, value, TOKEN_CACHE_FIELD)


def o365_scopes(doc) -> tuple[str, ...]:
	"""IMAP/SMTP (XOAUTH2) or Graph scopes, delegated or app-only."""
	from email_flow_app.channels import office365

	reads_graph = doc.get("o365_read_via") == "Microsoft Graph"
	graph = doc.channel_type == "Office 365 Graph" or reads_graph
	if doc.get("o365_mode") == "App only":
		return office365.GRAPH_APP_SCOPES if graph else office365.APP_SCOPES
	if reads_graph:
		return office365.GRAPH_MAIL_DELEGATED_SCOPES
	if graph:
		return office365.GRAPH_DELEGATED_SCOPES
	if doc.doctype == "Incoming Email Queue":
		# A queue reads over IMAP and needs only that scope; its replies may leave
		# through Graph, in which case SMTP.Send was never consented and a refresh
		# asking for it would be refused (AADSTS65001).
		return office365.DELEGATED_SCOPES[:1]
	return office365.DELEGATED_SCOPES


def http_session():
	"""A requests session for the identity providers; trusts `email_flow_ca_bundle` as well.

	It verifies with that bundle even when REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
	are set (requests lets those variables override `Session.verify`); proxies
	from the environment still apply.
	"""
	session = _trusting_session_class()()
	bundle = frappe.conf.get("email_flow_ca_bundle")
	if bundle:
		session.ca_bundle = _combined_bundle(bundle)
	return session


@functools.cache
def _trusting_session_class():
	# requests is imported here, not at module level: the per-minute tick
	# imports this module in a fresh process and needs no HTTP client.
	import requests

	class TrustingSession(requests.Session):
		ca_bundle: str | None = None

		def merge_environment_settings(self, url, proxies, stream, verify, cert):
			merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
			if self.ca_bundle and merged.get("verify") is not False:
				merged["verify"] = self.ca_bundle
			return merged

	return TrustingSession


@functools.cache
def _combined_bundle(bundle: str) -> str:
	"""The default CA store (certifi) plus the private CA bundle, as one file."""
	import certifi

	with open(certifi.where(), "rb") as default, open(bundle, "rb") as extra:
		data = default.read() + b"\n" + extra.read()
	fd, path = tempfile.mkstemp(prefix="email-flow-ca-", suffix=".pem")
	with os.fdopen(fd, "wb") as out:
		out.write(data)
	return path


def _auth(doc):
	credentials.check_binding(doc)
	if doc.auth_method != "OAuth":
		return PasswordAuth(secret(doc, "password") or "")
	return OAuthAuth(token_provider(doc))


def token_provider(doc):
	"""An access-token source for a queue or channel that signs in with OAuth."""
	credentials.check_binding(doc)
	kind = doc.channel_type
	if kind.startswith("Office 365"):
		from email_flow_app.channels.office365 import O365TokenProvider

		return _PersistingProvider(
			doc,
			O365TokenProvider(
				tenant=doc.o365_tenant,
				client_id=doc.o365_client_id,
				client_secret=secret(doc, "o365_client_secret"),
				scopes=o365_scopes(doc),
				cache=read_token_cache(doc),
				mode="app" if doc.o365_mode == "App only" else "delegated",
				account=doc.get("email_address") or doc.get("from_address"),
				http_session=http_session(),
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
				on_rotate=lambda token: store_secret(doc, "google_refresh_token", token),
				http_session=http_session(),
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
			write_token_cache(self.doc, serialized())
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


def imap_config(queue, context: ssl.SSLContext | None = None) -> IMAPConfig:
	"""Where a queue's IMAP server is; `context`: one TLS context shared by many connections."""
	return IMAPConfig(
		host=queue.host,
		port=int(queue.port or (993 if queue.security == "SSL" else 143)),
		security=SECURITY.get(queue.security or "SSL", "ssl"),
		username=queue.username or queue.email_address,
		timeout=float(frappe.conf.get("email_flow_timeout") or 30),
		ssl_context=context or ssl_context(),
	)


def imap_source(queue) -> IMAPSource:
	return IMAPSource(imap_config(queue), _auth(queue))


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
