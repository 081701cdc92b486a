"""An agent's day at the Support desk, as a plain Support Agent in headless Chromium.

Real actors: the agent has the Support Agent role only; the customer is the mail-client
model of the team-loop test (reads its Dovecot mailbox, answers what it received, with the
quote); the site runs in America/New_York; mail comes in by the scheduler's tick and a
real worker. One ticket is filed three hours "ago" under Frappe's time freeze, so that the
site, at the real time, finds it overdue.

Must show (issue 13), a screenshot each (/work/screenshots/13-desk-*.png):
1. after login the agent lands on the Support workspace, whose counts are right (per
   queue; a restricted queue's ticket not counted) and open the matching list;
2. the needs-reply marker: set by a customer reply, cleared by the agent's reply;
3. a customer's quoted history folded behind "Show quoted text";
4. a canned response inserted with one trigger ("::");
5. Assign to me and Close, one click each;
6. SLA: "Due ..." on a fresh ticket, "Overdue" on the older one, and the Overdue count;
7. a reply from the keyboard (Shift+R, type, Ctrl+Enter).
"""

import frappe
from frappe.utils import add_to_date, now_datetime
from frappe.utils.password import update_password

from email_flow_app.email_flow.services import sla
from email_flow_app.email_flow.services.ingest import process_inbound, release_locks
from email_flow_app.email_flow.services.store import forwarded_key, store_inbound
from email_flow_app.email_flow.tests.browser.harness import UIWorld
from email_flow_app.email_flow.tests.browser.test_team_loop import PASSWORD, MailClient
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import SiteTestCase, cleanup, run_worker

AGENT_PASSWORD = "Agent-pw-1!"
SITE_ZONE = "America/New_York"


