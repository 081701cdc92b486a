"""A customer writes, an agent answers, the customer answers back: one Ticket, on real servers."""

import email
import email.policy

import frappe
from frappe.core.doctype.communication.email import make as make_communication

from email_flow_app.email_flow.tests.utils import (
	CUSTOMER,
	MailWorldTestCase,
	customer_email,
	reply_to,
)

PDF = b"%PDF-1.4\n% a tiny but real-looking pdf\n"


class TestEmailToTicketRoundTrip(MailWorldTestCase):
	def poll(self):
		self.world.poll()

	def tickets(self):
		return frappe.get_all(
			"Ticket",
			filters={"email_queue": self.world.queue.name},
			fields=["name", "subject"],
			order_by="creation",
		)

	def inbound(self, status):
		return frappe.get_all(
			"Inbound Email",
			filters={"email_queue": self.world.queue.name, "status": status},
			fields=["name", "reason", "sender", "ticket"],
		)

	def test_customer_agent_customer_round_trip_and_loops(self):
		world = self.world
		first = customer_email(world.support, attachment=("invoice.pdf", PDF))
		world.deliver(first.as_bytes())
		self.poll()

		# A Ticket with the subject, the body, the attachment, the Contact and the queue.
		tickets = self.tickets()
		self.assertEqual(len(tickets), 1)
		ticket = frappe.get_doc("Ticket", tickets[0].name)
		self.assertEqual(ticket.subject, "My printer is on fire")
		self.assertIn("on fire again", ticket.description)
		self.assertEqual(ticket.raised_by, CUSTOMER[1])
		self.assertEqual(ticket.customer_name, CUSTOMER[0])
		self.assertEqual(ticket.email_queue, world.queue.name)
		self.assertEqual(ticket.status, "Open")
		contact_emails = frappe.get_all("Contact Email", filters={"parent": ticket.contact}, pluck="email_id")
		self.assertIn(CUSTOMER[1], contact_emails)
		files = frappe.get_all(
			"File",
			filters={"attached_to_doctype": "Ticket", "attached_to_name": ticket.name},
			fields=["name", "file_name", "is_private"],
		)
		self.assertEqual(len(files), 1)
		# Frappe suffixes a name already taken on disk (invoice<hash>.pdf); the customer's bytes are what count.
		self.assertTrue(files[0].file_name.startswith("invoice") and files[0].file_name.endswith(".pdf"))
		self.assertEqual(files[0].is_private, 1)
		content = frappe.get_doc("File", files[0].name).get_content()
		self.assertEqual(content.encode() if isinstance(content, str) else content, PDF)

		# The agent replies from the Desk composer; it leaves through the mapped channel.
		world.smtp.reset()
		make_communication(
			doctype="Ticket",
			name=ticket.name,
			content="We are sending a fire extinguisher.",
			subject=f"Re: {ticket.subject}",
			recipients=CUSTOMER[1],
			communication_medium="Email",
			sent_or_received="Sent",
			send_email=True,
		)
		frappe.db.commit()
		queued = frappe.get_all(
			"Email Queue",
			filters={"reference_doctype": "Ticket", "reference_name": ticket.name},
			pluck="name",
		)
		self.assertEqual(len(queued), 1)
		frappe.get_doc("Email Queue", queued[0]).send()
		self.assertEqual(frappe.db.get_value("Email Queue", queued[0], "status"), "Sent")
		self.assertEqual(len(world.smtp.messages), 1)
		received = world.smtp.messages[0]
		self.assertEqual(received.rcpt_tos, [CUSTOMER[1]])
		agent_mail = email.message_from_bytes(received.data, policy=email.policy.default)
		self.assertEqual(agent_mail["From"].addresses[0].addr_spec, world.support)
		self.assertEqual(agent_mail["From"].addresses[0].display_name, "Acme Support")
		self.assertEqual(agent_mail["In-Reply-To"], first["Message-ID"])
		self.assertIn(first["Message-ID"], agent_mail["References"])
		self.assertIn(ticket.name, agent_mail["Subject"])
		self.assertEqual(frappe.db.get_value("Ticket", ticket.name, "status"), "Replied")

		# The customer's mail client replies to what it received: same ticket, Open again.
		world.deliver(reply_to(agent_mail, "Thanks, the fire is out.").as_bytes())
		self.poll()
		self.assertEqual(len(self.tickets()), 1)
		timeline = frappe.get_all(
			"Communication",
			filters={
				"reference_doctype": "Ticket",
				"reference_name": ticket.name,
				"communication_type": "Communication",
			},
			fields=["sent_or_received", "sender"],
			order_by="creation",
		)
		self.assertEqual([c.sent_or_received for c in timeline], ["Received", "Sent", "Received"])
		self.assertEqual(frappe.db.get_value("Ticket", ticket.name, "status"), "Open")

		# An out-of-office reply and a bounce: no ticket, visible as Filtered.
		ooo = customer_email(
			world.support,
			subject="Automatic reply: My printer is on fire",
			body="I am out of the office until Monday.",
			headers={"Auto-Submitted": "auto-replied", "In-Reply-To": agent_mail["Message-ID"]},
		)
		bounce = dsn_for(agent_mail, world.support)
		world.deliver(ooo.as_bytes())
		world.deliver(bounce)
		# Our own address writing to the inbox: never a ticket.
		world.deliver(
			customer_email(world.support, subject="Loop?", sender=("Acme Support", world.support)).as_bytes()
		)
		self.poll()
		self.assertEqual(len(self.tickets()), 1)
		filtered = self.inbound("Filtered")
		self.assertEqual(len(filtered), 3, filtered)
		self.assertTrue(all(row.reason for row in filtered))
		notes = frappe.get_all(
			"Comment",
			filters={"reference_doctype": "Ticket", "reference_name": ticket.name, "comment_type": "Comment"},
			pluck="content",
		)
		# Both are notes on the ticket they answer (the bounce found through the returned Message-ID).
		self.assertEqual(len(notes), 2, notes)
		self.assertTrue(any("Automatic reply" in n for n in notes), notes)
		self.assertTrue(any("Undelivered Mail" in n for n in notes), notes)
		self.assertEqual(self.inbound("Failed"), [])


def dsn_for(original, support: str) -> bytes:
	"""A Postfix-style RFC 3464 delivery status notification for `original`."""
	return (
		"From: MAILER-DAEMON@mail.customer.test (Mail Delivery System)\r\n"
		f"To: {support}\r\n"
		"Subject: Undelivered Mail Returned to Sender\r\n"
		"Auto-Submitted: auto-replied\r\n"
		"Message-ID: <bounce.1@mail.customer.test>\r\n"
		"MIME-Version: 1.0\r\n"
		'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
		"\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n"
		"\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
		"Reporting-MTA: dns; mail.customer.test\r\n\r\n"
		f"Final-Recipient: rfc822; {CUSTOMER[1]}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
		"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
		"\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
		f"From: {support}\r\nTo: {CUSTOMER[1]}\r\nMessage-ID: {original['Message-ID']}\r\nSubject: {original['Subject']}\r\n"
		"\r\n--B--\r\n"
	).encode()
