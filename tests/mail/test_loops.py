"""loop_verdict and the per-sender rate cap."""

from __future__ import annotations

import pytest

from email_flow_app.mail import LoopSettings, loop_verdict, parse_message, rate_cap_exceeded
from tests.mail.corpora import corpus_dir

OWN = ["support@ours.example", "Sales@Ours.Example"]


def msg(headers: str, body: str = "hello\n"):
	return parse_message(f"{headers}Subject: hi\n\n{body}".encode())


def test_ordinary_customer_mail_passes():
	assert loop_verdict(msg("From: Jane <jane@customer.example>\nTo: support@ours.example\n"), OWN) is None


@pytest.mark.parametrize(
	("headers", "reason"),
	[
		("To: support@ours.example\n", "missing-sender"),
		("From: undisclosed\n", "missing-sender"),
		("From: jane@customer.example\nX-Email-Flow-Ticket: TKT-00001\n", "own-header"),
		("From: jane@customer.example\nX-EMAIL-FLOW-SITE: a.example\n", "own-header"),
		("From: sales@ours.example\n", "own-address"),
		("From: support+t.abc@ours.example\n", "own-address"),
		("From: spam@bad.example\n", "blocked-address"),
		("From: x@mail.blocked.example\n", "blocked-domain"),
		("From: jane@customer.example\nAuto-Submitted: auto-replied\n", "auto-submitted"),
		("From: jane@customer.example\nX-Autoreply: yes\n", "auto-submitted"),
	],
)
def test_loop_rules(headers: str, reason: str):
	settings = LoopSettings(
		blocked_addresses=frozenset({"Spam@Bad.Example"}), blocked_domains=frozenset({"blocked.example"})
	)
	verdict = loop_verdict(msg(headers), OWN, settings)
	assert verdict is not None and verdict.split(":", 1)[0] == reason, verdict


def test_real_bounce_is_caught():
	raw = (corpus_dir("flufl-bounce") / "postfix_01.txt").read_bytes()
	verdict = loop_verdict(parse_message(raw), OWN, LoopSettings())
	assert verdict is not None and verdict.startswith("bounce")


def test_bulk_mail_is_not_a_loop_but_gets_no_auto_reply():
	m = msg("From: news@shop.example\nPrecedence: bulk\nList-Unsubscribe: <mailto:u@shop.example>\n")
	assert loop_verdict(m, OWN) is None
	assert m.suppress_auto_reply == "precedence: bulk"


def test_rate_cap():
	settings = LoopSettings(max_messages_per_sender=3)
	assert not rate_cap_exceeded(2, settings)
	assert rate_cap_exceeded(3, settings)
	assert not rate_cap_exceeded(10_000, LoopSettings(max_messages_per_sender=0))
