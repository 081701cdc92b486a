"""What a manager does from the admin screens, on a real site with real Dovecot:
"Create ticket anyway" and "Unblock sender and reprocess" on a Filtered Inbound Email,
Poll Now's recorded outcome, the escaped text preview; and what a plain agent may not.
"""

import frappe
from frappe.utils import now_datetime

from email_flow_app.email_flow.services import channel_admin, inbound_review, settings
from email_flow_app.email_flow.services.ingest import process_inbound, release_locks
from email_flow_app.email_flow.services.polling import poll_queue
from email_flow_app.email_flow.services.store import store_inbound
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import MailWorldTestCase, customer_email, run_worker

INBOUND = "Inbound Email"
BLOCKED = "Email Flow Blocked Address"


class TestAdminScreens(MailWorldTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		tag = cls.world.tag
		cls.customer = f"carla-{tag}@customer.test"
		cls.manager = make_user(f"ef-admin-manager-{tag}@example.test", ["Support Manager"])
		cls.agent = make_user(f"ef-admin-agent-{tag}@example.test", ["Support Agent"])
		frappe.db.commit()
		cls.count = 0

	@classmethod
	def tearDownClass(cls):
		frappe.set_user("Administrator")
		frappe.db.rollback()
		frappe.db.delete(BLOCKED, {"email_address": ("like", f"%{cls.world.tag}%")})
		for user in (cls.manager, cls.agent):
			frappe.delete_doc("User", user, force=True, ignore_permissions=True)
		frappe.db.commit()
		super().tearDownClass()

	def tearDown(self):
		frappe.set_user("Administrator")

	# -- helpers --------------------------------------------------------------------------

	def store(self, msg) -> str:
		"""Store a raw message in the world's queue and process it, as the webhook does."""
		type(self).count += 1
		name, _created = store_inbound(
			queue=self.world.queue.name, raw=msg.as_bytes(), key=f"test:{self.world.tag}:{self.count}"
		)
		frappe.db.commit()
		process_inbound(name)
		frappe.db.commit()
		release_locks()
		return name

	def inbound(self, name: str):
		frappe.db.rollback()
		return frappe.get_doc(INBOUND, name)

	def mail(self, subject: str, **kwargs):
		return customer_email(
			self.world.support,
			subject=f"{subject} {self.world.tag}",
			sender=("Carla", self.customer),
			**kwargs,
		)

	# -- create ticket anyway ------------------------------------------------------------------

	def test_create_ticket_anyway_files_an_auto_reply_once_and_notes_who_forced_it(self):
		name = self.store(self.mail("Out of office", headers={"Auto-Submitted": "auto-replied"}))
		doc = self.inbound(name)
		self.assertEqual(doc.status, "Filtered")
		self.assertIn("auto-submitted", doc.reason)

		frappe.set_user(self.manager)
		answer = self.inbound(name).create_ticket_anyway()
		self.assertEqual(answer["status"], "Ticket Created")
		doc = self.inbound(name)
		self.assertEqual(doc.status, "Ticket Created")
		self.assertEqual(doc.ticket, answer["ticket"])
		self.assertEqual(doc.thread_rule, "forced")
		self.assertIn("although it was filtered", doc.reason)
		self.assertIn("auto-submitted", doc.reason)  # the old verdict is kept in the note
		self.assertEqual(frappe.db.get_value("Ticket", doc.ticket, "raised_by"), self.customer)
		notes = frappe.get_all(
			"Comment",
			filters={"reference_doctype": "Ticket", "reference_name": doc.ticket, "comment_type": "Info"},
			pluck="content",
		)
		self.assertTrue(any("although it was filtered" in note and name in note for note in notes), notes)

		# Once a ticket, never again: the button is refused (and no second ticket exists).
		with self.assertRaises(frappe.ValidationError):
			self.inbound(name).create_ticket_anyway()
		self.assertEqual(frappe.db.count("Ticket", {"message_id": doc.message_id}), 1)

	def test_create_ticket_anyway_refuses_a_duplicate_message_id_that_is_already_a_ticket(self):
		msg = self.mail("Printer again")
		first = self.store(msg)
		second = self.store(msg)  # the same message a second time (e.g. sent to two inboxes)
		self.assertEqual(self.inbound(first).status, "Ticket Created")
		duplicate = self.inbound(second)
		self.assertEqual(duplicate.status, "Filtered")
		self.assertEqual(duplicate.thread_rule, "duplicate")

		frappe.set_user(self.manager)
		with self.assertRaises(frappe.ValidationError) as refused:
			self.inbound(second).create_ticket_anyway()
		self.assertIn(self.inbound(first).ticket, str(refused.exception))
		self.assertIn("one ticket only", str(refused.exception))
		self.assertEqual(self.inbound(second).status, "Filtered")
		self.assertEqual(frappe.db.count("Ticket", {"message_id": duplicate.message_id}), 1)

	# -- unblock sender and reprocess ------------------------------------------------------------

	def test_unblock_sender_and_reprocess_takes_the_sender_off_the_list_and_files_it(self):
		settings.add_blocked_address(self.customer, "Manual", f"test {self.world.tag}")
		frappe.db.commit()
		name = self.store(self.mail("Blocked by mistake"))
		self.assertEqual(self.inbound(name).status, "Filtered")
		self.assertIn("blocked-address", self.inbound(name).reason)

		frappe.set_user(self.manager)
		answer = self.inbound(name).unblock_sender_and_reprocess()
		self.assertEqual(answer["unblocked"], [self.customer])
		self.assertEqual(answer["status"], "Ticket Created")
		frappe.db.rollback()
		self.assertNotIn(self.customer, settings.blocked_addresses())
		self.assertFalse(frappe.db.exists(BLOCKED, {"email_address": self.customer}))
		self.assertEqual(self.inbound(name).status, "Ticket Created")

	def test_unblock_refuses_our_own_inbox_and_keeps_it_blocked(self):
		own = self.world.support
		name = self.store(customer_email(own, subject=f"Loop {self.world.tag}", sender=("Support", own)))
		self.assertEqual(self.inbound(name).status, "Filtered")
		self.assertIn(own, settings.blocked_addresses())

		frappe.set_user(self.manager)
		with self.assertRaises(frappe.ValidationError) as refused:
			self.inbound(name).unblock_sender_and_reprocess()
		self.assertIn("own inboxes", str(refused.exception))
		frappe.db.rollback()
		self.assertIn(own, settings.blocked_addresses())
		self.assertEqual(self.inbound(name).status, "Filtered")

	# -- who may ----------------------------------------------------------------------------

	def test_a_plain_agent_may_do_none_of_it(self):
		name = self.store(self.mail("Agent tries", headers={"Auto-Submitted": "auto-replied"}))
		doc = self.inbound(name)
		queue = frappe.get_doc("Incoming Email Queue", self.world.queue.name)
		frappe.set_user(self.agent)
		for call in (
			doc.create_ticket_anyway,
			doc.unblock_sender_and_reprocess,
			doc.body_preview,
			doc.reprocess,
			queue.poll_now,
			lambda: queue.poll_outcome(str(now_datetime())),
		):
			with self.assertRaises(frappe.PermissionError):
				call()
		frappe.set_user("Administrator")
		self.assertEqual(self.inbound(name).status, "Filtered")

	# -- preview ------------------------------------------------------------------------------

	def test_preview_is_the_escaped_text_body_cut_to_a_sane_length(self):
		hostile = '<script>alert("x")</script> & <img src="https://tracker.example/p.gif">'
		name = self.store(self.mail("Hostile body", body=f"Hello,\n{hostile}\nCarla"))
		frappe.set_user(self.manager)
		preview = self.inbound(name).body_preview()
		self.assertTrue(preview["ok"])
		self.assertFalse(preview["truncated"])
		self.assertIn("&lt;script&gt;", preview["html"])
		self.assertIn("&amp;", preview["html"])
		self.assertNotIn("<script", preview["html"])
		self.assertNotIn("<img", preview["html"])

		# An HTML-only mail shows its text, never its markup; a long one is cut.
		msg = self.mail("HTML only")
		long_text = "word " * 3000
		msg.set_content(
			f"<p>Hi <b>there</b></p><p>{long_text}</p><img src='https://tracker.example/q.gif'>",
			subtype="html",
		)
		preview = self.inbound(self.store(msg)).body_preview()
		self.assertTrue(preview["truncated"])
		self.assertLessEqual(len(preview["html"]), inbound_review.PREVIEW_CHARS + 1)
		self.assertTrue(preview["html"].endswith("…"))
		self.assertIn("Hi there", preview["html"])
		self.assertNotIn("<", preview["html"])

	# -- Poll Now --------------------------------------------------------------------------------

	def test_poll_outcome_is_recorded_and_returned_newer_than_the_click(self):
		queue = self.world.queue.name
		clicked = str(now_datetime())
		self.assertEqual(channel_admin.poll_outcome(queue, clicked), {"done": False})
		self.world.deliver(self.mail("Polled now").as_bytes())
		self.world.deliver(self.mail("Polled too").as_bytes())
		run = poll_queue(queue)
		self.assertEqual(run["stored"], 2)
		frappe.set_user(self.manager)
		outcome = frappe.get_doc("Incoming Email Queue", queue).poll_outcome(clicked)
		self.assertTrue(outcome["done"])
		self.assertTrue(outcome["ok"])
		self.assertEqual((outcome["stored"], outcome["tickets"]), (2, 2))
		self.assertEqual(outcome["message"], "2 new messages, 2 new tickets")
		# A click after that run waits for the next one.
		self.assertEqual(channel_admin.poll_outcome(queue, str(now_datetime())), {"done": False})

	def test_poll_now_files_mail_as_the_system_not_as_the_manager_who_clicked(self):
		queue = self.world.queue.name
		message = self.mail("Clicked in")
		self.world.deliver(message.as_bytes())
		frappe.set_user(self.manager)
		frappe.get_doc("Incoming Email Queue", queue).poll_now()
		frappe.set_user("Administrator")
		frappe.db.commit()
		self.assertEqual(run_worker("long"), 0)
		frappe.db.rollback()
		owners = frappe.get_all(
			"Ticket", filters={"email_queue": queue, "subject": message["Subject"]}, pluck="owner"
		)
		self.assertEqual(owners, ["Administrator"])

	def test_poll_outcome_reports_the_error(self):
		frappe.set_user("Administrator")
		broken = self.world.make_queue(
			"Broken", self.world.address("broken"), password="wrong-password", username="nobody"
		)
		frappe.db.commit()
		clicked = str(now_datetime())
		poll_queue(broken.name)
		outcome = channel_admin.poll_outcome(broken.name, clicked)
		self.assertTrue(outcome["done"])
		self.assertFalse(outcome["ok"])
		self.assertTrue(outcome["error"])
		self.assertIn("Error:", outcome["message"])
		self.assertIn("0 new messages", outcome["message"])
