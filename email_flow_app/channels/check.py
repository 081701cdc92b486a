"""Connection tests an admin can read: "Logged in, 3 folders, INBOX has 120 messages"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from email_flow_app.channels.auth import Authenticator
from email_flow_app.channels.errors import ChannelError
from email_flow_app.channels.imap import IMAPConfig, IMAPSource
from email_flow_app.channels.smtp import SMTPConfig, SMTPSink

Kind = Literal["imap", "smtp", "graph", "token"]


@dataclass(frozen=True)
class ConnectionReport:
	ok: bool
	message: str
	details: dict[str, Any] = field(default_factory=dict)


def _failed(err: ChannelError) -> ConnectionReport:
	return ConnectionReport(False, str(err), {"error": type(err).__name__, "retryable": err.retryable})


def check_imap(config: IMAPConfig, auth: Authenticator, folder: str = "INBOX") -> ConnectionReport:
	"""Log in, list folders, count ``folder``'s messages."""
	try:
		with IMAPSource(config, auth) as source:
			folders = source.list_folders()
	except ChannelError as err:
		return _failed(err)
	counts = {f.name: f.messages for f in folders if f.messages is not None}
	if folder not in counts:
		return ConnectionReport(
			False,
			f"Logged in, but folder {folder!r} was not found ({len(folders)} folders)",
			{"folders": list(counts)},
		)
	n = len(folders)
	message = f"Logged in, {n} folder{'s' if n != 1 else ''}, {folder} has {counts[folder]} message{'s' if counts[folder] != 1 else ''}"
	return ConnectionReport(True, message, {"folders": counts})


def check_smtp(config: SMTPConfig, auth: Authenticator | None) -> ConnectionReport:
	"""Connect, secure and log in; sends nothing."""
	try:
		with SMTPSink(config, auth):
			pass
	except ChannelError as err:
		return _failed(err)
	how = "logged in" if config.username and auth else "connected"
	return ConnectionReport(True, f"Connected to {config.host}:{config.port} ({config.security}), {how}", {})


def check_token(token_provider: Any, label: str = "the mailbox") -> ConnectionReport:
	"""Get an access token (O365 app/delegated, Google, Graph); sends nothing."""
	try:
		token_provider.access_token()
	except ChannelError as err:
		return _failed(err)
	return ConnectionReport(True, f"Signed in: got an access token for {label}", {})


def check_connection(kind: Kind, **kwargs: Any) -> ConnectionReport:
	"""Dispatch on ``kind``: "imap" (config, auth, folder), "smtp" (config, auth), "token"/"graph" (token_provider)."""
	if kind == "imap":
		return check_imap(**kwargs)
	if kind == "smtp":
		return check_smtp(**kwargs)
	if kind in ("token", "graph"):
		return check_token(**kwargs)
	raise ValueError(f"unknown channel kind {kind!r}")
