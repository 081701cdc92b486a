"""reply_text: the new part of a reply, on talon's real client samples and on hand-written ones."""

from __future__ import annotations

import re

import pytest

from email_flow_app.mail import parse_message
from email_flow_app.mail.quotes import extract_reply
from tests.mail.corpora import corpus_dir, messages


def without_signature(text: str) -> str:
	"""talon keeps signatures; we drop the "-- " tail and "Sent from my ..." lines."""
	text = re.split(r"(?m)^-- ?$", text, maxsplit=1)[0]
	text = re.sub(r"(?m)^Sent from my .*$", "", text)
	return text.strip()


def test_talon_standard_replies_reduce_to_the_reply():
	folder = corpus_dir("talon") / "standard_replies"
	results = {}
	for path in messages(folder, "*.eml"):
		expected_file = path.with_name(path.stem + "_reply_text")
		expected = expected_file.read_text().strip() if expected_file.exists() else "Hello"
		results[path.name] = (parse_message(path.read_bytes()).reply_text, without_signature(expected))
	assert len(results) >= 12
	wrong = {name: got for name, (got, expected) in results.items() if got != expected}
	assert not wrong, wrong


@pytest.mark.parametrize(
	("text", "expected"),
	[
		pytest.param(
			"Thanks, fixed now.\n\nOn Tue, Mar 3, 2026 at 9:12 AM Support Team <\nsupport@ours.example> wrote:\n\n> Please try again\n> --\n> Support\n",
			"Thanks, fixed now.",
			id="gmail-wrapped-attribution",
		),
		pytest.param(
			"Works for me.\n\nSent from my iPhone\n\n> On 3 Mar 2026, at 09:12, Support <s@ours.example> wrote:\n>\n> Try again\n",
			"Works for me.",
			id="apple-mail-iphone",
		),
		pytest.param(
			"Yes please.\n\n-----Original Message-----\nFrom: Support <s@ours.example>\nSent: Tuesday, March 3, 2026 9:12 AM\nTo: Jo\nSubject: Re: order\n\nShall we?\n",
			"Yes please.",
			id="outlook-original-message",
		),
		pytest.param(
			"Yes please.\n\n________________________________\nFrom: Support <s@ours.example>\nSent: Tuesday, March 3, 2026 9:12 AM\nTo: Jo\nSubject: Re: order\n\nShall we?\n",
			"Yes please.",
			id="outlook-ruler",
		),
		pytest.param(
			"Yes please.\nFrom: Support <s@ours.example>\nSent: Tuesday, March 3, 2026 9:12 AM\nTo: Jo\nSubject: order\n\nShall we?\n",
			"Yes please.",
			id="outlook-bare-header-block",
		),
		pytest.param(
			"On 03/03/2026 09:12, Support wrote:\n> Shall we?\n\nYes please.\n\n-- \nJo Bloggs\nACME Ltd\n",
			"Yes please.",
			id="thunderbird-bottom-posted-with-signature",
		),
		pytest.param(
			"Am 03.03.2026 um 09:12 schrieb Support <s@ours.example>:\n> Geht das?\n\nJa, bitte.\n",
			"Ja, bitte.",
			id="german-attribution",
		),
		pytest.param(
			"> only quoted text\n> nothing new\n",
			"> only quoted text\n> nothing new",
			id="nothing-new-keeps-the-text",
		),
		pytest.param(
			"Here is what I wrote to them: please refund me.\nThanks\n",
			"Here is what I wrote to them: please refund me.\nThanks",
			id="plain-message-untouched",
		),
	],
)
def test_reply_styles(text: str, expected: str):
	assert extract_reply(text) == expected
