"""Office 365 / Exchange Online: msal tokens, XOAUTH2 presets, Graph sendMail.

Two ways to hold a mailbox:

* ``mode="app"``: the app itself (client credentials, ``.default`` scope), for
  shared mailboxes the tenant admin granted to the app;
* ``mode="delegated"``: a user signed in once (:class:`O365AuthCodeFlow`), then
  refresh tokens from the msal token cache.

The cache is a string the caller persists: after ``access_token()`` check
``cache_changed`` and store ``serialized_cache()`` (msal rotates refresh
tokens). Authority host, Graph base and IMAP/SMTP hosts are parameters, so
tests point them at local endpoints.
"""

from __future__ import annotations

import base64
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import msal
import requests

from email_flow_app.channels.auth import OAuthAuth
from email_flow_app.channels.errors import (
	AuthError,
	ChannelError,
	MessageTooLarge,
	PermanentError,
	ReconnectNeeded,
	TemporaryError,
	TLSError,
)
from email_flow_app.channels.imap import IMAPConfig
from email_flow_app.channels.smtp import SMTPConfig

AUTHORITY_HOST = "https://login.microsoftonline.com"
GRAPH_BASE = "https://graph.microsoft.com"
IMAP_HOST, IMAP_PORT = "outlook.office365.com", 993
SMTP_HOST, SMTP_PORT = "smtp.office365.com", 587
DELEGATED_SCOPES = (
	"https://outlook.office.com/IMAP.AccessAsUser.All",
	"https://outlook.office.com/SMTP.Send",
)
GRAPH_DELEGATED_SCOPES = ("https://graph.microsoft.com/Mail.Send",)
# A Graph inbox (channels.graph): read, mark read, move and send; msal adds
# offline_access (a refresh token), openid and profile on its own.
GRAPH_MAIL_DELEGATED_SCOPES = (
	"https://graph.microsoft.com/Mail.ReadWrite",
	"https://graph.microsoft.com/Mail.Send",
)
APP_SCOPES = ("https://outlook.office365.com/.default",)
GRAPH_APP_SCOPES = ("https://graph.microsoft.com/.default",)
HTTP_TIMEOUT = 30.0
GRAPH_MAX_BYTES = 4 * 1024 * 1024  # sendMail with MIME: 4 MB request limit
RECONNECT_ERRORS = ("invalid_grant", "interaction_required", "consent_required", "login_required")
Mode = Literal["app", "delegated"]


def imap_config(mailbox: str, host: str = IMAP_HOST, port: int = IMAP_PORT, **kwargs: Any) -> IMAPConfig:
	"""IMAP over TLS at Exchange Online for ``mailbox`` (XOAUTH2)."""
	return IMAPConfig(host, port, "ssl", mailbox, **kwargs)


def smtp_config(mailbox: str, host: str = SMTP_HOST, port: int = SMTP_PORT, **kwargs: Any) -> SMTPConfig:
	"""SMTP submission with STARTTLS at Exchange Online for ``mailbox`` (XOAUTH2)."""
	return SMTPConfig(host, port, "starttls", mailbox, **kwargs)


def _error_text(result: Mapping[str, Any]) -> str:
	desc = str(result.get("error_description") or "").splitlines()
	return f"{result.get('error')}: {desc[0] if desc else ''}".strip(": ")


def _raise_for_result(result: Mapping[str, Any] | None, who: str) -> str:
	if result and "access_token" in result:
		return str(result["access_token"])
	if not result:
		raise ReconnectNeeded(f"No signed-in Microsoft 365 account for {who}: sign in again")
	error = str(result.get("error") or "")
	text = _error_text(result)
	if error in RECONNECT_ERRORS:
		raise ReconnectNeeded(f"Microsoft 365 sign-in for {who} is no longer valid ({text}): sign in again")
	if error in ("invalid_client", "unauthorized_client"):
		raise AuthError(f"Authentication failed: Microsoft 365 rejected the app credentials ({text})")
	if error in ("temporarily_unavailable", "server_error"):
		raise TemporaryError(f"Microsoft 365 token service unavailable ({text})")
	raise AuthError(f"Authentication failed: Microsoft 365 refused a token for {who} ({text})")


