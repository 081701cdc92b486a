"""Gmail / Google Workspace: App Password presets and OAuth (google-auth).

With an App Password, use :func:`imap_config`/:func:`smtp_config` and
``PasswordAuth(app_password, label="App Password")``. With OAuth, a
:class:`GoogleTokenProvider` holds the refresh token; when Google rotates it,
``on_rotate(new_refresh_token)`` is called and ``refresh_token`` updated, so
the caller can persist it.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from typing import Any

import requests
from google.auth import exceptions as google_exceptions
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials

from email_flow_app.channels.auth import OAuthAuth, PasswordAuth
from email_flow_app.channels.errors import AuthError, ReconnectNeeded, TemporaryError, TLSError
from email_flow_app.channels.imap import IMAPConfig
from email_flow_app.channels.smtp import SMTPConfig

TOKEN_URI = "https://oauth2.googleapis.com/token"
MAIL_SCOPE = "https://mail.google.com/"
IMAP_HOST, IMAP_PORT = "imap.gmail.com", 993
SMTP_HOST, SMTP_SSL_PORT, SMTP_STARTTLS_PORT = "smtp.gmail.com", 465, 587
APP_PASSWORD = "App Password"

# Gmail's special folders (IMAP names); INBOX is plain "INBOX".
FOLDERS = {
	"all": "[Gmail]/All Mail",
	"sent": "[Gmail]/Sent Mail",
	"drafts": "[Gmail]/Drafts",
	"spam": "[Gmail]/Spam",
	"trash": "[Gmail]/Trash",
	"starred": "[Gmail]/Starred",
	"important": "[Gmail]/Important",
}


def imap_config(address: str, host: str = IMAP_HOST, port: int = IMAP_PORT, **kwargs: Any) -> IMAPConfig:
	return IMAPConfig(host, port, "ssl", address, **kwargs)


def smtp_config(address: str, starttls: bool = False, host: str = SMTP_HOST, **kwargs: Any) -> SMTPConfig:
	"""smtp.gmail.com:465 (implicit TLS) or :587 (STARTTLS)."""
	if starttls:
		return SMTPConfig(host, kwargs.pop("port", SMTP_STARTTLS_PORT), "starttls", address, **kwargs)
	return SMTPConfig(host, kwargs.pop("port", SMTP_SSL_PORT), "ssl", address, **kwargs)


def app_password(password: str) -> PasswordAuth:
	"""Google App Passwords are shown with spaces; the server wants them without."""
	return PasswordAuth(password.replace(" ", ""), label=APP_PASSWORD)


class GoogleTokenProvider:
	"""Access tokens from a Google refresh token (``token_uri`` configurable for tests)."""

	def __init__(
		self,
		client_id: str,
		client_secret: str,
		refresh_token: str,
		token_uri: str = TOKEN_URI,
		scopes: tuple[str, ...] = (MAIL_SCOPE,),
		on_rotate: Callable[[str], None] | None = None,
		http_session: requests.Session | None = None,
	) -> None:
		self._credentials = Credentials(
			token=None,
			refresh_token=refresh_token,
			token_uri=token_uri,
			client_id=client_id,
			client_secret=client_secret,
			scopes=list(scopes),
		)
		self.on_rotate = on_rotate
		self._request = Request(session=http_session or requests.Session())
		self._lock = threading.Lock()

	@property
	def refresh_token(self) -> str:
		"""The current refresh token (persist it when ``on_rotate`` fires)."""
		return str(self._credentials.refresh_token)

	@property
	def expiry(self) -> datetime.datetime | None:
		return self._credentials.expiry

	def access_token(self) -> str:
		with self._lock:
			if not self._credentials.valid:
				self._refresh()
			return str(self._credentials.token)

	def force_refresh(self) -> str:
		with self._lock:
			self._refresh()
			return str(self._credentials.token)

	def _refresh(self) -> None:
		before = self._credentials.refresh_token
		try:
			self._credentials.refresh(self._request)
		except google_exceptions.RefreshError as err:
			text = " ".join(str(arg) for arg in err.args)
			if "invalid_grant" in text:
				raise ReconnectNeeded(
					"Google sign-in is no longer valid (the refresh token was revoked or expired): sign in again"
				)
			raise AuthError(f"Authentication failed: Google refused to refresh the token ({err.args[0]})")
		except google_exceptions.TransportError as err:
			if "SSL" in str(err) or "certificate" in str(err):
				raise TLSError(f"TLS failure reaching Google's token service ({err})")
			raise TemporaryError(f"Could not reach Google's token service ({err})")
		after = self._credentials.refresh_token
		if after and after != before and self.on_rotate is not None:
			self.on_rotate(after)

	def as_auth(self) -> OAuthAuth:
		return OAuthAuth(self)
