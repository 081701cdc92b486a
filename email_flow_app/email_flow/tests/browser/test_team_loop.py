"""The team loop with real actors: a customer's mail client, a plain Support Agent, a site in New York.

- The site's time zone is America/New_York (not UTC); the customer writes from Paris.
- The agent logs in to the Desk (headless Chromium) with the Support Agent role only.
- The customer is a small mail-client model (`MailClient`): it reads its own Dovecot
  mailbox and answers what it actually received: to the Reply-To if present, else the
  From; In-Reply-To and References from that message; "Re: "; the text quoted. It sends by
  SMTP. The test SMTP server delivers every accepted message into its recipient's
  Dovecot mailbox, and plays the recipient's mail system for a full mailbox: it returns
  an RFC 3464 delivery report to the sender, as a real one does.
- Mail comes in the production way: the scheduler tick (enqueue_polls) and a real worker.

Steps (a screenshot each, /work/screenshots/11-loop-*.png): 1. the mail comes in and the
agent sees it with the right age; 2. the agent replies from the composer (customer + Cc,
"Re:", quote, channel signature) with no error popup; 3. the customer receives it within
seconds, from the queue's address, with no Reply-To naming the agent and no unsubscribe
footer; 4. the customer's answer lands on the same ticket: Open, the assignee notified, the
timeline in order; 5. the agent closes it, the customer writes again: reopened, in the
timeline, notified; 6. a reply bounces: the note names the recipient and the reason, the
Communication shows "Bounced"; 7. the agent opens the ticket's Contact and, from it, the
customer's tickets. No error popup and no 401/403 answer on the way.
"""

import datetime
import email
import email.policy
import re
import smtplib
import time
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from zoneinfo import ZoneInfo

import frappe
from frappe.utils.password import update_password
from playwright.sync_api import expect

from email_flow_app.email_flow.tests.browser.harness import UIWorld
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import SiteTestCase, cleanup, run_worker
from email_flow_app.testing.smtp_server import ReceivedMessage

AGENT_PASSWORD = "Agent-pw-1!"
SITE_ZONE = "America/New_York"
CUSTOMER_ZONE = "Europe/Paris"
PASSWORD = "mailbox-pw"
SIGNATURE = "Acme Support team, always here"


class MailClient:
	"""A customer's mail client: reads its mailbox over IMAP, answers what it received over SMTP."""

	def __init__(self, world: UIWorld, address: str, name: str) -> None:
		self.world, self.address, self.name = world, address, name

	def inbox(self) -> list[EmailMessage]:
		client = self.world.dovecot.client(self.address)
		try:
			client.select_folder("INBOX", readonly=True)
			uids = client.search("ALL")
			fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
			return [
				email.message_from_bytes(fetched[uid][b"BODY[]"], policy=email.policy.default)
				for uid in sorted(fetched)
			]
		finally:
			client.logout()

	def wait_for(self, count: int, timeout: float = 60) -> tuple[EmailMessage, float]:
		"""The `count`-th message of the mailbox once it is there, and how long that took."""
		started = time.monotonic()
		while True:
			messages = self.inbox()
			if len(messages) >= count:
				return messages[count - 1], time.monotonic() - started
			if time.monotonic() - started > timeout:
				raise AssertionError(f"{self.address}: {len(messages)} messages after {timeout} s")
			time.sleep(0.5)

	def now(self) -> str:
		return format_datetime(datetime.datetime.now(ZoneInfo(CUSTOMER_ZONE)))

	def compose(self, to: str, subject: str, body: str, cc: str | None = None) -> EmailMessage:
		msg = EmailMessage()
		msg["From"] = formataddr((self.name, self.address))
		msg["To"] = to
		if cc:
			msg["Cc"] = cc
		msg["Subject"] = subject
		msg["Date"] = self.now()
		msg["Message-ID"] = make_msgid(domain="customer.test")
		msg.set_content(body)
		return msg

	def reply(self, received: EmailMessage, body: str) -> EmailMessage:
		"""What the client's Reply makes of `received`."""
		msg = EmailMessage()
		msg["From"] = formataddr((self.name, self.address))
		msg["To"] = received.get("Reply-To") or received["From"]
		subject = str(received["Subject"])
		msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
		msg["Date"] = self.now()
		msg["Message-ID"] = make_msgid(domain="customer.test")
		msg["In-Reply-To"] = received["Message-ID"]
		msg["References"] = " ".join(
			filter(None, [str(received.get("References") or ""), received["Message-ID"]])
		)
		text = received.get_body(("plain", "html")).get_content()
		quoted = "\n".join("> " + line for line in text.splitlines())
		msg.set_content(f"{body}\n\nOn {received['Date']}, {received['From']} wrote:\n{quoted}\n")
		return msg

	def send(self, msg: EmailMessage) -> None:
		with smtplib.SMTP("127.0.0.1", self.world.smtp.port, timeout=30) as smtp:
			smtp.starttls(context=self.world.ca.client_context())
			smtp.login(self.address, PASSWORD)
			smtp.send_message(msg)


