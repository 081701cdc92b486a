"""Outgoing MIME for ticket replies and new ticket mail.

Invariants of every message built here:
- a caller-supplied value with CR or LF (or NUL) is rejected with ValueError
  before it reaches a header: no header injection;
- Subject carries the ticket tag exactly once and at most one ``Re:``;
- Message-ID is fresh; References keeps the first id and the last ones, at
  most :data:`MAX_REFERENCES`; In-Reply-To is the parent id;
- ``Auto-Submitted: auto-replied`` (and ``X-Auto-Response-Suppress: All``)
  appear only when ``automatic`` is True;
- ``X-Email-Flow-Ticket`` is always set; the body is text, or
  multipart/alternative text+HTML, with attachments in multipart/mixed and
  RFC 2231 file names.
"""

from __future__ import annotations

import base64
import datetime
import email.policy
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage

from email_flow_app.mail.headers import normalize_message_id
from email_flow_app.mail.parse import safe_filename
from email_flow_app.mail.threading_keys import make_message_id, subject_tag
from email_flow_app.mail.types import ParsedMessage

MAX_REFERENCES = 20
_WORD_BYTES = 45  # base64 of 45 bytes + "=?utf-8?b??=" stays within RFC 2047's 75 characters
_LINE = 76
_ENCODED_HEADERS = frozenset({"subject", "from", "to", "cc", "reply-to"})
TICKET_HEADER = "X-Email-Flow-Ticket"
SITE_HEADER = "X-Email-Flow-Site"
_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|tr|antw|réf|ref|rif)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)

#: A recipient: "addr@example.com" or ("Display Name", "addr@example.com").
Recipient = str | tuple[str, str]


@dataclass(frozen=True)
class OutgoingAttachment:
	"""A file to attach: name, MIME type (``type/subtype``) and bytes."""

	filename: str
	content_type: str
	payload: bytes = field(repr=False)


def _encoded_words(text: str) -> list[str]:
	"""``text`` as RFC 2047 base64 encoded words, each within 75 characters, never splitting a character."""
	words: list[str] = []
	chunk = b""
	for ch in text:
		data = ch.encode("utf-8")
		if chunk and len(chunk) + len(data) > _WORD_BYTES:
			words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
			chunk = b""
		chunk += data
	if chunk:
		words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
	return words


def _fold_tokens(name: str, tokens: list[str], linesep: str) -> str:
	"""Join ``tokens`` with single spaces, folding (CRLF + space) before a token that would pass 76 columns."""
	lines: list[str] = []
	line = f"{name}:"
	for token in tokens:
		if len(line) + 1 + len(token) > _LINE and line.strip() and not line.endswith(":"):
			lines.append(line)
			line = ""
		line += " " + token
	lines.append(line)
	return linesep.join(lines) + linesep


def _phrase_tokens(display_name: str) -> list[str]:
	if not display_name:
		return []
	if display_name.isascii():
		quoted = email.utils.formataddr((display_name, "x@y")).rsplit(" <", 1)[0]
		return [quoted]
	return _encoded_words(display_name)


class _OutgoingPolicy(email.policy.EmailPolicy):
	"""SMTP policy whose non-ASCII Subject and address headers are encoded by us.

	The stdlib's folder can put the space of a display name or subject
	*between* two encoded words, where RFC 2047 decoders drop it; ours keeps
	every space inside an encoded word.
	"""

	def fold(self, name: str, value) -> str:  # type: ignore[override]
		folded = self._our_fold(name, value)
		return folded if folded is not None else super().fold(name, value)

	def fold_binary(self, name: str, value) -> bytes:  # type: ignore[override]
		folded = self._our_fold(name, value)
		return folded.encode("ascii") if folded is not None else super().fold_binary(name, value)

	def _our_fold(self, name: str, value) -> str | None:
		if name.lower() not in _ENCODED_HEADERS or str(value).isascii():
			return None
		addresses = getattr(value, "addresses", None)
		if addresses is None:
			return _fold_tokens(name, _encoded_words(str(value)), self.linesep)
		tokens: list[str] = []
		for index, address in enumerate(addresses):
			comma = "," if index < len(addresses) - 1 else ""
			phrase = _phrase_tokens(address.display_name)
			tokens.extend(phrase)
			tokens.append((f"<{address.addr_spec}>" if phrase else address.addr_spec) + comma)
		return _fold_tokens(name, tokens, self.linesep)


