"""IMAP IDLE for many mailboxes in one thread: a selectors loop, not a thread per inbox.

:class:`IdleMultiplexer` keeps one IMAP connection per watched folder in IDLE
(RFC 2177) and calls ``on_new_mail(key)`` when the server announces mail
(``* n EXISTS``), and once after every (re)connect, because mail may have
arrived while the folder was not watched. It only signals: fetching, storing
and acknowledging stay with the caller's poll job::

        mux = IdleMultiplexer(on_new_mail=lambda key: print("poll", key))
        mux.watch("support", config, PasswordAuth("secret"), "INBOX")
        while running:
            mux.run_once(timeout=1.0)
        mux.close()

Waiting is multiplexed: every connection in IDLE is a socket registered with
one selector. The few blocking steps (connect, TLS, login, SELECT, IDLE; the
DONE + IDLE that renews a connection) run in a small pool of connector threads,
so a slow or unreachable server never stalls the others. Each connection is
renewed every ``renew_after`` seconds (servers drop IDLE after 30 minutes; the
renewal also proves a silent connection is alive); a lost connection is retried
with exponential back-off and jitter (``backoff_base`` doubling up to
``backoff_max``). An OAuth ``token_provider`` is asked for a token at every
login, from a connector thread.

Keys are any hashable the caller chooses (for example ``(site, queue, folder)``).
"""

from __future__ import annotations

import logging
import queue
import random
import selectors
import socket
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from email_flow_app.channels.auth import Authenticator
from email_flow_app.channels.errors import ChannelError
from email_flow_app.channels.imap import IMAPConfig, IMAPSource, has_new_mail

logger = logging.getLogger(__name__)

RENEW_AFTER = 25 * 60.0  # seconds in IDLE before DONE + IDLE (RFC 2177: servers may cut at 30 min)
BACKOFF_BASE = 1.0  # seconds before the first reconnect
BACKOFF_MAX = 300.0  # the longest wait between reconnects
CONNECTORS = 4  # threads doing the blocking steps (connect, login, renew)

WAITING, BUSY, IDLING = "waiting", "busy", "idling"


@dataclass
class _Slot:
	"""One watched folder and where its connection stands."""

	key: Hashable
	config: IMAPConfig
	auth: Authenticator
	folder: str
	phase: str = WAITING
	source: IMAPSource | None = None
	failures: int = 0
	next_attempt: float = 0.0
	idle_since: float = 0.0
	last_error: str | None = None
	generation: int = 0
	sock: socket.socket | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WatchState:
	"""What :meth:`IdleMultiplexer.states` reports per key."""

	phase: str
	failures: int
	last_error: str | None


