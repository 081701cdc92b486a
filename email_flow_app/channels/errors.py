"""The errors every channel raises, so callers can decide what to do next.

``str(err)`` is written for an admin (it names the server and the cause, never
a secret). The class tells the caller what to do::

	ChannelError                 anything a channel reports
	├── AuthError                credentials rejected: fix them
	│   └── ReconnectNeeded      OAuth grant gone (refresh token revoked or
	│                            expired, no signed-in account): sign in again
	├── TLSError                 certificate or TLS handshake failure: fix the
	│                            server name, port or trust store
	├── TemporaryError           retry later: 4xx replies, timeouts, lost
	│                            connections, provider 429/5xx
	├── PermanentError           retrying will not help (5xx replies, bad
	│   │                        folder, malformed request)
	│   ├── RecipientRefused     every recipient refused permanently
	│   └── MessageTooLarge      the server's size limit
	└── UIDValidityChanged       the folder was recreated: its UIDs mean
	                             something else now; re-sync deliberately
"""

from __future__ import annotations


class ChannelError(Exception):
	"""Base of every channel error; ``str()`` is admin-readable."""

	retryable = False


class AuthError(ChannelError):
	"""The server or provider rejected the credentials (password, App Password, token)."""


class ReconnectNeeded(AuthError):
	"""The OAuth grant is gone (refresh token revoked/expired): an admin must sign in again."""


class TLSError(ChannelError):
	"""Certificate verification or the TLS handshake failed."""


class TemporaryError(ChannelError):
	"""Worth retrying later: 4xx reply, timeout, connection lost, throttling.

	``refused`` maps recipient → (code, reply) when SMTP recipients were refused with 4xx.
	"""

	retryable = True

	def __init__(self, message: str, refused: dict[str, tuple[int, str]] | None = None) -> None:
		super().__init__(message)
		self.refused = refused or {}


class PermanentError(ChannelError):
	"""Retrying the same request will fail again (5xx reply, missing folder, bad request)."""


class RecipientRefused(PermanentError):
	"""Every recipient was refused permanently; ``refused`` maps address → (code, reply)."""

	def __init__(self, message: str, refused: dict[str, tuple[int, str]]) -> None:
		super().__init__(message)
		self.refused = refused


class MessageTooLarge(PermanentError):
	"""The message exceeds the server's size limit."""


class UIDValidityChanged(ChannelError):
	"""The folder's UIDVALIDITY changed: stored UIDs no longer identify messages."""

	def __init__(self, folder: str, old: int, new: int) -> None:
		super().__init__(
			f"Folder {folder!r} was recreated on the server (UIDVALIDITY {old} → {new}); "
			"its messages must be re-synchronised deliberately"
		)
		self.folder = folder
		self.old = old
		self.new = new


FORBIDDEN_IN_SETTINGS = ("\r", "\n", "\0", " ", "\t")


def check_setting(label: str, value: str | None) -> None:
	"""Host names and user names go into protocol lines: refuse line breaks, NUL and spaces."""
	if value and any(ch in value for ch in FORBIDDEN_IN_SETTINGS):
		raise PermanentError(f"The {label} must not contain spaces, tabs, line breaks or NUL characters")


def printable(text: bytes | str, limit: int = 200) -> str:
	"""A server's reply as shown to an admin: printable ASCII only, at most ``limit`` characters."""
	if isinstance(text, bytes):
		text = text.decode("ascii", errors="replace")
	cleaned = "".join(ch if " " <= ch <= "~" else "?" for ch in str(text)).strip()
	return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
