"""The new part of a reply: quoted history and signature tails removed.

Handles the attribution styles of Gmail, Apple Mail and Thunderbird
("On <date>, <name> wrote:", also wrapped over several lines and in a few
languages), Outlook ("-----Original Message-----", "From: / Sent: / To:"
header blocks, "________" rulers), ``>`` quoted lines (top or bottom posted),
and the ``-- `` signature separator plus "Sent from my ..." lines.

Invariant: never raises; returns the stripped input text when stripping
would leave nothing (a message that only quotes is better kept whole); only
the first :data:`MAX_SCAN` characters are read (the new part of a reply is
at its top, and this bounds the time spent on huge bodies).
"""

from __future__ import annotations

import re

_ATTRIBUTION = re.compile(
	r"^\s*("
	r"on\b.{0,300}\bwrote\s*:"  # English: Gmail, Apple Mail, Thunderbird
	r"|le\b.{0,300}\ba écrit\s*:"  # French
	r"|am\b.{0,300}\bschrieb.{0,200}:"  # German
	r"|el\b.{0,300}\bescribió\s*:"  # Spanish
	r"|op\b.{0,300}\bschreef.{0,200}:"  # Dutch
	r"|il giorno\b.{0,300}\bha scritto\s*:"  # Italian
	r"|em\b.{0,300}\bescreveu\s*:"  # Portuguese
	r")\s*$",
	re.IGNORECASE | re.DOTALL,
)
_ANY_LANGUAGE_ATTRIBUTION = re.compile(
	r"^.{0,300}\b(wrote|написал[аи]?|schrieb|escribió|a écrit|ha scritto|escreveu|skrev|kirjoitti|napisał[a]?|"
	r"schreef|yazdı|napsal[a]?)\s*:\s*$",
	re.IGNORECASE | re.DOTALL,
)
_DATE_OR_ADDRESS = re.compile(r"@|\d{1,2}[:./]\d{2}")
_GENERIC_ATTRIBUTION = re.compile(r"^\s*\S.{0,150}\bwrote\s*:\s*$", re.IGNORECASE)  # "John Smith wrote:"
_ORIGINAL = re.compile(
	r"^\s*(-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original)\s*-{2,}"
	r"|_{10,}\s*$"
	r"|-{5,}\s*(forwarded message|reply above this line)"
	r"|#{2,}\s*-\s*please type your reply above this line)",
	re.IGNORECASE,
)
_HEADER_LINE = re.compile(r"^\s*\*?(from|von|de|van|da)\s*:\*?\s", re.IGNORECASE)
_HEADER_FOLLOW = re.compile(
	r"^\s*\*?(sent|date|to|subject|cc|gesendet|an|betreff|envoyé|objet|à|enviado|para|asunto)\s*:\*?",
	re.IGNORECASE,
)
_SIGNATURE = re.compile(r"^(-- ?|—)\s*$")
MAX_SCAN = 256 * 1024
_SENT_FROM = re.compile(
	r"^\s*(sent from my |get outlook for |sent from (mail|yahoo mail) for )", re.IGNORECASE
)


def _is_outlook_header(lines: list[str], i: int) -> bool:
	if not _HEADER_LINE.match(lines[i]):
		return False
	follow = 0
	for line in lines[i + 1 : i + 6]:
		if _HEADER_FOLLOW.match(line):
			follow += 1
	return follow >= 2


def _attribution_at(lines: list[str], i: int) -> int:
	"""Number of lines (1-3) forming an attribution starting at ``i``, else 0.

	A wrapped attribution never spans a blank line; the bare "X wrote:" form
	counts only on one line directly followed by quoted text or a blank line.
	"""
	if ":" not in lines[i] and ":" not in "".join(lines[i + 1 : i + 3]):
		return 0  # fast path: every attribution ends with a colon
	nxt = lines[i + 1] if i + 1 < len(lines) else ""
	if _GENERIC_ATTRIBUTION.match(lines[i]) and (not nxt.strip() or nxt.lstrip().startswith(">")):
		return 1
	for span in (1, 2, 3):
		block = lines[i : i + span]
		if len(block) < span or any(not line.strip() or line.lstrip().startswith(">") for line in block):
			return 0
		chunk = " ".join(line.strip() for line in block)
		if len(chunk) > 400:
			return 0
		if not chunk.endswith(":"):
			continue
		if _ATTRIBUTION.match(chunk):
			return span
		after = lines[i + span] if i + span < len(lines) else ""
		if (
			_ANY_LANGUAGE_ATTRIBUTION.match(chunk)
			and _DATE_OR_ADDRESS.search(block[0])
			and (not after.strip() or after.lstrip().startswith(">"))
		):
			return span
	return 0


def extract_reply(text: str) -> str:
	"""The new part of ``text``. See the module docstring for the rules."""
	try:
		return _extract(text)
	except Exception:
		return text.strip()


def _extract(text: str) -> str:
	if not text:
		return ""
	text = text[:MAX_SCAN]
	lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
	kept: list[str] = []
	i = 0
	while i < len(lines):
		line = lines[i]
		stripped = line.strip()
		if _SIGNATURE.match(line) or _ORIGINAL.match(line) or _is_outlook_header(lines, i):
			break
		if _SENT_FROM.match(line) and all(not x.strip() for x in lines[i + 1 : i + 2]):
			i += 1
			continue
		if line.lstrip().startswith(">"):
			i += 1
			continue
		span = _attribution_at(lines, i) if stripped else 0
		if span:
			i += span
			continue
		kept.append(line.rstrip())
		i += 1
	result = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
	return result or text.strip()
