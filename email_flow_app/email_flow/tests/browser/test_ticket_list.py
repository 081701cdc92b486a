"""The Ticket list in real headless Chromium: the queue as a coloured pill, and a filter by queue."""

from urllib.parse import quote

import frappe
from frappe.utils.password import update_password
from playwright.sync_api import expect

from email_flow_app.email_flow.tests.browser.harness import UIWorld
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import SiteTestCase

RED, GREEN = "#e03131", "#2f9e44"
AGENT_PASSWORD = "List-agent-pw-1!"


class TestTicketListInTheBrowser(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = UIWorld({"support": "unused"})
		try:
			cls.world.start()
			cls.queues = {}
			for box, colour in (("billing", RED), ("hardware", GREEN)):
				cls.queues[box] = frappe.get_doc(
					{
						"doctype": "Incoming Email Queue",
						"queue_name": f"{box.title()} {cls.world.tag}",
						"color": colour,
						"channel_type": "Forwarding",
						"email_address": cls.world.address(box),
					}
				).insert(ignore_permissions=True)
			cls.tickets = [
				frappe.get_doc(
					{
						"doctype": "Ticket",
						"subject": f"{box.title()} question {cls.world.tag}",
						"email_queue": queue.name,
						"raised_by": "someone@customer.test",
					}
				).insert(ignore_permissions=True)
				for box, queue in cls.queues.items()
			]
			# The list as a plain Support Agent sees it (no manager role).
			cls.agent = make_user(f"ef-ui-list-agent-{cls.world.tag}@example.test", ["Support Agent"])
			update_password(cls.agent, AGENT_PASSWORD)
			frappe.db.commit()
			cls.world.login(cls.agent, AGENT_PASSWORD)
		except BaseException:
			cls.world.stop()
			raise

	@classmethod
	def tearDownClass(cls):
		for ticket in getattr(cls, "tickets", []):
			frappe.delete_doc("Ticket", ticket.name, force=True, ignore_permissions=True)
		if getattr(cls, "agent", None):
			frappe.delete_doc("User", cls.agent, force=True, ignore_permissions=True)
		frappe.db.commit()
		cls.world.stop()
		super().tearDownClass()

	def test_queue_shows_as_a_coloured_pill_and_filters_the_list(self):
		w = self.world
		billing, hardware = self.queues["billing"].name, self.queues["hardware"].name
		w.goto("/app/ticket")
		pill = w.page.locator(".email-flow-queue-pill", has_text=billing).first
		pill.wait_for()
		expect(pill).to_have_css("color", "rgb(224, 49, 49)")
		expect(w.page.locator(".email-flow-queue-pill", has_text=hardware).first).to_have_css(
			"color", "rgb(47, 158, 68)"
		)
		w.shot("05-ticket-list-queue-pills")

		w.goto(f"/app/ticket?email_queue={quote(billing)}")
		w.page.locator(".list-row-container", has_text=f"Billing question {w.tag}").first.wait_for()
		w.page.locator(".list-row-container", has_text=f"Hardware question {w.tag}").first.wait_for(
			state="detached"
		)
		rows = w.page.locator(".list-row-container").all_inner_texts()
		self.assertTrue(any(f"Billing question {w.tag}" in row for row in rows), rows)
		self.assertFalse(any(f"Hardware question {w.tag}" in row for row in rows), rows)
		w.shot("05-ticket-list-filtered-by-queue")