class TestSupportDesk(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = w = UIWorld({"support": PASSWORD, "carla": PASSWORD, "dave": PASSWORD})
		try:
			w.start()
			cls.saved_zone = frappe.db.get_single_value("System Settings", "time_zone")
			frappe.db.set_single_value("System Settings", "time_zone", SITE_ZONE)
			frappe.clear_cache()
			cls.support = w.address("support")
			cls.carla = MailClient(w, w.address("carla"), "Carla Customer")
			cls.dave = MailClient(w, w.address("dave"), "Dave Customer")
			w.smtp.deliver = cls.deliver
			cls.agent = make_user(f"ef-ui-desk-{w.tag}@example.test", ["Support Agent"])
			frappe.db.set_value("User", cls.agent, {"first_name": "Alex", "last_name": "Agent"})
			update_password(cls.agent, AGENT_PASSWORD)
			cls.other_agent = make_user(f"ef-ui-other-{w.tag}@example.test", ["Support Agent"])
			cls.channel = frappe.get_doc(
				{
					"doctype": "Outgoing Channel",
					"channel_name": f"Desk out {w.tag}",
					"channel_type": "SMTP",
					"from_name": "Acme Support",
					"from_address": cls.support,
					"host": "127.0.0.1",
					"port": w.smtp.port,
					"security": "STARTTLS",
					"username": cls.support,
					"password": PASSWORD,
					"is_default": 1,  # as the site's only channel would be (Frappe's composer needs one)
				}
			).insert(ignore_permissions=True)
			# A simple SLA: first response within 1 hour, resolution within 8, every hour counts.
			cls.queue = frappe.get_doc(
				{
					"doctype": "Incoming Email Queue",
					"queue_name": f"Desk {w.tag}",
					"color": "#1c7ed6",
					"channel_type": "IMAP",
					"email_address": cls.support,
					"host": "127.0.0.1",
					"port": w.dovecot.imaps_port,
					"security": "SSL",
					"username": cls.support,
					"password": PASSWORD,
					"outgoing_channel": cls.channel.name,
					"send_acknowledgement": 0,
					"first_response_hours": 1,
					"resolution_hours": 8,
					"workday_start": "00:00",
					"workday_end": "24:00",
				}
			).insert(ignore_permissions=True)
			# A restricted queue the agent is not part of: its tickets count for nobody else.
			cls.hidden = frappe.get_doc(
				{
					"doctype": "Incoming Email Queue",
					"queue_name": f"Hidden {w.tag}",
					"color": "#e03131",
					"channel_type": "Forwarding",
					"email_address": w.address("vip"),
					"creation_address": w.address("vip"),
					"restrict_to_agents": 1,
					"assign_to": [{"user": cls.other_agent}],
				}
			).insert(ignore_permissions=True)
			cls.template = frappe.get_doc(
				{
					"doctype": "Email Template",
					"name": f"Greeting {w.tag}",
					"subject": "Greeting",
					"response": "Hello {{ first_name }}, thank you for writing about {{ doc.name }}.",
				}
			).insert(ignore_permissions=True)
			frappe.db.commit()
		except BaseException:
			w.stop()
			raise

	@classmethod
	def deliver(cls, received) -> None:
		"""The recipients' mail system: every accepted message goes into its recipient's mailbox."""
		for rcpt in received.rcpt_tos:
			if rcpt.lower() in cls.world.mailboxes:
				cls.world.dovecot.append(rcpt.lower(), "INBOX", received.data)

	@classmethod
	def tearDownClass(cls):
		w = cls.world
		frappe.db.rollback()
		frappe.db.set_single_value("System Settings", "time_zone", cls.saved_zone)
		frappe.clear_cache()
		cleanup(w.tag)
		frappe.db.delete("Email Queue", {"sender": ("like", f"%{w.tag}%")})
		frappe.delete_doc("Email Template", cls.template.name, force=True, ignore_permissions=True)
		for user in (cls.agent, cls.other_agent):
			frappe.db.delete("Notification Log", {"for_user": user})
			frappe.delete_doc("User", user, force=True, ignore_permissions=True)
		frappe.db.commit()
		w.stop()
		super().tearDownClass()

	# -- helpers ------------------------------------------------------------------------------

	def poll(self) -> None:
		"""The queue's poll job (what the scheduler's tick or the IDLE listener queues), run by a real worker."""
		from email_flow_app.email_flow.services.tick import enqueue_poll

		enqueue_poll(self.queue.name)
		frappe.db.commit()
		self.assertEqual(run_worker("long"), 0)
		frappe.db.rollback()

	def ticket_of(self, subject: str) -> str:
		frappe.db.rollback()
		names = frappe.get_all("Ticket", filters={"subject": subject}, pluck="name")
		self.assertEqual(len(names), 1, subject)
		return names[0]

	def file_in_process(self, queue: str, raw: bytes) -> str:
		"""The real store-then-file path, in this process (so Frappe's time freeze applies)."""
		name, _created = store_inbound(queue=queue, raw=raw, key=forwarded_key(queue, raw))
		frappe.db.commit()
		outcome = process_inbound(name)
		frappe.db.commit()
		release_locks()
		return outcome.ticket

	def field(self, ticket: str, fieldname: str):
		frappe.db.rollback()
		return frappe.db.get_value("Ticket", ticket, fieldname)

	def list_row(self, subject: str):
		return self.world.page.locator(".list-row-container", has_text=subject).first

	def open_ticket(self, ticket: str) -> None:
		w = self.world
		w.goto(f"/app/ticket/{ticket}")
		w.page.locator("button.email-flow-reply:visible").first.wait_for()

	def counts(self, queue: str) -> dict[str, int]:
		row = self.world.page.locator(f'.email-flow-counts tr[data-queue="{queue}"]').first
		row.wait_for()
		return {
			link.get_attribute("data-key"): int(link.inner_text()) for link in row.locator("a.ef-count").all()
		}

	def composer(self):
		w = self.world
		composer = w.page.locator(".modal.show").filter(has=w.page.locator(".ql-editor")).first
		composer.wait_for()
		w.page.wait_for_timeout(800)  # the editor gets its content and the caret
		return composer

	# -- the day ----------------------------------------------------------------------------------

	def test_an_agents_day(self):
		w = self.world
		denied, popups = [], []
		w.page.on("response", lambda r: r.status in (401, 403) and denied.append(f"{r.status} {r.url}"))
		clicks: dict[str, int] = {}

		# The morning's mail: Carla writes (now), Dave wrote three hours ago (time frozen then),
		# and a VIP writes to the restricted queue.
		carla_subject = f"Printer on fire {w.tag}"
		first = self.carla.compose(self.support, carla_subject, "Hello,\nthe printer is on fire.\nCarla")
		self.carla.send(first)
		self.poll()
		carla_ticket = self.ticket_of(carla_subject)
		dave_subject = f"Invoice missing {w.tag}"
		dave_mail = self.dave.compose(self.support, dave_subject, "Where is my invoice?\nDave")
		with self.freeze_time(add_to_date(now_datetime(), hours=-3)):
			dave_ticket = self.file_in_process(self.queue.name, dave_mail.as_bytes())
		w.forward(self.hidden.name, self.carla.compose(w.address("vip"), f"VIP {w.tag}", "Secret").as_bytes())
		# One more ticket, assigned to the agent and waiting on the customer.
		waiting_subject = f"Waiting on Dave {w.tag}"
		waiting_ticket = self.file_in_process(
			self.queue.name, self.dave.compose(self.support, waiting_subject, "Tell me later").as_bytes()
		)
		frappe.desk.form.assign_to.add(
			{"doctype": "Ticket", "name": waiting_ticket, "assign_to": [self.agent]}
		)
		frappe.db.set_value("Ticket", waiting_ticket, {"status": "Pending", "needs_reply": 0, "due_by": None})
		sla.mark_overdue()  # the scheduler's minute sweep
		frappe.db.commit()

		# 1. The agent logs in and lands on the Support workspace: the counts, per queue.
		w.login(self.agent, AGENT_PASSWORD)
		w.goto("/app")
		w.page.wait_for_function("() => frappe.get_route_str().toLowerCase().includes('support')")
		counts = self.counts(self.queue.name)
		w.shot("13-desk-1-workspace")
		self.assertEqual(
			counts,
			{"my_open": 1, "unassigned": 2, "waiting": 1, "needs_reply": 2, "overdue": 1},
		)
		self.assertEqual(w.page.locator(f'.email-flow-counts tr[data-queue="{self.hidden.name}"]').count(), 0)
		clicks["reach my open tickets"] = 1
		# Each count opens its list: Overdue in this queue is Dave's ticket only.
		w.page.locator(f'.email-flow-counts tr[data-queue="{self.queue.name}"] a[data-key="overdue"]').click()
		self.list_row(dave_subject).wait_for()
		w.page.wait_for_load_state("networkidle")
		w.page.wait_for_function(
			"() => cur_list.filters.some((f) => f[1] === 'is_overdue') && cur_list.data.length === 1",
			timeout=15_000,
		)
		w.shot("13-desk-2-overdue-list")
		shown = w.page.evaluate("() => cur_list.data.map((d) => d.name)")
		self.assertEqual(shown, [dave_ticket], w.page.evaluate("() => JSON.stringify(cur_list.filters)"))

		# The Ticket list: needs-reply markers, customer, queue pill, age; the pill filters.
		w.goto("/app/ticket?email_queue=" + self.queue.name)
		row = self.list_row(carla_subject)
		row.wait_for()
		self.assertIn("Needs reply", row.inner_text())
		self.assertIn("Carla Customer", row.inner_text())
		self.assertEqual(row.locator(".bold").count() > 0, True)  # unread for this agent
		w.goto("/app/ticket")
		w.page.evaluate("() => cur_list.filter_area.clear()")  # the list as a new day starts it
		w.page.wait_for_function("() => cur_list.filter_area.get().length === 0")
		self.list_row(carla_subject).locator(".email-flow-queue-pill").click()
		w.page.wait_for_function(
			"(q) => cur_list.filter_area.get().some((f) => f[1] === 'email_queue' && f[3] === q)",
			arg=self.queue.name,
		)
		self.assertIn("/app/ticket", w.page.url)  # a filter, not the ticket
		w.shot("13-desk-3-list-filtered-by-queue")
		clicks["filter by queue"] = 1
		clicks["notice a customer reply"] = 0

		# 6. SLA on the forms: Carla's is due within the hour, Dave's overdue.
		self.open_ticket(carla_ticket)
		due = w.page.locator(".email-flow-due").first
		due.wait_for()
		self.assertIn("Due", due.inner_text())
		self.assertNotIn("Overdue", due.inner_text())
		self.open_ticket(dave_ticket)
		self.assertIn("Overdue", w.page.locator(".email-flow-due").first.inner_text())
		w.shot("13-desk-4-overdue-ticket")

		# 5. Assign to me and Close: one click each.
		w.page.locator("button.email-flow-assign-me:visible").first.click()
		w.page.wait_for_function(
			"(u) => (cur_frm.get_docinfo().assignments || []).some((a) => a.owner === u)", arg=self.agent
		)
		self.assertEqual(w.page.locator("button.email-flow-assign-me:visible").count(), 0)
		self.assertIn(self.agent, self.field(dave_ticket, "_assign"))
		clicks["reassign (assign to me)"] = 1
		w.page.locator("button.email-flow-close:visible").first.click()
		w.page.wait_for_function("() => cur_frm.doc.status === 'Closed' && !cur_frm.is_dirty()")
		self.assertEqual(self.field(dave_ticket, "status"), "Closed")
		self.assertIsNone(self.field(dave_ticket, "due_by"))
		w.shot("13-desk-5-assigned-and-closed")
		clicks["close"] = 1

		# 7 + 4. Carla's ticket: reply from the keyboard with a canned response ("::").
		self.open_ticket(carla_ticket)
		w.shot("13-desk-6-ticket-with-customer-panel")
		panel = w.page.locator(".email-flow-customer:visible").first.inner_text()
		self.assertIn("Carla Customer", panel)
		self.assertIn(self.carla.address, panel)
		w.page.locator("body").click(position={"x": 5, "y": 300})  # focus on the page, not an input
		w.page.keyboard.press("Shift+R")
		composer = self.composer()
		editor = composer.locator(".ql-editor").first
		editor.click()
		w.page.keyboard.press("Control+Home")
		w.page.keyboard.type("::Greet")
		menu = composer.locator(".email-flow-canned-menu .dropdown-item", has_text=self.template.name)
		menu.wait_for()
		w.shot("13-desk-7-canned-menu")
		w.page.keyboard.press("Enter")
		expect_text = f"Hello Carla, thank you for writing about {carla_ticket}."
		w.page.wait_for_function(
			"(t) => document.querySelector('.modal.show .ql-editor').innerText.includes(t)", arg=expect_text
		)
		self.assertNotIn("::Greet", editor.inner_text())
		clicks["insert a canned reply"] = 1
		w.page.keyboard.type(" We are on our way.")
		w.shot("13-desk-8-composer-canned")
		w.page.keyboard.press("Control+Enter")
		composer.wait_for(state="hidden")
		w.page.locator(".timeline-item", has_text="We are on our way").first.wait_for()
		clicks["reply"] = 2  # Shift+R (or the Reply button), then Ctrl+Enter (or Send)
		self.assertEqual(run_worker("short"), 0)
		answer, _ = self.carla.wait_for(1)
		self.assertIn(expect_text, answer.get_body(("html", "plain")).get_content())

		# 2. The marker clears on the agent's reply...
		self.assertEqual(self.field(carla_ticket, "needs_reply"), 0)
		w.goto("/app/ticket?email_queue=" + self.queue.name)
		row = self.list_row(carla_subject)
		row.wait_for()
		self.assertNotIn("Needs reply", row.inner_text())
		self.assertIn("Replied", row.inner_text())
		w.shot("13-desk-9-list-after-reply")

		# ... and comes back when the customer answers what she received (quoting it).
		self.carla.send(self.carla.reply(answer, "Thank you, the fire is out now."))
		self.poll()
		self.assertEqual(self.field(carla_ticket, "needs_reply"), 1)
		w.page.reload()
		row = self.list_row(carla_subject)
		row.wait_for()
		self.assertIn("Needs reply", row.inner_text())
		self.assertTrue(row.locator(".bold").count() > 0)  # unread again
		w.shot("13-desk-10-list-customer-replied")

		# 3. Folded quotes: the customer's reply shows its new part; the quote is one click away.
		self.open_ticket(carla_ticket)
		item = w.page.locator(".timeline-item", has_text="the fire is out now").first
		item.wait_for()
		toggle = item.locator(".email-flow-quote-toggle")
		self.assertEqual(toggle.inner_text().strip(), "Show quoted text")
		self.assertFalse(item.locator(".email-flow-full").is_visible())
		self.assertNotIn("We are on our way", item.locator(".content").inner_text())
		item.scroll_into_view_if_needed()
		w.shot("13-desk-11-folded")
		toggle.click()
		self.assertTrue(item.locator(".email-flow-full").is_visible())
		self.assertIn("We are on our way", item.locator(".email-flow-full").inner_text())
		w.shot("13-desk-12-unfolded")
		clicks["read the thread"] = 0

		# The agent's reply through the Reply button clears it again; comment is one click too.
		w.page.locator("button.email-flow-reply:visible").first.click()
		composer = self.composer()
		composer.locator(".ql-editor").first.click()
		w.page.keyboard.press("Control+Home")
		w.page.keyboard.type("Glad to hear it.")
		composer.locator(".modal-footer .btn-primary").first.click()
		composer.wait_for(state="hidden")
		w.page.locator(".timeline-item", has_text="Glad to hear it").first.wait_for()
		self.assertEqual(self.field(carla_ticket, "needs_reply"), 0)
		w.page.locator("button.email-flow-comment:visible").first.click()
		w.page.wait_for_function(
			"() => document.activeElement && document.activeElement.closest('.comment-box')"
		)
		clicks["add an internal note"] = 1
		clicks["see the customer's history"] = 0  # the side panel

		popups += [
			t
			for t in w.page.locator(".modal.show .msgprint, .modal.show .modal-title").all_inner_texts()
			if "not permitted" in t.lower() or "error" in t.lower()
		]
		self.assertEqual(denied, [])
		self.assertEqual(popups, [])
		print("\nclicks after:", clicks)

	def test_the_manager_only_workspace_is_not_an_agents(self):
		w = self.world
		w.login(self.agent, AGENT_PASSWORD)
		w.goto("/app")
		w.page.wait_for_function("() => frappe.get_route_str().toLowerCase().includes('support')")
		sidebar = w.page.locator(".desk-sidebar, .body-sidebar").first.inner_text()
		self.assertNotIn("Email Flow", sidebar)
		self.assertNotIn("Connect inbox", w.page.content())

	def test_the_manager_sets_the_sla_on_the_queue_form(self):
		"""The queue's SLA fields read as saved (no "Not Saved" on opening) and save as chosen."""
		w = self.world
		w.login()  # the Support Manager
		w.goto(f"/app/incoming-email-queue/{self.queue.name}")
		w.page.wait_for_function("() => cur_frm && cur_frm.doc.name && !cur_frm.is_new()")
		w.page.wait_for_timeout(1000)
		self.assertFalse(w.page.evaluate("() => cur_frm.is_dirty()"))
		w.page.evaluate("() => cur_frm.set_value('first_response_hours', 4)")
		w.page.keyboard.press("Control+S")
		w.page.wait_for_function("() => !cur_frm.is_dirty() && cur_frm.doc.first_response_hours === 4")
		w.shot("13-desk-13-queue-sla")
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Incoming Email Queue", self.queue.name, "workday_end"), "24:00")