def delivery_report(received: ReceivedMessage, recipient: str) -> bytes:
	"""What the recipient's mail system sends back for a full mailbox (RFC 3464)."""
	original = email.message_from_bytes(received.data, policy=email.policy.compat32)
	headers = "".join(
		f"{name}: {original[name]}\r\n"
		for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "X-Email-Flow-Ticket")
		if original[name]
	)
	return (
		"From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\n"
		f"To: {received.mail_from}\r\n"
		"Subject: Undelivered Mail Returned to Sender\r\n"
		f"Date: {format_datetime(datetime.datetime.now(datetime.timezone.utc))}\r\n"
		f"Message-ID: {make_msgid(domain='mx.customer.test')}\r\n"
		"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
		'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
		"--R\r\nContent-Type: text/plain\r\n\r\n"
		f"Your message could not be delivered to {recipient}: mailbox full.\r\n"
		"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
		"Reporting-MTA: dns; mx.customer.test\r\n\r\n"
		f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.2.2\r\n"
		f"Diagnostic-Code: smtp; 552 5.2.2 <{recipient}>: Mailbox full\r\n"
		"--R\r\nContent-Type: text/rfc822-headers\r\n\r\n" + headers + "--R--\r\n"
	).encode()


class TestTeamLoopWithRealActors(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = w = UIWorld({"support": PASSWORD, "carla": PASSWORD, "colleague": PASSWORD})
		cls.full_mailboxes = set()
		try:
			w.start()
			cls.saved_zone = frappe.db.get_single_value("System Settings", "time_zone")
			frappe.db.set_single_value("System Settings", "time_zone", SITE_ZONE)
			frappe.clear_cache()
			cls.support = w.address("support")
			cls.customer = MailClient(w, w.address("carla"), "Carla Customer")
			cls.colleague = w.address("colleague")
			w.smtp.deliver = cls.deliver
			cls.agent = make_user(f"ef-ui-loop-{w.tag}@example.test", ["Support Agent"])
			frappe.db.set_value("User", cls.agent, {"first_name": "Alex", "last_name": "Agent"})
			update_password(cls.agent, AGENT_PASSWORD)
			cls.channel = frappe.get_doc(
				{
					"doctype": "Outgoing Channel",
					"channel_name": f"Support out {w.tag}",
					"channel_type": "SMTP",
					"from_name": "Acme Support",
					"from_address": cls.support,
					"host": "127.0.0.1",
					"port": w.smtp.port,
					"security": "STARTTLS",
					"username": cls.support,
					"password": PASSWORD,
					"signature": f"<p>{SIGNATURE}</p>",
				}
			).insert(ignore_permissions=True)
			cls.queue = frappe.get_doc(
				{
					"doctype": "Incoming Email Queue",
					"queue_name": f"Support {w.tag}",
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
					"assign_to": [{"user": cls.agent}],
				}
			).insert(ignore_permissions=True)
			frappe.db.commit()
		except BaseException:
			w.stop()
			raise

	@classmethod
	def deliver(cls, received: ReceivedMessage) -> None:
		"""The recipients' mail systems: into their mailbox, or a delivery report to the sender."""
		w = cls.world
		for rcpt in received.rcpt_tos:
			rcpt = rcpt.lower()
			if rcpt in cls.full_mailboxes:
				w.dovecot.append(received.mail_from.lower(), "INBOX", delivery_report(received, rcpt))
			elif rcpt in w.mailboxes:
				w.dovecot.append(rcpt, "INBOX", received.data)

	@classmethod
	def tearDownClass(cls):
		w = cls.world
		frappe.db.rollback()
		frappe.db.set_single_value("System Settings", "time_zone", cls.saved_zone)
		frappe.clear_cache()
		cleanup(w.tag)  # the queue and channel, their tickets, records, notifications, raw mail
		frappe.db.delete("Email Queue", {"sender": ("like", f"%{w.tag}%")})
		frappe.db.delete("Notification Log", {"for_user": cls.agent})
		frappe.delete_doc("User", cls.agent, force=True, ignore_permissions=True)
		frappe.db.commit()
		w.stop()
		super().tearDownClass()

	def poll(self) -> None:
		"""The scheduler's tick, then a real worker runs the poll job."""
		from email_flow_app.email_flow.services.tick import enqueue_polls

		enqueue_polls()
		frappe.db.commit()
		self.assertEqual(run_worker("long"), 0)
		frappe.db.rollback()

	def notifications(self, ticket: str) -> list[str]:
		frappe.db.rollback()
		return frappe.get_all(
			"Notification Log",
			filters={"for_user": self.agent, "document_name": ticket, "type": "Alert"},
			pluck="subject",
			order_by="creation",
		)

	def reply_from_the_composer(self, text: str) -> None:
		w = self.world
		w.page.locator(".timeline-actions button", has_text="New Email").first.click()
		composer = w.page.locator(".modal.show").filter(has=w.page.locator(".ql-editor")).first
		composer.wait_for()
		w.page.wait_for_timeout(800)
		editor = composer.locator(".ql-editor").first
		editor.click()
		w.page.keyboard.press("Control+Home")
		w.page.keyboard.type(text)
		return composer

	def test_customer_agent_customer_close_reopen_bounce(self):
		w, customer = self.world, self.customer
		w.login(self.agent, AGENT_PASSWORD)
		denied, popups = [], []
		w.page.on("response", lambda r: r.status in (401, 403) and denied.append(f"{r.status} {r.url}"))

		def error_popups() -> list[str]:
			texts = w.page.locator(".modal.show .msgprint, .modal.show .modal-title").all_inner_texts()
			return [t for t in texts if "not permitted" in t.lower() or "error" in t.lower()]

		# 1. Mail comes in (the customer's client sends it by SMTP, the server delivers it).
		subject = f"Printer on fire {w.tag}"
		first = customer.compose(
			self.support, subject, "Hello,\nthe printer in room 4 is on fire.\nCarla", cc=self.colleague
		)
		customer.send(first)
		self.poll()
		ticket = frappe.get_all("Ticket", filters={"email_queue": self.queue.name}, pluck="name")
		self.assertEqual(len(ticket), 1)
		ticket = ticket[0]
		w.goto("/app/ticket")
		row = w.page.locator(".list-row-container", has_text=subject).first
		row.wait_for()
		age = row.locator(".frappe-timestamp, .list-row-activity .modified").first.inner_text()
		w.goto(f"/app/ticket/{ticket}")
		item = w.page.locator(".timeline-item", has_text="on fire").first
		item.wait_for()
		when = item.locator(".frappe-timestamp").first.inner_text()
		item.scroll_into_view_if_needed()
		w.shot("11-loop-1-mail-came-in")
		for shown in (age, when):
			self.assertTrue(
				any(word in shown.lower() for word in ("now", "minute", "1 m", "min")), (age, when)
			)

		# 2. The agent replies from the composer: its defaults, no error popup.
		composer = self.reply_from_the_composer("Hello Carla, we are sending the fire brigade. ")
		recipients = composer.locator('input[data-fieldname="recipients"]').first.input_value()
		cc = composer.locator('input[data-fieldname="cc"]').first.input_value()
		subject_shown = composer.locator('input[data-fieldname="subject"]').first.input_value()
		content = composer.locator(".ql-editor").first.inner_html()
		w.shot("11-loop-2-composer")
		self.assertIn(customer.address, recipients)
		self.assertIn(self.colleague, cc)
		self.assertEqual(subject_shown, f"Re: {subject}")
		self.assertIn("<blockquote>", content)
		self.assertIn("on fire", content)
		self.assertIn(SIGNATURE, content)
		popups += error_popups()
		composer.locator(".modal-footer .btn-primary").first.click()
		composer.wait_for(state="hidden")
		sent_item = w.page.locator(".timeline-item", has_text="fire brigade").first
		sent_item.wait_for()
		sent_at = time.monotonic()

		# 3. The customer receives it within seconds (the send job runs right after the commit).
		self.assertEqual(run_worker("short"), 0)
		answer, _waited = customer.wait_for(1)
		took = time.monotonic() - sent_at
		print(f"\nagent's reply in the customer's mailbox {took:.1f} s after Send")
		self.assertLess(took, 60)
		self.assertEqual(answer["From"].addresses[0].addr_spec, self.support)
		reply_to = answer.get("Reply-To")
		self.assertTrue(reply_to is None or self.agent not in str(reply_to), reply_to)
		body = answer.get_body(("html", "plain")).get_content()
		self.assertIn("fire brigade", body)
		shown = re.sub(r"<!--.*?-->", "", body, flags=re.S)  # what the customer sees (not template notes)
		self.assertNotIn("unsubscribe", shown.lower())
		self.assertNotIn("Leave this conversation", shown)
		sent_item.scroll_into_view_if_needed()
		w.shot("11-loop-3-replied")

		# 4. The customer answers what it received; it lands on the same ticket.
		customer.send(customer.reply(answer, "Thank you, they are here."))
		self.poll()
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Ticket", ticket, "status"), "Open")
		self.assertEqual(frappe.db.count("Ticket", {"email_queue": self.queue.name}), 1)
		self.assertTrue(any("replied" in n for n in self.notifications(ticket)), self.notifications(ticket))
		w.goto(f"/app/ticket/{ticket}")
		answered = w.page.locator(".timeline-item", has_text="they are here").first
		answered.wait_for()
		answered.scroll_into_view_if_needed()
		texts = w.page.locator(".timeline-item .timeline-message-box").all_inner_texts()
		order = [
			next(i for i, t in enumerate(texts) if needle in t)
			for needle in ("they are here", "fire brigade", "room 4 is on fire")
		]
		self.assertEqual(order, sorted(order), texts)  # newest first, as the Desk shows a timeline
		w.shot("11-loop-4-customer-answered")

		# 5. The agent closes it; the customer writes again: it reopens, in the timeline.
		w.page.select_option('select[data-fieldname="status"]', "Closed")
		w.page.keyboard.press("Control+s")
		expect(w.page.locator(".indicator-pill").first).to_contain_text("Closed")
		customer.send(customer.reply(answer, "Sorry, it is burning again."))
		self.poll()
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Ticket", ticket, "status"), "Open")
		self.assertTrue(any("reopened" in n for n in self.notifications(ticket)))
		w.goto(f"/app/ticket/{ticket}")
		w.page.locator(".timeline-item", has_text="burning again").first.wait_for()
		reopened = w.page.locator(".timeline-item", has_text="Reopened").first
		reopened.wait_for()
		reopened.scroll_into_view_if_needed()
		w.shot("11-loop-5-reopened")

		# 6. A reply bounces: the colleague's mailbox is full.
		self.full_mailboxes.add(self.colleague)
		composer = self.reply_from_the_composer("We sent the brigade again. ")
		# The ticket's Cc stays, though the customer's later replies dropped it.
		self.assertIn(self.colleague, composer.locator('input[data-fieldname="cc"]').first.input_value())
		popups += error_popups()
		composer.locator(".modal-footer .btn-primary").first.click()
		composer.wait_for(state="hidden")
		self.assertEqual(run_worker("short"), 0)
		customer.wait_for(2)
		self.poll()
		frappe.db.rollback()
		notes = frappe.get_all("Comment", filters={"reference_name": ticket}, pluck="content")
		bounce_note = next((n for n in notes if self.colleague in n and "5.2.2" in n), None)
		inbound = frappe.get_all(
			"Inbound Email",
			filters={"email_queue": self.queue.name},
			fields=["sender", "status", "reason", "thread_rule"],
			order_by="creation",
		)
		self.assertTrue(bounce_note, (notes, inbound))
		self.assertIn("Mailbox full", bounce_note)
		bounced = frappe.get_all(
			"Communication",
			filters={"reference_name": ticket, "delivery_status": "Bounced"},
			pluck="content",
		)
		self.assertEqual(len(bounced), 1)
		self.assertIn("brigade again", bounced[0])
		self.assertTrue(any("bounced" in n for n in self.notifications(ticket)))
		w.goto(f"/app/ticket/{ticket}")
		box = w.page.locator(".timeline-item", has_text="brigade again").first
		box.wait_for()
		expect(box.locator(".indicator-pill")).to_contain_text("Bounced")
		note = w.page.locator(".timeline-item", has_text="Mailbox full").first
		note.wait_for()
		note.scroll_into_view_if_needed()
		w.page.mouse.wheel(0, 250)  # the note and, below it, the reply that bounced
		w.shot("11-loop-6-bounced")

		# 7. The ticket's Contact, and from it the customer's other tickets.
		contact = frappe.db.get_value("Ticket", ticket, "contact")
		w.page.locator('[data-fieldname="contact"] input').first.focus()  # shows the link's open button
		w.page.locator('[data-fieldname="contact"] .btn-open').first.click()
		w.page.wait_for_function(
			"(name) => frappe.get_route()[0] === 'Form' && frappe.get_route()[1] === 'Contact'"
			" && frappe.get_route()[2] === name",
			arg=contact,
		)
		page = w.page.locator("#page-Contact")
		expect(page.locator(".title-text").first).to_contain_text("Carla Customer")
		tickets_link = page.locator('.form-dashboard .document-link[data-doctype="Ticket"]').first
		tickets_link.wait_for()
		expect(tickets_link.locator(".count")).to_have_text("1")
		w.shot("11-loop-7-contact")
		tickets_link.locator(".badge-link").click()
		w.page.locator(".list-row-container", has_text=subject).first.wait_for()

		popups += error_popups()
		self.assertEqual(popups, [])
		self.assertEqual(denied, [])
