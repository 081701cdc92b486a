"""A plain Support Agent works a ticket in the Desk: list, open, reply, comment, assign, close, download.

Real headless Chromium, logged in as a user whose only role is Support Agent.
The ticket comes in through the forwarding webhook (the real ingest path);
the reply leaves through Frappe's Email Queue and the Outgoing Channel to the
test SMTP server. Every HTTP answer of 403 and every error dialog is counted:
there must be none.
"""

import email
import email.policy

import frappe
from frappe.utils.password import update_password
from playwright.sync_api import expect

from email_flow_app.email_flow.tests.browser.harness import UIWorld
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import (
	CUSTOMER,
	SiteTestCase,
	cleanup,
	customer_email,
	run_worker,
)

AGENT_PASSWORD = "Agent-pw-1!"
PDF = b"%PDF-1.4\n% the customer's invoice\n"


class TestPlainAgentWorksATicket(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = w = UIWorld({"support": "support-pw"})
		try:
			w.start()
			cls.agent = make_user(f"ef-ui-agent-{w.tag}@example.test", ["Support Agent"])
			frappe.db.set_value("User", cls.agent, {"first_name": "Alex", "last_name": "Agent"})
			update_password(cls.agent, AGENT_PASSWORD)
			cls.channel = frappe.get_doc(
				{
					"doctype": "Outgoing Channel",
					"channel_name": f"Support out {w.tag}",
					"channel_type": "SMTP",
					"from_name": "Acme Support",
					"from_address": w.address("support"),
					"host": "127.0.0.1",
					"port": w.smtp.port,
					"security": "STARTTLS",
					"username": w.address("support"),
					"password": "support-pw",
				}
			).insert(ignore_permissions=True)
			cls.queue = frappe.get_doc(
				{
					"doctype": "Incoming Email Queue",
					"queue_name": f"Support {w.tag}",
					"color": "#2f9e44",
					"channel_type": "Forwarding",
					"email_address": w.address("support"),
					"creation_address": w.address("support"),
					"outgoing_channel": cls.channel.name,
				}
			).insert(ignore_permissions=True)
			frappe.db.commit()
			mail = customer_email(
				w.address("support"), subject=f"Invoice question {w.tag}", attachment=("invoice.pdf", PDF)
			)
			cls.ticket = w.forward(cls.queue.name, mail.as_bytes())
			frappe.db.rollback()
		except BaseException:
			w.stop()
			raise

	@classmethod
	def tearDownClass(cls):
		w = cls.world
		frappe.db.rollback()
		cleanup(w.tag)  # the queue and channel, their tickets, records and raw mail
		frappe.db.delete("Email Queue", {"sender": ("like", f"%{w.tag}%")})
		frappe.db.delete("Notification Log", {"for_user": cls.agent})
		frappe.delete_doc("User", cls.agent, force=True, ignore_permissions=True)
		frappe.db.commit()
		w.stop()
		super().tearDownClass()

	def test_list_open_reply_comment_assign_close_and_download(self):
		w, ticket = self.world, self.ticket
		w.login(self.agent, AGENT_PASSWORD)
		denied, dialogs = [], []
		w.page.on(
			"response",
			lambda r: r.status in (401, 403) and denied.append(f"{r.status} {r.request.method} {r.url}"),
		)

		def error_dialogs() -> list[str]:
			texts = w.page.locator(".modal.show .msgprint, .modal.show .modal-title").all_inner_texts()
			return [t for t in texts if "not permitted" in t.lower() or "error" in t.lower()]

		# 1. The list: the ticket, with its queue pill.
		w.goto("/app/ticket")
		row = w.page.locator(".list-row-container", has_text=f"Invoice question {w.tag}").first
		row.wait_for()
		expect(row.locator(".email-flow-queue-pill")).to_have_text(self.queue.name)
		w.shot("10-agent-1-ticket-list")

		# 2. Open it.
		w.goto(f"/app/ticket/{ticket}")
		expect(w.page.locator(".title-text").first).to_contain_text(f"Invoice question {w.tag}")
		w.page.locator(".timeline-item", has_text="on fire again").first.wait_for()
		w.shot("10-agent-2-ticket-open")

		# 3. Reply with the Desk's composer.
		w.page.locator(".timeline-actions button", has_text="New Email").first.click()
		composer = w.page.locator(".modal.show").filter(has=w.page.locator(".ql-editor")).first
		composer.wait_for()
		w.page.wait_for_timeout(800)  # the composer fetches its defaults
		recipients = composer.locator('input[data-fieldname="recipients"]').first
		if CUSTOMER[1] not in recipients.input_value():
			recipients.fill(CUSTOMER[1])
			recipients.press("Enter")
		composer.locator(".ql-editor").first.click()
		composer.locator(".ql-editor").first.type("Hello Carla, the invoice is corrected.")
		w.shot("10-agent-3-composer")
		dialogs.extend(error_dialogs())
		composer.locator(".modal-footer .btn-primary").first.click()
		composer.wait_for(state="hidden")
		w.page.locator(".timeline-item", has_text="the invoice is corrected").first.wait_for()
		w.shot("10-agent-4-replied")

		# 4. Comment.
		box = w.page.locator(".comment-box .ql-editor").first
		box.click()
		box.type("Checked with billing.")
		w.page.locator(".comment-box button", has_text="Comment").first.click()
		w.page.locator(".timeline-item", has_text="Checked with billing.").first.wait_for()

		# 5. Assign to me.
		w.page.locator(".form-assignments .add-assignment-btn, .add-assignment-btn").first.click()
		assign = w.page.locator(".modal.show", has_text="Add to ToDo").first
		assign.wait_for()
		assign.locator('input[data-fieldname="assign_to_me"]').check()
		assign.locator(".modal-footer .btn-primary").first.click()
		assign.wait_for(state="hidden")
		w.page.locator(".form-assignments .assignment-pill, .form-assignments .avatar").first.wait_for()
		w.shot("10-agent-5-commented-and-assigned")

		# 6. Close.
		w.page.select_option('select[data-fieldname="status"]', "Closed")
		w.page.keyboard.press("Control+s")
		expect(w.page.locator(".indicator-pill").first).to_contain_text("Closed")
		w.shot("10-agent-6-closed")

		# 7. Download the attachment from the sidebar.
		link = w.page.locator(
			".form-attachments a.attachment-file-label, .attachment-row a", has_text="invoice.pdf"
		).first
		link.wait_for()
		href = link.get_attribute("href")
		download = w.context.request.get(f"{w.web.url}{href}" if href.startswith("/") else href)
		self.assertEqual(download.status, 200)
		self.assertEqual(download.body(), PDF)

		dialogs.extend(error_dialogs())
		self.assertEqual(dialogs, [])
		self.assertEqual(denied, [])

		# What the agent did is what the records say.
		w.fresh()
		self.assertEqual(frappe.db.get_value("Ticket", ticket, "status"), "Closed")
		self.assertTrue(
			frappe.db.exists(
				"Comment", {"reference_name": ticket, "content": ("like", "%Checked with billing.%")}
			)
		)
		self.assertTrue(
			frappe.db.exists("ToDo", {"reference_name": ticket, "allocated_to": self.agent, "status": "Open"})
			or frappe.db.exists("ToDo", {"reference_name": ticket, "allocated_to": self.agent})
		)
		# The reply reaches the customer from the queue's channel at once: the job queued after
		# the commit, run by a real worker (no scheduler flush).
		self.assertEqual(run_worker("short"), 0)
		sent = [m for m in w.smtp.messages if CUSTOMER[1] in m.rcpt_tos]
		self.assertEqual(len(sent), 1, [m.rcpt_tos for m in w.smtp.messages])
		message = email.message_from_bytes(sent[0].data, policy=email.policy.default)
		self.assertEqual(message["From"].addresses[0].addr_spec, w.address("support"))
		body = message.get_body(("plain", "html")).get_content()
		self.assertIn("the invoice is corrected", body)
		# The customer's mail client answers Reply-To (else From): never the agent's own mailbox,
		# and one click in a footer must not silence the ticket.
		reply_to = message.get("Reply-To")
		self.assertTrue(reply_to is None or self.agent not in str(reply_to), reply_to)
		self.assertNotIn(self.agent, str(message["From"]))
		self.assertNotIn("Leave this conversation", body)
		self.assertNotIn("unsubscribe", body.lower())
