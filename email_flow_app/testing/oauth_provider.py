"""A local OAuth 2.0 / OpenID provider and Microsoft Graph mail endpoint over HTTPS.

It stands in for login.microsoftonline.com, oauth2.googleapis.com and
graph.microsoft.com, reached through the libraries' own configuration:

* msal: ``authority=provider.authority(tenant)`` with ``instance_discovery=False``
  (OpenID discovery, authorize with PKCE, token: client credentials,
  authorization code, refresh token);
* google-auth: ``token_uri=provider.token_uri`` (refresh-token grant);
* Dovecot's oauth2 passdb: ``provider.introspection_url`` (RFC 7662);
* Graph: ``graph_base=provider.graph_base``: ``provider.graph`` is a local mail
  server (:class:`~email_flow_app.testing.graph_server.GraphMailServer`: mailboxes,
  delta pages, ``$value``, read/move, sendMail into Sent Items, subscriptions
  with the validation handshake, throttling).

Refresh tokens can be revoked and access tokens expired on the server side,
so clients' refresh and reconnect paths can be tested for real.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from email_flow_app.testing.graph_server import GraphMailServer
from email_flow_app.testing.tls import TestCA


@dataclass
class IssuedToken:
	value: str
	kind: str  # "access" | "refresh"
	client_id: str
	subject: str | None  # mailbox the token acts for
	scope: str
	expires_at: float | None = None
	revoked: bool = False

	def active(self) -> bool:
		return not self.revoked and (self.expires_at is None or time.time() < self.expires_at)


@dataclass
class Client:
	client_id: str
	secret: str
	app_mailbox: str | None = None  # whom client-credential tokens act for


@dataclass
class GraphMail:
	mailbox: str
	raw: bytes
	token_subject: str | None


@dataclass
class _PendingCode:
	client_id: str
	subject: str
	redirect_uri: str
	scope: str
	nonce: str | None
	code_challenge: str | None


@dataclass
class _State:
	clients: dict[str, Client] = field(default_factory=dict)
	tokens: dict[str, IssuedToken] = field(default_factory=dict)
	codes: dict[str, _PendingCode] = field(default_factory=dict)
	graph_mail: list[GraphMail] = field(default_factory=list)
	grants: list[str] = field(default_factory=list)
	introspections: int = 0
	graph_failures: list[tuple[int, dict]] = field(default_factory=list)
	# (client_id, subject) -> scopes the user consented to at the authorize endpoint
	consents: dict[tuple[str, str], set[str]] = field(default_factory=dict)


def _b64url(data: bytes) -> str:
	return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OAuthTestProvider:
	"""HTTPS OAuth/OIDC provider + a Graph mail server (``.graph``), in a thread."""

	def __init__(
		self,
		ca: TestCA,
		*,
		host: str = "127.0.0.1",
		access_token_lifetime: float = 3600,
		advertised_expires_in: int | None = None,
		rotate_refresh_tokens: bool = True,
	) -> None:
		self.ca = ca
		self.host = host
		self.access_token_lifetime = access_token_lifetime
		self.advertised_expires_in = advertised_expires_in
		self.rotate_refresh_tokens = rotate_refresh_tokens
		self.login_as: str | None = None  # the user "signing in" at the authorize endpoint
		self._state = _State()
		self._lock = threading.Lock()
		self._httpd: ThreadingHTTPServer | None = None
		self._thread: threading.Thread | None = None
		self.graph = GraphMailServer(self)

	# -- lifecycle ------------------------------------------------------------

	def __enter__(self) -> OAuthTestProvider:
		self.start()
		return self

	def __exit__(self, *exc: object) -> None:
		self.stop()

	def start(self) -> None:
		provider = self

		class Handler(_Handler):
			owner = provider

		httpd = _QuietServer((self.host, 0), Handler)
		httpd.daemon_threads = True
		httpd.socket = self.ca.server_context().wrap_socket(
			httpd.socket, server_side=True, do_handshake_on_connect=False
		)
		self._httpd = httpd
		self._thread = threading.Thread(target=httpd.serve_forever, name="oauth-test-provider", daemon=True)
		self._thread.start()

	def stop(self) -> None:
		self.graph.close()
		if self._httpd:
			self._httpd.shutdown()
			self._httpd.server_close()
			self._httpd = None

	@property
	def port(self) -> int:
		assert self._httpd, "provider not started"
		return self._httpd.server_address[1]

	@property
	def base_url(self) -> str:
		return f"https://{self.host}:{self.port}"

	def authority(self, tenant: str) -> str:
		return f"{self.base_url}/{tenant}"

	@property
	def token_uri(self) -> str:
		return f"{self.base_url}/token"

	@property
	def introspection_url(self) -> str:
		return f"{self.base_url}/introspect"

	@property
	def graph_base(self) -> str:
		return self.base_url

	# -- test controls ----------------------------------------------------------

	def register_client(self, client_id: str, secret: str, app_mailbox: str | None = None) -> None:
		with self._lock:
			self._state.clients[client_id] = Client(client_id, secret, app_mailbox)

	def issue_refresh_token(self, client_id: str, subject: str, scope: str = "mail") -> str:
		"""A refresh token as if ``subject`` had consented earlier (e.g. Google)."""
		with self._lock:
			return self._new_token("refresh", client_id, subject, scope, None).value

	def issue_access_token(
		self, client_id: str, subject: str, scope: str = "mail", lifetime: float | None = None
	) -> str:
		with self._lock:
			life = self.access_token_lifetime if lifetime is None else lifetime
			return self._new_token("access", client_id, subject, scope, time.time() + life).value

	def revoke_refresh_tokens(self, subject: str | None = None) -> int:
		"""Revoke every refresh token (of ``subject``); returns how many."""
		return self._revoke("refresh", subject)

	def expire_access_tokens(self, subject: str | None = None) -> int:
		"""Make current access tokens inactive server-side (clients still think them valid)."""
		return self._revoke("access", subject)

	def fail_graph_send(self, status: int, code: str = "ErrorInternalServerError") -> None:
		"""The next Graph sendMail answers ``status`` with a Graph error body."""
		with self._lock:
			self._state.graph_failures.append((status, {"error": {"code": code, "message": code}}))

	@property
	def graph_mail(self) -> list[GraphMail]:
		with self._lock:
			return list(self._state.graph_mail)

	@property
	def grants(self) -> list[str]:
		"""grant_type of every token request, in order."""
		with self._lock:
			return list(self._state.grants)

	def is_active(self, token: str) -> bool:
		with self._lock:
			entry = self._state.tokens.get(token)
			return bool(entry and entry.active())

	# -- internals (lock held) -------------------------------------------------

	def _revoke(self, kind: str, subject: str | None) -> int:
		with self._lock:
			count = 0
			for tok in self._state.tokens.values():
				if tok.kind == kind and not tok.revoked and (subject is None or tok.subject == subject):
					tok.revoked = True
					count += 1
			return count

	def _new_token(
		self, kind: str, client_id: str, subject: str | None, scope: str, expires_at: float | None
	) -> IssuedToken:
		tok = IssuedToken(
			f"{kind[:2]}-{secrets.token_urlsafe(24)}", kind, client_id, subject, scope, expires_at
		)
		self._state.tokens[tok.value] = tok
		return tok

	def _token_response(
		self,
		client_id: str,
		subject: str | None,
		scope: str,
		*,
		refresh: bool,
		tenant: str | None,
		nonce=None,
	) -> dict:
		access = self._new_token(
			"access", client_id, subject, scope, time.time() + self.access_token_lifetime
		)
		expires_in = (
			self.advertised_expires_in
			if self.advertised_expires_in is not None
			else int(self.access_token_lifetime)
		)
		body: dict = {
			"token_type": "Bearer",
			"access_token": access.value,
			"expires_in": expires_in,
			"ext_expires_in": expires_in,
			"scope": scope,
		}
		if refresh and subject:
			body["refresh_token"] = self._new_token("refresh", client_id, subject, scope, None).value
			if tenant is not None:
				oid = str(uuid.uuid5(uuid.NAMESPACE_DNS, subject))
				tid = str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant))
				body["client_info"] = _b64url(json.dumps({"uid": oid, "utid": tid}).encode())
				now = int(time.time())
				claims = {
					"iss": f"{self.base_url}/{tenant}/v2.0",
					"aud": client_id,
					"sub": oid,
					"oid": oid,
					"tid": tid,
					"iat": now,
					"nbf": now,
					"exp": now + 3600,
					"preferred_username": subject,
					"email": subject,
					"name": subject,
				}
				if nonce:
					claims["nonce"] = nonce
				header = {"alg": "none", "typ": "JWT"}
				body["id_token"] = ".".join(
					[_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()), ""]
				)
		return body

	def _handle_token(self, form: dict[str, str], tenant: str | None) -> tuple[int, dict]:
		grant = form.get("grant_type", "")
		with self._lock:
			self._state.grants.append(grant)
			client = self._state.clients.get(form.get("client_id", ""))
			if client is None or not secrets.compare_digest(client.secret, form.get("client_secret", "")):
				return 401, {"error": "invalid_client", "error_description": "Client authentication failed."}
			scope = form.get("scope", "")
			if len(_resources(scope)) > 1:
				# Microsoft's token endpoint issues a token for one resource at a time.
				return 400, {
					"error": "invalid_request",
					"error_description": "AADSTS28000: Provided value for the input parameter scope is not "
					"valid because it contains more than one resource.",
				}
			if grant == "client_credentials":
				return 200, self._token_response(
					client.client_id, client.app_mailbox, scope, refresh=False, tenant=tenant
				)
			if grant == "authorization_code":
				pending = self._state.codes.pop(form.get("code", ""), None)
				if pending is None or pending.client_id != client.client_id:
					return 400, {
						"error": "invalid_grant",
						"error_description": "The code is invalid or used.",
					}
				if pending.redirect_uri != form.get("redirect_uri"):
					return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch."}
				if pending.code_challenge:
					verifier = form.get("code_verifier", "")
					if _b64url(hashlib.sha256(verifier.encode()).digest()) != pending.code_challenge:
						return 400, {
							"error": "invalid_grant",
							"error_description": "PKCE verification failed.",
						}
				return 200, self._token_response(
					client.client_id,
					pending.subject,
					scope or pending.scope,
					refresh=True,
					tenant=tenant,
					nonce=pending.nonce,
				)
			if grant == "refresh_token":
				old = self._state.tokens.get(form.get("refresh_token", ""))
				if (
					old is None
					or old.kind != "refresh"
					or not old.active()
					or old.client_id != client.client_id
				):
					return 400, {
						"error": "invalid_grant",
						"error_description": "AADSTS70008: The refresh token has expired or been revoked.",
					}
				consent = self._state.consents.get((client.client_id, old.subject))
				missing = set(scope.split()) - _OIDC_SCOPES - consent if consent is not None else set()
				if missing:
					# A refresh may ask for less than was consented, never for more.
					return 400, {
						"error": "invalid_grant",
						"error_description": "AADSTS65001: The user or administrator has not consented to "
						f"use the application for {' '.join(sorted(missing))}.",
						"suberror": "consent_required",
					}
				body = self._token_response(
					client.client_id, old.subject, scope or old.scope, refresh=True, tenant=tenant
				)
				if self.rotate_refresh_tokens:
					old.revoked = True
				else:
					self._state.tokens.pop(body["refresh_token"], None)
					body["refresh_token"] = old.value
				return 200, body
			return 400, {"error": "unsupported_grant_type"}

	def _handle_authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
		redirect_uri = query.get("redirect_uri", "")
		with self._lock:
			if query.get("client_id") not in self._state.clients or not redirect_uri:
				return 400, {}
			subject = query.get("login_hint") or self.login_as
			if not subject:
				params = {"error": "access_denied", "state": query.get("state", "")}
			else:
				code = secrets.token_urlsafe(16)
				consent = self._state.consents.setdefault((query["client_id"], subject), set())
				consent.update(query.get("scope", "").split())
				self._state.codes[code] = _PendingCode(
					query["client_id"],
					subject,
					redirect_uri,
					query.get("scope", ""),
					query.get("nonce"),
					query.get("code_challenge"),
				)
				params = {"code": code, "state": query.get("state", "")}
		sep = "&" if "?" in redirect_uri else "?"
		return 302, {"Location": f"{redirect_uri}{sep}{urlencode(params)}"}

	def _handle_introspect(self, form: dict[str, str]) -> dict:
		with self._lock:
			self._state.introspections += 1
			tok = self._state.tokens.get(form.get("token", ""))
			if tok is None or tok.kind != "access" or not tok.active():
				return {"active": False}
			return {
				"active": True,
				"email": tok.subject,
				"username": tok.subject,
				"client_id": tok.client_id,
				"scope": tok.scope,
				"exp": int(tok.expires_at or 0),
			}


class _QuietServer(ThreadingHTTPServer):
	def handle_error(self, request: object, client_address: object) -> None:
		"""Clients that reject our certificate (TLS tests) are expected: no traceback."""


class _Handler(BaseHTTPRequestHandler):
	owner: OAuthTestProvider
	protocol_version = "HTTP/1.1"
	disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

	def log_message(self, format: str, *args: object) -> None:  # quiet
		pass

	def _send(self, status: int, body: dict | None = None, headers: dict[str, str] | None = None) -> None:
		payload = json.dumps(body).encode() if body else b""
		self.send_response(status)
		for key, value in (headers or {}).items():
			self.send_header(key, value)
		if payload:
			self.send_header("Content-Type", "application/json")
		self.send_header("Content-Length", str(len(payload)))
		self.end_headers()
		self.wfile.write(payload)

	def _body(self) -> bytes:
		length = int(self.headers.get("Content-Length") or 0)
		return self.rfile.read(length) if length else b""

	def _form(self) -> dict[str, str]:
		return {k: v[0] for k, v in parse_qs(self._body().decode(), keep_blank_values=True).items()}

	def _graph(self, method: str) -> None:
		status, headers, payload = self.owner.graph.handle(method, self.path, self.headers, self._body())
		self.send_response(status)
		for key, value in headers.items():
			self.send_header(key, value)
		self.send_header("Content-Length", str(len(payload)))
		self.end_headers()
		self.wfile.write(payload)

	def do_PATCH(self) -> None:
		try:
			self._graph("PATCH")
		except (ConnectionError, ssl.SSLError):
			pass

	def do_DELETE(self) -> None:
		try:
			self._graph("DELETE")
		except (ConnectionError, ssl.SSLError):
			pass

	def do_GET(self) -> None:
		try:
			url = urlsplit(self.path)
			parts = [p for p in url.path.split("/") if p]
			query = {k: v[0] for k, v in parse_qs(url.query).items()}
			if parts and parts[0] == "v1.0":
				self._graph("GET")
			elif len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
				base = f"{self.owner.base_url}/{parts[0]}"
				self._send(
					200,
					{
						"issuer": f"{base}/v2.0",
						"authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
						"token_endpoint": f"{base}/oauth2/v2.0/token",
						"device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
						"end_session_endpoint": f"{base}/oauth2/v2.0/logout",
						"jwks_uri": f"{base}/discovery/v2.0/keys",
						"response_types_supported": ["code"],
						"scopes_supported": ["openid", "profile", "email", "offline_access"],
						"tenant_region_scope": None,
					},
				)
			elif len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "authorize"]:
				status, headers = self.owner._handle_authorize(query)
				self._send(status, None, headers)
			else:
				self._send(404, {"error": "not_found"})
		except (ConnectionError, ssl.SSLError):
			pass

	def do_POST(self) -> None:
		try:
			parts = [p for p in urlsplit(self.path).path.split("/") if p]
			if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
				self._send(*self.owner._handle_token(self._form(), tenant=parts[0]))
			elif parts == ["token"]:
				self._send(*self.owner._handle_token(self._form(), tenant=None))
			elif parts == ["introspect"]:
				self._send(200, self.owner._handle_introspect(self._form()))
			elif parts == ["revoke"]:
				token = self._form().get("token", "")
				with self.owner._lock:
					entry = self.owner._state.tokens.get(token)
					if entry:
						entry.revoked = True
				self._send(200, {})
			elif parts and parts[0] == "v1.0":
				self._graph("POST")
			else:
				self._send(404, {"error": "not_found"})
		except (ConnectionError, ssl.SSLError):
			pass


_OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


def _resources(scope: str) -> set[str]:
	"""The resources a scope string names (``https://host/Perm`` -> ``https://host``); OIDC scopes name none."""
	resources = set()
	for item in scope.split():
		if item in _OIDC_SCOPES:
			continue
		parts = urlsplit(item)
		resources.add(f"{parts.scheme}://{parts.netloc}" if parts.scheme else "")
	return resources
