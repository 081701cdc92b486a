"""Hostile subjects, names and file names read as text in the Desk, and nothing in them runs.

Real headless Chromium, logged in as a plain Support Agent. The tickets come in through the
forwarding webhook (the real ingest path). window.alert/confirm/prompt are wrapped before any
page script runs and every dialog is counted, as is every request to a host the mail named:
there must be none. The subject the agent reads (list, form title, timeline) is the original,
and so is one the agent plants through the REST API.
"""

from urllib.parse import quote

import frappe
from frappe.utils.password import update_password

from email_flow_app.email_flow.tests.browser.harness import UIWorld
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import SiteTestCase, cleanup, customer_email

AGENT_PASSWORD = "Agent-pw-1!"
SUBJECTS = [
	'Invoice 42 <img src=x onerror="alert(document.domain)"',
	"<script>alert('script')</script> order 7",
	"<DIV STYLE=\"width: expression(alert('XSS'));\">",
	'<style>body{display:none}</style><link rel="stylesheet" href="http://evil.invalid/x.css"> refund',
	'<a href="javascript:alert(4)">click me</a> & <meta http-equiv="refresh" content="0;url=http://evil.invalid/">',
	"Q&A about R&D: 2 < 3 > 1",
]
HOSTILE_NAME = "<img src=y onerror=confirm(7)> Eve"
HOSTILE_FILE = 'report<img src=z onerror="prompt(8)">.pdf'

COUNT_DIALOGS = """
window.__efDialogs = [];
for (const name of ["alert", "confirm", "prompt"]) {
	const original = window[name];
	window[name] = function (...args) {
		window.__efDialogs.push(name + ":" + String(args[0]));
		return name === "confirm" ? false : null;
	};
}
"""


class TestHostileTextReadsAsText(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = w = UIWorld({"support": "support-pw"})
		try:
			w.start()
			cls.agent = make_user(f"ef-ui-hostile-{w.tag}@example.test", ["Support Agent"])
			update_password(cls.agent, AGENT_PASSWORD)
			cls.queue = frappe.get_doc(
				{
					"doctype": "Incoming Email Queue",
					"queue_name": f"Hostile {w.tag}",
					"color": "#e8590c",
					"channel_type": "Forwarding",
					"email_address": w.address("support"),
					"creation_address": w.address("support"),
					"send_acknowledgement": 0,
				}
			).insert(ignore_permissions=True)
			frappe.db.commit()
			cls.tickets = {}
			for index, subject in enumerate(SUBJECTS):
				mail = customer_email(
					w.address("support"),
					subject=subject,
					sender=(HOSTILE_NAME, f"eve{index}-{w.tag}@cust.test"),
					body=f"Body of case {index}: <b>not bold</b> <img src=q onerror=alert(9)>",
					attachment=(HOSTILE_FILE, b"%PDF-1.4\n"),
				)
				cls.tickets[subject] = w.forward(cls.queue.name, mail.as_bytes())
			frappe.db.rollback()
		except BaseException:
			w.stop()
			raise

	@classmethod
	def tearDownClass(cls):
		w = cls.world
		frappe.db.rollback()
		cleanup(w.tag)  # the queue, its tickets, their records, the raw mail
		frappe.delete_doc("User", cls.agent, force=True, ignore_permissions=True)
		frappe.db.commit()
		w.stop()
		super().tearDownClass()

	def test_agent_opens_hostile_tickets_no_dialog_and_the_text_as_written(self):
		w = self.world
		w.context.add_init_script(COUNT_DIALOGS)
		native_dialogs, outside = [], []
		w.page.on("dialog", lambda d: (native_dialogs.append(d.message), d.dismiss()))
		w.page.on("request", lambda r: "evil.invalid" in r.url and outside.append(r.url))
		w.login(self.agent, AGENT_PASSWORD)

		w.goto(f"/app/ticket?email_queue={quote(self.queue.name)}")
		w.page.locator(".list-row-container").first.wait_for()
		w.page.wait_for_timeout(800)
		shown = w.page.locator(".list-row-container .list-subject a.ellipsis").all_inner_texts()
		w.shot("12-hostile-1-ticket-list")
		for subject in SUBJECTS:
			self.assertIn(" ".join(subject.split()), [" ".join(t.split()) for t in shown])

		for index, subject in enumerate(SUBJECTS):
			ticket = self.tickets[subject]
			w.goto(f"/app/ticket/{ticket}")
			title = w.page.locator(".title-text").first
			title.wait_for()
			w.page.locator(".timeline-item .timeline-message-box").first.wait_for()
			w.page.wait_for_timeout(500)
			self.assertEqual(" ".join(title.inner_text().split()), " ".join(subject.split()))
			self.assertEqual(w.page.locator('input[data-fieldname="subject"]').input_value(), subject)
			box = w.page.locator(".timeline-item .timeline-message-box").first.inner_text()
			self.assertIn(" ".join(subject.split()), " ".join(box.split()))
			self.assertIn("<b>not bold</b>", box)  # the customer's text, as text
			self.assertIn("Eve", box)
			attachments = w.page.locator(".form-attachments").first.inner_text()
			self.assertIn("report", attachments)
			if index in (0, 3):
				w.shot(f"12-hostile-{index + 2}-ticket-{index}")

		# The attacker is any logged-in user on the REST API: an agent sets a subject directly.
		ticket = self.tickets[SUBJECTS[0]]
		planted = '<svg onload="alert(10)"> Planted <img src=x onerror=alert(11)'
		answer = w.context.request.put(
			f"{w.web.url}/api/resource/Ticket/{ticket}",
			data={"subject": planted},
			headers={"X-Frappe-CSRF-Token": w.page.evaluate("frappe.csrf_token")},
		)
		self.assertEqual(answer.status, 200, answer.text()[:300])
		w.goto(f"/app/ticket/{ticket}")
		title = w.page.locator(".title-text").first
		title.wait_for()
		w.page.wait_for_timeout(500)
		self.assertEqual(" ".join(title.inner_text().split()), " ".join(planted.split()))
		w.fresh()
		stored = frappe.db.get_value("Ticket", ticket, "subject")
		self.assertIn("Planted", stored)
		self.assertNotIn("<", stored)

		dialogs = w.page.evaluate("window.__efDialogs")
		self.assertEqual(dialogs, [])
		self.assertEqual(native_dialogs, [])
		self.assertEqual(outside, [])
