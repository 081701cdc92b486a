"""parse_message behaviour a user would check, on small hand-written messages."""

from __future__ import annotations

import base64
import datetime
import os
import tracemalloc

from email_flow_app.mail import parse_message


def parse_with_peak_memory(data: bytes):
	"""(parse_message(data), the peak of memory it allocated, in bytes)."""
	tracemalloc.start()
	try:
		msg = parse_message(data)
		_current, peak = tracemalloc.get_traced_memory()
	finally:
		tracemalloc.stop()
	return msg, peak


def raw(text: str) -> bytes:
	return text.replace("\n", "\r\n").encode("utf-8")


def test_subject_with_several_encoded_words_and_split_multibyte_character():
	# "Привет мир, ваш заказ" split over three words, the middle one cutting a UTF-8 character.
	data = "Привет мир, ваш заказ".encode()
	w1, w2, w3 = data[:7], data[7:20], data[20:]
	enc = [f"=?UTF-8?B?{base64.b64encode(w).decode()}?=" for w in (w1, w2, w3)]
	msg = parse_message(raw(f"From: a@b.example\nSubject: {enc[0]}\n {enc[1]}\n\t{enc[2]}\n\nbody\n"))
	assert msg.subject == "Привет мир, ваш заказ"


def test_subject_mixed_charsets_and_q_encoding_and_plain_text():
	msg = parse_message(
		raw("Subject: Re: =?iso-8859-1?q?caf=E9?= and =?windows-1252?Q?=80uro?= =?utf-8?q?_ok?= done\n\nx\n")
	)
	assert msg.subject == "Re: café and €uro ok done"


def test_raw_8bit_and_unknown_charset_subjects_are_recovered():
	latin = b"Subject: Pr\xe9sentation\r\n\r\nx\r\n"
	assert parse_message(latin).subject == "Présentation"
	utf8 = "Subject: Grüße\r\n\r\nx\r\n".encode()
	assert parse_message(utf8).subject == "Grüße"
	unknown = parse_message(b"Subject: =?x-bogus?q?hello_w=C3=B6rld?=\r\n\r\nx\r\n")
	assert unknown.subject == "hello wörld"
	assert any("unknown charset" in d for d in unknown.defects)


def test_addresses_headers_and_threading_fields():
	msg = parse_message(
		raw(
			"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller=2C_Sales?= <Joerg@Example.COM>\n"
			'To: "Support Team" <support@ours.example>, other@ours.example\n'
			"Cc: boss@example.com\n"
			"Reply-To: replies@example.com\n"
			"Delivered-To: forwarded@gmail.example\n"
			"Delivered-To: support@ours.example\n"
			"Message-ID: <abc@mx.example>\n"
			"In-Reply-To: <p2@ours.example>\n"
			"References: <p0@ours.example>\n <p1@ours.example> <p2@ours.example>\n"
			"Date: Tue, 3 Feb 2026 10:00:00 +0100\n"
			"X-Custom: =?utf-8?q?h=C3=A9llo?=\n\nHi\n"
		)
	)
	assert (msg.from_name, msg.from_address) == ("Jörg Müller, Sales", "joerg@example.com")
	assert msg.to == [("Support Team", "support@ours.example"), ("", "other@ours.example")]
	assert msg.cc == [("", "boss@example.com")]
	assert msg.reply_to == [("", "replies@example.com")]
	assert msg.delivered_to == "support@ours.example"  # the first hop is the original recipient
	assert msg.message_id == "abc@mx.example"
	assert msg.in_reply_to == "p2@ours.example"
	assert msg.references == ["p0@ours.example", "p1@ours.example", "p2@ours.example"]
	assert msg.date == datetime.datetime(2026, 2, 3, 9, 0, tzinfo=datetime.timezone.utc)
	assert msg.date.tzinfo is not None
	assert msg.get_header("x-custom") == "héllo"
	assert msg.get_all_headers("Delivered-To") == ["forwarded@gmail.example", "support@ours.example"]
	assert msg.get_header("missing") is None


def test_x_original_to_wins_and_naive_date_is_utc():
	msg = parse_message(
		raw("X-Original-To: help@ours.example\nDate: 3 Feb 2026 10:00:00 -0000\nFrom: a@b.example\n\nx\n")
	)
	assert msg.delivered_to == "help@ours.example"
	assert msg.date == datetime.datetime(2026, 2, 3, 10, 0, tzinfo=datetime.timezone.utc)


def test_bad_date_gives_none_and_a_defect():
	msg = parse_message(raw("From: a@b.example\nDate: someday soon\n\nx\n"))
	assert msg.date is None
	assert any("Date" in d for d in msg.defects)


