"""Incoming mail over IMAP (imapclient): fetch new messages by UID, then ack.

The caller's loop, which never loses or duplicates a message::

        with IMAPSource(config, auth) as source:
            run = source.fetch_new("INBOX", state)
            for uid, raw in run:
                store_and_commit(uid, raw)
                save(run.state)  # last UID yielded so far
            source.ack("INBOX", committed_uids, "seen")

``fetch_new`` asks the server for the UIDs above ``state.last_uid`` and fetches
their bodies ``batch_size`` at a time with one ``UID FETCH … BODY.PEEK[]`` per
batch (PEEK: the server does not mark them seen). Only one batch is held in
memory. A folder whose UIDVALIDITY changed raises :class:`UIDValidityChanged`.
A lost connection raises :class:`TemporaryError`; the source reconnects on the
next call, and resuming from ``run.state`` skips nothing.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, LoginError

from email_flow_app.channels.auth import Authenticator, OAuthAuth, PasswordAuth
from email_flow_app.channels.errors import (
	AuthError,
	ChannelError,
	PermanentError,
	TemporaryError,
	TLSError,
	UIDValidityChanged,
	check_setting,
	printable,
)

Security = Literal["ssl", "starttls", "plain"]
AckMode = Literal["seen", "move", "leave"]
DEFAULT_TIMEOUT = 30.0
DEFAULT_BATCH_SIZE = 100
SEEN = b"\\Seen"


@dataclass(frozen=True)
class IMAPConfig:
	"""Where and how to connect. ``plain`` (no TLS) must be chosen explicitly."""

	host: str
	port: int
	security: Security
	username: str
	timeout: float = DEFAULT_TIMEOUT
	ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

	def __post_init__(self) -> None:
		if self.security not in ("ssl", "starttls", "plain"):
			raise ValueError(f"security must be 'ssl', 'starttls' or 'plain', not {self.security!r}")
		check_setting("host", self.host)
		check_setting("user name", self.username)


@dataclass(frozen=True)
class FolderState:
	"""What has been fetched from a folder: resume after ``last_uid`` while UIDVALIDITY holds."""

	folder: str
	uidvalidity: int | None = None
	last_uid: int = 0


@dataclass(frozen=True)
class FolderStatus:
	"""A folder's STATUS (RFC 3501 6.3.10): enough to tell whether new mail may have arrived."""

	folder: str
	uidvalidity: int
	uidnext: int
	messages: int

	def may_have_new(self, state: FolderState | None) -> bool:
		"""True unless every message the folder can hold was fetched into ``state`` already.

		Against a folder never fetched (or renumbered since), any message counts.
		"""
		if state is None or state.uidvalidity != self.uidvalidity:
			return self.messages > 0
		return self.uidnext > state.last_uid + 1


@dataclass(frozen=True)
class FolderInfo:
	"""A folder as the admin UI lists it."""

	name: str
	delimiter: str | None
	flags: tuple[str, ...]
	messages: int | None
	unseen: int | None

	@property
	def selectable(self) -> bool:
		return "\\Noselect" not in self.flags and "\\NonExistent" not in self.flags


def uid_set(uids: Sequence[int]) -> str:
	"""An IMAP sequence set for sorted ``uids``, with runs collapsed: ``1:5,7,9:12``."""
	parts: list[str] = []
	start = prev = None
	for uid in uids:
		if prev is not None and uid == prev + 1:
			prev = uid
			continue
		if start is not None:
			parts.append(str(start) if start == prev else f"{start}:{prev}")
		start = prev = uid
	if start is not None:
		parts.append(str(start) if start == prev else f"{start}:{prev}")
	return ",".join(parts)


class FetchRun(Iterator[tuple[int, bytes]]):
	"""Iterator of ``(uid, raw_bytes)`` in UID order; ``.state`` = resume point so far."""

	def __init__(
		self,
		source: IMAPSource,
		folder: str,
		uidvalidity: int,
		last_uid: int,
		uids: list[int],
		batch_size: int,
	) -> None:
		self._source = source
		self._folder = folder
		self._uidvalidity = uidvalidity
		self._last_uid = last_uid
		self._pending = uids
		self._batch_size = batch_size
		self._buffer: list[tuple[int, bytes]] = []
		self.total = len(uids)

	@property
	def state(self) -> FolderState:
		return FolderState(self._folder, self._uidvalidity, self._last_uid)

	def __iter__(self) -> FetchRun:
		return self

	def __next__(self) -> tuple[int, bytes]:
		while not self._buffer:
			if not self._pending:
				raise StopIteration
			batch, self._pending = self._pending[: self._batch_size], self._pending[self._batch_size :]
			self._buffer = self._source._fetch_bodies(self._folder, self._uidvalidity, batch)
			self._buffer.reverse()  # pop() from the end in UID order
		uid, raw = self._buffer.pop()
		self._last_uid = uid
		return uid, raw


