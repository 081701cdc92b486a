"""An Office 365 queue read through Microsoft Graph, on a real site with real workers.

The local Graph server (email_flow_app.testing.graph_server, behind the local
OAuth provider) stands in for graph.microsoft.com and login.microsoftonline.com,
reached the way an admin would point a site at them: site config
`email_flow_o365_authority_host` and `email_flow_graph_base`. msal signs in
app-only with the queue's client secret. Polls run as in production: the
scheduler's tick (`enqueue_polls`), then `bench worker --burst`, SIGKILLed by
PID where a test says so.
"""

import time

import frappe
from frappe.installer import update_site_config
from frappe.utils import get_datetime, now_datetime

from email_flow_app.email_flow.services import channel_admin
from email_flow_app.email_flow.services.tick import enqueue_polls
from email_flow_app.email_flow.tests.utils import SiteTestCase, cleanup, customer_email, run_worker
from email_flow_app.testing.oauth_provider import OAuthTestProvider
from email_flow_app.testing.tls import TestCA

TENANT = "contoso"
CLIENT_SECRET = "graph-app-secret"
MANY = 1500  # messages over several delta pages (page size 100)
KILLED = 600  # messages drained across SIGKILLed workers
THROTTLED = 300  # messages read through a storm of 429s
INBOUND = "Inbound Email"
QUEUE = "Incoming Email Queue"