def _msal_app(
	tenant: str,
	client_id: str,
	client_secret: str,
	cache: msal.SerializableTokenCache,
	authority_host: str,
	http_session: requests.Session | None,
) -> msal.ConfidentialClientApplication:
	try:
		return msal.ConfidentialClientApplication(
			client_id,
			client_credential=client_secret,
			authority=f"{authority_host.rstrip('/')}/{tenant}",
			token_cache=cache,
			instance_discovery=False,
			http_client=http_session,
			timeout=HTTP_TIMEOUT,
		)
	except requests.exceptions.SSLError as err:
		raise TLSError(f"TLS failure with the Microsoft 365 sign-in service at {authority_host} ({err})")
	except (requests.ConnectionError, requests.Timeout) as err:
		raise TemporaryError(f"Could not reach the Microsoft 365 sign-in service at {authority_host} ({err})")
	except ValueError as err:
		raise PermanentError(f"Microsoft 365 tenant {tenant!r} could not be used at {authority_host} ({err})")


class O365TokenProvider:
	"""Access tokens for one mailbox, as the app (``mode="app"``) or a signed-in user."""

	def __init__(
		self,
		tenant: str,
		client_id: str,
		client_secret: str,
		scopes: Sequence[str] | None = None,
		cache: str | None = None,
		authority_host: str = AUTHORITY_HOST,
		mode: Mode = "delegated",
		account: str | None = None,
		http_session: requests.Session | None = None,
	) -> None:
		if mode not in ("app", "delegated"):
			raise ValueError("mode must be 'app' or 'delegated'")
		if mode == "delegated" and not account:
			raise ValueError("delegated mode needs the signed-in account (email)")
		self.mode = mode
		self.account = account
		self.scopes = list(scopes or (APP_SCOPES if mode == "app" else DELEGATED_SCOPES))
		self._cache = msal.SerializableTokenCache()
		if cache:
			self._cache.deserialize(cache)
		self._app = _msal_app(tenant, client_id, client_secret, self._cache, authority_host, http_session)
		self._lock = threading.Lock()

	@property
	def cache_changed(self) -> bool:
		"""True when the cache holds new tokens the caller should persist."""
		return bool(self._cache.has_state_changed)

	def serialized_cache(self) -> str:
		"""The cache to persist (refresh tokens rotate); resets ``cache_changed``."""
		data = self._cache.serialize()
		self._cache.has_state_changed = False
		return data

	def access_token(self) -> str:
		return self._acquire(force=False)

	def force_refresh(self) -> str:
		return self._acquire(force=True)

	def _acquire(self, force: bool) -> str:
		who = self.account or "the app"
		with self._lock:
			try:
				if self.mode == "app":
					if force:
						self._drop_access_tokens()
					return _raise_for_result(self._app.acquire_token_for_client(self.scopes), who)
				accounts = self._app.get_accounts(username=self.account)
				if not accounts:
					raise ReconnectNeeded(f"No signed-in Microsoft 365 account for {who}: sign in again")
				result = self._app.acquire_token_silent_with_error(
					self.scopes, account=accounts[0], force_refresh=force
				)
				return _raise_for_result(result, who)
			except ChannelError:
				raise
			except requests.exceptions.SSLError as err:
				raise TLSError(f"TLS failure with the Microsoft 365 token service ({err})")
			except (requests.ConnectionError, requests.Timeout) as err:
				raise TemporaryError(f"Could not reach the Microsoft 365 token service ({err})")

	def _drop_access_tokens(self) -> None:
		for entry in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
			self._cache.remove_at(entry)

	def as_auth(self) -> OAuthAuth:
		return OAuthAuth(self)


def first_resource_scopes(scopes: Sequence[str]) -> list[str] | None:
	"""The scopes of the first resource named, when ``scopes`` name several (else None: all of them).

	One sign-in may ask consent for two resources (IMAP and Graph Mail.Send),
	but Microsoft redeems the code for one resource only (AADSTS28000); the
	refresh token then gets tokens for the other resource as well.
	"""
	resources = [_resource(scope) for scope in scopes]
	if len(set(resources)) < 2:
		return None
	return [scope for scope, resource in zip(scopes, resources, strict=True) if resource == resources[0]]


def _resource(scope: str) -> str:
	parts = urlsplit(scope)
	return f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""


