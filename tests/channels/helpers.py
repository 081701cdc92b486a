"""Message factories and small helpers for the channel tests."""

from __future__ import annotations

from email_flow_app.channels.imap import IMAPConfig
from email_flow_app.testing.dovecot import DovecotServer


def make_message(n: int, body_size: int = 200) -> bytes:
	body = (f"Message number {n}. " * (body_size // 20 + 1))[:body_size]
	return (
		f"From: customer{n}@example.org\r\nTo: support@example.test\r\n"
		f"Subject: Ticket {n}\r\nMessage-ID: <m{n}@example.org>\r\n"
		f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
	).encode()


def subject_number(raw: bytes) -> int:
	for line in raw.split(b"\r\n"):
		if line.startswith(b"Subject: Ticket "):
			return int(line.split()[-1])
	raise AssertionError(f"no subject in {raw[:200]!r}")


def imap_config(dovecot: DovecotServer, user: str, security: str = "ssl", **kwargs) -> IMAPConfig:
	port = dovecot.imaps_port if security == "ssl" else dovecot.imap_port
	kwargs.setdefault("ssl_context", dovecot.ca.client_context())
	kwargs.setdefault("timeout", 10.0)
	return IMAPConfig(dovecot.host, port, security, user, **kwargs)


class StaticTokens:
	"""A token provider handing out fixed tokens (wrong-token tests)."""

	def __init__(self, *tokens: str) -> None:
		self.tokens = list(tokens)
		self.calls = 0

	def access_token(self) -> str:
		self.calls += 1
		return self.tokens[0]

	def force_refresh(self) -> str:
		self.calls += 1
		return self.tokens[-1]
