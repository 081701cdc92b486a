"""Push and cheap polling on a real site: `bench email-flow listen`, a real worker, a real Dovecot.

The listener runs as the bench command (a subprocess), with a short refresh so
its heartbeat lives seconds, not minutes; a real `bench worker` runs the poll
jobs it queues.
"""

import os
import signal
import subprocess
import sys
import time
from unittest.mock import call, patch

import frappe

from email_flow_app.email_flow.services import listener, tick
from email_flow_app.email_flow.tests.utils import (
	SUPPORT_PASSWORD,
	MailWorldTestCase,
	SiteTestCase,
	_kill_tree,
	customer_email,
	run_worker,
	spawn_worker,
)

REFRESH = 1.0  # the listener's refresh: heartbeat TTL is three of these
TICKET_WAIT = 30.0


def spawn_listener() -> subprocess.Popen:
	command = [
		sys.executable,
		"-m",
		"frappe.utils.bench_helper",
		"frappe",
		"email-flow",
		"listen",
		"--only-site",
		frappe.local.site,
		"--refresh",
		str(REFRESH),
	]
	log = open(os.path.join(frappe.local.site_path, "logs", "email_flow_test_listener.log"), "ab")
	with log:
		return subprocess.Popen(
			command, cwd=frappe.local.sites_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
		)


def spawn_long_worker() -> subprocess.Popen:
	"""A real `bench worker` that keeps running (not --burst), like production."""
	command = [sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "worker", "--queue", "long"]
	log = open(os.path.join(frappe.local.site_path, "logs", "email_flow_test_worker.log"), "ab")
	with log:
		return subprocess.Popen(
			command, cwd=frappe.local.sites_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
		)


def wait_for(condition, timeout: float = TICKET_WAIT) -> bool:
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		frappe.db.rollback()  # a fresh snapshot: other processes commit
		frappe.local.cache = {}
		if condition():
			return True
		time.sleep(0.2)
	return False


