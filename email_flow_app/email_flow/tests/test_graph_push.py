"""Microsoft Graph change notifications on a real site, served over https, with real workers.

The local Graph server (email_flow_app.testing.graph_server, behind the local
OAuth provider) stands in for Microsoft: it validates a new subscription by
POSTing the handshake to the site's endpoint and POSTs notifications there when
mail arrives, lifecycle events when a test asks. The site is served by Frappe's
WSGI application in its own process, over https with the test CA's certificate
(Graph calls https URLs only); the site's `host_name` names that URL, as an
admin's names the public one. Jobs run in real `bench worker` processes.
"""

import os
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone

import frappe
import requests
from frappe.installer import update_site_config
from frappe.utils import add_to_date, now_datetime
from frappe.utils.background_jobs import get_job, get_queue
from rq.registry import StartedJobRegistry
from rq.utils import utcnow

from email_flow_app.email_flow.services import graph_push, tick
from email_flow_app.email_flow.tests.browser.harness import WebServer
from email_flow_app.email_flow.tests.test_graph_inbox import make_graph_queue
from email_flow_app.email_flow.tests.test_listener import spawn_long_worker, wait_for
from email_flow_app.email_flow.tests.utils import (
	SiteTestCase,
	_kill_tree,
	cleanup,
	customer_email,
	run_worker,
)
from email_flow_app.testing.oauth_provider import OAuthTestProvider
from email_flow_app.testing.tls import TestCA

QUEUE = "Incoming Email Queue"
FOLDER = "Incoming Email Queue Folder"
HANDSHAKE_LIMIT = 3.0  # seconds Graph gives the endpoint (its validation and its notifications)
TICKET_WITHIN = 15.0  # seconds from new mail to its ticket, through a notification
DRAIN_TIMEOUT = 300.0


