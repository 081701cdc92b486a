"""Exactly once under faults: an operator's bad day, drained by the production path.

2,000+ messages in one inbox behind a TCP proxy that can cut connections or
refuse them (a server outage), drained by scheduler ticks (`enqueue_polls`)
and real forking RQ workers (`bench worker --burst`) that the test SIGKILLs by
PID: during a FETCH, inside the store before its commit, and while filing. Two
connection cuts in the middle of a FETCH, an outage, two workers at once, and
the race of the scheduler's sweep and a poll job filing the same old rows.

Afterwards, for every message: exactly one Inbound Email, at most one Ticket
per Message-ID, nothing seen on the server but not stored, nothing stored but
not acknowledged, no orphan raw file, and the queue healthy again.
"""

import os
import time

import frappe
from frappe.utils import add_to_date, get_files_path, now_datetime

from email_flow_app.email_flow.services.polling import process_pending
from email_flow_app.email_flow.services.tick import enqueue_poll, enqueue_polls
from email_flow_app.email_flow.tests.utils import (
	MailWorld,
	SiteTestCase,
	customer_email,
	run_worker,
	spawn_worker,
)
from email_flow_app.testing.proxy import TCPProxy

MESSAGES = 2000  # at least this many distinct messages
BACKLOG = 400  # new mail before each kill
RESENT = 20  # the same Message-ID delivered a second time (a client that sent twice)
PADDING = ("The printer in room 4 shows error E-42 again after the toner change. " * 110).strip()