class IMAPSource:
	"""One IMAP account. Connects lazily, reconnects after a lost connection."""

	def __init__(self, config: IMAPConfig, auth: Authenticator) -> None:
		self.config = config
		self.auth = auth
		self._client: IMAPClient | None = None
		self._selected: tuple[str, bool] | None = None

	# -- connection -------------------------------------------------------------

	def __enter__(self) -> IMAPSource:
		self.connect()
		return self

	def __exit__(self, *exc: object) -> None:
		self.close()

	@property
	def _where(self) -> str:
		return f"{self.config.host}:{self.config.port}"

	def connect(self) -> None:
		"""Open the connection and log in (idempotent)."""
		if self._client is not None:
			return
		cfg = self.config
		context = cfg.ssl_context or ssl.create_default_context()
		with self._translate("connecting", connecting=True):
			client = IMAPClient(
				cfg.host, cfg.port, ssl=cfg.security == "ssl", ssl_context=context, timeout=cfg.timeout
			)
			self._client = client
			if cfg.security == "starttls":
				try:
					client.starttls(context)
				except CapabilityError:
					raise TLSError(f"{self._where} does not offer STARTTLS; use SSL or a different port")
		with self._translate("logging in"):
			self._login(client)
		self._selected = None

	def close(self) -> None:
		"""Log out (best effort) and drop the connection."""
		client, self._client = self._client, None
		self._selected = None
		if client is None:
			return
		try:
			client.logout()
		except (imaplib.IMAP4.error, OSError):
			self._shutdown(client)

	@staticmethod
	def _shutdown(client: IMAPClient) -> None:
		try:
			client.shutdown()
		except (imaplib.IMAP4.error, OSError):
			pass

	def _login(self, client: IMAPClient) -> None:
		user = self.config.username
		if isinstance(self.auth, PasswordAuth):
			try:
				client.login(user, self.auth.password)
			except LoginError:
				raise AuthError(
					f"Authentication failed: the {self.auth.label} for {user} was rejected by {self.config.host}"
				)
			return
		if not isinstance(self.auth, OAuthAuth):
			raise TypeError(f"unsupported auth {type(self.auth).__name__}")
		provider = self.auth.token_provider
		try:
			client.oauth2_login(user, provider.access_token())
			return
		except LoginError:
			pass  # the cached token may be expired or revoked server-side: get a fresh one
		try:
			client.oauth2_login(user, provider.force_refresh())
		except LoginError:
			raise AuthError(
				f"Authentication failed: {self.config.host} rejected a freshly issued OAuth token for {user} "
				"(check that the app has IMAP access to this mailbox)"
			)

	def _conn(self) -> IMAPClient:
		self.connect()
		assert self._client is not None
		return self._client

	@contextmanager
	def _translate(self, action: str, connecting: bool = False) -> Iterator[None]:
		"""Turn library/socket errors into channel errors; drop the connection when it is broken."""
		try:
			yield
		except ChannelError:
			if connecting:
				self._drop()
			raise
		except ssl.SSLCertVerificationError as err:
			self._drop()
			raise TLSError(f"TLS failure with {self._where}: certificate not trusted ({err.verify_message})")
		except ssl.SSLError as err:
			self._drop()
			if connecting:
				raise TLSError(f"TLS handshake with {self._where} failed ({err.reason or err})")
			raise TemporaryError(
				f"Connection to {self._where} lost while {action} (TLS: {err.reason or err})"
			)
		except TimeoutError:
			self._drop()
			raise TemporaryError(f"{self._where} timed out while {action} (after {self.config.timeout:g} s)")
		except imaplib.IMAP4.abort as err:
			self._drop()
			if connecting:  # no IMAP greeting: never repeat what another kind of service sent
				raise PermanentError(f"{self._where} did not answer as an IMAP server")
			raise TemporaryError(f"Connection to {self._where} lost while {action} ({_text(err)})")
		except OSError as err:
			self._drop()
			verb = "Could not connect to" if connecting else "Connection lost to"
			raise TemporaryError(f"{verb} {self._where} while {action} ({err.strerror or err})")
		except imaplib.IMAP4.error as err:
			if connecting:
				self._drop()
				raise PermanentError(f"{self._where} did not answer as an IMAP server")
			raise PermanentError(f"{self._where} refused {action}: {_text(err)}")

	def abandon(self) -> None:
		"""Drop the connection at once, without LOGOUT (it may be dead or in IDLE)."""
		self._drop()

	def _drop(self) -> None:
		client, self._client = self._client, None
		self._selected = None
		if client is not None:
			self._shutdown(client)

	def _select(self, folder: str, readonly: bool) -> dict:
		client = self._conn()
		with self._translate(f"opening folder {folder!r}"):
			try:
				info = client.select_folder(folder, readonly=readonly)
			except imaplib.IMAP4.abort:
				raise
			except imaplib.IMAP4.error as err:
				raise PermanentError(f"Folder {folder!r} cannot be opened on {self._where}: {_text(err)}")
		self._selected = (folder, readonly)
		return info

	# -- fetching -----------------------------------------------------------------

	def fetch_new(
		self,
		folder: str,
		state: FolderState | None,
		batch_size: int = DEFAULT_BATCH_SIZE,
		limit: int | None = None,
	) -> FetchRun:
		"""Messages above ``state.last_uid`` (at most ``limit``), fetched ``batch_size`` per round trip.

		Raises :class:`UIDValidityChanged` if the folder was recreated since ``state``.
		"""
		if batch_size < 1:
			raise ValueError("batch_size must be at least 1")
		state = state or FolderState(folder)
		info = self._select(folder, readonly=True)
		uidvalidity = int(info[b"UIDVALIDITY"])
		if state.uidvalidity is not None and state.uidvalidity != uidvalidity:
			raise UIDValidityChanged(folder, state.uidvalidity, uidvalidity)
		last = state.last_uid if state.uidvalidity is not None else 0
		with self._translate(f"searching {folder!r}"):
			uids = sorted(uid for uid in self._conn().search(["UID", f"{last + 1}:*"]) if uid > last)
		if limit is not None:
			uids = uids[:limit]
		return FetchRun(self, folder, uidvalidity, last, uids, batch_size)

	def _fetch_bodies(self, folder: str, uidvalidity: int, uids: list[int]) -> list[tuple[int, bytes]]:
		if self._selected is None or self._selected[0] != folder:
			info = self._select(folder, readonly=True)
			if int(info[b"UIDVALIDITY"]) != uidvalidity:
				raise UIDValidityChanged(folder, uidvalidity, int(info[b"UIDVALIDITY"]))
		with self._translate(f"fetching {len(uids)} messages from {folder!r}"):
			data = self._conn().fetch(uid_set(uids), [b"BODY.PEEK[]"])
		return [(uid, data[uid][b"BODY[]"]) for uid in uids if uid in data and b"BODY[]" in data[uid]]

	# -- acknowledging ------------------------------------------------------------

	def ack(
		self,
		folder: str,
		uids: Sequence[int],
		mode: AckMode,
		move_to: str | None = None,
		uidvalidity: int | None = None,
	) -> None:
		"""After the caller committed ``uids``: mark them seen, move them, or leave them.

		Pass ``uidvalidity`` (from ``FetchRun.state``) to refuse acking a recreated folder.
		"""
		if mode == "leave" or not uids:
			return
		if mode not in ("seen", "move"):
			raise ValueError(f"ack mode must be 'seen', 'move' or 'leave', not {mode!r}")
		if mode == "move" and not move_to:
			raise ValueError("ack mode 'move' needs move_to")
		info = self._select(folder, readonly=False)
		if uidvalidity is not None and int(info[b"UIDVALIDITY"]) != uidvalidity:
			raise UIDValidityChanged(folder, uidvalidity, int(info[b"UIDVALIDITY"]))
		client = self._conn()
		messages = uid_set(sorted(set(uids)))
		with self._translate(f"acknowledging {len(uids)} messages in {folder!r}"):
			if mode == "seen":
				client.add_flags(messages, [SEEN], silent=True)
			elif client.has_capability("MOVE"):
				client.move(messages, move_to)
			else:
				client.copy(messages, move_to)
				client.add_flags(messages, [b"\\Deleted"], silent=True)
				client.uid_expunge(messages) if client.has_capability("UIDPLUS") else client.expunge()

	# -- admin ----------------------------------------------------------------------

	def list_folders(self, with_counts: bool = True) -> list[FolderInfo]:
		"""Every folder, with message/unseen counts when ``with_counts``."""
		client = self._conn()
		with self._translate("listing folders"):
			folders = []
			for flags, delimiter, name in client.list_folders():
				flag_names = tuple(f.decode() if isinstance(f, bytes) else str(f) for f in flags)
				info = FolderInfo(
					name,
					delimiter.decode() if isinstance(delimiter, bytes) else delimiter,
					flag_names,
					None,
					None,
				)
				if with_counts and info.selectable:
					status = client.folder_status(name, [b"MESSAGES", b"UNSEEN"])
					info = FolderInfo(
						name, info.delimiter, flag_names, int(status[b"MESSAGES"]), int(status[b"UNSEEN"])
					)
				folders.append(info)
		return folders

	def status(self, folder: str) -> FolderStatus:
		"""UIDVALIDITY, UIDNEXT and MESSAGES of ``folder`` with one STATUS (no SELECT, no FETCH)."""
		client = self._conn()
		with self._translate(f"checking folder {folder!r}"):
			if self._selected is not None and self._selected[0] == folder:
				# STATUS of the selected folder may show this session's older view (RFC 3501 6.3.10)
				client.close_folder()
				self._selected = None
			try:
				info = client.folder_status(folder, [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"])
			except imaplib.IMAP4.abort:
				raise
			except imaplib.IMAP4.error as err:
				raise PermanentError(f"Folder {folder!r} cannot be checked on {self._where}: {_text(err)}")
		return FolderStatus(folder, int(info[b"UIDVALIDITY"]), int(info[b"UIDNEXT"]), int(info[b"MESSAGES"]))

	def has_new(self, state: FolderState) -> bool:
		"""Whether ``state.folder`` holds mail above ``state.last_uid`` (or was renumbered).

		Cheap when nothing came: one STATUS. Only when UIDNEXT moved past the last
		UID fetched does it SELECT and SEARCH, because the UIDs in between may be
		gone (deleted before they were fetched). Fetches no message.
		"""
		if not self.status(state.folder).may_have_new(state):
			return False
		try:
			return self.fetch_new(state.folder, state, limit=1).total > 0
		except UIDValidityChanged:
			return True

	# -- IDLE, driven by the caller's event loop (channels.idle) -------------------

	def begin_idle(self, folder: str) -> socket.socket:
		"""Select ``folder`` read-only and enter IDLE; returns the socket to wait on for readability.

		Until :meth:`end_idle`, the only calls allowed are :meth:`idle_responses` and
		:meth:`renew_idle`.
		"""
		self._enter_idle(folder)
		return self._conn().socket()

	def _enter_idle(self, folder: str) -> None:
		"""Select ``folder`` read-only and send IDLE (refused clearly where the server has none)."""
		client = self._conn()
		self._select(folder, readonly=True)
		with self._translate(f"waiting for mail in {folder!r}"):
			if not client.has_capability("IDLE"):
				raise PermanentError(f"{self._where} does not support IDLE")
			client.idle()

	def idle_responses(self) -> list[tuple]:
		"""What the server said during IDLE so far, without blocking (parsed untagged responses).

		A server that said BYE raises :class:`TemporaryError`; an empty list after the
		socket was readable may mean the server closed it: :meth:`renew_idle` tells.
		"""
		with self._translate("waiting for mail"):
			responses = self._conn().idle_check(timeout=0)
		if any(r and r[0] == b"BYE" for r in responses):
			self._drop()
			raise TemporaryError(f"{self._where} closed the connection (BYE)")
		return responses

	def renew_idle(self) -> list[tuple]:
		"""End IDLE and start it again (servers drop IDLE after 30 minutes; RFC 2177).

		Also proves the connection is alive. Returns the untagged responses that
		arrived in between.
		"""
		client = self._conn()
		with self._translate("renewing IDLE"):
			_done, responses = client.idle_done()
			client.idle()
			responses = list(responses) + list(client.idle_check(timeout=0))
		return responses

	def end_idle(self) -> None:
		"""Leave IDLE (other commands are allowed again)."""
		with self._translate("ending IDLE"):
			self._conn().idle_done()

	def idle(self, folder: str, timeout: float) -> bool:
		"""Wait up to ``timeout`` seconds for new mail in ``folder`` (IMAP IDLE); True if some arrived."""
		self._enter_idle(folder)
		client = self._conn()
		with self._translate(f"waiting for mail in {folder!r}"):
			try:
				responses = client.idle_check(timeout)
			finally:
				client.idle_done()
		return has_new_mail(responses)


def has_new_mail(responses: Sequence[tuple]) -> bool:
	"""Whether untagged IDLE responses announce new mail (``* n EXISTS`` / ``* n RECENT``)."""
	return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)


def _text(err: BaseException) -> str:
	return printable(err.args[0] if err.args else str(err))
