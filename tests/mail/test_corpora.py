"""parse_message over mail written by others: CPython's email test data, mail-parser's and
talon's fixtures, flufl.bounce's bounce samples. No exception, subjects decoded, and the
attachment count a plain stdlib walk gives."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from email_flow_app.mail import parse_message
from tests.mail.corpora import corpus_dir, cpython_email_data, messages

BODY_TYPES = ("text/plain", "text/html")


def stdlib_attachment_count(raw: bytes) -> int:
	"""Files a plain stdlib walk finds, by the rules an agent expects of a ticket's attachments.

	A file is a leaf part that is not an inline text body, with every message/*
	part counted once (not entered). Not files: the other renderings inside a
	multipart/alternative (the body is its text/HTML sibling), unnamed empty
	parts, and, when the message has no unnamed text body, the first inline
	text part with a file name (that is the body).
	"""
	msg = email.message_from_bytes(raw, policy=email.policy.compat32)
	count = 0
	has_body = False
	named_inline_text = 0
	stack = [(msg, "")]
	while stack:
		part, parent = stack.pop()
		ctype = part.get_content_type()
		if part.is_multipart() and not ctype.startswith("message/"):
			stack.extend((child, ctype) for child in part.get_payload())
			continue
		if ctype.startswith("message/"):
			count += 1
			continue
		disposition = part.get_content_disposition()
		filename = part.get_filename()
		if ctype in BODY_TYPES and disposition != "attachment" and filename is None:
			has_body = True
			continue
		if parent == "multipart/alternative" and not (disposition == "attachment" and filename):
			continue
		if (
			filename is None
			and not ctype.startswith("text/")
			and not (part.get_payload(decode=True) or b"").strip()
		):
			continue
		if ctype in BODY_TYPES and disposition != "attachment":
			named_inline_text += 1
		count += 1
	if not has_body and named_inline_text:
		count -= 1
	return count


def stdlib_subject(raw: bytes) -> str | None:
	"""The subject as policy=default decodes it, whitespace-normalized; None when it cannot."""
	try:
		value = email.message_from_bytes(raw, policy=email.policy.default)["subject"]
	except Exception:
		return None
	if value is None:
		return ""
	return re.sub(r"\s+", " ", str(value)).strip()


def all_corpus_files() -> list[tuple[str, Path]]:
	files = [("cpython", p) for p in messages(cpython_email_data(), "msg_*.txt")]
	files += [("mail-parser", p) for p in messages(corpus_dir("mail-parser"))]
	files += [("talon", p) for p in messages(corpus_dir("talon"), "**/*.eml")]
	files += [("flufl-bounce", p) for p in messages(corpus_dir("flufl-bounce"), "*.txt")]
	return files


def test_corpora_are_substantial():
	by_source: dict[str, int] = {}
	for source, _path in all_corpus_files():
		by_source[source] = by_source.get(source, 0) + 1
	assert by_source["cpython"] >= 45
	assert by_source["mail-parser"] >= 20
	assert by_source["talon"] >= 10
	assert by_source["flufl-bounce"] >= 100


def test_every_corpus_message_parses_with_stdlib_attachment_counts():
	failures: list[str] = []
	checked = 0
	for source, path in all_corpus_files():
		raw = path.read_bytes()
		parsed = parse_message(raw)
		checked += 1
		label = f"{source}/{path.name}"
		if any(d.startswith("unparseable") for d in parsed.defects):
			failures.append(f"{label}: fell back: {parsed.defects}")
			continue
		expected = stdlib_attachment_count(raw)
		if len(parsed.attachments) != expected:
			failures.append(f"{label}: {len(parsed.attachments)} attachments, stdlib walk says {expected}")
		for att in parsed.attachments:
			if (
				"/" in att.filename
				or "\\" in att.filename
				or not att.filename
				or att.size != len(att.payload)
			):
				failures.append(f"{label}: bad attachment {att.filename!r}")
	assert checked > 200
	assert not failures, "\n".join(failures)


def test_corpus_subjects_are_fully_decoded():
	mismatches: list[str] = []
	for source, path in all_corpus_files():
		raw = path.read_bytes()
		parsed = parse_message(raw)
		assert isinstance(parsed.subject, str)
		assert not re.search(
			r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=", parsed.subject
		), f"{path.name}: {parsed.subject!r}"
		expected = stdlib_subject(raw)
		if expected is None or "\ufffd" in expected or "=?" in expected:
			continue  # the stdlib could not decode it either; only "no encoded word left" applies
		got = re.sub(r"\s+", " ", parsed.subject).strip()
		if got != expected:
			mismatches.append(f"{source}/{path.name}: {got!r} != stdlib {expected!r}")
	assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize(
	("name", "subject", "attachments"),
	[
		("msg_08.txt", "Lyrics", 0),  # CPython: four inline text parts, all body
		("msg_43.txt", "Banned file: auto__mail.python.bat in mail from you", 2),
	],
)
def test_known_cpython_messages(name: str, subject: str, attachments: int):
	parsed = parse_message((cpython_email_data() / name).read_bytes())
	assert parsed.subject == subject
	assert len(parsed.attachments) == attachments
