"""Push for IMAP: one process holds IDLE for every polled queue of every site (`bench email-flow listen`).

The listener only signals: when a server announces mail, it queues that
queue's poll job (tick.enqueue_poll, deduplicated), so storing,
acknowledging and exactly-once stay in the poll job. It is optional: without
it the per-minute tick polls as before.

Every `refresh` seconds it re-reads, per site, the queues to watch and how to
reach them (queue changes are picked up within that time; OAuth tokens are
fetched or refreshed here, in the thread that owns the Frappe connection) and
writes a heartbeat to the site's Redis cache: the queues whose every folder is
in IDLE now, with a time to live of HEARTBEAT_TTL_FACTOR refreshes. While the
heartbeat names a queue, the tick probes it every RELAXED_MINUTES only; when
the listener dies the heartbeat expires and per-minute polling comes back by
itself. A listener that stops cleanly removes its heartbeat at once.
"""

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import frappe

from email_flow_app.channels.errors import ChannelError
from email_flow_app.channels.idle import IdleMultiplexer
from email_flow_app.channels.imap import IMAPConfig
from email_flow_app.email_flow.services import mailboxes

APP = "email_flow_app"
HEARTBEAT_KEY = "email_flow:listener"
REFRESH_SECONDS = 30
HEARTBEAT_TTL_FACTOR = 3  # the heartbeat outlives two missed refreshes, not three

logger = logging.getLogger(__name__)


def watched_queues() -> set[str]:
	"""The queues of this site whose IDLE a live listener holds now (one cache read)."""
	beat = frappe.cache.get_value(HEARTBEAT_KEY)
	return set(beat["queues"]) if beat else set()


def listener_alive(queue_name: str) -> bool:
	"""Whether a live listener signals new mail of `queue_name` (its per-minute polling is relaxed)."""
	return queue_name in watched_queues()


@contextmanager
def site_context(site: str) -> Iterator[None]:
	frappe.init(site=site)
	try:
		frappe.connect()
		yield
	finally:
		frappe.destroy()


class Listener:
	"""The Frappe side of the IDLE multiplexer: what to watch, where to signal, the heartbeat."""

	def __init__(self, sites: list[str] | None = None, refresh: float = REFRESH_SECONDS) -> None:
		self.only_sites = sites
		self.refresh_every = refresh
		self.mux = IdleMultiplexer(self._on_new_mail)
		self._signalled: set[tuple[str, str, str]] = set()
		self._tokens: dict[tuple[str, str], mailboxes.HandedToken] = {}
		self._next_refresh = 0.0
		self._sites: list[str] = []
		self._current: dict = {}

	# -- the loop ---------------------------------------------------------------------

	def run(self, should_stop: Callable[[], bool]) -> None:
		try:
			while not should_stop():
				if time.monotonic() >= self._next_refresh:
					self.refresh()
				self.mux.run_once(timeout=min(1.0, max(0.0, self._next_refresh - time.monotonic())))
				self.flush()
		finally:
			self.mux.close(wait=False)
			self.clear_heartbeats()

	def _on_new_mail(self, key: tuple[str, str, str]) -> None:
		self._signalled.add(key)

	def flush(self) -> None:
		"""Queue a poll for every queue the servers signalled, one site context per site."""
		if not self._signalled:
			return
		from email_flow_app.email_flow.services.tick import enqueue_poll

		by_site: dict[str, set[str]] = {}
		for site, queue, _folder in self._signalled:
			by_site.setdefault(site, set()).add(queue)
		self._signalled.clear()
		for site, queues in by_site.items():
			try:
				with site_context(site):
					for queue in sorted(queues):
						enqueue_poll(queue)
			except Exception:
				logger.exception("could not queue polls on %s", site)

	# -- what to watch --------------------------------------------------------------

	def sites(self) -> list[str]:
		if self.only_sites:
			return list(self.only_sites)
		from frappe.utils import get_sites

		return get_sites()

	def refresh(self) -> None:
		"""Re-read every site's queues, watch exactly those, write the heartbeats."""
		self._next_refresh = time.monotonic() + self.refresh_every
		wanted: dict = {}
		sites = self.sites()
		for site in sites:
			try:
				with site_context(site):
					if APP not in frappe.get_installed_apps():
						continue
					wanted.update(self._site_watches(site))
					self._write_heartbeat(site)
			except Exception:
				logger.exception("could not read the queues of %s", site)
				# keep watching what we watched there: a database hiccup is no reason to drop IDLE
				wanted.update({k: v for k, v in self._current.items() if k[0] == site})
		self._current = wanted
		self._sites = sites
		self.mux.sync(wanted)

	def _site_watches(self, site: str) -> dict[tuple[str, str, str], tuple[IMAPConfig, object, str]]:
		boxes = mailboxes.polled_queues()
		context = mailboxes.tls_context()
		logins = mailboxes.password_logins(boxes, context)
		watches = {}
		for box in boxes:
			token = self._tokens.get((site, box.name))
			try:
				config, auth = mailboxes.login(
					box, context, logins, refresh=bool(token and token.refresh_wanted)
				)
			except (ChannelError, frappe.ValidationError) as exc:
				logger.info("%s: not watching %s: %s", site, box.name, exc)
				continue
			if isinstance(getattr(auth, "token_provider", None), mailboxes.HandedToken):
				self._tokens[(site, box.name)] = auth.token_provider
			for folder in box.folders:
				watches[(site, box.name, folder.folder)] = (config, auth, folder.folder)
		return watches

	# -- heartbeat ----------------------------------------------------------------------

	def _write_heartbeat(self, site: str) -> None:
		"""Name the queues of `site` whose every folder is in IDLE now."""
		idling = self.mux.idling()
		folders: dict[str, list[bool]] = {}
		for key in self.mux.keys():
			if key[0] == site:
				folders.setdefault(key[1], []).append(key in idling)
		queues = sorted(queue for queue, flags in folders.items() if all(flags))
		frappe.cache.set_value(
			HEARTBEAT_KEY,
			{"pid": os.getpid(), "at": time.time(), "queues": queues},
			expires_in_sec=int(self.refresh_every * HEARTBEAT_TTL_FACTOR) + 1,
		)

	def clear_heartbeats(self) -> None:
		for site in self._sites:
			try:
				with site_context(site):
					frappe.cache.delete_value(HEARTBEAT_KEY)
			except Exception:
				logger.exception("could not clear the heartbeat of %s", site)


def run(sites: list[str] | None = None, refresh: float = REFRESH_SECONDS) -> None:
	"""Listen until SIGTERM or SIGINT (what supervisor and Ctrl-C send)."""
	stopping = []

	def stop(signum, _frame):
		stopping.append(signum)

	signal.signal(signal.SIGTERM, stop)
	signal.signal(signal.SIGINT, stop)
	logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
	Listener(sites, refresh).run(lambda: bool(stopping))
