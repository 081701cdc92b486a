"""Hypothesis properties: parse_message never raises; compose -> parse round-trips."""

from __future__ import annotations

import re
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_flow_app.mail import OutgoingAttachment, compose_reply, parse_message
from tests.mail.corpora import corpus_dir, cpython_email_data, messages

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def real_messages() -> tuple[bytes, ...]:
	paths = messages(cpython_email_data(), "msg_*.txt") + messages(corpus_dir("flufl-bounce"), "*.txt")
	return tuple(p.read_bytes() for p in paths)


def check(msg) -> None:
	assert isinstance(msg.subject, str) and isinstance(msg.text, str) and isinstance(msg.html, str)
	assert all(a.filename and "/" not in a.filename and a.size == len(a.payload) for a in msg.attachments)


@FAST
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(data: bytes):
	check(parse_message(data))


@FAST
@given(
	st.integers(min_value=0),
	st.lists(
		st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=64), st.binary(max_size=32)),
		min_size=1,
		max_size=8,
	),
)
def test_mutated_real_messages_never_raise(which: int, edits: list[tuple[int, int, bytes]]):
	corpus = real_messages()
	data = bytearray(corpus[which % len(corpus)])
	for position, cut, insert in edits:
		position %= len(data) + 1
		data[position : position + cut] = insert
	check(parse_message(bytes(data)))


@FAST
@given(st.integers(min_value=0), st.integers(min_value=0))
def test_truncated_real_messages_never_raise(which: int, cut: int):
	corpus = real_messages()
	data = corpus[which % len(corpus)]
	check(parse_message(data[: cut % (len(data) + 1)]))


# Printable text without CR/LF; the subject is stripped by the parser, so no edge whitespace.
line = (
	st.text(
		alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85"),
		min_size=1,
		max_size=60,
	)
	.map(lambda s: " ".join(s.split()))
	.filter(bool)
)
local = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True).filter(
	lambda s: ".." not in s and not s.endswith(".")
)
address = st.builds(lambda lp, d: f"{lp}@{d}.example", local, st.sampled_from(["ours", "customer", "x-y"]))
msgid = st.builds(lambda lp, d: f"{lp}@{d}.example", local, st.sampled_from(["a", "b"]))
attachment = st.builds(
	OutgoingAttachment,
	# names safe_filename keeps as they are (it replaces path and shell-special characters)
	filename=line.map(lambda s: re.sub(r'[/\\<>:"|?*]', "_", s).strip(". ") or "f").filter(
		lambda s: len(s) < 150
	),
	content_type=st.sampled_from(["application/pdf", "image/png", "application/octet-stream", "text/csv"]),
	payload=st.binary(max_size=2048),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
	subject=line,
	from_name=line,
	to=st.lists(st.tuples(line, address), min_size=1, max_size=3),
	cc=st.lists(address, max_size=2),
	refs=st.lists(msgid, max_size=5, unique=True),
	parent_id=msgid,
	attachments=st.lists(attachment, max_size=3),
	text=st.text(max_size=300),
)
def test_compose_reply_round_trips(subject, from_name, to, cc, refs, parent_id, attachments, text):
	msg = compose_reply(
		from_address="support@ours.example",
		from_name=from_name,
		to=to,
		cc=cc,
		subject=subject,
		in_reply_to=f"<{parent_id}>",
		references=[f"<{r}>" for r in refs],
		ticket_name="TKT-00042",
		text=text,
		html="<p>hi</p>",
		attachments=attachments,
	)
	parsed = parse_message(msg.as_bytes())
	assert parsed.subject == msg["Subject"]
	assert parsed.subject.endswith("[#TKT-00042]") and parsed.subject.startswith("Re: ")
	assert (parsed.from_name, parsed.from_address) == (from_name, "support@ours.example")
	assert [a for _n, a in parsed.to] == [a.lower() for _n, a in to]
	assert [n for n, _a in parsed.to] == [n for n, _a in to]
	assert [a for _n, a in parsed.cc] == [a.lower() for a in cc]
	assert parsed.in_reply_to == parent_id
	expected_refs = [r for r in refs if r != parent_id] + [parent_id]
	assert parsed.references == expected_refs
	assert parsed.message_id and parsed.message_id.endswith("@ours.example")
	assert [(a.filename, a.content_type, a.payload) for a in parsed.attachments] == [
		(a.filename, a.content_type, a.payload) for a in attachments
	]
	assert parsed.get_header("X-Email-Flow-Ticket") == "TKT-00042"
	assert parsed.auto_submitted is None
