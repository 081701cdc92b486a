"""What an agent reads of odd real-world mail: 8-bit headers, named inline text, leftovers of
multipart/alternative, very large bodies, and bounces from non-English mail systems."""

from __future__ import annotations

import pytest

from email_flow_app.mail import parse_message
from email_flow_app.mail.parse import MAX_BODY_CHARS
from tests.mail.test_parse import parse_with_peak_memory


def crlf(data: bytes) -> bytes:
	return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_raw_8bit_cp1251_subject_and_name_read_with_the_body_charset():
	subject = "Счёт на оплату № 42 за октябрь"
	name = "Иван Петров"
	data = crlf(
		b"From: " + name.encode("cp1251") + b" <ivan@shop.example>\n"
		b"Subject: " + subject.encode("cp1251") + b"\n"
		b"Content-Type: text/plain; charset=windows-1251\n\n" + "Добрый день".encode("cp1251") + b"\n"
	)
	msg = parse_message(data)
	assert msg.subject == subject
	assert msg.from_name == name
	assert msg.text.strip() == "Добрый день"


def test_raw_8bit_subject_without_any_declared_charset_is_guessed():
	# No charset anywhere: chardet (which Frappe ships) reads the bytes, not Latin-1 mojibake.
	subject = "Заказ не пришёл, прошу проверить доставку и вернуть деньги"
	data = crlf(b"From: a@shop.example\nSubject: " + subject.encode("cp1251") + b"\n\nhello\n")
	assert parse_message(data).subject == subject


def test_utf8_raw_subject_in_a_latin1_message_stays_utf8():
	data = crlf(
		b"From: a@b.example\nSubject: " + "Grüße aus Köln".encode() + b"\n"
		b"Content-Type: text/plain; charset=iso-8859-1\n\nGr\xfc\xdfe\n"
	)
	msg = parse_message(data)
	assert msg.subject == "Grüße aus Köln"
	assert msg.text.strip() == "Grüße"


def test_inline_text_part_with_a_file_name_is_the_body_when_there_is_no_other():
	data = crlf(
		b"From: a@b.example\nSubject: note\nMIME-Version: 1.0\n"
		b'Content-Type: multipart/mixed; boundary="X"\n\n'
		b"--X\nContent-Type: text/plain; charset=utf-8\n"
		b'Content-Disposition: inline; filename="message.txt"\n\nThe printer on floor 2 is broken.\n'
		b"--X\nContent-Type: application/pdf\n"
		b'Content-Disposition: attachment; filename="photo.pdf"\n\n%PDF-1.4 x\n--X--\n'
	)
	msg = parse_message(data)
	assert msg.text.strip() == "The printer on floor 2 is broken."
	assert [a.filename for a in msg.attachments] == ["photo.pdf"]


def test_named_inline_text_stays_a_file_when_the_message_has_a_body():
	data = crlf(
		b"From: a@b.example\nSubject: log\nMIME-Version: 1.0\n"
		b'Content-Type: multipart/mixed; boundary="X"\n\n'
		b"--X\nContent-Type: text/plain\n\nLog attached.\n"
		b'--X\nContent-Type: text/plain\nContent-Disposition: inline; filename="app.log"\n\nERROR 1\n--X--\n'
	)
	msg = parse_message(data)
	assert msg.text.strip() == "Log attached."
	assert [a.filename for a in msg.attachments] == ["app.log"]


def test_alternative_leftovers_are_not_attachments():
	data = crlf(
		b"From: a@b.example\nSubject: from my watch\nMIME-Version: 1.0\n"
		b'Content-Type: multipart/mixed; boundary="M"\n\n'
		b'--M\nContent-Type: multipart/alternative; boundary="A"\n\n'
		b"--A\nContent-Type: text/plain\n\nSent from my watch\n"
		b"--A\nContent-Type: text/watch-html\n\n<b>Sent from my watch</b>\n"
		b"--A\nContent-Type: application/octet-stream\n\n\n"
		b"--A\nContent-Type: text/html\n\n<p>Sent from my watch</p>\n--A--\n"
		b"--M\nContent-Type: application/octet-stream\n\n \n"
		b'--M\nContent-Type: image/png\nContent-Disposition: attachment; filename="screen.png"\n\nPNGDATA\n'
		b"--M--\n"
	)
	msg = parse_message(data)
	assert msg.text.strip() == "Sent from my watch"
	assert "Sent from my watch" in msg.html
	assert [a.filename for a in msg.attachments] == ["screen.png"]