def backoff_delay(failures: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
	"""Seconds to wait before reconnect number ``failures`` (1, 2, 4 … ``cap``), with 50-100 % jitter."""
	delay = min(base * 2 ** max(failures - 1, 0), cap)
	return delay * random.uniform(0.5, 1.0)


class IdleMultiplexer:
	"""Holds IMAP IDLE on many folders; call :meth:`run_once` in a loop from one thread."""

	def __init__(
		self,
		on_new_mail: Callable[[Hashable], None],
		*,
		renew_after: float = RENEW_AFTER,
		backoff_base: float = BACKOFF_BASE,
		backoff_max: float = BACKOFF_MAX,
		connectors: int = CONNECTORS,
		clock: Callable[[], float] = time.monotonic,
	) -> None:
		self.on_new_mail = on_new_mail
		self.renew_after = renew_after
		self.backoff_base = backoff_base
		self.backoff_max = backoff_max
		self._clock = clock
		self._slots: dict[Hashable, _Slot] = {}
		self._selector = selectors.DefaultSelector()
		self._pool = ThreadPoolExecutor(max_workers=connectors, thread_name_prefix="imap-idle")
		self._done: queue.SimpleQueue = queue.SimpleQueue()
		self._wake_r, self._wake_w = socket.socketpair()
		self._wake_r.setblocking(False)
		self._wake_w.setblocking(False)
		self._selector.register(self._wake_r, selectors.EVENT_READ, None)
		self._generation = 0

	# -- what to watch -------------------------------------------------------------

	def watch(self, key: Hashable, config: IMAPConfig, auth: Authenticator, folder: str = "INBOX") -> None:
		"""Hold IDLE on ``folder``. Watching a key again with the same server and folder only
		replaces ``auth`` and the TLS context (used at the next login); a different server or
		folder reconnects."""
		slot = self._slots.get(key)
		if slot is not None and slot.config == config and slot.folder == folder:
			slot.auth, slot.config = auth, config
			return
		if slot is not None:
			self.unwatch(key)
		self._slots[key] = _Slot(key, config, auth, folder, next_attempt=self._clock())

	def unwatch(self, key: Hashable) -> None:
		"""Stop watching ``key``; its connection leaves IDLE and logs out in the background."""
		slot = self._slots.pop(key, None)
		if slot is None:
			return
		slot.generation = -1  # a connector still working on it hands back a connection to close
		if slot.phase == IDLING and slot.source is not None:
			self._unregister(slot)
			self._pool.submit(_close, slot.source)
		slot.source = None

	def sync(self, wanted: dict[Hashable, tuple[IMAPConfig, Authenticator, str]]) -> None:
		"""Watch exactly ``wanted`` (key → (config, auth, folder)): start, update and stop watches."""
		for key in [k for k in self._slots if k not in wanted]:
			self.unwatch(key)
		for key, (config, auth, folder) in wanted.items():
			self.watch(key, config, auth, folder)

	def keys(self) -> set[Hashable]:
		return set(self._slots)

	def idling(self) -> set[Hashable]:
		"""The keys whose connection is in IDLE now (or being renewed): mail there is signalled."""
		return {k for k, s in self._slots.items() if s.phase == IDLING or (s.phase == BUSY and s.idle_since)}

	def states(self) -> dict[Hashable, WatchState]:
		return {k: WatchState(s.phase, s.failures, s.last_error) for k, s in self._slots.items()}

	# -- the loop --------------------------------------------------------------------

	def run_once(self, timeout: float = 1.0) -> None:
		"""Start due connects and renewals, wait up to ``timeout`` s for the servers, handle what came."""
		now = self._clock()
		self._start_due(now)
		wait = max(0.0, min(timeout, self._next_deadline() - now))
		for selector_key, _mask in self._selector.select(wait):
			if selector_key.data is None:
				self._drain_wake()
			else:
				self._on_readable(selector_key.data)
		self._collect()

	def run(self, should_stop: Callable[[], bool], tick: float = 1.0) -> None:
		"""``run_once`` until ``should_stop()``; then :meth:`close`."""
		try:
			while not should_stop():
				self.run_once(tick)
		finally:
			self.close()

	def close(self, wait: bool = True) -> None:
		"""Leave IDLE and log out everywhere (in the connector threads), then stop them."""
		for key in list(self._slots):
			self.unwatch(key)
		self._pool.shutdown(wait=wait)
		while not self._done.empty():  # connections opened while we were closing
			_key, _generation, future = self._done.get_nowait()
			if future.exception() is None:
				future.result()[0].abandon()
		self._selector.close()
		self._wake_r.close()
		self._wake_w.close()

	# -- internals ---------------------------------------------------------------------

	def _next_deadline(self) -> float:
		deadlines = [float("inf")]
		for slot in self._slots.values():
			if slot.phase == WAITING:
				deadlines.append(slot.next_attempt)
			elif slot.phase == IDLING:
				deadlines.append(slot.idle_since + self.renew_after)
		return min(deadlines)

	def _start_due(self, now: float) -> None:
		for slot in self._slots.values():
			if slot.phase == WAITING and slot.next_attempt <= now:
				slot.idle_since = 0.0
				self._submit(slot, _open, IMAPSource(slot.config, slot.auth), slot.folder)
			elif slot.phase == IDLING and slot.idle_since + self.renew_after <= now:
				self._renew(slot)

	def _submit(self, slot: _Slot, fn: Callable, *args) -> None:
		self._generation += 1
		slot.generation = generation = self._generation
		slot.phase = BUSY
		future = self._pool.submit(fn, *args)
		future.add_done_callback(lambda f: self._finished(slot.key, generation, f))

	def _finished(self, key: Hashable, generation: int, future: Future) -> None:
		"""In a connector thread: hand the result to the loop and wake it."""
		self._done.put((key, generation, future))
		try:
			self._wake_w.send(b"\0")
		except OSError:  # the buffer is full (the loop will look anyway) or we are closing
			pass

	def _drain_wake(self) -> None:
		try:
			while self._wake_r.recv(4096):
				pass
		except OSError:
			pass

	def _collect(self) -> None:
		while True:
			try:
				key, generation, future = self._done.get_nowait()
			except queue.Empty:
				return
			slot = self._slots.get(key)
			error = future.exception()
			if slot is None or slot.generation != generation:
				if error is None:  # unwatched or re-watched meanwhile: this connection is not wanted
					self._pool.submit(_close, future.result()[0])
				continue
			if error is not None:
				self._failed(slot, error)
				continue
			source, sock, new_mail = future.result()
			reconnected = slot.idle_since == 0.0
			slot.source, slot.sock = source, sock
			slot.phase, slot.failures, slot.last_error = IDLING, 0, None
			slot.idle_since = self._clock()
			self._selector.register(sock, selectors.EVENT_READ, key)
			if new_mail or reconnected:
				self._notify(key)

	def _on_readable(self, key: Hashable) -> None:
		slot = self._slots.get(key)
		if slot is None or slot.phase != IDLING or slot.source is None:
			return
		try:
			responses = slot.source.idle_responses()
		except ChannelError as err:
			self._unregister(slot)
			self._failed(slot, err)
			return
		if has_new_mail(responses):
			self._notify(key)
		if not responses:
			# Readable but nothing to read: the server may have closed the connection.
			# DONE + IDLE tells (and fails into a reconnect if so).
			self._renew(slot)

	def _renew(self, slot: _Slot) -> None:
		sock = slot.sock
		self._unregister(slot)
		self._submit(slot, _renew, slot.source, sock)

	def _failed(self, slot: _Slot, error: BaseException) -> None:
		if slot.source is not None:
			slot.source.abandon()
		slot.source = slot.sock = None
		slot.failures += 1
		slot.phase = WAITING
		slot.idle_since = 0.0
		slot.last_error = str(error) if isinstance(error, ChannelError) else repr(error)
		delay = backoff_delay(slot.failures, self.backoff_base, self.backoff_max)
		slot.next_attempt = self._clock() + delay
		logger.info("IDLE on %s lost (%s); reconnecting in %.1f s", slot.key, slot.last_error, delay)

	def _unregister(self, slot: _Slot) -> None:
		if slot.sock is not None:
			try:
				self._selector.unregister(slot.sock)
			except (KeyError, ValueError):
				pass
		slot.sock = None

	def _notify(self, key: Hashable) -> None:
		try:
			self.on_new_mail(key)
		except Exception:
			logger.exception("on_new_mail(%r) failed", key)


# -- what the connector threads run --------------------------------------------------


def _open(source: IMAPSource, folder: str) -> tuple[IMAPSource, socket.socket, bool]:
	try:
		source.connect()
		sock = source.begin_idle(folder)
		return source, sock, has_new_mail(source.idle_responses())
	except BaseException:
		source.abandon()
		raise


def _renew(source: IMAPSource, sock: socket.socket) -> tuple[IMAPSource, socket.socket, bool]:
	try:
		return source, sock, has_new_mail(source.renew_idle())
	except BaseException:
		source.abandon()
		raise


def _close(source: IMAPSource) -> None:
	try:
		source.end_idle()
	except ChannelError:
		pass
	source.close()