class TestGraphPush(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.tag = frappe.generate_hash(length=6).lower()
		cls.ca = TestCA()
		cls.oauth = OAuthTestProvider(cls.ca)
		cls.oauth.start()
		cls.graph = cls.oauth.graph
		cls.web = WebServer(
			frappe.local.site,
			frappe.local.sites_path,
			os.path.join(frappe.local.site_path, "logs", "email_flow_graph_push_web.log"),
			tls=cls.ca,
		)
		cls.config = {
			"email_flow_ca_bundle": str(cls.ca.bundle_path),
			"email_flow_o365_authority_host": cls.oauth.base_url,
			"email_flow_graph_base": cls.oauth.graph_base,
			"host_name": cls.web.url,  # https://127.0.0.1:PORT: what Graph is told to call
		}
		cls.set_config(cls.config)
		cls.web.start()
		cls.hook = cls.web.url + graph_push.ENDPOINT
		cls.http = requests.Session()
		cls.http.trust_env = False
		cls.http.verify = str(cls.ca.bundle_path)

	@classmethod
	def tearDownClass(cls):
		cls.web.stop()
		cleanup(cls.tag)
		cls.set_config(dict.fromkeys(cls.config))
		cls.oauth.stop()
		super().tearDownClass()

	@staticmethod
	def set_config(values: dict) -> None:
		"""Site config, as an admin sets it: the web server and workers are separate processes."""
		for key, value in values.items():
			update_site_config(key, value if value is not None else "None")  # "None" removes the key
			if value is None:
				frappe.local.conf.pop(key, None)
			else:
				frappe.local.conf[key] = value

	def setUp(self):
		self.procs: list[subprocess.Popen] = []

	def tearDown(self):
		for proc in self.procs:
			if proc.poll() is None:
				os.killpg(proc.pid, signal.SIGTERM)
				try:
					proc.wait(15)
				except subprocess.TimeoutExpired:
					_kill_tree(proc)

	# -- helpers -----------------------------------------------------------------------

	def make_queue(self, label: str, **values) -> tuple[str, str]:
		"""An Office 365 queue reading `label`'s mailbox through Graph, app-only; (queue, mailbox)."""
		queue, address = make_graph_queue(self.oauth, self.tag, label, app="push-app", **values)
		self.graph.add_mailbox(address)
		return queue, address

	def subscribed_queue(self, label: str, **values) -> tuple[str, str, str]:
		"""A queue subscribed by the scheduler's maintenance and read once; (queue, mailbox, subscription)."""
		queue, address = self.make_queue(label, **values)
		graph_push.maintain_subscriptions()
		self.drain()
		[sub_id] = self.subscription_ids(queue)
		self.assertTrue(sub_id, frappe.db.get_value(QUEUE, queue, "graph_push_error"))
		return queue, address, sub_id

	def subscription_ids(self, queue: str) -> list[str | None]:
		frappe.db.rollback()
		return frappe.get_all(
			FOLDER,
			filters={"parent": queue, "parenttype": QUEUE},
			pluck="graph_subscription_id",
			order_by="idx",
		)

	def server_subscription(self, sub_id: str):
		[sub] = [s for s in self.graph.subscriptions() if s.id == sub_id]
		return sub

	def mail(self, address: str, subject: str) -> bytes:
		return customer_email(address, subject=subject).as_bytes()

	def tickets(self, queue: str, subject: str) -> list[str]:
		return frappe.get_all("Ticket", filters={"email_queue": queue, "subject": subject}, pluck="name")

	def drain(self) -> None:
		"""Real `bench worker --burst` runs until no job of this site is waiting or running.

		The bench's RQ queues are shared by its sites: a worker another test started may
		have taken one of ours, so an empty queue alone does not mean our jobs are done.
		"""
		deadline = time.monotonic() + DRAIN_TIMEOUT
		while True:
			self.assertEqual(run_worker("long"), 0)
			if not self.site_jobs_pending():
				break
			self.assertLess(time.monotonic(), deadline, "jobs of this site still pending")
			time.sleep(0.5)
		frappe.db.rollback()

	@staticmethod
	def site_jobs_pending() -> bool:
		queue = get_queue("long")
		prefix = f"{frappe.local.site}::"
		ids = queue.get_job_ids() + StartedJobRegistry(queue=queue).get_job_ids()
		return any(job_id.startswith(prefix) for job_id in ids)

	@staticmethod
	def poll_queued(queue: str, since: datetime) -> bool:
		"""A poll of `queue` was queued after `since` (rq's UTC clock), whoever ran it since."""
		job = get_job(f"email_flow_poll::{queue}")
		return bool(job and job.enqueued_at and job.enqueued_at >= since)

	def notify(self, items: list[dict]) -> requests.Response:
		"""POST a notification collection to the site as Graph would."""
		return self.http.post(self.hook, json={"value": items}, timeout=10)

	# -- tests ----------------------------------------------------------------------------

	def test_the_handshake_is_answered_with_the_token_as_plain_text_within_3_seconds(self):
		token = "Validation: Testing client application reachability for subscription Request-Id: a+b &c=d"
		started = time.monotonic()
		answer = self.http.post(
			self.hook,
			params={"validationToken": token},
			data=b"",
			headers={"Content-Type": "text/plain; charset=utf-8"},
			timeout=10,
		)
		elapsed = time.monotonic() - started
		print(f"\nhandshake answered in {elapsed * 1000:.0f} ms")
		self.assertEqual(answer.status_code, 200)
		self.assertTrue(answer.headers["Content-Type"].startswith("text/plain"))
		self.assertEqual(answer.text, token)
		self.assertLess(elapsed, HANDSHAKE_LIMIT)

	def test_maintenance_subscribes_every_folder_of_a_graph_queue_with_the_queues_client_state(self):
		queue, address = self.make_queue(
			"folders", folders=[{"folder_name": "INBOX"}, {"folder_name": "Escalations"}]
		)
		escalations = self.graph.add_folder(address, "Escalations")
		handshakes = len(self.graph.deliveries)
		graph_push.maintain_subscriptions()
		ids = self.subscription_ids(queue)
		self.assertEqual(len(ids), 2)
		self.assertTrue(all(ids), frappe.db.get_value(QUEUE, queue, "graph_push_error"))
		secret = graph_push.client_state(queue)
		subs = [self.server_subscription(sub_id) for sub_id in ids]
		self.assertEqual([s.folder_id for s in subs][1], escalations)
		for sub in subs:
			self.assertEqual(sub.mailbox, address)
			self.assertEqual(sub.client_state, secret)
			self.assertEqual((sub.notification_url, sub.lifecycle_url), (self.hook, self.hook))
			self.assertEqual(sub.change_type, "created")
			self.assertGreater(sub.expiration, datetime.now(timezone.utc) + timedelta(days=6))
		# Graph validated our URL (notification and lifecycle) for each: the site echoed every token.
		validations = [d for d in self.graph.deliveries[handshakes:] if "validationToken" in d.payload]
		self.assertEqual([d.status for d in validations], [200] * 4)
		stored = frappe.get_all(
			FOLDER,
			filters={"parent": queue, "parenttype": QUEUE},
			fields=["graph_subscription_expires"],
			order_by="idx",
		)
		for row, sub in zip(stored, subs, strict=True):
			expires = graph_push._from_db(row.graph_subscription_expires)
			self.assertLess(abs((expires - sub.expiration).total_seconds()), 1)

		# The next run only checks them: no new subscription, nothing else.
		graph_push.maintain_subscriptions()
		self.assertEqual(self.subscription_ids(queue), ids)
		self.assertEqual(len([s for s in self.graph.subscriptions() if s.mailbox == address]), 2)

		# A site Microsoft cannot reach over https gets no subscription at all.
		frappe.local.conf.host_name = "http://support.example.test"
		try:
			self.assertIsNone(graph_push.notification_url())
		finally:
			frappe.local.conf.host_name = self.web.url
		self.drain()

	def test_new_mail_becomes_a_ticket_within_seconds_through_a_notification(self):
		queue, address, sub_id = self.subscribed_queue("push")
		# The per-minute tick leaves a queue notifications watch alone (it was read just now) …
		since = utcnow()
		tick.enqueue_polls()
		frappe.db.commit()
		self.assertFalse(self.poll_queued(queue, since))
		# … so only the notification can queue the poll that makes the ticket.
		self.procs.append(spawn_long_worker())
		time.sleep(2)  # the worker is up and waiting
		subject = f"Pushed {frappe.generate_hash(length=6)}"
		started = time.monotonic()
		self.graph.deliver(address, self.mail(address, subject))
		self.assertTrue(wait_for(lambda: self.tickets(queue, subject), 60), "no ticket from the notification")
		elapsed = time.monotonic() - started
		print(f"\nnew mail → notification → ticket in {elapsed:.1f} s")
		self.assertLess(elapsed, TICKET_WITHIN)
		[ticket] = self.tickets(queue, subject)
		self.assertEqual(frappe.db.get_value("Ticket", ticket, "owner"), "Administrator")  # not Guest
		notified = [
			d
			for d in self.graph.deliveries
			if d.payload.get("value", [{}])[0].get("subscriptionId") == sub_id
		]
		self.assertEqual([d.status for d in notified], [202])

	def test_the_tick_reads_a_watched_queue_every_few_minutes_and_every_minute_without_push(self):
		queue, _address, _sub_id = self.subscribed_queue("tick")
		since = utcnow()
		tick.enqueue_polls()
		self.assertFalse(self.poll_queued(queue, since))
		# The safety net: last read more than five minutes ago.
		frappe.db.set_value(QUEUE, queue, "last_poll", add_to_date(now_datetime(), minutes=-6))
		frappe.db.commit()
		tick.enqueue_polls()
		self.assertTrue(self.poll_queued(queue, since))
		self.drain()
		# The subscription lapsed (maintenance did not run): read every minute again.
		frappe.db.set_value(
			FOLDER,
			{"parent": queue, "parenttype": QUEUE},
			"graph_subscription_expires",
			add_to_date(now_datetime(), minutes=-1),
		)
		frappe.db.commit()
		since = utcnow()
		tick.enqueue_polls()
		self.assertTrue(self.poll_queued(queue, since))
		self.drain()

	def test_a_wrong_client_state_or_an_unknown_subscription_queues_nothing(self):
		queue, address, sub_id = self.subscribed_queue("forged")
		since = utcnow()
		item = {
			"subscriptionId": sub_id,
			"subscriptionExpirationDateTime": "2030-01-01T00:00:00.0000000Z",
			"changeType": "created",
			"resource": f"Users/{address}/Messages/AAMk1",
			"resourceData": {"id": "AAMk1"},
			"clientState": "guessed",
			"tenantId": "tenant-id",
		}
		lifecycle = {**item, "lifecycleEvent": "subscriptionRemoved"}
		lifecycle.pop("changeType")
		for forged in (
			item,
			{k: v for k, v in item.items() if k != "clientState"},
			{**item, "subscriptionId": "not-ours", "clientState": graph_push.client_state(queue)},
			lifecycle,
		):
			answer = self.notify([forged])
			self.assertEqual((answer.status_code, answer.text), (202, ""))
		self.assertFalse(self.poll_queued(queue, since))
		self.assertIsNone(get_job(graph_push.lifecycle_job_id(queue, sub_id, "subscriptionRemoved")))
		self.assertTrue(self.server_subscription(sub_id).active())
		self.assertEqual(self.subscription_ids(queue), [sub_id])

		# Not a notification, or too big to be one: refused before any work.
		self.assertEqual(self.http.post(self.hook, data=b"[1, 2]", timeout=10).status_code, 400)
		big = self.http.post(
			self.hook, data=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "text/plain"}, timeout=30
		)
		self.assertEqual(big.status_code, 413)
		self.assertFalse(self.poll_queued(queue, since))

		# The same item with the queue's secret does queue the poll.
		answer = self.notify([{**item, "clientState": graph_push.client_state(queue)}])
		self.assertEqual(answer.status_code, 202)
		self.assertTrue(self.poll_queued(queue, since))
		self.drain()

	def test_subscriptions_are_renewed_before_they_expire_and_replaced_when_gone(self):
		queue, address, first = self.subscribed_queue("renew")

		# Less than a day left: renewed, same subscription, the expiry moved out again.
		soon = add_to_date(now_datetime(), hours=1)
		frappe.db.set_value(FOLDER, {"parent": queue}, "graph_subscription_expires", soon)
		frappe.db.commit()
		server = self.server_subscription(first)
		server.expiration = datetime.now(timezone.utc) + timedelta(hours=1)
		graph_push.maintain_subscriptions()
		self.assertEqual(self.subscription_ids(queue), [first])
		self.assertGreater(server.expiration, datetime.now(timezone.utc) + timedelta(days=6))
		stored = frappe.db.get_value(FOLDER, {"parent": queue}, "graph_subscription_expires")
		self.assertGreater(stored, add_to_date(now_datetime(), days=6))
		self.assertIn(("PATCH", f"/v1.0/subscriptions/{first}"), self.graph.requests)

		# Expired (the scheduler was down for days): Graph has forgotten it, a new one is made.
		self.graph.expire_subscription(first)
		frappe.db.set_value(
			FOLDER, {"parent": queue}, "graph_subscription_expires", add_to_date(now_datetime(), minutes=-5)
		)
		frappe.db.commit()
		since = utcnow()
		graph_push.maintain_subscriptions()
		[second] = self.subscription_ids(queue)
		self.assertNotEqual(second, first)
		self.assertTrue(self.server_subscription(second).active())
		self.assertEqual(self.server_subscription(second).client_state, graph_push.client_state(queue))
		self.assertTrue(self.poll_queued(queue, since))  # mail of the gap is read

		# Gone on the server while our record still says days: the check finds it, a new one is made.
		self.server_subscription(second).removed = True
		graph_push.maintain_subscriptions()
		[third] = self.subscription_ids(queue)
		self.assertNotIn(third, (first, second))
		self.assertTrue(self.server_subscription(third).active())
		self.assertFalse(frappe.db.get_value(QUEUE, queue, "graph_push_error"))
		self.drain()

		# A queue that stops reading through Graph loses its subscriptions.
		frappe.db.set_value(QUEUE, queue, "enabled", 0)
		frappe.db.commit()
		graph_push.maintain_subscriptions()
		self.assertEqual(self.subscription_ids(queue), [None])
		self.assertNotIn(third, [s.id for s in self.graph.subscriptions()])

	def test_subscription_removed_brings_a_new_subscription_and_a_resync(self):
		queue, address, first = self.subscribed_queue("removed")
		# Graph drops the subscription; mail that comes now is announced to nobody …
		self.server_subscription(first).removed = True
		missed = f"While removed {frappe.generate_hash(length=6)}"
		self.graph.deliver(address, self.mail(address, missed))
		self.graph.wait_notified()
		self.assertEqual(self.tickets(queue, missed), [])
		# … then it says so.
		self.graph.send_lifecycle(first, "subscriptionRemoved")
		self.graph.wait_notified()
		self.assertEqual(self.graph.deliveries[-1].status, 202)
		self.drain()  # the lifecycle job, and the poll it queues after subscribing again
		[second] = self.subscription_ids(queue)
		self.assertTrue(second)
		self.assertNotEqual(second, first)
		sub = self.server_subscription(second)
		self.assertTrue(sub.active())
		self.assertEqual(
			(sub.client_state, sub.notification_url), (graph_push.client_state(queue), self.hook)
		)
		self.assertTrue(self.tickets(queue, missed), "the resync did not read the mail of the gap")

		# The new subscription works: the next mail is announced and its poll queued.
		after = f"After {frappe.generate_hash(length=6)}"
		since = utcnow()
		self.graph.deliver(address, self.mail(address, after))
		self.graph.wait_notified()
		self.assertEqual(self.graph.deliveries[-1].status, 202)
		self.assertTrue(self.poll_queued(queue, since))
		self.drain()
		self.assertTrue(self.tickets(queue, after))

	def test_reauthorization_required_is_answered_and_missed_notifications_are_read(self):
		queue, address, sub_id = self.subscribed_queue("lifecycle")
		self.graph.send_lifecycle(sub_id, "reauthorizationRequired")
		self.graph.wait_notified()
		self.assertEqual(self.graph.deliveries[-1].status, 202)
		self.drain()
		self.assertIn(("POST", f"/v1.0/subscriptions/{sub_id}/reauthorize"), self.graph.requests)
		self.assertEqual(self.subscription_ids(queue), [sub_id])

		# Graph could not deliver (our site was down), then says it missed notifications.
		sub = self.server_subscription(sub_id)
		sub.notification_url = "https://127.0.0.1:1/down"
		subject = f"Missed {frappe.generate_hash(length=6)}"
		since = utcnow()
		self.graph.deliver(address, self.mail(address, subject))
		self.graph.wait_notified()
		self.assertIsNone(self.graph.deliveries[-1].status)
		sub.notification_url = self.hook
		self.assertFalse(self.poll_queued(queue, since))
		self.assertEqual(self.tickets(queue, subject), [])
		self.graph.send_lifecycle(sub_id, "missed")
		self.graph.wait_notified()
		self.assertTrue(self.poll_queued(queue, since))
		self.drain()
		self.assertTrue(self.tickets(queue, subject))
		self.assertEqual(self.subscription_ids(queue), [sub_id])
