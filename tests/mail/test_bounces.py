"""Bounce and auto-reply detection on flufl.bounce's real samples, plus the negatives."""

from __future__ import annotations

import pytest

from email_flow_app.mail import parse_message
from tests.mail.corpora import corpus_dir, messages

# flufl.bounce's own expectations (tests/test_detectors.py): file -> (addresses, temporary?).
# Addresses are the ones the report names as failed; "" means "flufl finds none".
EXPECTED = {
	"postfix_01.txt": ({"xxxxx@local.ie"}, False),
	"postfix_02.txt": ({"yyyyy@digicool.com"}, False),
	"postfix_03.txt": ({"ttttt@ggggg.com"}, False),
	"postfix_04.txt": ({"userx@mail1.example.com"}, False),
	"postfix_05.txt": ({"userx@example.net"}, False),
	"exim_01.txt": ({"userx@its.example.nl"}, False),
	"sendmail_01.txt": ({"zzzzz@shaft.coal.nl", "zzzzz@nfg.nl"}, False),
	"simple_01.txt": ({"bbbsss@example.com"}, False),
	"simple_02.txt": ({"userx@example.net"}, False),
	"simple_03.txt": ({"userx@example.za"}, True),
	"simple_04.txt": ({"userx@example.com"}, False),
	"newmailru_01.txt": ({"zzzzz@newmail.ru"}, False),
	"hotpop_01.txt": ({"userx@example.com"}, False),
	"simple_05.txt": ({"userx@example.net"}, False),
	"simple_06.txt": ({"userx@example.com"}, False),
	"simple_07.txt": ({"userx@example.net"}, False),
	"simple_08.txt": ({"userx@example.de"}, False),
	"simple_09.txt": ({"userx@example.de"}, False),
	"simple_10.txt": ({"userx@example.com"}, False),
	"simple_11.txt": ({"userx@example.com"}, False),
	"simple_12.txt": ({"userx@example.ac.jp"}, False),
	"simple_13.txt": ({"userx@example.fr"}, False),
	"simple_14.txt": ({"userx@example.com", "usery@example.com"}, False),
	"simple_15.txt": ({"userx@example.be"}, False),
	"simple_16.txt": ({"userx@example.com"}, False),
	"simple_17.txt": ({"userx@example.com"}, False),
	"simple_18.txt": ({"userx@example.com"}, False),
	"simple_19.txt": ({"userx@example.com.ar"}, False),
	"simple_21.txt": ({"userx@example.com"}, True),
	"simple_22.txt": ({"user@example.org"}, True),
	"simple_23.txt": ({"userx@example.it"}, False),
	"simple_24.txt": ({"userx@example.com"}, False),
	"simple_25.txt": ({"userx@example.com"}, False),
	"simple_26.txt": ({"userx@example.it"}, False),
	"simple_27.txt": ({"userx@example.net.py"}, False),
	"simple_28.txt": ({"userx@example.com"}, True),
	"simple_29.txt": ({"userx@example.com"}, False),
	"simple_30.txt": ({"userx@example.com"}, False),
	"simple_31.txt": ({"userx@example.fr"}, False),
	"simple_32.txt": ({"userx@example.com"}, False),
	"simple_33.txt": ({"userx@example.com"}, False),
	"simple_34.txt": ({"roland@example.com"}, False),
	"simple_35.txt": ({"calvin@example.com"}, True),
	"simple_36.txt": ({"userx@example.com"}, False),
	"simple_37.txt": ({"user@example.edu"}, False),
	"simple_38.txt": ({"userx@example.com"}, False),
	"simple_39.txt": ({"userx@example.ru"}, False),
	"simple_40.txt": ({"user@example.com"}, True),
	"simple_41.txt": ({"userx@example.com"}, False),
	"simple_44.txt": ({"user@example.com"}, False),
	"simple_45.txt": ({"subscriber@earthlink.net"}, False),
	"bounce_02.txt": ({"userx@example.com"}, False),
	"bounce_03.txt": ({"userx@example.uk"}, False),
	"yahoo_12.txt": ({"user@yahoo.com"}, False),
	"groupwise_01.txt": ({"userx@example.edu"}, False),
	"groupwise_02.txt": ({"userx@example.com"}, False),
	"yale_01.txt": ({"userx@cs.yale.edu", "userx@yale.edu"}, False),
	"llnl_01.txt": ({"user1@example.gov"}, False),
	"microsoft_01.txt": ({"userx@example.com"}, False),
	"microsoft_02.txt": ({"userx@example.com"}, False),
	"microsoft_04.txt": ({"userx@example.com"}, False),
	"netscape_01.txt": ({"aaaaa@corel.com", "bbbbb@corel.com"}, False),
	"aol_01.txt": ({"screenname@aol.com"}, False),
	"caiwireless_01.txt": ({"userx@example.com"}, False),
	**{f"dsn_{n:02d}.txt": (set(), n in (5, 6, 7, 8, 17)) for n in range(1, 19)},
	**{f"smtp32_{n:02d}.txt": (set(), False) for n in range(1, 8)},
	**{f"qmail_{n:02d}.txt": (set(), False) for n in range(1, 8)},
	**{f"yahoo_{n:02d}.txt": (set(), False) for n in range(1, 12)},
	"yahoo_13.txt": ({"bogus-address@example.net"}, False),
	"sina_01.txt": ({"userx@sina.com", "usery@sina.com"}, False),
	"dumbass_01.txt": (set(), False),
	"simple_42.txt": (set(), False),
	"simple_43.txt": (set(), False),
}
DSN_RECIPIENTS = {
	"dsn_01.txt": "userx@example.com",
	"dsn_02.txt": "zzzzz@example.uk",
	"dsn_03.txt": "userx@example.be",
	"dsn_04.txt": "userx@example.ch",
	"dsn_05.txt": "userx@example.cz",
	"dsn_06.txt": "userx@example.com",
	"dsn_07.txt": "userx@example.nz",
	"dsn_08.txt": "userx@example.de",
	"dsn_10.txt": "anne.person@dom.ain",
	"dsn_11.txt": "joem@example.com",
	"dsn_12.txt": "userx@example.jp",
	"dsn_14.txt": "userx@example.com.dk",
	"dsn_17.txt": "userx@example.fi",
}