@dataclass(frozen=True)
class O365AuthCodeFlow:
	"""Delegated sign-in: send the admin to ``start()``'s URL, then ``finish()`` with the redirect's query."""

	tenant: str
	client_id: str
	client_secret: str
	scopes: tuple[str, ...] = DELEGATED_SCOPES
	authority_host: str = AUTHORITY_HOST
	http_session: requests.Session | None = None

	def _app(self, cache: msal.SerializableTokenCache) -> msal.ConfidentialClientApplication:
		return _msal_app(
			self.tenant, self.client_id, self.client_secret, cache, self.authority_host, self.http_session
		)

	def start(self, redirect_uri: str, login_hint: str | None = None) -> tuple[str, dict]:
		"""``(auth_url, flow_state)``; keep ``flow_state`` (PKCE verifier, state, nonce) server-side."""
		app = self._app(msal.SerializableTokenCache())
		with warnings.catch_warnings():
			# msal recommends form_post; the Frappe callback takes the code from the query string.
			warnings.filterwarnings("ignore", message="response_mode='form_post'")
			flow = app.initiate_auth_code_flow(
				list(self.scopes), redirect_uri=redirect_uri, login_hint=login_hint
			)
		if "auth_uri" not in flow:
			raise PermanentError(f"Microsoft 365 sign-in could not start ({_error_text(flow)})")
		return flow["auth_uri"], flow

	def finish(self, flow_state: dict, query_params: Mapping[str, str]) -> tuple[str, str]:
		"""``(account_email, serialized_cache)`` from the redirect back; raises AuthError if refused."""
		cache = msal.SerializableTokenCache()
		try:
			result = self._app(cache).acquire_token_by_auth_code_flow(
				dict(flow_state), dict(query_params), scopes=first_resource_scopes(self.scopes)
			)
		except ValueError as err:  # state mismatch, replayed flow
			raise AuthError(f"Microsoft 365 sign-in failed: the response did not match the request ({err})")
		except (requests.ConnectionError, requests.Timeout) as err:
			raise TemporaryError(f"Could not reach the Microsoft 365 token service ({err})")
		if "access_token" not in result:
			raise AuthError(f"Microsoft 365 sign-in failed ({_error_text(result)})")
		claims = result.get("id_token_claims") or {}
		email = claims.get("preferred_username") or claims.get("email") or claims.get("upn")
		if not email:
			raise AuthError("Microsoft 365 sign-in returned no account name")
		return str(email), cache.serialize()


class GraphSender:
	"""Send raw MIME through Microsoft Graph ``POST /v1.0/users/{mailbox}/sendMail``.

	Always ``/users/{mailbox}``, never ``/me``: sending as a shared mailbox (app
	token, or a user with Send As on it) saves the copy in the shared mailbox's
	Sent Items (MIME sendMail keeps Graph's default ``saveToSentItems: true``).
	"""

	def __init__(
		self,
		token_provider: O365TokenProvider | Any,
		mailbox: str,
		graph_base: str = GRAPH_BASE,
		http_session: requests.Session | None = None,
		timeout: float = HTTP_TIMEOUT,
	) -> None:
		self.token_provider = token_provider
		self.mailbox = mailbox
		self.url = f"{graph_base.rstrip('/')}/v1.0/users/{quote(mailbox, safe='@')}/sendMail"
		self.session = http_session or requests.Session()
		self.timeout = timeout

	def send(self, raw: bytes) -> None:
		"""Send ``raw`` (a complete RFC 5322 message); Graph saves it to Sent Items."""
		body = base64.b64encode(raw)
		if len(body) > GRAPH_MAX_BYTES:
			raise MessageTooLarge(
				f"Message is {len(raw)} bytes; Graph sendMail accepts at most {GRAPH_MAX_BYTES} bytes encoded"
			)
		response = self._post(body, self.token_provider.access_token())
		if response.status_code == 401:
			response = self._post(body, self.token_provider.force_refresh())
		self._check(response)

	def _post(self, body: bytes, token: str) -> requests.Response:
		try:
			return self.session.post(
				self.url,
				data=body,
				headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
				timeout=self.timeout,
			)
		except requests.exceptions.SSLError as err:
			raise TLSError(f"TLS failure with Microsoft Graph ({err})")
		except (requests.ConnectionError, requests.Timeout) as err:
			raise TemporaryError(f"Could not reach Microsoft Graph ({err})")

	def _check(self, response: requests.Response) -> None:
		status = response.status_code
		if status in (200, 202):
			return
		try:
			error = response.json().get("error", {})
		except ValueError:
			error = {}
		detail = f"{status} {error.get('code', '')}: {error.get('message', response.text[:200])}".strip()
		if status == 401:
			raise AuthError(
				f"Authentication failed: Microsoft Graph rejected the token for {self.mailbox} ({detail})"
			)
		if status == 403:
			raise AuthError(
				f"Microsoft Graph refused to send as {self.mailbox}: permission missing ({detail})"
			)
		if status == 413:
			raise MessageTooLarge(f"Microsoft Graph refused the message as too large ({detail})")
		if status == 429 or status >= 500:
			raise TemporaryError(f"Microsoft Graph is busy or unavailable, will retry ({detail})")
		raise PermanentError(f"Microsoft Graph refused the message ({detail})")