_POLICY = _OutgoingPolicy(linesep="\r\n")


def _single_line(value: str, what: str) -> str:
	if any(c in value for c in "\r\n\x00"):
		raise ValueError(f"{what} must not contain CR, LF or NUL")
	return value


def _address(value: Recipient, what: str) -> Address:
	name, addr = ("", value) if isinstance(value, str) else value
	_single_line(name, f"{what} display name")
	_single_line(addr, f"{what} address")
	addr = addr.strip()
	if addr.count("@") != 1 or any(c in addr for c in ' \t<>,;"()\\'):
		raise ValueError(f"{what} is not a plain address: {addr!r}")
	local, domain = addr.split("@")
	if not local or not domain:
		raise ValueError(f"{what} is not a plain address: {addr!r}")
	return Address(display_name=name.strip(), username=local, domain=domain)


def base_subject(subject: str, ticket_name: str | None = None) -> str:
	"""``subject`` without reply/forward prefixes and without the ticket's tag."""
	subject = _single_line(subject or "", "subject")
	if ticket_name:
		subject = subject.replace(f"[#{ticket_name}]", " ")
	previous = None
	while previous != subject:
		previous = subject
		subject = _PREFIX.sub("", subject).strip()
	return re.sub(r"\s{2,}", " ", subject).strip()


def thread_references(references: Iterable[str], in_reply_to: str | None) -> list[str]:
	"""The References chain for a reply: parent's chain then the parent itself (always last),
	deduplicated, trimmed to the first id and the last ones."""
	parent = normalize_message_id(_single_line(in_reply_to, "in_reply_to")) if in_reply_to else ""
	chain: list[str] = []
	for ref in references:
		ref = normalize_message_id(_single_line(ref, "message id"))
		if ref and ref not in chain and ref != parent:
			chain.append(ref)
	if parent:
		chain.append(parent)
	if len(chain) > MAX_REFERENCES:
		chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
	return chain


def _build(
	*,
	from_address: str,
	from_name: str,
	to: Sequence[Recipient],
	cc: Sequence[Recipient],
	subject: str,
	text: str,
	html: str | None,
	ticket_name: str,
	attachments: Sequence[OutgoingAttachment],
	automatic: bool,
	reply_to: str | None,
	message_id: str | None,
	site: str | None,
	date: datetime.datetime | None,
) -> EmailMessage:
	_single_line(ticket_name, "ticket name")
	sender = _address((from_name, from_address), "From")
	recipients = [_address(r, "To") for r in to]
	copies = [_address(r, "Cc") for r in cc]
	if not recipients and not copies:
		raise ValueError("a message needs at least one recipient")
	msg = EmailMessage(policy=_POLICY)
	msg["From"] = sender
	if recipients:
		msg["To"] = recipients
	if copies:
		msg["Cc"] = copies
	if reply_to:
		msg["Reply-To"] = _address(reply_to, "Reply-To")
	msg["Subject"] = _single_line(subject, "subject")
	msg["Date"] = email.utils.format_datetime(date or datetime.datetime.now(datetime.timezone.utc))
	msg["Message-ID"] = (
		f"<{normalize_message_id(_single_line(message_id, 'message id'))}>"
		if message_id
		else make_message_id(sender.domain)
	)
	msg[TICKET_HEADER] = ticket_name
	if site:
		msg[SITE_HEADER] = _single_line(site, "site")
	if automatic:
		msg["Auto-Submitted"] = "auto-replied"
		msg["X-Auto-Response-Suppress"] = "All"
	msg.set_content(text or "", subtype="plain")
	if html:
		msg.add_alternative(html, subtype="html")
	for item in attachments:
		maintype, _, subtype = (item.content_type or "application/octet-stream").partition("/")
		if not subtype or any(c in item.content_type for c in '\r\n;" '):
			maintype, subtype = "application", "octet-stream"
		name = safe_filename(_single_line(item.filename, "attachment file name"), item.content_type, 1)
		if maintype == "text":
			msg.add_attachment(item.payload, maintype="application", subtype="octet-stream", filename=name)
			msg.get_payload()[-1].replace_header("Content-Type", f"{maintype}/{subtype}")
			msg.get_payload()[-1].set_param("name", name)
		else:
			msg.add_attachment(item.payload, maintype=maintype, subtype=subtype, filename=name)
	return msg