def flufl(name: str) -> bytes:
	path = corpus_dir("flufl-bounce") / name
	assert path.exists(), f"{path} is not in the flufl.bounce corpus"
	return path.read_bytes()


def test_every_real_bounce_sample_is_a_bounce():
	missed = [name for name in EXPECTED if not parse_message(flufl(name)).is_bounce]
	assert not missed, missed
	assert len(EXPECTED) >= 100


def test_failed_recipients_are_found_in_most_samples():
	with_addresses = {name: exp for name, exp in EXPECTED.items() if exp[0]}
	found = 0
	missing: list[str] = []
	for name, (addresses, _temporary) in with_addresses.items():
		got = {b.address for b in parse_message(flufl(name)).bounce or []}
		if {a.lower() for a in addresses} <= got:
			found += 1
		else:
			missing.append(f"{name}: want {sorted(addresses)}, got {sorted(got)}")
	# Non-standard formats are heuristics: demand 85% and list the rest.
	assert found >= 0.85 * len(with_addresses), "\n".join(missing)


@pytest.mark.parametrize(("name", "address"), sorted(DSN_RECIPIENTS.items()))
def test_rfc3464_reports_give_recipient_and_permanence(name: str, address: str):
	msg = parse_message(flufl(name))
	bounce = {b.address: b for b in msg.bounce or []}
	assert address in bounce, msg.bounce
	assert bounce[address].permanent is not EXPECTED[name][1]
	assert msg.auto_submitted is not None
	assert msg.suppress_auto_reply is not None


def test_qmail_auto_reply_sample_is_auto_submitted_not_bounce():
	msg = parse_message(flufl("qmail_08.txt"))
	assert msg.auto_submitted == "precedence: auto_reply"
	assert not msg.is_bounce


