"""The admin screens in real headless Chromium, as a Support Manager (and once as a plain agent).

Connect dialog: a Colour field, the test result scrolled into view. Queue form: Poll Now
on an IMAP queue with a message waiting in Dovecot reports what the poll did (a real RQ
worker runs the job). Inbound Email: the escaped text preview, "Create ticket anyway"
and "Unblock sender and reprocess". Screenshots go to /work/screenshots (12-*).
"""

import frappe
from frappe.installer import update_site_config
from frappe.utils.password import update_password
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from email_flow_app.email_flow.services import settings
from email_flow_app.email_flow.services.ingest import process_inbound, release_locks
from email_flow_app.email_flow.services.store import store_inbound
from email_flow_app.email_flow.tests.browser.harness import UIWorld
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import SiteTestCase, cleanup, customer_email, run_worker

PASSWORD = "mailbox-pw"
AGENT_PASSWORD = "Admin-screens-agent-pw-1!"
QUEUE = "Incoming Email Queue"
INBOUND = "Inbound Email"
COLOUR = "#e03131"


class TestAdminScreensInTheBrowser(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = w = UIWorld({"support": PASSWORD, "helpdesk": PASSWORD})
		try:
			w.start()
			cls.customer = f"carla-{w.tag}@customer.test"
			cls.agent = make_user(f"ef-ui-admin-agent-{w.tag}@example.test", ["Support Agent"])
			update_password(cls.agent, AGENT_PASSWORD)
			cls.queue = frappe.get_doc(
				{
					"doctype": QUEUE,
					"queue_name": f"Helpdesk {w.tag}",
					"color": "#2490ef",
					"channel_type": "IMAP",
					"email_address": w.address("helpdesk"),
					"host": "127.0.0.1",
					"port": w.dovecot.imaps_port,
					"security": "SSL",
					"username": w.address("helpdesk"),
					"password": PASSWORD,
				}
			).insert(ignore_permissions=True)
			frappe.db.commit()
		except BaseException:
			w.stop()
			raise
		cls.count = 0

	@classmethod
	def tearDownClass(cls):
		w = cls.world
		frappe.db.rollback()
		cleanup(w.tag)  # queues named "... <tag>", their tickets, Inbound Emails and raw mail
		frappe.db.delete("Email Flow Blocked Address", {"email_address": ("like", f"%{w.tag}%")})
		frappe.delete_doc("User", cls.agent, force=True, ignore_permissions=True)
		frappe.db.commit()
		w.stop()
		super().tearDownClass()

	# -- helpers ---------------------------------------------------------------------------

	def fill(self, dialog, fieldname: str, value: str) -> None:
		"""Type into a dialog field, leave it, and wait until the dialog holds the value."""
		field = dialog.locator(f'[data-fieldname="{fieldname}"] input').first
		for attempt in range(3):
			field.fill(value)
			field.press("Tab")
			try:
				self.world.page.wait_for_function(
					"([name, value]) => [...(frappe.ui.open_dialogs || []), window.cur_dialog].some("
					"(d) => d && d.fields_dict && d.fields_dict[name] && String(d.get_value(name)) === value)",
					arg=[fieldname, value],
					timeout=15_000,
				)
				return
			except PlaywrightTimeout:
				if attempt == 2:
					raise

	def trust_world_ca(self) -> None:
		"""Point the site at this world's CA again, right before the web server or a worker connects.

		Other test classes on this shared site set (and at their end remove) the same
		site config key for their own servers.
		"""
		update_site_config("email_flow_ca_bundle", str(self.world.ca.bundle_path))

	def filtered(self, msg) -> str:
		"""Store a message in the IMAP queue and file it (as a poll would): it ends Filtered."""
		type(self).count += 1
		name, _created = store_inbound(
			queue=self.queue.name, raw=msg.as_bytes(), key=f"ui-test:{self.world.tag}:{self.count}"
		)
		frappe.db.commit()
		process_inbound(name)
		frappe.db.commit()
		release_locks()
		self.assertEqual(frappe.db.get_value(INBOUND, name, "status"), "Filtered")
		return name

	def choose_reprocess(self, label: str) -> None:
		page = self.world.page
		page.locator('.inner-group-button[data-label="Reprocess"] button').first.click()
		page.locator(".inner-group-button .dropdown-item", has_text=label).first.click()
		confirm = page.locator(".modal.show", has_text="?").last
		confirm.locator(".btn-primary", has_text="Yes").click()

	# -- tests -----------------------------------------------------------------------------

	def test_a_plain_agent_has_no_email_flow_workspace_and_no_connect_inbox(self):
		w = self.world
		w.login(self.agent, AGENT_PASSWORD)
		try:
			w.goto("/app")
			w.page.wait_for_function("() => frappe.boot && frappe.boot.allowed_workspaces")
			workspaces = w.page.evaluate("() => frappe.boot.allowed_workspaces.map((ws) => ws.name)")
			self.assertNotIn("Email Flow", workspaces)
			self.assertEqual(w.page.locator(".sidebar-item-container", has_text="Email Flow").count(), 0)
			w.shot("12-admin-0-agent-desk")
			statuses = w.page.evaluate(
				"""async () => [
					(await fetch("/api/resource/Inbound Email")).status,
					(await fetch("/api/resource/Email Flow Settings/Email Flow Settings")).status,
				]"""
			)
			self.assertEqual(statuses, [403, 403])
		finally:
			w.login()

	def test_b_the_managers_workspace_badge_reads_whole(self):
		w = self.world
		w.goto("/app/email-flow")
		badge = w.page.locator(".shortcut-widget-box", has_text="Incoming Email Queues").locator(
			".indicator-pill"
		)
		failing = frappe.db.count(
			"Incoming Email Queue", {"status": ("in", ["Failing", "Reconnect needed"])}
		)  # other queues of the site may be failing: the badge counts them all
		expect(badge).to_have_text(f"{failing} failing")
		# Not cut off: the pill shows all of its text.
		self.assertTrue(badge.evaluate("(el) => el.scrollWidth <= el.clientWidth"))
		expect(w.page.locator(".shortcut-widget-box", has_text="Connect inbox")).to_be_visible()
		w.shot("12-admin-0b-manager-workspace")

	def test_connect_dialog_has_a_colour_and_scrolls_the_test_result_into_view(self):
		w = self.world
		address = w.address("support")
		w.goto("/app/incoming-email-queue")
		w.page.locator(".ef-connect-inbox:visible").click()
		w.page.locator('.modal.show .ef-way[data-way="custom"]').click()
		dialog = w.page.locator(".modal.show", has_text="Custom IMAP / SMTP")
		dialog.locator('.frappe-control[data-fieldname="colour"]').wait_for()
		self.fill(dialog, "email_address", address)
		self.fill(dialog, "queue_name", f"Connected {w.tag}")
		self.fill(dialog, "colour", COLOUR)
		self.fill(dialog, "imap_host", "127.0.0.1")
		self.fill(dialog, "imap_port", str(w.dovecot.imaps_port))
		self.fill(dialog, "imap_password", PASSWORD)
		self.fill(dialog, "smtp_host", "127.0.0.1")
		self.fill(dialog, "smtp_port", str(w.smtp.port))
		w.shot("12-admin-1-connect-dialog-colour")
		# The whole form is taller than the window: the result field sits below the fold.
		below = w.page.evaluate(
			"""() => {
				const modal = cur_dialog.$wrapper[0];
				modal.scrollTop = 0;  // where the dialog opens
				const top = cur_dialog.fields_dict.result.$wrapper[0].getBoundingClientRect().top;
				return [top, window.innerHeight];
			}"""
		)
		self.assertGreater(below[0], below[1], "the result area is not below the fold")

		self.trust_world_ca()
		dialog.locator(".modal-footer button", has_text="Test connection").click()
		result = dialog.locator(".ef-dialog-result")
		result.wait_for()
		expect(result).to_contain_text("Connection works")
		expect(result).to_be_in_viewport(ratio=1)
		# ... and not under the dialog's footer (the buttons stay on screen).
		w.page.wait_for_timeout(300)
		result_box = result.bounding_box()
		footer_box = dialog.locator(".modal-footer").bounding_box()
		self.assertLessEqual(result_box["y"] + result_box["height"], footer_box["y"] + 1)
		w.shot("12-admin-2-test-result-in-view")

		self.trust_world_ca()
		dialog.locator(".modal-footer .btn-primary", has_text="Save").click()
		w.page.locator(".modal.show", has_text="Inbox connected").locator(".ef-queue-link").wait_for()
		w.fresh()
		self.assertEqual(frappe.db.get_value(QUEUE, {"email_address": address}, "color"), COLOUR)

	def test_poll_now_tells_how_many_new_messages_and_tickets(self):
		w = self.world
		w.dovecot.append(
			w.address("helpdesk"),
			"INBOX",
			customer_email(
				w.address("helpdesk"), subject=f"Poll me {w.tag}", sender=("Carla", self.customer)
			).as_bytes(),
		)
		# Healthy, whatever a poll started by another test on this shared site made of it.
		frappe.db.set_value(
			QUEUE, self.queue.name, {"status": "Active", "failure_count": 0, "next_poll_after": None}
		)
		frappe.db.commit()
		w.goto(f"/app/incoming-email-queue/{self.queue.name}")
		w.page.locator(".ef-health").wait_for()
		# A healthy IMAP queue: no Reconnect, no forwarding field, the server fields shown.
		self.assertEqual(w.page.locator(".ef-reconnect:visible").count(), 0)
		expect(w.page.locator('.frappe-control[data-fieldname="creation_address"]')).to_be_hidden()
		expect(w.page.locator('.frappe-control[data-fieldname="host"]')).to_be_visible()
		w.shot("12-admin-3-queue-form")

		w.page.get_by_role("button", name="Poll Now").click()
		w.page.locator(".alert", has_text="Polling").first.wait_for()  # the job is queued
		self.trust_world_ca()
		self.assertEqual(run_worker("long"), 0)
		outcome = w.page.locator(".modal.show .ef-poll-outcome")
		outcome.wait_for(timeout=60_000)
		expect(outcome).to_have_text("1 new message, 1 new ticket")
		w.shot("12-admin-4-poll-outcome")
		w.fresh()
		self.assertTrue(
			frappe.db.exists("Ticket", {"raised_by": self.customer, "email_queue": self.queue.name})
		)

	def test_filtered_mail_preview_create_ticket_anyway_and_unblock_sender(self):
		w = self.world
		# An auto-reply whose text holds markup: shown as text, never rendered.
		auto_reply = self.filtered(
			customer_email(
				w.address("helpdesk"),
				subject=f"Out of office {w.tag}",
				body="I am away.\n<b>not bold</b> <img src=x onerror=alert(1)>\nCarla",
				sender=("Carla", f"away-{w.tag}@customer.test"),
				headers={"Auto-Submitted": "auto-replied"},
			)
		)
		w.goto(f"/app/inbound-email/{auto_reply}")
		preview = w.page.locator(".ef-preview")
		preview.wait_for()
		expect(preview).to_contain_text("<b>not bold</b>")
		self.assertEqual(preview.locator("b, img").count(), 0)
		w.shot("12-admin-5-inbound-preview")

		self.choose_reprocess("Create ticket anyway")
		result = w.page.locator(".modal.show .ef-reprocess-result")
		result.wait_for()
		expect(result.locator(".ef-result-ticket")).to_be_visible()
		w.shot("12-admin-6-created-anyway")
		w.fresh()
		row = frappe.db.get_value(INBOUND, auto_reply, ["status", "ticket", "thread_rule"], as_dict=True)
		self.assertEqual((row.status, row.thread_rule), ("Ticket Created", "forced"))
		self.assertIn(row.ticket, result.inner_text())
		w.page.keyboard.press("Escape")

		# A customer blocked by mistake.
		settings.add_blocked_address(self.customer, "Manual", f"ui test {w.tag}")
		frappe.db.commit()
		blocked = self.filtered(
			customer_email(
				w.address("helpdesk"), subject=f"Please help {w.tag}", sender=("Carla", self.customer)
			)
		)
		w.goto(f"/app/inbound-email/{blocked}")
		w.page.locator(".ef-preview").wait_for()
		self.choose_reprocess("Unblock sender and reprocess")
		result = w.page.locator(".modal.show .ef-reprocess-result")
		result.wait_for()
		expect(result).to_contain_text("Removed from the blocked senders")
		expect(result).to_contain_text(self.customer)
		w.shot("12-admin-7-unblocked")
		w.fresh()
		self.assertEqual(frappe.db.get_value(INBOUND, blocked, "status"), "Ticket Created")
		self.assertNotIn(self.customer, settings.blocked_addresses())
