"""Pure mail logic: parse, sanitize, threading keys, loop rules, compose.

Nothing here imports frappe or channels, and nothing does I/O (stdlib and
bleach only). Public API:

- :func:`parse_message` -> :class:`ParsedMessage` (with :class:`Attachment`,
  :class:`Bounce`), never raises;
- :func:`sanitize_html`;
- :func:`make_message_id`, :func:`make_ticket_token`, :func:`parse_ticket_token`,
  :func:`reply_address`, :func:`subject_tag`, :func:`thread_candidates`
  (-> :class:`ThreadEvidence`);
- :func:`loop_verdict`, :class:`LoopSettings`, :func:`rate_cap_exceeded`;
- :func:`compose_reply`, :func:`compose_new` (with :class:`OutgoingAttachment`).
"""

import importlib

# Loaded on first use (PEP 562): the per-minute tick imports a little of this
# package (LoopSettings) in a fresh process every minute, and bleach and the
# parser cost a third of a second to import.
_HOMES = {
	"SITE_HEADER": "compose",
	"TICKET_HEADER": "compose",
	"OutgoingAttachment": "compose",
	"base_subject": "compose",
	"compose_new": "compose",
	"compose_reply": "compose",
	"normalize_message_id": "headers",
	"LoopSettings": "loops",
	"canonical_address": "loops",
	"loop_verdict": "loops",
	"rate_cap_exceeded": "loops",
	"parse_headers": "parse",
	"parse_message": "parse",
	"sanitize_html": "sanitize",
	"ThreadEvidence": "threading_keys",
	"make_message_id": "threading_keys",
	"make_ticket_token": "threading_keys",
	"parse_ticket_token": "threading_keys",
	"reply_address": "threading_keys",
	"subject_tag": "threading_keys",
	"thread_candidates": "threading_keys",
	"token_from_address": "threading_keys",
	"Attachment": "types",
	"Bounce": "types",
	"ParsedMessage": "types",
}


def __getattr__(name: str):
	home = _HOMES.get(name)
	if home is None:
		raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
	value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
	globals()[name] = value
	return value


__all__ = [
	"SITE_HEADER",
	"TICKET_HEADER",
	"Attachment",
	"Bounce",
	"LoopSettings",
	"OutgoingAttachment",
	"ParsedMessage",
	"ThreadEvidence",
	"base_subject",
	"canonical_address",
	"compose_new",
	"compose_reply",
	"loop_verdict",
	"make_message_id",
	"make_ticket_token",
	"normalize_message_id",
	"parse_headers",
	"parse_message",
	"parse_ticket_token",
	"rate_cap_exceeded",
	"reply_address",
	"sanitize_html",
	"subject_tag",
	"thread_candidates",
	"token_from_address",
]