class TestExactlyOnceUnderFaults(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = MailWorld(extra_inboxes=("faults",)).start()
		w = cls.world
		cls.inbox = w.address("faults")
		cls.proxy = TCPProxy(("127.0.0.1", w.dovecot.imaps_port))
		cls.proxy.start()
		# The queue reaches Dovecot only through the proxy (port set before the password is bound).
		cls.queue = w.make_queue("Faults", cls.inbox, port=cls.proxy.port, username=cls.inbox)
		frappe.db.commit()

	@classmethod
	def tearDownClass(cls):
		cls.proxy.stop()
		cls.world.stop()
		super().tearDownClass()

	# -- the production path ----------------------------------------------------------

	def tick(self):
		"""What the scheduler does every minute; back-off waits are skipped (time passes)."""
		frappe.db.set_value(
			"Incoming Email Queue", self.queue.name, "next_poll_after", None, update_modified=False
		)
		frappe.db.commit()
		enqueue_polls()
		frappe.db.commit()

	def worker(self, kill_when=None) -> int:
		code = run_worker(kill_when=kill_when, timeout=600)
		frappe.db.rollback()
		return code

	def rows(self, **filters) -> int:
		frappe.db.rollback()
		return frappe.db.count("Inbound Email", {"email_queue": self.queue.name, **filters})

	def raw_files_on_disk(self) -> set[str]:
		folder = get_files_path(is_private=1)
		return {
			f"/private/files/{n}" for n in os.listdir(folder) if n.startswith("INB-") and n.endswith(".eml")
		}

	def orphans(self) -> set[str]:
		"""Raw files on disk that no File row names (other than those there before this test)."""
		frappe.db.rollback()
		on_disk = self.raw_files_on_disk()
		known = set(
			frappe.get_all("File", filters={"attached_to_doctype": "Inbound Email"}, pluck="file_url")
		)
		return on_disk - known - self.orphans_before

	def deliver(self, count: int) -> None:
		"""`count` new customer mails (about 8 KB each) at the end of the inbox."""
		first = self.sent
		mails = [
			customer_email(
				self.inbox,
				subject=f"Fault message {i:04d}",
				body=f"Message {i}.\n\n" + PADDING,
				sender=(f"Customer {i}", f"fault{i:04d}@customer.test"),
			)
			for i in range(first, first + count)
		]
		self.world.dovecot.append_many(self.inbox, "INBOX", [m.as_bytes() for m in mails])
		self.mails.extend(mails)
		self.sent += count

	def kill_until(self, predicate, attempts: int = 6, landed=lambda: True) -> int:
		"""Run a worker and SIGKILL it the moment `predicate` holds (and `landed()` confirms where).

		A worker that drained its backlog before the fault point came, or whose
		kill landed elsewhere, gets new mail and is run again: every fault is
		really reached.
		"""
		for attempt in range(attempts):
			if attempt:
				self.deliver(BACKLOG // 2)
			self.tick()
			code = self.worker(kill_when=predicate)
			if code < 0 and landed():
				return code
		self.fail("the fault point was never reached")

	# -- the day ------------------------------------------------------------------------

	def test_a_bad_day_loses_nothing_and_duplicates_nothing(self):
		w, proxy = self.world, self.proxy
		self.mails, self.sent = [], 0
		self.orphans_before = set()
		self.orphans_before = self.orphans()
		faults = []

		# 1. SIGKILL during a FETCH: bytes flow from the server, nothing new committed since.
		# (A slower line than loopback, so that the FETCH lasts long enough to be hit.)
		proxy.throttle = 2_000_000
		self.deliver(BACKLOG)
		watch = {"rows": self.rows(), "bytes": proxy.carried}

		def mid_fetch():
			rows = self.rows()
			if rows != watch["rows"]:
				watch.update(rows=rows, bytes=proxy.carried)
				return False
			return proxy.carried - watch["bytes"] > 200_000

		# Landed in the FETCH, not in the store that follows it: no raw file left behind.
		faults.append(("SIGKILL during FETCH", self.kill_until(mid_fetch, landed=lambda: not self.orphans())))
		proxy.throttle = None

		# 2. SIGKILL inside the store, before its commit: raw files written, rows not committed.
		self.deliver(BACKLOG)
		folder = get_files_path(is_private=1)

		def raw_file_surplus() -> int:
			on_disk = sum(1 for n in os.listdir(folder) if n.startswith("INB-") and n.endswith(".eml"))
			frappe.db.rollback()
			return on_disk - frappe.db.count("File", {"attached_to_doctype": "Inbound Email"})

		surplus = raw_file_surplus()

		def in_store():
			return raw_file_surplus() > surplus

		faults.append(("SIGKILL inside store before commit", self.kill_until(in_store)))
		left_by_store = self.orphans()
		self.assertTrue(left_by_store, "the kill was meant to leave written-but-uncommitted files")

		# 3. SIGKILL while filing: some of a stored batch filed, some still Received.
		self.deliver(BACKLOG)
		filed_before = self.rows(status=("!=", "Received"))

		def filing():
			return (
				self.rows(status=("!=", "Received")) > filed_before + 10 and self.rows(status="Received") > 0
			)

		faults.append(("SIGKILL while filing", self.kill_until(filing)))
		self.assertGreater(self.rows(status="Received"), 0)

		# 4. The race: those Received rows are old now (a worker came back late), and the
		# scheduler's sweep and a poll job file them at the same time.
		frappe.db.sql(
			"UPDATE `tabInbound Email` SET `creation` = %s WHERE `email_queue` = %s AND `status` = 'Received'",
			(add_to_date(now_datetime(), minutes=-10), self.queue.name),
		)
		frappe.db.commit()
		enqueue_poll(self.queue.name)  # the job files this queue's Received rows first ...
		frappe.db.commit()
		waiting = self.rows(status="Received")
		racing = spawn_worker()
		while racing.poll() is None and self.rows(status="Received") == waiting:
			time.sleep(0.02)  # ... and once it has begun, the next tick's sweep files old rows too
		swept = 0
		while racing.poll() is None:
			swept += process_pending()
			frappe.db.commit()
		self.assertEqual(racing.returncode, 0)
		faults.append(("sweep and poll job on the same old rows", f"sweep filed {swept}"))

		# 5. More mail, the same Message-ID twice among it, then two cuts in the middle of a FETCH.
		self.deliver(max(MESSAGES - self.sent, BACKLOG))
		resent = [self.mails[i * 50] for i in range(RESENT)]  # a client that sent the same mail twice
		w.dovecot.append_many(self.inbox, "INBOX", [m.as_bytes() for m in resent])
		total = self.sent + RESENT
		for n in range(2):
			proxy.cut_after(150_000)
			cuts = proxy.cuts
			self.tick()
			self.assertEqual(self.worker(), 0)
			faults.append((f"connection cut {n + 1} mid-FETCH", f"cut={proxy.cuts > cuts}"))
		proxy.cut_after(None)

		# 6. The server is down for a while.
		proxy.refusing = True
		self.tick()
		self.assertEqual(self.worker(), 0)
		frappe.db.rollback()
		down = frappe.db.get_value(
			"Incoming Email Queue", self.queue.name, ["status", "last_error"], as_dict=True
		)
		self.assertEqual(down.status, "Failing")
		self.assertTrue(down.last_error)
		faults.append(("server outage", down.last_error[:60]))
		proxy.refusing = False

		# 7. Two workers on the same tick.
		self.tick()
		first = spawn_worker()
		self.tick()  # the first job may be running: the tick queues another one
		second = spawn_worker()
		self.assertEqual((first.wait(600), second.wait(600)), (0, 0))
		faults.append(("two workers at once", "both exited 0"))

		# 8. Then an ordinary day: ticks until the inbox is drained.
		for _ in range(10):
			self.tick()
			self.assertEqual(self.worker(), 0)
			if self.rows() == total and self.rows(status="Received") == 0 and self.rows(acknowledged=0) == 0:
				break

		# -- the accounting ----------------------------------------------------------------
		frappe.db.rollback()
		client = w.dovecot.client(self.inbox)
		try:
			client.select_folder("INBOX", readonly=True)
			server = client.fetch(client.search("ALL"), ["FLAGS"])
		finally:
			client.logout()
		uidvalidity = str(w.dovecot.uidvalidity(self.inbox, "INBOX"))
		rows = frappe.get_all(
			"Inbound Email",
			filters={"email_queue": self.queue.name},
			fields=["uid", "uidvalidity", "status", "message_id", "acknowledged", "ticket"],
			limit=0,
		)
		by_uid = {}
		for row in rows:
			by_uid.setdefault(row.uid, []).append(row)
		seen_uids = {uid for uid, data in server.items() if b"\\Seen" in data[b"FLAGS"]}
		tickets = frappe.get_all(
			"Ticket",
			filters={"email_queue": self.queue.name},
			fields=["message_id", "count(*) as n"],
			group_by="message_id",
			limit=0,
		)
		table = {
			"messages on the server": len(server),
			"Inbound Emails": len(rows),
			"UIDs with exactly one Inbound Email": sum(1 for uid in server if len(by_uid.get(uid, [])) == 1),
			"UIDs with none": sum(1 for uid in server if not by_uid.get(uid)),
			"UIDs with more than one": sum(1 for uid in server if len(by_uid.get(uid, [])) > 1),
			"Ticket Created": sum(1 for r in rows if r.status == "Ticket Created"),
			"Filtered (duplicate Message-ID)": sum(1 for r in rows if r.status == "Filtered"),
			"other statuses": sum(1 for r in rows if r.status not in ("Ticket Created", "Filtered")),
			"Tickets": sum(t.n for t in tickets),
			"Message-IDs with more than one Ticket": sum(1 for t in tickets if t.n > 1),
			"seen on the server, not stored": len(seen_uids - set(by_uid)),
			"stored, not acknowledged (server)": len(set(by_uid) - seen_uids),
			"stored, not acknowledged (row)": sum(1 for r in rows if not r.acknowledged),
			"orphan raw files": len(self.orphans()),
		}
		print("\nfaults:", *(f"  {name}: {result}" for name, result in faults), sep="\n")
		print("accounting:", *(f"  {k}: {v}" for k, v in table.items()), sep="\n")

		self.assertEqual(len(server), total)
		self.assertTrue(all(r.uidvalidity == uidvalidity for r in rows))
		self.assertEqual(table["UIDs with exactly one Inbound Email"], total)
		self.assertEqual(table["Inbound Emails"], total)
		self.assertEqual(table["Message-IDs with more than one Ticket"], 0)
		self.assertGreaterEqual(self.sent, MESSAGES)
		self.assertEqual(table["Tickets"], self.sent)
		self.assertEqual(table["Ticket Created"], self.sent)
		self.assertEqual(table["Filtered (duplicate Message-ID)"], RESENT)
		self.assertEqual(table["seen on the server, not stored"], 0)
		self.assertEqual(table["stored, not acknowledged (server)"], 0)
		self.assertEqual(table["stored, not acknowledged (row)"], 0)
		self.assertEqual(table["orphan raw files"], 0)
		health = frappe.db.get_value(
			"Incoming Email Queue", self.queue.name, ["status", "last_error", "failure_count"], as_dict=True
		)
		self.assertEqual((health.status, health.last_error, health.failure_count), ("Active", None, 0))