def test_corpus_has_no_false_bounces_among_ordinary_mail():
	# talon's replies from real clients are ordinary people's mail.
	for path in messages(corpus_dir("talon") / "standard_replies", "*.eml"):
		msg = parse_message(path.read_bytes())
		assert not msg.is_bounce and msg.auto_submitted is None, path.name


ORDINARY = b"""From: Jane Customer <jane@customer.example>
To: support@ours.example
Subject: Delivery failure of my order #1234
Message-ID: <jane-1@customer.example>
Date: Tue, 3 Mar 2026 10:00:00 +0000

Hello, the courier says the package could not be delivered and was returned.
Where is my order? It failed twice.
"""


def test_ordinary_customer_mail_is_not_flagged():
	msg = parse_message(ORDINARY)
	assert msg.bounce is None
	assert msg.auto_submitted is None
	assert msg.suppress_auto_reply is None


def test_customer_reply_quoting_an_old_bounce_is_not_a_bounce():
	bounce_text = flufl("postfix_01.txt").decode("latin-1")
	body = bounce_text.split("\n\n", 1)[1]
	quoted = "\n".join("> " + line for line in body.splitlines())
	raw = (
		"From: Jane Customer <jane@customer.example>\nTo: support@ours.example\n"
		"Subject: Re: Undelivered Mail Returned to Sender\nMessage-ID: <jane-2@customer.example>\n\n"
		f"Your mail to me bounced, see below. Please resend.\n\nOn Tue, Mar 3, 2026, MAILER-DAEMON wrote:\n{quoted}\n"
	).encode("latin-1")
	msg = parse_message(raw)
	assert msg.bounce is None
	assert msg.auto_submitted is None


def test_customer_forwarding_a_dsn_as_attachment_is_not_a_bounce():
	dsn = flufl("dsn_01.txt")
	raw = (
		b"From: Jane Customer <jane@customer.example>\nTo: support@ours.example\n"
		b"Subject: Fwd: Delivery Notification: Delivery has failed\nMIME-Version: 1.0\n"
		b'Content-Type: multipart/mixed; boundary="F"\n\n--F\nContent-Type: text/plain\n\n'
		b"I got this when writing to you.\n--F\nContent-Type: message/rfc822\n\n" + dsn + b"\n--F--\n"
	)
	msg = parse_message(raw)
	assert msg.bounce is None
	assert msg.auto_submitted is None
	assert [a.filename.endswith(".eml") for a in msg.attachments] == [True]


@pytest.mark.parametrize(
	("headers", "subject", "expected"),
	[
		("Auto-Submitted: auto-replied\n", "Re: x", "auto-submitted: auto-replied"),
		("Auto-Submitted: auto-generated; owner-email=x@y\n", "x", "auto-submitted: auto-generated"),
		("X-Autoreply: yes\n", "Away", "x-autoreply"),
		("X-Autorespond: Vacation\n", "Away", "x-autorespond"),
		("Precedence: auto_reply\n", "Away", "precedence: auto_reply"),
		(
			"X-Auto-Response-Suppress: All\nThread-Topic: order\n",
			"Automatic reply: order",
			"exchange out-of-office",
		),
		("X-MS-Exchange-Organization-SCL: -1\n", "Out of Office: order", "exchange out-of-office"),
		("Auto-Submitted: no\n", "x", None),
		("", "Out of office question about my order", None),
	],
)
def test_auto_reply_markers(headers: str, subject: str, expected: str | None):
	raw = f"From: a@customer.example\nTo: s@ours.example\nSubject: {subject}\n{headers}\nbody\n".encode()
	assert parse_message(raw).auto_submitted == expected