class TestGraphInbox(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.tag = frappe.generate_hash(length=6).lower()
		cls.ca = TestCA()
		cls.oauth = OAuthTestProvider(cls.ca)
		cls.oauth.start()
		cls.graph = cls.oauth.graph
		cls.config = {
			"email_flow_ca_bundle": str(cls.ca.bundle_path),
			"email_flow_o365_authority_host": cls.oauth.base_url,
			"email_flow_graph_base": cls.oauth.graph_base,
		}
		cls.set_config(cls.config)

	@classmethod
	def tearDownClass(cls):
		cleanup(cls.tag)
		cls.set_config(dict.fromkeys((*cls.config, "email_flow_graph_max_wait")))
		cls.oauth.stop()
		super().tearDownClass()

	@staticmethod
	def set_config(values: dict) -> None:
		"""Site config, as an admin sets it: workers are separate processes."""
		for key, value in values.items():
			update_site_config(key, value if value is not None else "None")  # "None" removes the key
			if value is None:
				frappe.local.conf.pop(key, None)
			else:
				frappe.local.conf[key] = value

	# -- helpers -----------------------------------------------------------------------

	def make_queue(self, label: str, **values) -> tuple[str, str]:
		"""An Office 365 queue reading `label`'s mailbox through Graph; (queue name, mailbox)."""
		return make_graph_queue(self.oauth, self.tag, label, **values)

	def deliver(self, address: str, count: int, start: int = 0) -> list[str]:
		"""`count` customer mails (distinct senders) into the mailbox; their Graph ids."""
		raws = [
			customer_email(
				address,
				subject=f"Graph message {i:04d}",
				body=f"Message {i}.",
				sender=(f"Customer {i}", f"graph{i:04d}-{self.tag}@customer.test"),
			).as_bytes()
			for i in range(start, start + count)
		]
		return self.graph.deliver_many(address, raws)

	def tick(self) -> None:
		enqueue_polls()
		frappe.db.commit()

	def worker(self, kill_when=None) -> int:
		code = run_worker(kill_when=kill_when, timeout=900)
		frappe.db.rollback()
		return code

	def poll(self) -> None:
		self.tick()
		self.assertEqual(self.worker(), 0)

	def count(self, queue: str, **filters) -> int:
		frappe.db.rollback()
		return frappe.db.count(INBOUND, {"email_queue": queue, **filters})

	def assert_exactly_once(self, queue: str, address: str, ids: list[str]) -> None:
		"""One Inbound Email and one Ticket per message, every one acknowledged and read on the server."""
		rows = frappe.get_all(
			INBOUND, filters={"email_queue": queue}, fields=["graph_id", "status", "acknowledged", "ticket"]
		)
		self.assertEqual(len(rows), len(ids))
		self.assertEqual(sorted(r.graph_id for r in rows), sorted(ids))
		self.assertEqual({r.status for r in rows}, {"Ticket Created"})
		self.assertTrue(all(r.acknowledged for r in rows))
		self.assertEqual(len({r.ticket for r in rows}), len(ids))
		self.assertEqual(frappe.db.count("Ticket", {"email_queue": queue}), len(ids))
		unread = [m.id for m in self.graph.messages(address) if not m.is_read]
		self.assertEqual(unread, [])

	def requests_for(self, address: str) -> int:
		"""Graph requests made so far for `address`'s mailbox."""
		return sum(1 for _method, path in self.graph.requests if f"/users/{address}/" in path)

	def folder_state(self, queue: str) -> frappe._dict:
		return frappe.get_all(
			"Incoming Email Queue Folder",
			filters={"parent": queue, "parenttype": QUEUE},
			fields=["folder_name", "delta_link", "next_link"],
		)[0]

	# -- tests ----------------------------------------------------------------------------

	def test_1500_messages_over_delta_pages_become_1500_tickets_each_once(self):
		queue, address = self.make_queue("many")
		ids = self.deliver(address, MANY)
		started = time.monotonic()
		self.poll()
		elapsed = time.monotonic() - started
		print(f"\n{MANY} Graph messages stored and filed in {elapsed:.1f} s (one worker)")
		self.assert_exactly_once(queue, address, ids)
		state = self.folder_state(queue)
		self.assertTrue(state.delta_link)
		self.assertFalse(state.next_link)
		pages = sum(1 for method, path in self.graph.requests if path.endswith("/messages/delta"))
		self.assertGreaterEqual(pages, MANY // 100)

		# The next round reads only what arrived since; nothing is filed twice.
		more = self.deliver(address, 3, start=MANY)
		self.poll()
		self.assert_exactly_once(queue, address, ids + more)

	def test_a_message_another_client_marked_read_is_still_ingested(self):
		queue, address = self.make_queue("read")
		first = self.deliver(address, 2)
		self.graph.mark_read(address, first[0])  # Outlook on the agent's phone opened it
		raw = customer_email(address, subject="Read before we saw it").as_bytes()
		first.append(self.graph.deliver(address, raw, is_read=True))
		self.poll()
		self.assert_exactly_once(queue, address, first)
		self.assertIn(
			"Read before we saw it", frappe.get_all("Ticket", {"email_queue": queue}, pluck="subject")
		)

	def test_sigkilled_workers_mid_batch_leave_exactly_one_ticket_per_message(self):
		queue, address = self.make_queue("killed")
		ids = self.deliver(address, KILLED)
		kills = []

		# 1. Killed while storing / filing the third page (two pages committed).
		self.tick()
		kills.append(self.worker(kill_when=lambda: self.count(queue) >= 200))
		self.assertLess(kills[-1], 0)
		stored_after_first = self.count(queue)
		self.assertLess(stored_after_first, KILLED)

		# 2. Killed between a page's commit and its acknowledgement, if the kill lands there
		#    (filed rows not yet acknowledged): the next run acknowledges them first.
		def filed_not_acknowledged():
			return self.count(queue, acknowledged=0, status=("!=", "Received")) > 0 and (
				self.count(queue) > stored_after_first
			)

		self.tick()
		kills.append(self.worker(kill_when=filed_not_acknowledged))

		# 3. Then runs until drained.
		for _attempt in range(3):
			self.poll()
			if self.count(queue) == KILLED and not self.count(queue, acknowledged=0):
				break
		print(f"\nworkers killed with {kills}; {KILLED} messages drained")
		self.assert_exactly_once(queue, address, ids)
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value(QUEUE, queue, "status"), "Active")

	def test_a_storm_of_429s_backs_the_queue_off_and_loses_nothing(self):
		self.set_config({"email_flow_graph_max_wait": 2})  # a job sleeps Retry-After up to 2 s
		queue, address = self.make_queue("throttled")
		ids = self.deliver(address, THROTTLED)
		# Short waits are slept (three 429s on one MIME download); a long one ends the run
		# after the first page was committed.
		self.graph.throttle(429, retry_after=1, times=3, path_contains=ids[50])
		self.graph.throttle(429, retry_after=4, times=1, path_contains=ids[150])
		self.poll()
		frappe.db.rollback()
		health = frappe.db.get_value(
			QUEUE, queue, ["status", "last_error", "next_poll_after", "failure_count"], as_dict=True
		)
		self.assertIn("throttling", health.last_error)
		self.assertGreater(get_datetime(health.next_poll_after), now_datetime())
		self.assertEqual(health.status, "Active")  # throttling is no outage: nobody is notified
		stored = self.count(queue)
		self.assertEqual(stored, 100)  # the first page, committed with its delta state
		self.assertTrue(self.folder_state(queue).next_link)

		# The tick leaves the queue alone until Retry-After has passed.
		requests = self.requests_for(address)
		self.poll()
		self.assertEqual(self.requests_for(address), requests)
		self.assertEqual(self.count(queue), stored)

		time.sleep(max(0.0, (get_datetime(health.next_poll_after) - now_datetime()).total_seconds()) + 0.5)
		self.poll()
		self.assertEqual(self.graph.early_retries, 0)  # never came back before Retry-After
		self.assert_exactly_once(queue, address, ids)
		frappe.db.rollback()
		self.assertFalse(frappe.db.get_value(QUEUE, queue, "last_error"))
		self.set_config({"email_flow_graph_max_wait": None})

	def test_an_expired_delta_link_starts_a_full_round_that_files_nothing_twice(self):
		queue, address = self.make_queue("expired", after_import="Leave on server")
		ids = self.deliver(address, 5)
		self.poll()
		self.graph.expire_delta_links()  # Graph forgot the sync state: the stored link answers 410
		ids += self.deliver(address, 2, start=5)
		self.poll()
		frappe.db.rollback()
		rows = frappe.get_all(INBOUND, filters={"email_queue": queue}, fields=["graph_id", "status"])
		self.assertEqual(sorted(r.graph_id for r in rows), sorted(ids))
		self.assertEqual({r.status for r in rows}, {"Ticket Created"})
		self.assertEqual(frappe.db.count("Ticket", {"email_queue": queue}), 7)
		self.assertTrue(all(not m.is_read for m in self.graph.messages(address)))  # left as they were
		notes = frappe.get_all(
			"Comment", filters={"reference_doctype": QUEUE, "reference_name": queue}, pluck="content"
		)
		self.assertTrue(any("read again from the start" in note for note in notes))

	def test_move_to_a_named_folder_after_import_and_test_connection(self):
		queue, address = self.make_queue("moved", after_import="Move to folder", move_to_folder="Processed")
		processed = self.graph.add_folder(address, "Processed")
		check = channel_admin.check_incoming(frappe.get_doc(QUEUE, queue))
		self.assertTrue(check["ok"], check)
		ids = self.deliver(address, 3)
		self.poll()
		frappe.db.rollback()
		self.assertEqual(self.graph.messages(address), [])
		self.assertEqual(sorted(m.id for m in self.graph.messages(address, processed)), sorted(ids))
		self.assertEqual(self.count(queue, acknowledged=1), 3)
		# Moved mail is not "new" in the inbox again: the next round is empty.
		self.poll()
		self.assertEqual(self.count(queue), 3)

	def test_reading_through_graph_needs_oauth(self):
		doc = frappe.get_doc(
			{
				"doctype": QUEUE,
				"queue_name": f"password {self.tag}",
				"channel_type": "Office 365",
				"o365_read_via": "Microsoft Graph",
				"email_address": f"password-{self.tag}@contoso.example.test",
				"auth_method": "Password",
				"password": "secret",
			}
		)
		self.assertRaises(frappe.ValidationError, doc.insert, ignore_permissions=True)


def make_graph_queue(oauth, tag: str, label: str, app: str = "graph-app", **values) -> tuple[str, str]:
	"""An Office 365 queue reading `label`'s mailbox through Graph, app-only; (queue name, mailbox).

	An app registration per queue: Graph throttles per app, and so does the local server.
	"""
	address = f"{label}-{tag}@contoso.example.test"
	client_id = f"{app}-{label}-{tag}"
	oauth.register_client(client_id, CLIENT_SECRET, app_mailbox=f"{client_id}@apps.example.test")
	queue = frappe.get_doc(
		{
			"doctype": QUEUE,
			"queue_name": f"{label} {tag}",
			"channel_type": "Office 365",
			"o365_read_via": "Microsoft Graph",
			"email_address": address,
			"auth_method": "OAuth",
			"o365_tenant": TENANT,
			"o365_client_id": client_id,
			"o365_client_secret": CLIENT_SECRET,
			"o365_mode": "App only",
			**values,
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()
	return queue.name, address
