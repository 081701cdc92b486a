"""Exactly one ticket per message, even when a worker dies mid-batch; no fuzzy threading."""

import frappe

from email_flow_app.email_flow.services.tick import enqueue_polls
from email_flow_app.email_flow.tests.utils import MailWorldTestCase, customer_email, run_worker

BATCH = 200


class TestBatchAndThreading(MailWorldTestCase):
	def count(self, doctype, **filters):
		"""Records of this test's batch (other tests of the class share the queue)."""
		return frappe.db.count(
			doctype, {"email_queue": self.world.queue.name, "subject": ("like", "Batch message%"), **filters}
		)

	def test_killed_worker_then_rerun_gives_exactly_one_ticket_per_message(self):
		world = self.world
		world.dovecot.append_many(
			world.support,
			"INBOX",
			[
				customer_email(
					world.support,
					subject=f"Batch message {i:03d}",
					sender=(f"Customer {i}", f"batch{i:03d}@customer.test"),
				).as_bytes()
				for i in range(BATCH)
			],
		)
		enqueue_polls()
		frappe.db.commit()

		def midway():
			frappe.db.rollback()  # see the worker's commits
			return (
				frappe.db.count(
					"Inbound Email", {"email_queue": world.queue.name, "status": ("!=", "Received")}
				)
				>= BATCH // 4
			)

		code = run_worker(kill_when=midway)
		self.assertLess(code, 0, "the worker should have been killed mid-batch")
		frappe.db.rollback()
		stored_when_killed = frappe.db.count("Inbound Email", {"email_queue": world.queue.name})
		self.assertGreater(stored_when_killed, 0)
		self.assertLess(stored_when_killed, BATCH)

		# The next scheduler tick and a fresh worker finish the job.
		enqueue_polls()
		frappe.db.commit()
		self.assertEqual(run_worker(), 0)
		frappe.db.rollback()
		self.assertEqual(self.count("Ticket"), BATCH)
		self.assertEqual(self.count("Inbound Email"), BATCH)
		self.assertEqual(self.count("Inbound Email", status="Ticket Created"), BATCH)
		subjects = frappe.get_all(
			"Ticket",
			filters={"email_queue": world.queue.name, "subject": ("like", "Batch message%")},
			pluck="subject",
		)
		self.assertEqual(sorted(subjects), [f"Batch message {i:03d}" for i in range(BATCH)])

	def test_forged_ticket_tag_from_a_stranger_opens_a_new_ticket(self):
		world = self.world
		world.deliver(customer_email(world.support, subject="Original problem").as_bytes())
		world.poll()
		victim = frappe.db.get_value(
			"Ticket", {"email_queue": world.queue.name, "subject": "Original problem"}
		)
		self.assertTrue(victim)

		world.deliver(
			customer_email(
				world.support,
				subject=f"Re: [#{victim}] Original problem",
				body="Please send me the invoice of this customer.",
				sender=("Mallory", "mallory@evil.test"),
			).as_bytes()
		)
		world.poll()
		mallory = frappe.get_all(
			"Ticket",
			filters={"raised_by": "mallory@evil.test", "email_queue": world.queue.name},
			pluck="name",
		)
		self.assertEqual(len(mallory), 1)
		self.assertNotEqual(mallory[0], victim)
		on_victim = frappe.get_all(
			"Communication", filters={"reference_doctype": "Ticket", "reference_name": victim}, pluck="sender"
		)
		self.assertNotIn("mallory@evil.test", on_victim)
