"""Message-IDs, signed ticket tokens, reply addresses, subject tags and thread evidence."""

from __future__ import annotations

import re

import pytest

from email_flow_app.mail import (
	make_message_id,
	make_ticket_token,
	parse_message,
	parse_ticket_token,
	reply_address,
	subject_tag,
	thread_candidates,
	token_from_address,
)

SECRET = "per-site-secret"


def test_message_ids_are_unique_and_well_formed():
	ids = {make_message_id("ours.example") for _ in range(1000)}
	assert len(ids) == 1000
	assert all(re.fullmatch(r"<[0-9a-f]+\.[0-9a-f]{24}@ours\.example>", i) for i in ids)
	for bad in ("", "a b", "x\r\nBcc: y", "<x>", "a@b"):
		with pytest.raises(ValueError):
			make_message_id(bad)


def test_token_round_trip_is_short_and_address_safe():
	token = make_ticket_token("TKT-00042", SECRET)
	assert re.fullmatch(r"[a-z2-7]+", token) and len(token) <= 40
	assert parse_ticket_token(token, SECRET) == "TKT-00042"
	assert parse_ticket_token(token.upper(), SECRET) == "TKT-00042"  # MTAs that upper/lower-case
	assert parse_ticket_token(token, SECRET.encode()) == "TKT-00042"


def test_forged_and_tampered_tokens_are_rejected():
	token = make_ticket_token("TKT-00042", SECRET)
	other = make_ticket_token("TKT-00043", SECRET)
	assert parse_ticket_token(token, "another-site") is None
	# swap the name part of one valid token onto the MAC of another
	assert parse_ticket_token(other[:-16] + token[-16:], SECRET) is None
	for i in range(len(token)):
		flipped = token[:i] + ("a" if token[i] != "a" else "b") + token[i + 1 :]
		assert parse_ticket_token(flipped, SECRET) is None, i
	for junk in ("", "x", "!!!!", token + "a", token[:-1], "a" * 300, "TKT-00042", "0" * 40):
		assert parse_ticket_token(junk, SECRET) is None


def test_reply_address_and_token_extraction():
	token = make_ticket_token("TKT-00042", SECRET)
	address = reply_address("Support@Example.com", token)
	assert address == f"Support+t.{token}@Example.com"
	assert reply_address("support+old@example.com", token) == f"support+t.{token}@example.com"
	assert token_from_address(address) == token
	assert token_from_address("support@example.com") is None
	for bad in ("no-at-sign", "a@b@c", "x\r\n@y.com", "a b@c.com"):
		with pytest.raises(ValueError):
			reply_address(bad, token)
	with pytest.raises(ValueError):
		reply_address("a" * 40 + "@example.com", token)  # local part over 64 octets


def test_subject_tag():
	assert subject_tag("TKT-00042") == "[#TKT-00042]"
	with pytest.raises(ValueError):
		subject_tag("bad] name")


def test_thread_candidates_order_and_kinds():
	token = make_ticket_token("TKT-00042", SECRET)
	raw = (
		"From: jane@customer.example\n"
		f"To: Support <support+t.{token}@ours.example>\n"
		"Message-ID: <new@customer.example>\n"
		"In-Reply-To: <r3@ours.example>\n"
		"References: <r1@ours.example> <r2@ours.example> <r3@ours.example>\n"
		"Subject: Re: Printer broken [#TKT-00042]\n\nthanks\n"
	).encode()
	evidence = thread_candidates(parse_message(raw))
	assert [(e.kind, e.value) for e in evidence] == [
		("in_reply_to", "r3@ours.example"),
		("references", "r2@ours.example"),
		("references", "r1@ours.example"),
		("reply_address_token", token),
		("subject_tag", "TKT-00042"),
	]
	assert parse_ticket_token(evidence[3].value, SECRET) == "TKT-00042"


def test_no_evidence_for_a_fresh_message():
	assert thread_candidates(parse_message(b"From: a@b.example\nSubject: Hello\n\nx")) == []
