"""Routing between queues, queue policies, the acknowledgement and Frappe's own mail."""

import email
import email.policy

import frappe
from frappe.utils import add_days, now_datetime

from email_flow_app.email_flow.tests.utils import (
	CUSTOMER,
	MailWorldTestCase,
	customer_email,
	run_worker,
)


class TestRoutingAndPolicies(MailWorldTestCase):
	extra_inboxes = ("sales",)

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.sales = cls.world.make_queue("Sales", cls.world.address("sales"))
		frappe.db.commit()

	def poll(self):
		self.world.poll()

	def ticket_by_subject(self, subject):
		return frappe.get_all(
			"Ticket", filters={"subject": subject}, fields=["name", "email_queue", "status", "reopened_from"]
		)

	def test_connected_inboxes_are_on_the_block_list(self):
		blocked = frappe.get_all(
			"Email Flow Blocked Address",
			filters={"parenttype": "Email Flow Settings"},
			fields=["email_address", "source"],
		)
		sources = {row.email_address: row.source for row in blocked}
		# The support address came with its Outgoing Channel first, the sales inbox with its queue.
		self.assertEqual(sources.get(self.world.support), "Outgoing Channel")
		self.assertEqual(sources.get(self.world.address("sales")), "Incoming Email Queue")

	def test_one_email_to_two_queues_gives_one_ticket_in_the_first_to_queue(self):
		world = self.world
		raw = customer_email(
			f"{world.address('sales')}, {world.support}", subject="Quote for 40 printers"
		).as_bytes()
		world.deliver(raw, user=world.support)
		world.deliver(raw, user=world.address("sales"))
		self.poll()
		tickets = self.ticket_by_subject("Quote for 40 printers")
		self.assertEqual(len(tickets), 1)
		self.assertEqual(tickets[0].email_queue, self.sales.name)
		records = frappe.get_all(
			"Inbound Email", filters={"subject": "Quote for 40 printers"}, fields=["status", "reason"]
		)
		self.assertEqual(sorted(r.status for r in records), ["Filtered", "Ticket Created"])
		self.assertIn("Duplicate", next(r.reason for r in records if r.status == "Filtered"))

	def test_cc_only_mail_is_filtered_by_default(self):
		world = self.world
		msg = customer_email("someone-else@customer.test", subject="FYI only")
		msg["Cc"] = world.support
		world.deliver(msg.as_bytes())
		self.poll()
		self.assertEqual(self.ticket_by_subject("FYI only"), [])
		reason = frappe.db.get_value("Inbound Email", {"subject": "FYI only"}, "reason")
		self.assertIn("only in Cc", reason)

	def test_reply_to_a_long_closed_ticket_opens_a_linked_new_one(self):
		world = self.world
		first = customer_email(world.support, subject="Old problem")
		world.deliver(first.as_bytes())
		self.poll()
		old = self.ticket_by_subject("Old problem")[0].name
		frappe.db.set_value("Ticket", old, "status", "Closed", update_modified=False)
		frappe.db.sql(
			"update `tabTicket` set modified=%s where name=%s", (add_days(now_datetime(), -60), old)
		)
		frappe.db.commit()
		again = customer_email(
			world.support, subject="Re: Old problem", headers={"In-Reply-To": first["Message-ID"]}
		)
		world.deliver(again.as_bytes())
		self.poll()
		new = self.ticket_by_subject("Re: Old problem")
		self.assertEqual(len(new), 1)
		self.assertEqual(new[0].reopened_from, old)
		self.assertEqual(frappe.db.get_value("Ticket", old, "status"), "Closed")

	def test_reply_to_a_recently_closed_ticket_reopens_it(self):
		world = self.world
		first = customer_email(world.support, subject="Recent problem")
		world.deliver(first.as_bytes())
		self.poll()
		ticket = self.ticket_by_subject("Recent problem")[0].name
		frappe.db.set_value("Ticket", ticket, "status", "Closed")
		frappe.db.commit()
		world.deliver(
			customer_email(
				world.support, subject="Re: Recent problem", headers={"In-Reply-To": first["Message-ID"]}
			).as_bytes()
		)
		self.poll()
		self.assertEqual(frappe.db.get_value("Ticket", ticket, "status"), "Open")
		self.assertEqual(self.ticket_by_subject("Re: Recent problem"), [])

	def test_acknowledgement_once_per_sender_and_never_to_lists(self):
		world = self.world
		frappe.db.set_value("Incoming Email Queue", world.queue.name, "send_acknowledgement", 1)
		frappe.db.commit()
		try:
			world.smtp.reset()
			sender = ("Ann Ack", "ann.ack@customer.test")
			world.deliver(customer_email(world.support, subject="Ack me", sender=sender).as_bytes())
			world.deliver(customer_email(world.support, subject="Ack me again", sender=sender).as_bytes())
			world.deliver(
				customer_email(
					world.support,
					subject="Newsletter",
					sender=("News", "news@lists.customer.test"),
					headers={"List-Id": "<news.lists.customer.test>", "Precedence": "list"},
				).as_bytes()
			)
			self.poll()
			self.assertEqual(run_worker("short"), 0)
			self.assertEqual(len(self.ticket_by_subject("Newsletter")), 1)  # a list mail may be a ticket...
			acks = [
				email.message_from_bytes(m.data, policy=email.policy.default) for m in world.smtp.messages
			]
			self.assertEqual(
				[m["To"].addresses[0].addr_spec for m in acks], [sender[1]]
			)  # ...but is never answered
			self.assertEqual(acks[0]["Auto-Submitted"], "auto-replied")
			ticket = self.ticket_by_subject("Ack me")[0].name
			self.assertIn(f"[#{ticket}]", acks[0]["Subject"])
		finally:
			frappe.db.set_value("Incoming Email Queue", world.queue.name, "send_acknowledgement", 0)
			frappe.db.commit()

	def test_frappe_system_mail_leaves_through_the_default_channel(self):
		world = self.world
		world.smtp.reset()
		frappe.sendmail(
			recipients=[CUSTOMER[1]],
			subject="Password Reset",
			message="Click here to reset your password.",
			now=True,
		)
		self.assertEqual(len(world.smtp.messages), 1)
		sent = email.message_from_bytes(world.smtp.messages[0].data, policy=email.policy.default)
		self.assertEqual(sent["From"].addresses[0].addr_spec, world.support)
		self.assertEqual(sent["Subject"], "Password Reset")
		self.assertEqual(world.smtp.messages[0].login, world.support)

	def test_reply_failures_are_visible_retried_with_backoff_and_never_resent(self):
		from frappe.core.doctype.communication.email import make as make_communication

		world = self.world
		customer = "busy@customer.test"
		ticket = frappe.get_doc(
			{
				"doctype": "Ticket",
				"subject": "Send trouble",
				"email_queue": world.queue.name,
				"raised_by": customer,
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		make_communication(
			doctype="Ticket",
			name=ticket.name,
			content="We are on it.",
			subject="Re: Send trouble",
			recipients=customer,
			communication_medium="Email",
			sent_or_received="Sent",
			send_email=True,
		)
		frappe.db.commit()
		queued = frappe.get_all("Email Queue", filters={"reference_name": ticket.name}, pluck="name")[0]

		def send():
			try:
				frappe.get_doc("Email Queue", queued).send()
			except Exception:
				pass  # Frappe's job runner logs it; what counts is what the records say
			frappe.db.rollback()
			return frappe.db.get_value("Email Queue", queued, ["status", "retry", "send_after"], as_dict=True)

		try:
			world.smtp.reset()
			world.smtp.reply_to_recipient(customer, "450 4.2.1 Mailbox busy, try later")
			row = send()
			self.assertEqual((row.status, row.retry), ("Not Sent", 1))
			self.assertGreater(row.send_after, now_datetime())  # backs off
			channel = frappe.db.get_value(
				"Outgoing Channel", world.channel.name, ["status", "last_error"], as_dict=True
			)
			self.assertEqual(channel.status, "Failing")
			self.assertIn("450", channel.last_error)

			world.smtp.reset()  # the mailbox is free again
			row = send()
			self.assertEqual(row.status, "Sent")
			self.assertEqual([m.rcpt_tos for m in world.smtp.messages], [[customer]])
			self.assertEqual(frappe.db.get_value("Outgoing Channel", world.channel.name, "status"), "Active")
			row = send()  # sending again sends nothing twice
			self.assertEqual(len(world.smtp.messages), 1)
		finally:
			world.smtp.reset()

	def test_filtered_mail_can_be_reprocessed_after_the_admin_changes_the_rule(self):
		from email_flow_app.email_flow.services import settings

		world = self.world
		sender = "blocked.customer@customer.test"
		settings.add_blocked_address(sender, "Manual", f"test {world.tag}")
		frappe.db.commit()
		world.deliver(
			customer_email(world.support, subject="Let me in", sender=("Blocked", sender)).as_bytes()
		)
		self.poll()
		inbound = frappe.get_doc("Inbound Email", {"subject": "Let me in"})
		self.assertEqual(inbound.status, "Filtered")
		self.assertIn("blocked-address", inbound.reason)
		self.assertEqual(self.ticket_by_subject("Let me in"), [])

		frappe.db.delete("Email Flow Blocked Address", {"email_address": sender})
		frappe.db.commit()
		self.assertEqual(inbound.reprocess(), "Ticket Created")
		self.assertEqual(len(self.ticket_by_subject("Let me in")), 1)
		self.assertEqual(frappe.db.get_value("Inbound Email", inbound.name, "attempts"), 2)

	def test_oversize_mail_is_quarantined_when_the_admin_says_so_and_reprocessable(self):
		world = self.world
		settings_doc = frappe.get_single("Email Flow Settings")
		before = (settings_doc.max_attachment_size_mb, settings_doc.oversize_action)
		settings_doc.max_attachment_size_mb = 1
		settings_doc.oversize_action = "Quarantine the message"
		settings_doc.save(ignore_permissions=True)
		frappe.db.commit()
		try:
			big = ("scan.pdf", b"%PDF-1.4\n" + b"0" * (2 * 1024 * 1024))
			world.deliver(customer_email(world.support, subject="Huge scan", attachment=big).as_bytes())
			self.poll()
			inbound = frappe.get_doc("Inbound Email", {"subject": "Huge scan"})
			self.assertEqual(inbound.status, "Filtered")
			self.assertIn("scan.pdf (2 MB)", inbound.reason)
			self.assertEqual(self.ticket_by_subject("Huge scan"), [])

			settings_doc.oversize_action = "Keep the message, drop the attachment"
			settings_doc.save(ignore_permissions=True)
			frappe.db.commit()
			self.assertEqual(inbound.reprocess(), "Ticket Created")
			ticket = self.ticket_by_subject("Huge scan")[0].name
			self.assertEqual(
				frappe.db.count("File", {"attached_to_doctype": "Ticket", "attached_to_name": ticket}), 0
			)
			note = frappe.get_all(
				"Comment", filters={"reference_name": ticket, "comment_type": "Info"}, pluck="content"
			)
			self.assertTrue(any("scan.pdf" in n for n in note), note)
		finally:
			settings_doc.max_attachment_size_mb, settings_doc.oversize_action = before
			settings_doc.save(ignore_permissions=True)
			frappe.db.commit()
