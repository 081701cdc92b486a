"""An SMTP server for tests: aiosmtpd in a thread, with AUTH and TLS.

Two listeners share one recorder: ``port`` (plain, offers STARTTLS) and
``tls_port`` (implicit TLS). AUTH PLAIN/LOGIN checks ``users``; XOAUTH2 checks
bearer tokens with ``token_validator`` (e.g. ``OAuthTestProvider.is_active``
plus the token's subject). Received messages are kept with their envelope.
Recipients can be told to fail with a given reply (4xx or 5xx).
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from email_flow_app.testing.net import free_port
from email_flow_app.testing.tls import TestCA

DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024


@dataclass
class ReceivedMessage:
	mail_from: str
	rcpt_tos: list[str]
	data: bytes
	login: str | None


@dataclass
class _Rules:
	recipient_replies: dict[str, str] = field(default_factory=dict)
	data_reply: str | None = None


class _Handler:
	def __init__(self, server: SMTPTestServer) -> None:
		self.server = server

	async def handle_RCPT(self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options):
		reply = self.server._rules.recipient_replies.get(address.lower())
		if reply:
			return reply
		envelope.rcpt_tos.append(address)
		return "250 2.1.5 OK"

	async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
		if self.server._rules.data_reply:
			return self.server._rules.data_reply
		login = getattr(session, "login_data", None)
		received = ReceivedMessage(
			envelope.mail_from,
			list(envelope.rcpt_tos),
			bytes(envelope.original_content or envelope.content),
			login.decode() if isinstance(login, bytes) else login,
		)
		with self.server._lock:
			self.server.messages.append(received)
		if self.server.deliver is not None:
			# Hand the message on (e.g. into the recipients' mailboxes), off the event loop.
			loop = asyncio.get_running_loop()
			await loop.run_in_executor(None, self.server._deliver, received)
		return "250 2.0.0 Message accepted"

	async def auth_XOAUTH2(self, smtp: SMTP, args: list[str]) -> AuthResult:
		if len(args) > 1:
			blob = base64.b64decode(args[1])
		else:
			response = await smtp.challenge_auth("")
			if not isinstance(response, bytes):
				return AuthResult(success=False, handled=True)
			blob = response
		fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if "=" in part)
		user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
		self.server.auth_attempts.append(("XOAUTH2", user, token))
		validator = self.server.token_validator
		if validator is not None and validator(user, token):
			return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
		error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"}).encode()
		await smtp.challenge_auth(error)  # the client answers with an empty line
		return AuthResult(
			success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
		)


class _Controller(Controller):
	def __init__(self, server: SMTPTestServer, port: int, **kwargs) -> None:
		self._owner = server
		super().__init__(_Handler(server), hostname=server.host, port=port, **kwargs)

	def factory(self) -> SMTP:
		owner = self._owner
		implicit = self.ssl_context is not None
		with warnings.catch_warnings():
			warnings.simplefilter("ignore", UserWarning)  # "AUTH without TLS": it is TLS, implicitly
			return self._make(owner, implicit)

	def _make(self, owner: SMTPTestServer, implicit: bool) -> SMTP:
		return SMTP(
			self.handler,
			hostname="smtp.test",
			data_size_limit=owner.size_limit,
			tls_context=None if implicit else owner.ca.server_context(),
			auth_required=owner.auth_required,
			# aiosmtpd does not see implicit TLS as TLS: it only offers AUTH there without the check.
			auth_require_tls=not implicit,
			authenticator=owner._authenticate,
		)


class SMTPTestServer:
	"""Recording SMTP server with AUTH (PLAIN, LOGIN, XOAUTH2), STARTTLS and implicit TLS."""

	def __init__(
		self,
		ca: TestCA,
		users: dict[str, str] | None = None,
		*,
		token_validator: Callable[[str, str], bool] | None = None,
		auth_required: bool = True,
		size_limit: int = DEFAULT_SIZE_LIMIT,
		host: str = "127.0.0.1",
	) -> None:
		self.ca = ca
		self.users = dict(users or {})
		self.token_validator = token_validator
		self.auth_required = auth_required
		self.size_limit = size_limit
		self.host = host
		self.messages: list[ReceivedMessage] = []
		#: Called with every accepted message after it is recorded (None: only recorded).
		#: Runs in a worker thread; an exception is printed and the message stays accepted.
		self.deliver: Callable[[ReceivedMessage], None] | None = None
		# Every AUTH a client tried: (mechanism, user, password or token), accepted or not.
		self.auth_attempts: list[tuple[str, str, str]] = []
		self._rules = _Rules()
		self._lock = threading.Lock()
		self._controllers: list[Controller] = []
		self.port = 0
		self.tls_port = 0

	def __enter__(self) -> SMTPTestServer:
		self.start()
		return self

	def __exit__(self, *exc: object) -> None:
		self.stop()

	def start(self) -> None:
		self.port, self.tls_port = free_port(self.host), free_port(self.host)
		plain = _Controller(self, self.port)
		implicit = _Controller(self, self.tls_port, ssl_context=self.ca.server_context())
		for controller in (plain, implicit):
			controller.start()  # raises if the listener cannot come up
			self._controllers.append(controller)

	def stop(self) -> None:
		while self._controllers:
			self._controllers.pop().stop()

	def _deliver(self, received: ReceivedMessage) -> None:
		try:
			self.deliver(received)
		except Exception as exc:
			print(f"SMTPTestServer: deliver failed: {exc!r}", file=sys.stderr)

	# -- test controls ----------------------------------------------------------

	def reply_to_recipient(self, address: str, reply: str) -> None:
		"""RCPT TO ``address`` answers ``reply`` (e.g. ``"450 4.2.1 Mailbox busy"``)."""
		self._rules.recipient_replies[address.lower()] = reply

	def reply_to_data(self, reply: str | None) -> None:
		"""Every DATA answers ``reply`` instead of accepting (None: accept again)."""
		self._rules.data_reply = reply

	def reset(self) -> None:
		with self._lock:
			self.messages.clear()
		self._rules = _Rules()

	def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data):
		if isinstance(auth_data, LoginPassword):
			user, password = auth_data.login.decode(), auth_data.password.decode()
			self.auth_attempts.append((mechanism, user, password))
			if user in self.users and self.users[user] == password:
				return AuthResult(success=True, auth_data=auth_data)
		return AuthResult(success=False, handled=False)