def test_24_mb_text_body_is_capped_and_memory_stays_under_4x():
	line = b"All work and no play makes Jack a dull boy. " * 2 + b"\n"
	body = line * (24 * 1024 * 1024 // len(line))
	data = crlf(b"From: a@b.example\nSubject: huge log\nContent-Type: text/plain\n\n") + body
	del body
	msg, peak = parse_with_peak_memory(data)
	assert msg.body_truncated
	assert len(msg.text) <= MAX_BODY_CHARS
	assert msg.text.startswith("All work and no play")
	assert any("cut" in d for d in msg.defects)
	assert peak < 4 * len(data), f"peak {peak / 1e6:.0f} MB for a {len(data) / 1e6:.0f} MB message"


def test_small_bodies_are_not_marked_cut():
	msg = parse_message(crlf(b"From: a@b.example\nSubject: hi\n\nhello\n"))
	assert not msg.body_truncated


@pytest.mark.parametrize(
	("sender", "subject", "text"),
	[
		(
			"Dsicspiibs.spi-internet@socgen.example",
			"RE: Your message to GPC-talk awaits moderator approval : non remis (delivery failed)",
			"Votre message n'a pas pu etre delivre a\nuserx@example.com\n\n"
			"Your message could not be delivered to\nuserx@example.com\n",
		),
		(
			"postmaster@firma.example",
			"Unzustellbar: Angebot 2026",
			"Die Nachricht konnte nicht zugestellt werden an:\n\n  userx@example.com\n"
			"Der Empfänger wurde nicht gefunden.\n",
		),
		(
			"MAILER-DAEMON@correo.example",
			"No se pudo entregar: factura",
			"No se pudo entregar el mensaje a los siguientes destinatarios:\n\n  userx@example.com\n",
		),
		(
			"postmaster@azienda.example",
			"Mancato recapito: ordine",
			"Non è stato possibile recapitare il messaggio a:\n  userx@example.com\n",
		),
	],
)
def test_non_english_non_dsn_bounces_are_detected(sender, subject, text):
	data = (
		f"From: {sender}\nTo: support@ours.example\nSubject: {subject}\n"
		f"Content-Type: text/plain; charset=utf-8\n\n{text}"
	).encode()
	msg = parse_message(crlf(data))
	assert msg.is_bounce, subject
	assert [b.address for b in msg.bounce] == ["userx@example.com"]
	assert msg.auto_submitted == "bounce"


def test_person_answering_a_french_bounce_is_not_a_bounce():
	data = crlf(
		b"From: Jeanne <jeanne@client.example>\nTo: support@ours.example\n"
		b"Subject: RE: Non remis : votre facture\nContent-Type: text/plain; charset=utf-8\n\n"
		b"Bonjour, votre message ne m'est pas parvenu, pouvez-vous le renvoyer ?\n"
	)
	msg = parse_message(data)
	assert msg.bounce is None
	assert msg.auto_submitted is None


@pytest.mark.parametrize(
	"text",
	[
		'Invoice 42 <img src=x onerror="alert(document.domain)"',
		"<DIV STYLE=\"width: expression(alert('XSS'));\">",
		"Q&A <b>bold</b> & more",
		"plain subject",
		"<" * 300,
	],
)
def test_desk_text_round_trips_and_never_holds_a_tag(text):
	from email_flow_app.mail import desk_text

	value = desk_text.stored(text)
	assert "<" not in value and ">" not in value
	assert desk_text.plain(value) == text
	assert desk_text.stored(value) == value
	fitted = desk_text.fit(text, 140)
	assert len(fitted) <= 140 and "<" not in fitted
	shown = desk_text.plain(fitted)
	assert shown == text or (shown.endswith("…") and text.startswith(shown[:-1].rstrip()))