def compose_reply(
	*,
	from_address: str,
	ticket_name: str,
	text: str,
	parent: ParsedMessage | None = None,
	to: Sequence[Recipient] | None = None,
	cc: Sequence[Recipient] = (),
	subject: str | None = None,
	in_reply_to: str | None = None,
	references: Sequence[str] | None = None,
	from_name: str = "",
	html: str | None = None,
	attachments: Sequence[OutgoingAttachment] = (),
	automatic: bool = False,
	reply_to: str | None = None,
	message_id: str | None = None,
	site: str | None = None,
	date: datetime.datetime | None = None,
) -> EmailMessage:
	"""A reply on ticket ``ticket_name``.

	Threading comes from ``parent`` (the message answered) unless given
	explicitly: ``in_reply_to`` defaults to its Message-ID, ``references`` to
	its References, ``to`` to its Reply-To (else From), ``subject`` to its
	subject. The subject becomes ``Re: <base subject> [#TICKET]``.
	"""
	if parent is not None:
		in_reply_to = in_reply_to if in_reply_to is not None else parent.message_id
		references = references if references is not None else parent.references
		subject = subject if subject is not None else parent.subject
		if to is None:
			to = list(parent.reply_to) or (
				[(parent.from_name, parent.from_address)] if parent.from_address else []
			)
	chain = thread_references(references or (), in_reply_to)
	base = base_subject(subject or "", ticket_name)
	full_subject = f"Re: {base} {subject_tag(ticket_name)}" if base else f"Re: {subject_tag(ticket_name)}"
	msg = _build(
		from_address=from_address,
		from_name=from_name,
		to=to or (),
		cc=cc,
		subject=full_subject,
		text=text,
		html=html,
		ticket_name=ticket_name,
		attachments=attachments,
		automatic=automatic,
		reply_to=reply_to,
		message_id=message_id,
		site=site,
		date=date,
	)
	if in_reply_to:
		msg["In-Reply-To"] = f"<{normalize_message_id(_single_line(in_reply_to, 'in_reply_to'))}>"
	if chain:
		msg["References"] = " ".join(f"<{ref}>" for ref in chain)
	return msg


def compose_new(
	*,
	from_address: str,
	to: Sequence[Recipient],
	subject: str,
	text: str,
	ticket_name: str,
	cc: Sequence[Recipient] = (),
	from_name: str = "",
	html: str | None = None,
	attachments: Sequence[OutgoingAttachment] = (),
	automatic: bool = False,
	reply_to: str | None = None,
	message_id: str | None = None,
	site: str | None = None,
	date: datetime.datetime | None = None,
) -> EmailMessage:
	"""A new message on ticket ``ticket_name`` (e.g. an agent writing first); subject ``<subject> [#TICKET]``."""
	base = base_subject(subject, ticket_name)
	return _build(
		from_address=from_address,
		from_name=from_name,
		to=to,
		cc=cc,
		subject=f"{base} {subject_tag(ticket_name)}".strip(),
		text=text,
		html=html,
		ticket_name=ticket_name,
		attachments=attachments,
		automatic=automatic,
		reply_to=reply_to,
		message_id=message_id,
		site=site,
		date=date,
	)
