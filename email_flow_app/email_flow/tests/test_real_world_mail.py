"""Real-world mail through IMAP into a real site: a ticket or a visible verdict for every message.

A Dovecot mailbox holds the corpora CI installs (.ci/setup.d/20-mail-corpora.sh: CPython's
email test data, mail-parser's and talon's fixtures, flufl.bounce's bounces) plus one crafted
message for each case an earlier run failed on. It is drained the production way: the
scheduler tick (enqueue_polls) and a real worker. Every message is accounted for, none is
Failed, and each crafted case is checked by what an agent sees.
"""

import os
from collections import Counter
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import frappe

from email_flow_app.email_flow.tests.utils import MailWorldTestCase
from email_flow_app.mail import desk_text

CORPORA = Path(os.environ.get("EMAIL_FLOW_CORPORA", "/var/cache/email-flow/corpora"))
HOSTILE_SUBJECT = 'Invoice 42 <img src=x onerror="alert(document.domain)"'
EMPTIED_SUBJECT = "<DIV STYLE=\"width: expression(alert('XSS'));\">"
CP1251_SUBJECT = "Счёт на оплату № 42 за октябрь"


def corpus_messages() -> list[tuple[str, bytes]]:
	"""(label, raw) of every corpus message; fails when a corpus is not installed."""
	wanted = {
		"cpython-test-email": "msg_*.txt",
		"mail-parser": "*",
		"talon": "**/*.eml",
		"flufl-bounce": "*.txt",
	}
	found = []
	for name, pattern in wanted.items():
		folder = CORPORA / name
		if not (folder / ".complete").exists():
			raise AssertionError(
				f"mail corpus {name} missing at {folder}: run .ci/setup.d/20-mail-corpora.sh"
			)
		files = sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
		found += [(f"{name}/{p.name}", p.read_bytes()) for p in files]
	return found