MULTI = """From: Customer <c@example.com>
To: support@ours.example
Subject: files
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUT"

--OUT
Content-Type: multipart/related; boundary="REL"

--REL
Content-Type: multipart/alternative; boundary="ALT"

--ALT
Content-Type: text/plain; charset=utf-8

Hello, see the logo.

--ALT
Content-Type: text/html; charset=utf-8

<p onclick="x()">Hello, see <img src="cid:logo@x"></p><script>alert(1)</script>

--ALT--
--REL
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--REL
Content-Type: image/png
Content-ID: <unused@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--REL--
--OUT
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''..%2F..%2Fetc%2Fr%C3%A9sum%C3%A9.pdf
Content-Transfer-Encoding: base64

JVBERi0x
--OUT
Content-Type: application/octet-stream; name="=?utf-8?b?0L7RgtGH0ZHRgi5kb2N4?="
Content-Disposition: attachment; filename="=?utf-8?b?0L7RgtGH0ZHRgi5kb2N4?="

data
--OUT
Content-Type: message/rfc822

From: old@example.com
Subject: the original

old body
--OUT--
"""


def test_bodies_attachments_inline_images_and_forwarded_message():
	msg = parse_message(raw(MULTI))
	assert msg.text.strip() == "Hello, see the logo."
	assert "<script" not in msg.html and "onclick" not in msg.html and "alert" not in msg.html
	assert 'src="cid:logo@x"' in msg.html
	names = [a.filename for a in msg.attachments]
	assert names[2:] == ["résumé.pdf", "отчёт.docx", "the original.eml"]
	logo, unused, pdf, _docx, eml = msg.attachments
	assert logo.inline and logo.content_id == "logo@x" and logo.payload == base64.b64decode("iVBORw0KGgo=")
	assert not unused.inline
	assert pdf.payload == b"%PDF-1" and pdf.size == 6 and pdf.content_type == "application/pdf"
	assert eml.content_type == "message/rfc822" and b"Subject: the original" in eml.payload


def test_html_only_mail_gets_text_and_reply_text():
	msg = parse_message(
		raw(
			"From: a@b.example\nContent-Type: text/html; charset=utf-8\n\n"
			"<html><head><style>p{color:red}</style><title>T</title></head><body>"
			"<p>Yes, that works.</p><div>On Mon, Jan 5, 2026 at 10:00 AM Support &lt;s@x&gt; wrote:<br>"
			"<blockquote>Does it work?</blockquote></div></body></html>\n"
		)
	)
	assert "Yes, that works." in msg.text
	assert "color:red" not in msg.text and "<p>" not in msg.text
	assert msg.reply_text == "Yes, that works."


def test_missing_from_is_a_defect_not_an_exception():
	msg = parse_message(b"Subject: hi\r\n\r\nbody")
	assert msg.from_address == ""
	assert any("From" in d for d in msg.defects)


def test_never_raises_on_edge_inputs():
	for data in (
		b"",
		b"\x00" * 100,
		b"\xff\xfe" * 1000,
		b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" * 50,
		b"Content-Type: multipart/mixed; boundary=a\n\n"
		+ b"--a\nContent-Type: multipart/mixed; boundary=a\n\n" * 3000,
		b"Subject: =?utf-8?b?####?=\n\n",
		b"From: <<<@@@>>>\nTo: ,,,,\nDate: 99 Foo 99999 99:99\n\n",
		bytearray(b"Subject: bytearray\n\nx"),
		memoryview(b"Subject: view\n\nx"),
	):
		msg = parse_message(data)  # type: ignore[arg-type]
		assert isinstance(msg.subject, str)
		assert isinstance(msg.defects, list)


def test_fifty_megabytes_of_garbage_does_not_raise():
	data = os.urandom(1 << 20) * 50
	msg = parse_message(data)
	assert isinstance(msg.text, str)


def test_25_mb_attachment_peak_memory_under_4x_message_size():
	payload = os.urandom(25 * 1024 * 1024)
	encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
	head = raw(
		"From: c@example.com\nSubject: big\nMIME-Version: 1.0\n"
		'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\nsee attached\n'
		'--B\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="big.bin"\n'
		"Content-Transfer-Encoding: base64\n\n"
	)
	data = head + encoded + b"--B--\r\n"
	del encoded
	msg, peak = parse_with_peak_memory(data)
	assert msg.text.strip() == "see attached"
	assert len(msg.attachments) == 1 and msg.attachments[0].payload == payload
	assert peak < 4 * len(data), f"peak {peak / 1e6:.0f} MB for a {len(data) / 1e6:.0f} MB message"
