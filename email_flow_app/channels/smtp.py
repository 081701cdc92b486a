"""Outgoing mail over SMTP (smtplib): one connection reused across a batch.

	with SMTPSink(config, auth) as sink:
		for msg in batch:
			sink.send(msg, from_addr, to_addrs)

Every failure is a channel error: :class:`AuthError`, :class:`RecipientRefused`
(all recipients refused with 5xx), :class:`MessageTooLarge`,
:class:`TemporaryError` (4xx, timeout, connection lost: retry later),
:class:`PermanentError` (other 5xx), :class:`TLSError`. Recipients refused while
others were accepted come back in :attr:`SendResult.refused`: the message was
sent, retry only those.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Literal

from email_flow_app.channels.auth import Authenticator, OAuthAuth, PasswordAuth, xoauth2_string
from email_flow_app.channels.errors import (
	AuthError,
	ChannelError,
	MessageTooLarge,
	PermanentError,
	RecipientRefused,
	TemporaryError,
	TLSError,
	check_setting,
	printable,
)

Security = Literal["ssl", "starttls", "plain"]
DEFAULT_TIMEOUT = 30.0
TOO_LARGE_CODES = (552, 523)


@dataclass(frozen=True)
class SMTPConfig:
	"""Where and how to connect; ``username`` None means no AUTH."""

	host: str
	port: int
	security: Security
	username: str | None = None
	timeout: float = DEFAULT_TIMEOUT
	ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
	local_hostname: str | None = None

	def __post_init__(self) -> None:
		if self.security not in ("ssl", "starttls", "plain"):
			raise ValueError(f"security must be 'ssl', 'starttls' or 'plain', not {self.security!r}")
		check_setting("host", self.host)
		check_setting("user name", self.username)


@dataclass(frozen=True)
class SendResult:
	"""The message was accepted for ``accepted``; ``refused`` were not (address → (code, reply))."""

	accepted: tuple[str, ...]
	refused: dict[str, tuple[int, str]]


def _reply(text: bytes | str) -> str:
	return printable(text)


class SMTPSink:
	"""One SMTP account; the connection is opened lazily and reused."""

	def __init__(self, config: SMTPConfig, auth: Authenticator | None = None) -> None:
		self.config = config
		self.auth = auth
		self._smtp: smtplib.SMTP | None = None
		self._fresh = False
		self.connections_opened = 0

	def __enter__(self) -> SMTPSink:
		self.connect()
		return self

	def __exit__(self, *exc: object) -> None:
		self.close()

	@property
	def _where(self) -> str:
		return f"{self.config.host}:{self.config.port}"

	def connect(self) -> None:
		"""Connect, secure and log in (idempotent)."""
		if self._smtp is not None:
			return
		cfg = self.config
		context = cfg.ssl_context or ssl.create_default_context()
		with self._translate("connecting", connecting=True):
			if cfg.security == "ssl":
				smtp: smtplib.SMTP = smtplib.SMTP_SSL(
					cfg.host,
					cfg.port,
					local_hostname=cfg.local_hostname,
					timeout=cfg.timeout,
					context=context,
				)
			else:
				smtp = smtplib.SMTP(
					cfg.host, cfg.port, local_hostname=cfg.local_hostname, timeout=cfg.timeout
				)
			self._smtp = smtp
			smtp.ehlo()
			if cfg.security == "starttls":
				if not smtp.has_extn("starttls"):
					raise TLSError(f"{self._where} does not offer STARTTLS; use SSL or a different port")
				smtp.starttls(context=context)
				smtp.ehlo()  # capabilities (AUTH) change after STARTTLS
			if cfg.username and self.auth is not None:
				self._login(smtp)
		self._fresh = True
		self.connections_opened += 1

	def close(self) -> None:
		smtp, self._smtp = self._smtp, None
		if smtp is None:
			return
		try:
			smtp.quit()
		except (smtplib.SMTPException, OSError):
			smtp.close()

	def _drop(self) -> None:
		smtp, self._smtp = self._smtp, None
		if smtp is not None:
			smtp.close()

	def _login(self, smtp: smtplib.SMTP) -> None:
		user = self.config.username
		assert user is not None
		if not smtp.has_extn("auth"):
			raise AuthError(f"Authentication failed: {self._where} does not offer AUTH on this connection")
		if isinstance(self.auth, PasswordAuth):
			try:
				smtp.login(user, self.auth.password)
			except smtplib.SMTPAuthenticationError:
				raise AuthError(
					f"Authentication failed: the {self.auth.label} for {user} was rejected by {self.config.host}"
				)
			return
		if not isinstance(self.auth, OAuthAuth):
			raise TypeError(f"unsupported auth {type(self.auth).__name__}")
		provider = self.auth.token_provider
		try:
			self._xoauth2(smtp, user, provider.access_token())
			return
		except smtplib.SMTPAuthenticationError:
			pass  # cached token rejected: try a freshly issued one once
		try:
			self._xoauth2(smtp, user, provider.force_refresh())
		except smtplib.SMTPAuthenticationError:
			raise AuthError(
				f"Authentication failed: {self.config.host} rejected a freshly issued OAuth token for {user} "
				"(check that the app may send as this mailbox)"
			)

	@staticmethod
	def _xoauth2(smtp: smtplib.SMTP, user: str, token: str) -> None:
		def respond(challenge: bytes | None = None) -> str:
			# The first call sends the token; a 334 error challenge is answered with an empty line.
			return xoauth2_string(user, token) if challenge is None else ""

		smtp.auth("XOAUTH2", respond, initial_response_ok=True)

	def _session(self) -> smtplib.SMTP:
		"""The open connection, checked with NOOP when it has been used before."""
		if self._smtp is not None and not self._fresh:
			try:
				code, _ = self._smtp.noop()
				if code != 250:
					raise smtplib.SMTPServerDisconnected("NOOP failed")
			except (smtplib.SMTPException, OSError):
				self._drop()
		self.connect()
		assert self._smtp is not None
		return self._smtp

	def send(self, msg: bytes | EmailMessage, from_addr: str, to_addrs: Sequence[str]) -> SendResult:
		"""Send one message; raises a channel error unless at least one recipient accepted it."""
		data = msg.as_bytes(policy=SMTP_POLICY) if isinstance(msg, EmailMessage) else msg
		recipients = list(to_addrs)
		if not recipients:
			raise ValueError("no recipients")
		smtp = self._session()
		self._fresh = False
		with self._translate("sending"):
			refused = smtp.sendmail(from_addr, recipients, data)
		refused_clean = {addr: (code, _reply(text)) for addr, (code, text) in refused.items()}
		accepted = tuple(addr for addr in recipients if addr not in refused_clean)
		return SendResult(accepted, refused_clean)

	@contextmanager
	def _translate(self, action: str, connecting: bool = False) -> Iterator[None]:
		where = self._where
		try:
			yield
		except ChannelError:
			if connecting:
				self._drop()
			raise
		except smtplib.SMTPRecipientsRefused as err:
			refused = {addr: (code, _reply(text)) for addr, (code, text) in err.recipients.items()}
			detail = "; ".join(f"{addr}: {code} {text}" for addr, (code, text) in refused.items())
			if all(code >= 500 for code, _ in refused.values()):
				raise RecipientRefused(f"{where} refused every recipient: {detail}", refused)
			raise TemporaryError(f"{where} temporarily refused the recipients: {detail}", refused)
		except smtplib.SMTPAuthenticationError as err:
			self._drop()
			raise AuthError(f"Authentication failed at {where}: {err.smtp_code} {_reply(err.smtp_error)}")
		except smtplib.SMTPServerDisconnected as err:
			self._drop()
			raise TemporaryError(f"Connection to {where} lost while {action} ({err or 'disconnected'})")
		except smtplib.SMTPResponseException as err:
			code, text = err.smtp_code, _reply(err.smtp_error)
			if connecting:
				self._drop()
				if not 200 <= code <= 599:  # not an SMTP reply: never repeat another service's bytes
					raise PermanentError(f"{where} did not answer as an SMTP server")
			if code in TOO_LARGE_CODES or "5.3.4" in text:
				raise MessageTooLarge(f"{where} refused the message as too large: {code} {text}")
			if 400 <= code < 500:
				raise TemporaryError(f"{where} answered {code} {text} while {action}: will retry")
			raise PermanentError(f"{where} refused {action}: {code} {text}")
		except smtplib.SMTPNotSupportedError as err:
			self._drop()
			raise PermanentError(f"{where} does not support what {action} needs: {err}")
		except ssl.SSLCertVerificationError as err:
			self._drop()
			raise TLSError(f"TLS failure with {where}: certificate not trusted ({err.verify_message})")
		except ssl.SSLError as err:
			self._drop()
			if connecting:
				raise TLSError(f"TLS handshake with {where} failed ({err.reason or err})")
			raise TemporaryError(f"Connection to {where} lost while {action} (TLS: {err.reason or err})")
		except TimeoutError:
			self._drop()
			raise TemporaryError(f"{where} timed out while {action} (after {self.config.timeout:g} s)")
		except OSError as err:
			self._drop()
			verb = "Could not connect to" if connecting else "Connection lost to"
			raise TemporaryError(f"{verb} {where} while {action} ({err.strerror or err})")
		except smtplib.SMTPException as err:
			self._drop()
			raise PermanentError(f"{where}: {action} failed: {err}")