@pytest.mark.parametrize(
	("headers", "expected"),
	[
		("X-Auto-Response-Suppress: OOF, AutoReply\n", "x-auto-response-suppress: oof, autoreply"),
		("Precedence: bulk\n", "precedence: bulk"),
		("Precedence: list\n", "precedence: list"),
		("List-Id: <news.example.com>\n", "list-id"),
		("List-Unsubscribe: <mailto:u@example.com>\n", "list-unsubscribe"),
		("", None),
	],
)
def test_suppress_auto_reply_markers(headers: str, expected: str | None):
	raw = f"From: a@customer.example\nTo: s@ours.example\nSubject: hi\n{headers}\nbody\n".encode()
	msg = parse_message(raw)
	assert msg.suppress_auto_reply == expected
	assert msg.auto_submitted is None  # bulk mail may still become a ticket


def _dsn(returned_part: str) -> bytes:
	return (
		"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
		"To: support@example.com\r\n"
		"Subject: Undelivered Mail Returned to Sender\r\n"
		"MIME-Version: 1.0\r\n"
		'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
		"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
		"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
		"Reporting-MTA: dns; mx.example.net\r\n\r\n"
		"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
		f"--B\r\n{returned_part}\r\n--B--\r\n"
	).encode()


def test_bounce_names_the_message_it_returns_from_its_headers_part():
	raw = _dsn(
		"Content-Type: text/rfc822-headers\r\n\r\n"
		"From: support@example.com\r\nTo: gone@example.net\r\nMessage-ID: <agent-reply.42@example.com>\r\n"
	)
	msg = parse_message(raw)
	assert msg.is_bounce
	assert msg.original_message_id == "agent-reply.42@example.com"


def test_bounce_names_the_message_it_returns_from_the_attached_original():
	raw = _dsn(
		"Content-Type: message/rfc822\r\n\r\n"
		"From: support@example.com\r\nTo: gone@example.net\r\nMessage-ID: <original.7@example.com>\r\n"
		"Subject: Your ticket\r\n\r\nHello\r\n"
	)
	assert parse_message(raw).original_message_id == "original.7@example.com"


def test_ordinary_mail_has_no_original_message_id():
	raw = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n\r\nMessage-ID: <quoted@z>\r\n"
	assert parse_message(raw).original_message_id is None


def test_bounce_gives_the_returned_threading_headers_and_our_ticket_header():
	raw = _dsn(
		"Content-Type: text/rfc822-headers\r\n\r\n"
		"From: support@example.com\r\nTo: gone@example.net\r\n"
		"In-Reply-To: <customer-1@example.net>\r\nReferences: <customer-0@example.net>\r\n"
		" <customer-1@example.net>\r\nX-Email-Flow-Ticket: TKT-00042; t=abcdefgh\r\n"
	)
	msg = parse_message(raw)
	assert msg.is_bounce
	assert msg.original_message_id is None
	assert msg.returned.message_id is None
	assert msg.returned.in_reply_to == "customer-1@example.net"
	assert msg.returned.references == ["customer-0@example.net", "customer-1@example.net"]
	assert msg.returned.ticket_header == "TKT-00042; t=abcdefgh"
	assert [(b.address, b.status) for b in msg.bounce] == [("gone@example.net", "5.1.1")]


def test_bounce_quoting_the_returned_headers_in_its_text():
	raw = (
		b"From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\n"
		b"Subject: failure notice\r\n\r\n"
		b"Sorry, I wasn't able to deliver your message to:\r\n<gone@example.net>: mailbox full (5.2.2)\r\n\r\n"
		b"--- Below this line is a copy of the message.\r\n\r\n"
		b"From: support@example.com\r\nX-Email-Flow-Ticket: TKT-00007; t=zzzz\r\nSubject: Re: hi\r\n"
	)
	msg = parse_message(raw)
	assert msg.is_bounce
	assert msg.returned.ticket_header == "TKT-00007; t=zzzz"
	assert msg.bounce[0].address == "gone@example.net"
	assert msg.bounce[0].status == "5.2.2"


def test_ordinary_mail_has_no_returned_headers():
	raw = (
		b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nX-Email-Flow-Ticket: TKT-1; t=x\r\n"
	)
	assert parse_message(raw).returned is None