def crafted(to: str, sender: str, subject: str | bytes, body: str = "Hello, please help.", **kw) -> bytes:
	"""A message with its From and Subject written as given (no header folding or quoting)."""
	msg = EmailMessage()
	msg["To"] = to
	msg["Message-ID"] = make_msgid(domain="crafted.test")
	msg["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
	msg.set_content(body, **kw)
	subject_bytes = subject if isinstance(subject, bytes) else subject.encode()
	return f"From: {sender}\r\n".encode() + b"Subject: " + subject_bytes + b"\r\n" + msg.as_bytes()


def raw_mime(to: str, sender: str, subject: str, mime: str) -> bytes:
	head = (
		f"From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: {make_msgid(domain='crafted.test')}\n"
		"Date: Fri, 27 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\n"
	)
	return (head + mime).replace("\n", "\r\n").encode()


class TestRealWorldMailBecomesTicketsOrVerdicts(MailWorldTestCase):
	def test_corpora_and_crafted_cases_through_imap(self):
		w = self.world
		frappe.db.set_value("Incoming Email Queue", w.queue.name, "send_acknowledgement", 0)
		frappe.db.commit()
		to = w.support
		big_line = "The backup log says: all good, nothing to report, carry on. " * 3 + "\n"
		cases = {
			"no-tld": crafted(to, "greg@inbucket", "Bad address 1"),
			"no-tld-2": crafted(to, "bob@extern", "Bad address 2"),
			"umlaut": crafted(to, "danglüe@email.com", "Bad address 3"),
			"underscore": crafted(to, "mporcile@server_mail.it", "Bad address 4"),
			"angle-name": crafted(to, '"Jane Doe <Sales>" <jane@cust.test>', "Name with angle brackets"),
			"long-name": crafted(to, f'"Anna {"Very" * 80} Long" <anna@cust.test>', "Very long name"),
			"hostile": crafted(to, "hostile@cust.test", HOSTILE_SUBJECT),
			"emptied": crafted(to, "emptied@cust.test", EMPTIED_SUBJECT),
			"blank": crafted(to, "blank@cust.test", "   \t  "),
			"long-subject": crafted(to, "long-subject@cust.test", "Subject " + "x" * 292),
			"cp1251": crafted(
				to,
				"ivan@cust.test",
				CP1251_SUBJECT.encode("cp1251"),
				"Добрый день",
				charset="windows-1251",
				cte="8bit",
			),
			"huge": crafted(
				to, "huge@cust.test", "Backup log", big_line * (24 * 1024 * 1024 // len(big_line))
			),
			"leftovers": raw_mime(
				to,
				"watch@cust.test",
				"Sent from my watch",
				'Content-Type: multipart/mixed; boundary="M"\n\n'
				'--M\nContent-Type: multipart/alternative; boundary="A"\n\n'
				"--A\nContent-Type: text/plain\n\nThe door code does not work.\n"
				"--A\nContent-Type: text/watch-html\n\n<b>The door code does not work.</b>\n"
				"--A\nContent-Type: application/octet-stream\n\n\n"
				"--A\nContent-Type: text/html\n\n<p>The door code does not work.</p>\n--A--\n"
				'--M\nContent-Type: image/png\nContent-Disposition: attachment; filename="door.png"\n\n'
				"PNGDATA\n--M--\n",
			),
			"named-inline-text": raw_mime(
				to,
				"inline@cust.test",
				"Named inline text",
				'Content-Type: multipart/mixed; boundary="X"\n\n'
				'--X\nContent-Type: text/plain\nContent-Disposition: inline; filename="note.txt"\n\n'
				"The printer on floor 2 is broken.\n--X--\n",
			),
			"french-bounce": (
				"From: Dsicspiibs.spi-internet@socgen.example\r\nTo: " + to + "\r\n"
				"Subject: RE: Your message awaits moderator approval : non remis\r\n\t(delivery failed)\r\n"
				"Message-ID: <fr-bounce-1@socgen.example>\r\nDate: Tue, 2 May 2026 18:42:52 +0200\r\n\r\n"
				"Votre message n'a pas pu etre delivre a\r\nuserx@example.com\r\n\r\n"
				"Your message could not be delivered to\r\nuserx@example.com\r\n"
			).encode(),
		}
		corpus = corpus_messages()
		w.dovecot.append_many(w.support, "INBOX", [raw for _label, raw in corpus] + list(cases.values()))
		delivered = len(corpus) + len(cases)

		for _round in range(6):  # each poll files what it fetched; a big mailbox takes a few
			w.poll()
			if not frappe.db.count("Inbound Email", {"email_queue": w.queue.name, "status": "Received"}):
				break
		rows = frappe.get_all(
			"Inbound Email",
			filters={"email_queue": w.queue.name},
			fields=["name", "status", "reason", "error_type", "sender", "subject", "ticket", "raw_size"],
			order_by="name",
		)
		by_status = Counter(r.status for r in rows)
		print(f"\nreal-world mail: {delivered} delivered ({len(corpus)} corpus + {len(cases)} crafted)")
		for status, count in sorted(by_status.items()):
			print(f"  {status:<15} {count}")
		verdicts = Counter((r.reason or "").split(":")[0][:60] for r in rows if r.status == "Filtered")
		for verdict, count in verdicts.most_common():
			print(f"    Filtered: {verdict:<60} {count}")
		self.assertEqual(len(rows), delivered, "every message is stored once")
		self.assertEqual([(r.name, r.reason) for r in rows if r.status in ("Failed", "Received")], [])
		# Fields filled when stored: every row says who wrote it and what about (where the mail does).
		self.assertGreater(sum(1 for r in rows if r.subject), 0.9 * delivered)
		self.assertGreater(sum(1 for r in rows if r.sender), 0.9 * delivered)

		def ticket_of(sender: str) -> frappe._dict:
			row = next(r for r in rows if r.sender == sender)
			self.assertEqual(row.status, "Ticket Created", row)
			return frappe.get_doc("Ticket", row.ticket)

		# Bad addresses: a ticket with the address as written, no Contact, a note saying why.
		for address in ("greg@inbucket", "bob@extern", "danglüe@email.com", "mporcile@server_mail.it"):
			ticket = ticket_of(address)
			self.assertEqual(ticket.raised_by, address)
			self.assertFalse(ticket.contact)
			notes = frappe.get_all("Comment", filters={"reference_name": ticket.name}, pluck="content")
			self.assertTrue(any("Contact" in n for n in notes), notes)
		# Display names: cleaned for the Contact, cut to fit.
		jane = ticket_of("jane@cust.test")
		contact = frappe.get_doc("Contact", jane.contact)
		self.assertNotIn("<", contact.name + contact.full_name)
		self.assertIn("Jane Doe", contact.full_name)
		self.assertLessEqual(
			len(frappe.get_doc("Contact", ticket_of("anna@cust.test").contact).full_name), 140
		)
		# Subjects read as written, nothing in them is markup; the long one cut, the blank one named.
		for sender, subject in (
			("hostile@cust.test", HOSTILE_SUBJECT),
			("emptied@cust.test", EMPTIED_SUBJECT),
		):
			ticket = ticket_of(sender)
			self.assertEqual(desk_text.plain(ticket.subject), subject)
			self.assertNotIn("<", ticket.subject)
			comm = frappe.get_all(
				"Communication", filters={"reference_name": ticket.name}, fields=["subject"]
			)[0]
			self.assertEqual(desk_text.plain(comm.subject), subject)
			self.assertNotIn("<", comm.subject)
		self.assertEqual(ticket_of("blank@cust.test").subject, "(no subject)")
		cut = ticket_of("long-subject@cust.test").subject
		self.assertTrue(cut.endswith("…") and len(cut) <= 140, cut)
		full = next(r for r in rows if r.sender == "long-subject@cust.test")
		self.assertEqual(full.subject, "Subject " + "x" * 292)
		# 8-bit cp1251 subject: decoded, not mojibake.
		self.assertEqual(ticket_of("ivan@cust.test").subject, CP1251_SUBJECT)
		# 24 MB body: capped, with a note; the raw message keeps it all.
		huge = ticket_of("huge@cust.test")
		self.assertLess(len(huge.description), 1_200_000)
		self.assertIn("The backup log says", huge.description)
		notes = frappe.get_all("Comment", filters={"reference_name": huge.name}, pluck="content")
		self.assertTrue(any("cut here" in n for n in notes), notes)
		huge_comm = frappe.get_all(
			"Communication", filters={"reference_name": huge.name}, fields=["content", "text_content"]
		)[0]
		self.assertLess(len(huge_comm.content), 1_200_000)
		self.assertLess(len(huge_comm.text_content), 1_100_000)
		self.assertGreater(next(r for r in rows if r.sender == "huge@cust.test").raw_size, 24_000_000)
		# Alternative leftovers are no files; the real attachment is.
		watch = ticket_of("watch@cust.test")
		files = frappe.get_all(
			"File",
			filters={"attached_to_doctype": "Ticket", "attached_to_name": watch.name},
			pluck="file_name",
		)
		self.assertEqual(files, ["door.png"])
		self.assertIn("door code does not work", watch.description)
		# A named inline text part with no other body is the body.
		self.assertIn("printer on floor 2 is broken", ticket_of("inline@cust.test").description)
		# A French bounce that is not a DSN is a bounce, not a ticket.
		bounce = next(r for r in rows if r.sender == "dsicspiibs.spi-internet@socgen.example")
		self.assertEqual(bounce.status, "Filtered")
		self.assertFalse(bounce.ticket)
