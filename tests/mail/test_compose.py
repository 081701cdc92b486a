"""compose_reply / compose_new: headers a mail client relies on, and no header injection."""

from __future__ import annotations

import email
import email.policy

import pytest

from email_flow_app.mail import (
	OutgoingAttachment,
	compose_new,
	compose_reply,
	make_ticket_token,
	parse_message,
	reply_address,
)

CUSTOMER = b"""From: =?utf-8?q?J=C3=B6rg?= <joerg@customer.example>
To: support@ours.example
Subject: Re: RE: Printer broken [#TKT-00042]
Message-ID: <c2@customer.example>
In-Reply-To: <s1@ours.example>
References: <c1@customer.example> <s1@ours.example>

Still broken.
"""


def reply(**overrides):
	args = dict(
		parent=parse_message(CUSTOMER),
		from_address="support@ours.example",
		from_name="ACME Support",
		ticket_name="TKT-00042",
		text="We are on it.",
		html="<p>We are on it.</p>",
		reply_to=reply_address("support@ours.example", make_ticket_token("TKT-00042", "s")),
	)
	args.update(overrides)
	return compose_reply(**args)


def test_reply_headers():
	msg = reply()
	assert msg["Subject"] == "Re: Printer broken [#TKT-00042]"
	assert msg["From"] == "ACME Support <support@ours.example>"
	assert msg["To"] == "Jörg <joerg@customer.example>"
	assert msg["In-Reply-To"] == "<c2@customer.example>"
	assert msg["References"] == "<c1@customer.example> <s1@ours.example> <c2@customer.example>"
	assert msg["Message-ID"].endswith("@ours.example>")
	assert msg["X-Email-Flow-Ticket"] == "TKT-00042"
	assert msg["Auto-Submitted"] is None
	assert msg["Reply-To"].startswith("support+t.")
	assert msg.get_content_type() == "multipart/alternative"
	assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_subject_does_not_grow_over_many_rounds():
	subject = "Printer broken"
	for _ in range(5):
		parent = parse_message(reply(parent=parse_message(CUSTOMER), subject=f"Re: Re: {subject}").as_bytes())
		subject = parent.subject
	assert subject == "Re: Printer broken [#TKT-00042]"


def test_automatic_mail_is_marked():
	msg = reply(automatic=True)
	assert msg["Auto-Submitted"] == "auto-replied"
	assert msg["X-Auto-Response-Suppress"] == "All"


def test_references_keep_first_and_last_ids():
	refs = [f"<r{i}@x.example>" for i in range(50)]
	msg = reply(references=refs, in_reply_to="<last@x.example>")
	ids = msg["References"].split()
	assert len(ids) == 20
	assert ids[0] == "<r0@x.example>" and ids[-1] == "<last@x.example>" and ids[-2] == "<r49@x.example>"


def test_attachments_use_rfc2231_names_and_round_trip():
	msg = reply(
		attachments=[
			OutgoingAttachment("Überweisung März.pdf", "application/pdf", b"%PDF-1.4 data"),
			OutgoingAttachment("../../etc/passwd", "text/plain", b"root:x"),
		]
	)
	raw = msg.as_bytes()
	assert b"filename*=utf-8''%C3%9Cberweisung%20M%C3%A4rz.pdf" in raw
	parsed = parse_message(raw)
	assert [(a.filename, a.content_type, a.payload) for a in parsed.attachments] == [
		("Überweisung März.pdf", "application/pdf", b"%PDF-1.4 data"),
		("passwd", "text/plain", b"root:x"),
	]
	assert parsed.text.strip() == "We are on it."


@pytest.mark.parametrize(
	"overrides",
	[
		{"from_name": "Evil\r\nBcc: victim@x.example"},
		{"from_address": "a@b.example\nBcc: v@x.example"},
		{"to": [("ok", "c@x.example\r\nBcc: v@x.example")]},
		{"cc": ["c@x.example\nBcc: v@x.example"]},
		{"subject": "Hello\r\nBcc: v@x.example"},
		{"ticket_name": "TKT-1\nBcc: v@x.example"},
		{"in_reply_to": "<a@b>\r\nBcc: v@x.example"},
		{"references": ["<a@b>\nBcc: v@x.example"]},
		{"site": "a\nb"},
		{"message_id": "<x@y>\nBcc: v"},
		{"attachments": [OutgoingAttachment("a\r\nb.txt", "text/plain", b"")]},
		{"to": ["not an address"]},
	],
)
def test_header_injection_is_rejected(overrides):
	with pytest.raises(ValueError):
		reply(**overrides)


def test_unicode_display_names_are_encoded_not_injected():
	msg = reply(from_name="Ünïcode, Support <x@evil.example>")
	parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
	assert parsed["From"].addresses[0].addr_spec == "support@ours.example"
	assert parsed["From"].addresses[0].display_name == "Ünïcode, Support <x@evil.example>"


def test_compose_new():
	msg = compose_new(
		from_address="support@ours.example",
		to=["jane@customer.example"],
		subject="Your request",
		text="Hello",
		ticket_name="TKT-00007",
		site="desk.ours.example",
	)
	assert msg["Subject"] == "Your request [#TKT-00007]"
	assert msg["In-Reply-To"] is None and msg["References"] is None
	assert msg["X-Email-Flow-Site"] == "desk.ours.example"
	assert msg.get_content_type() == "text/plain"
	with pytest.raises(ValueError):
		compose_new(from_address="support@ours.example", to=[], subject="x", text="x", ticket_name="TKT-1")
