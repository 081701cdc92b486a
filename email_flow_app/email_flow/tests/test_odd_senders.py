"""Ordinary mail with odd headers still becomes a ticket: bad sender data degrades, it never fails."""

from email.message import EmailMessage
from email.utils import make_msgid

import frappe

from email_flow_app.email_flow.tests.utils import MailWorldTestCase
from email_flow_app.mail import desk_text


def raw_mail(to: str, sender: str, subject: str, body: str = "Hello, please help.") -> bytes:
	"""A message with its From and Subject written as given (no header folding or quoting)."""
	msg = EmailMessage()
	msg["To"] = to
	msg["Message-ID"] = make_msgid(domain="odd.test")
	msg["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
	msg.set_content(body)
	head = f"From: {sender}\r\nSubject: {subject}\r\n".encode()
	return head + msg.as_bytes()


class TestOddSendersBecomeTickets(MailWorldTestCase):
	def test_each_odd_sender_or_subject_gives_a_ticket_an_agent_can_read(self):
		w = self.world
		long_name = "Anna " + "Very" * 80 + " Long"
		cases = {
			"no tld": ("greg@inbucket", "Printer question 1"),
			"umlaut local part": ("danglüe@email.com", "Printer question 2"),
			"underscore domain": ("mporcile@server_mail.it", "Printer question 3"),
			"angle brackets in name": ('"Jane Doe <Sales>" <jane@cust.test>', "Printer question 4"),
			"very long name": (f'"{long_name}" <anna@cust.test>', "Printer question 5"),
			"one-word name": ("Solo <solo@cust.test>", "Printer question 6"),
			"subject emptied by the sanitizer": (
				"emptied@cust.test",
				"<DIV STYLE=\"width: expression(alert('XSS'));\">",
			),
			"300-character subject": ("long-subject@cust.test", "Subject " + "x" * 292),
		}
		for sender, subject in cases.values():
			w.deliver(raw_mail(w.support, sender, subject))
		w.poll()
		rows = frappe.get_all(
			"Inbound Email",
			filters={"email_queue": w.queue.name},
			fields=["name", "status", "reason", "sender", "subject", "ticket"],
		)
		self.assertEqual(len(rows), len(cases))
		self.assertEqual([r for r in rows if r.status != "Ticket Created"], [])
		tickets = {
			t.raised_by: t
			for t in frappe.get_all(
				"Ticket",
				filters={"email_queue": w.queue.name},
				fields=["name", "subject", "raised_by", "customer_name", "contact"],
			)
		}
		# An address Frappe refuses: kept as written, no Contact, and a note says why.
		for address in ("greg@inbucket", "danglüe@email.com", "mporcile@server_mail.it"):
			ticket = tickets[address]
			self.assertFalse(ticket.contact, address)
			notes = frappe.get_all(
				"Comment",
				filters={"reference_doctype": "Ticket", "reference_name": ticket.name},
				pluck="content",
			)
			self.assertTrue(any(address in note and "Contact" in note for note in notes), notes)
		# Display names cleaned for the Contact, cut to fit.
		jane = tickets["jane@cust.test"]
		self.assertTrue(jane.contact)
		contact = frappe.get_doc("Contact", jane.contact)
		self.assertNotIn("<", contact.name + contact.first_name + (contact.last_name or ""))
		self.assertIn("Jane", contact.first_name)
		anna = tickets["anna@cust.test"]
		self.assertTrue(anna.contact)
		self.assertLessEqual(len(frappe.get_doc("Contact", anna.contact).full_name or ""), 140)
		self.assertEqual(tickets["solo@cust.test"].customer_name, "Solo")
		# Subjects: one Frappe's sanitizer would empty reads as written (and nothing in it is
		# markup: mail.desk_text); too long is cut with an ellipsis.
		self.assertEqual(
			desk_text.plain(tickets["emptied@cust.test"].subject),
			"<DIV STYLE=\"width: expression(alert('XSS'));\">",
		)
		self.assertNotIn("<", tickets["emptied@cust.test"].subject)
		cut = tickets["long-subject@cust.test"].subject
		self.assertTrue(cut.endswith("…") and len(cut) <= 140, cut)
		full = next(r for r in rows if r.sender == "long-subject@cust.test")
		self.assertEqual(full.subject, "Subject " + "x" * 292)