class TestListener(MailWorldTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		# Plain IMAP on 127.0.0.1: the listener and the workers need no CA from the shared
		# site config, which test runs on the same site set and clear for themselves.
		queue = cls.world.queue
		queue.security, queue.port, queue.password = "Plain", cls.world.dovecot.imap_port, SUPPORT_PASSWORD
		queue.save(ignore_permissions=True)
		frappe.db.commit()

	def setUp(self):
		self.procs: list[subprocess.Popen] = []

	def tearDown(self):
		for proc in self.procs:
			if proc.poll() is None:
				os.killpg(proc.pid, signal.SIGTERM)  # a clean stop (supervisor's): the heartbeat goes at once
				try:
					proc.wait(15)
				except subprocess.TimeoutExpired:
					_kill_tree(proc)
		self.assertFalse(listener.listener_alive(self.world.queue.name))

	def start(self, spawn) -> subprocess.Popen:
		proc = spawn()
		self.procs.append(proc)
		return proc

	def tickets(self, subject: str) -> list[str]:
		return frappe.get_all(
			"Ticket", filters={"email_queue": self.world.queue.name, "subject": subject}, pluck="name"
		)

	def deliver(self, subject: str) -> None:
		self.world.deliver(customer_email(self.world.support, subject=subject).as_bytes())

	def wait_watched(self) -> None:
		name = self.world.queue.name
		self.assertTrue(
			wait_for(lambda: listener.listener_alive(name)), "the listener never watched the queue"
		)

	def test_appended_message_becomes_a_ticket_with_listener_and_worker(self):
		self.world.poll()  # the queue is healthy and up to date
		self.start(spawn_long_worker)
		self.start(spawn_listener)
		self.wait_watched()
		subject = f"Push {frappe.generate_hash(length=6)}"
		started = time.monotonic()
		self.deliver(subject)
		# No scheduler runs here: only the listener can have queued the poll.
		self.assertTrue(wait_for(lambda: self.tickets(subject)), "no ticket from the pushed message")
		self.assertLess(time.monotonic() - started, 15)

	def test_listener_reconnects_after_dovecot_restarts(self):
		self.world.poll()
		self.start(spawn_long_worker)
		self.start(spawn_listener)
		self.wait_watched()
		port = self.world.dovecot.imaps_port
		self.world.dovecot.halt()
		# Its queue leaves the heartbeat while the server is down (per-minute polling takes over) …
		name = self.world.queue.name
		self.assertTrue(wait_for(lambda: not listener.listener_alive(name), 15))
		self.world.dovecot.resume()
		self.assertEqual(self.world.dovecot.imaps_port, port)
		# … and comes back once the listener reconnected.
		self.wait_watched()
		subject = f"After restart {frappe.generate_hash(length=6)}"
		self.deliver(subject)
		self.assertTrue(wait_for(lambda: self.tickets(subject)), "no ticket after the restart")

	def test_per_minute_polling_relaxes_while_listener_lives_and_resumes_when_killed(self):
		self.world.poll()
		name = self.world.queue.name
		proc = self.start(spawn_listener)
		self.wait_watched()

		tick.enqueue_polls()  # probes once: the safety net's clock starts
		first = frappe.cache.get_value(tick.PROBE_STATE)[name]["at"]
		time.sleep(1.1)
		tick.enqueue_polls()  # watched by a live listener: not probed again within RELAXED_MINUTES
		self.assertEqual(frappe.cache.get_value(tick.PROBE_STATE)[name]["at"], first)

		os.killpg(proc.pid, signal.SIGKILL)  # no goodbye: the heartbeat must expire by itself
		proc.wait()
		self.assertTrue(wait_for(lambda: not listener.listener_alive(name), 4 * REFRESH + 5))

		subject = f"After the listener {frappe.generate_hash(length=6)}"
		self.deliver(subject)
		tick.enqueue_polls()  # the next minute's tick probes it again and queues its poll
		frappe.db.commit()
		self.assertGreater(frappe.cache.get_value(tick.PROBE_STATE)[name]["at"], first)
		self.assertEqual(run_worker("long"), 0)
		frappe.db.rollback()
		self.assertTrue(self.tickets(subject))

	def test_idle_tick_queues_no_poll_job_and_one_where_mail_came(self):
		self.world.poll()
		name = self.world.queue.name
		with patch.object(tick, "enqueue_poll", wraps=tick.enqueue_poll) as queued:
			tick.enqueue_polls()
			self.assertNotIn(call(name), queued.call_args_list)  # idle: probed, no job

			subject = f"Tick {frappe.generate_hash(length=6)}"
			self.deliver(subject)
			tick.enqueue_polls()
			self.assertIn(call(name), queued.call_args_list)
		self.assertGreater(frappe.cache.get_value(tick.PROBE_STATE)[name]["at"], 0)
		frappe.db.commit()
		self.assertEqual(run_worker("long"), 0)
		frappe.db.rollback()
		self.assertTrue(self.tickets(subject))

	def test_mail_signalled_while_a_poll_runs_is_fetched_before_that_poll_stops(self):
		"""Two workers: the listener's job for new mail finds the queue's poll running.

		The running poll had already looked at the server; the second job asks it to
		look once more (and waits for its lock), so the new mail does not wait for
		the next safety-net probe.
		"""
		from email_flow_app.email_flow.services import polling

		self.world.poll()  # healthy, up to date
		name = self.world.queue.name
		late = f"Late {frappe.generate_hash(length=6)}"
		second: list[subprocess.Popen] = []
		real_poll = polling._poll

		def first_pass_then_new_mail(queue_name, run):
			real_poll(queue_name, run)
			if second:
				return
			# This pass has fetched; now mail comes and the listener queues a poll,
			# which a second worker picks up while this one still holds the lock.
			self.deliver(late)
			tick.enqueue_poll(name)
			frappe.db.commit()
			second.append(spawn_worker("long"))
			self.assertTrue(
				wait_for_cache(lambda: tick.poll_again_asked(name)),
				"the second job never asked the running poll to look again",
			)

		with patch.object(polling, "_poll", side_effect=first_pass_then_new_mail):
			run = polling.poll_queue(name)
		frappe.db.commit()
		self.assertIsNone(run["error"])
		frappe.db.rollback()
		# Filed by the running poll's extra pass, before it released the queue.
		self.assertEqual(len(self.tickets(late)), 1)
		self.assertEqual(second[0].wait(timeout=120), 0)
		frappe.db.rollback()
		self.assertEqual(len(self.tickets(late)), 1)  # the second job found nothing more
		self.assertFalse(tick.poll_again_asked(name))


def wait_for_cache(condition, timeout: float = TICKET_WAIT) -> bool:
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if condition():
			return True
		time.sleep(0.1)
	return False


class TestTickClock(SiteTestCase):
	def test_the_ticks_clock_is_the_sites_time_in_its_time_zone(self):
		"""The tick reads the time zone as one value (no System Settings document to load)."""
		from frappe.utils import now_datetime

		before = frappe.db.get_single_value("System Settings", "time_zone")
		try:
			for zone in ("America/New_York", "Asia/Tokyo"):
				frappe.db.set_single_value("System Settings", "time_zone", zone)
				frappe.clear_cache()
				frappe.local.system_settings = frappe.get_cached_doc("System Settings")
				self.assertLess(abs((tick.site_now() - now_datetime()).total_seconds()), 2, zone)
		finally:
			frappe.db.set_single_value("System Settings", "time_zone", before)
			frappe.clear_cache()
			if hasattr(frappe.local, "system_settings"):
				del frappe.local.system_settings
