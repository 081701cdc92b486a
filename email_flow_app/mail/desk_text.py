"""Text from mail as it is stored in Desk fields that Frappe renders as HTML.

Frappe treats Data and Small Text values as HTML: its templates and form
title put them into the page as they are (the timeline header's
``{{ doc.subject }}``, ``page.set_title``, notifications), and its sanitizer
returns a string with no complete tag unchanged. So a subject or a display
name that holds ``<`` or ``>`` is stored HTML-escaped: those places show the
original text, and nothing in it runs. Text without ``<`` or ``>`` is stored
as it is (no ``&amp;`` for "Q&A"). Where a value is shown as plain text (an
input box, the list's subject link, a mail's Subject header), `plain` turns
it back.

Invariants: ``plain(stored(x)) == x`` for any text ``x`` without ``&lt;``,
``&gt;`` entities of its own; ``stored`` is idempotent; a stored value holds
no ``<`` or ``>``.
"""

from __future__ import annotations

import html


def stored(text: str | None) -> str:
	"""``text`` as a Desk field keeps it: HTML-escaped when it holds < or >."""
	text = text or ""
	if "<" in text or ">" in text:
		return html.escape(text, quote=True)
	return text


def plain(value: str | None) -> str:
	"""The text a `stored` value stands for."""
	value = value or ""
	if "&lt;" in value or "&gt;" in value:
		return html.unescape(value)
	return value


def fit(text: str, limit: int) -> str:
	"""`stored` text within ``limit`` characters once escaped, cut with an ellipsis (never inside an entity)."""
	value = stored(text)
	if len(value) <= limit:
		return value
	cut = text[: max(limit - 1, 0)]
	while cut and len(stored(cut.rstrip() + "…")) > limit:
		excess = len(stored(cut.rstrip() + "…")) - limit
		cut = cut[: -max(1, excess // 6)]
	return stored(cut.rstrip() + "…")
