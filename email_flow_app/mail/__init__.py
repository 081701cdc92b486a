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

from email_flow_app.mail.compose import (
	SITE_HEADER,
	TICKET_HEADER,
	OutgoingAttachment,
	base_subject,
	compose_new,
	compose_reply,
)
from email_flow_app.mail.headers import normalize_message_id
from email_flow_app.mail.loops import LoopSettings, canonical_address, loop_verdict, rate_cap_exceeded
from email_flow_app.mail.parse import parse_headers, parse_message
from email_flow_app.mail.sanitize import sanitize_html
from email_flow_app.mail.threading_keys import (
	ThreadEvidence,
	make_message_id,
	make_ticket_token,
	parse_ticket_token,
	reply_address,
	subject_tag,
	thread_candidates,
	token_from_address,
)
from email_flow_app.mail.types import Attachment, Bounce, ParsedMessage

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
