"""``parse_message``: raw RFC 5322 bytes to a :class:`ParsedMessage`, never raising.

How it works: the stdlib parser (``compat32`` policy, the fastest and most
lenient one) builds the MIME tree; every header and body is then decoded by
our own never-raising helpers. For large input, long runs of body lines
(base64 or text, which can be neither headers nor MIME boundaries) are first replaced by
short placeholder lines and read back from the original bytes only when
their part is decoded: this keeps peak memory near twice the message size
instead of the stdlib's eight.

Invariants: ``parse_message`` returns a ParsedMessage for every input; when
something is recovered, ``defects`` says what; the raw input is not copied
more than a small constant number of times.
"""

from __future__ import annotations

import binascii
import email.generator
import email.message
import email.parser
import email.policy
import io
import re
import secrets
from dataclasses import dataclass, field

from email_flow_app.mail import autoreply, bounces, quotes
from email_flow_app.mail.headers import (
	decode_bytes,
	decode_words,
	fix_8bit,
	message_ids,
	parse_addresses,
	parse_date,
	unfold,
)
from email_flow_app.mail.html_text import html_to_text
from email_flow_app.mail.sanitize import sanitize_html
from email_flow_app.mail.types import Attachment, ParsedMessage

#: Input above this size gets its long base64 runs elided before parsing.
ELIDE_THRESHOLD = 1 << 20
#: Only runs at least this long are elided.
ELIDE_MIN_RUN = 1 << 16
#: Deeper MIME nesting than this is not walked (recorded as a defect).
MAX_DEPTH = 60
#: At most this many MIME parts are looked at.
MAX_PARTS = 5000
#: The text and the HTML body are each cut at this many characters (ParsedMessage.body_truncated).
MAX_BODY_CHARS = 1_000_000

#: A run of body lines: after a blank line (so never a header block, the first line not even
#: looking like a header, as the inner headers of a message/rfc822 part would), none of them
#: starting with "--" (so never a MIME boundary). Base64 and long text bodies alike.
_BODY_RUN = re.compile(rb"\n\r?\n((?![!-9;-~]{1,76}:[ \t])(?:(?!--)[^\r\n]*\r?\n){64,})")
_CID_REF = re.compile(r"""cid:([^"'\s>)]+)""", re.IGNORECASE)
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f<>:"|?*]+')
_EXTENSIONS = {
	"application/pdf": ".pdf",
	"image/png": ".png",
	"image/jpeg": ".jpg",
	"image/gif": ".gif",
	"image/webp": ".webp",
	"text/plain": ".txt",
	"text/html": ".html",
	"text/calendar": ".ics",
	"message/rfc822": ".eml",
	"application/zip": ".zip",
	"application/msword": ".doc",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}


@dataclass
class _Elided:
	"""Placeholders standing for byte ranges of the original input."""

	raw: bytes
	marker: bytes = b""
	spans: list[tuple[int, int]] = field(default_factory=list)

	@property
	def pattern(self) -> re.Pattern[bytes]:
		return re.compile(re.escape(self.marker) + rb"(\d{8})")

	def restore(self, data: bytes) -> bytes:
		"""``data`` with every placeholder replaced by the bytes it stands for."""
		if not self.spans or self.marker not in data:
			return data
		pieces: list[bytes | memoryview] = []
		view = memoryview(self.raw)
		pos = 0
		for match in self.pattern.finditer(data):
			pieces.append(data[pos : match.start()])
			start, end = self.spans[int(match.group(1))]
			pieces.append(view[start:end])
			pos = match.end()
		pieces.append(data[pos:])
		return b"".join(pieces)


def _elide(raw: bytes) -> tuple[bytes, _Elided]:
	elided = _Elided(raw)
	if len(raw) < ELIDE_THRESHOLD:
		return raw, elided
	marker = b"EFLOWELIDED" + secrets.token_hex(6).upper().encode()
	while marker in raw:
		marker = b"EFLOWELIDED" + secrets.token_hex(6).upper().encode()
	elided.marker = marker
	out: list[bytes | memoryview] = []
	view = memoryview(raw)
	pos = 0
	for match in _BODY_RUN.finditer(raw):
		start, end = match.span(1)
		if end - start < ELIDE_MIN_RUN:
			continue
		newline = b"\r\n" if raw[end - 2 : end] == b"\r\n" else b"\n"
		out.append(view[pos:start])
		out.append(marker + b"%08d" % len(elided.spans) + newline)
		elided.spans.append((start, end - len(newline)))
		pos = end
	if not elided.spans:
		return raw, elided
	out.append(view[pos:])
	return b"".join(out), elided


def _payload_bytes(part: email.message.Message, elided: _Elided, defects: list[str]) -> bytes:
	"""The decoded (transfer-encoding removed) body of a leaf part."""
	payload = part.get_payload()
	if isinstance(payload, str) and elided.spans and elided.marker.decode() in payload:
		data = elided.restore(payload.encode("ascii", errors="surrogateescape"))
		del payload
		cte = str(part.get("content-transfer-encoding", "")).strip().lower()
		if cte == "base64":
			try:
				return binascii.a2b_base64(data)
			except binascii.Error:
				defects.append("bad base64 padding: decoded what could be")
				cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
				cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
				return binascii.a2b_base64(cleaned)
		if cte == "quoted-printable":
			return binascii.a2b_qp(data)
		return data
	data = part.get_payload(decode=True)
	if isinstance(data, bytes):
		return data
	return b""


def _header_values(msg: email.message.Message, name: str) -> list[str]:
	"""Raw values (8-bit bytes kept as surrogate escapes) of every ``name`` header."""
	key = name.lower()
	try:
		return [str(v) for k, v in msg.raw_items() if k.lower() == key]
	except Exception:
		return []


def _first(msg: email.message.Message, name: str) -> str | None:
	values = _header_values(msg, name)
	return values[0] if values else None


def safe_filename(name: str | None, content_type: str, index: int) -> str:
	"""A file name with no path part or control characters; never empty."""
	name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
	name = _UNSAFE_FILENAME.sub("_", name).strip().lstrip(".").strip()
	if len(name) > 200:
		stem, dot, ext = name.rpartition(".")
		name = (stem[: 200 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 16 else name[:200]
	if not name:
		name = f"attachment-{index}{_EXTENSIONS.get(content_type, '.bin')}"
	return name


def _part_filename(part: email.message.Message, defects: list[str]) -> str | None:
	try:
		name = part.get_filename()
	except Exception:
		defects.append("unreadable attachment file name: replaced")
		return None
	if name is None:
		return None
	if isinstance(name, tuple):
		name = str(name[2])
	return decode_words(str(name), defects, " in a file name")


def _flatten(msg: email.message.Message, elided: _Elided) -> bytes:
	buf = io.BytesIO()
	try:
		email.generator.BytesGenerator(buf, mangle_from_=False, policy=email.policy.compat32).flatten(msg)
	except Exception:
		try:
			return elided.restore(msg.as_string().encode("utf-8", errors="surrogateescape"))
		except Exception:
			return b""
	return elided.restore(buf.getvalue())


def _content_id(part: email.message.Message) -> str | None:
	value = _first(part, "content-id")
	if not value:
		return None
	value = unfold(fix_8bit(value)).strip().strip("<>").strip()
	return value or None


def _walk(root: email.message.Message, defects: list[str]):
	"""Yield (part, parent content type) for every leaf or ``message/*`` part, depth first, in order."""
	stack: list[tuple[email.message.Message, int, str]] = [(root, 0, "")]
	count = 0
	while stack:
		part, depth, parent = stack.pop()
		count += 1
		if count > MAX_PARTS:
			defects.append(f"more than {MAX_PARTS} MIME parts: the rest were not read")
			return
		ctype = part.get_content_type()
		if part.is_multipart() and not ctype.startswith("message/"):
			if depth >= MAX_DEPTH:
				defects.append(f"MIME nesting deeper than {MAX_DEPTH}: inner parts not read")
				continue
			children = [c for c in part.get_payload() if isinstance(c, email.message.Message)]
			stack.extend((child, depth + 1, ctype) for child in reversed(children))
		else:
			yield part, parent


def header_charset(root: email.message.Message) -> str | None:
	"""The first charset a text part of the message declares (the hint for raw 8-bit headers)."""
	for count, part in enumerate(root.walk()):
		if count > 200:
			break
		if part.get_content_maintype() != "text":
			continue
		try:
			charset = part.get_content_charset()
		except Exception:
			charset = None
		if charset and charset.lower() not in ("us-ascii", "ascii"):
			return charset
	return None


def _headers(
	root: email.message.Message, defects: list[str], charset: str | None = None
) -> list[tuple[str, str]]:
	out: list[tuple[str, str]] = []
	for name, value in root.raw_items() if hasattr(root, "raw_items") else root.items():
		out.append((str(name), decode_words(str(value), defects, f" in {str(name)[:40]}", charset).strip()))
	return out


def _text_body(
	part: email.message.Message,
	ctype: str,
	elided: _Elided,
	defects: list[str],
	budget: dict[str, int],
	msg: ParsedMessage,
) -> str:
	"""A text part decoded, cut to what is left of the body budget (MAX_BODY_CHARS per type)."""
	data = _payload_bytes(part, elided, defects)
	left = budget[ctype]
	if len(data) > 4 * left + 4:
		data = data[: 4 * left + 4]  # no character takes more than 4 bytes: enough to fill the budget
	try:
		charset = part.get_content_charset()
	except Exception:
		charset = None
	body = decode_bytes(data, charset, defects, f" in a {ctype} part")
	del data
	if len(body) > left:
		body = body[:left]
		msg.body_truncated = True
		defects.append(f"{ctype} body longer than {MAX_BODY_CHARS} characters: cut (the raw message has all)")
	budget[ctype] = left - len(body)
	return body


def _is_blank(part: email.message.Message, elided: _Elided, defects: list[str]) -> bool:
	payload = part.get_payload()
	if isinstance(payload, str) and len(payload) > 64:
		return False
	return not _payload_bytes(part, elided, defects).strip()


def _read_headers(
	root: email.message.Message, msg: ParsedMessage, defects: list[str], hint: str | None
) -> None:
	"""Subject, addresses, date and threading ids of ``root`` into ``msg``."""
	msg.subject = decode_words(_first(root, "subject") or "", defects, " in Subject", hint).strip()
	msg.subject = "".join(ch if ch >= " " or ch == "\t" else " " for ch in msg.subject)
	senders = parse_addresses(_header_values(root, "from"), defects, " in From", hint)
	if senders:
		msg.from_name, msg.from_address = senders[0]
	else:
		sender = parse_addresses(_header_values(root, "sender"), defects, " in Sender", hint)
		if sender:
			msg.from_name, msg.from_address = sender[0]
			defects.append("no usable From: used Sender")
		else:
			defects.append("no usable From address")
	msg.reply_to = parse_addresses(_header_values(root, "reply-to"), defects, " in Reply-To", hint)
	msg.to = parse_addresses(_header_values(root, "to"), defects, " in To", hint)
	msg.cc = parse_addresses(_header_values(root, "cc"), defects, " in Cc", hint)
	for name, pick_last in (
		("x-original-to", False),
		("delivered-to", True),
		("x-forwarded-to", False),
		("envelope-to", False),
	):
		values = _header_values(root, name)
		if pick_last:
			values = values[::-1]
		for value in values:
			found = parse_addresses([value])
			if found:
				msg.delivered_to = found[0][1]
				break
		if msg.delivered_to:
			break
	msg.date = parse_date(_first(root, "date"), defects)
	ids = message_ids(fix_8bit(_first(root, "message-id") or ""))
	msg.message_id = ids[0] if ids else None
	reply_ids = message_ids(fix_8bit(_first(root, "in-reply-to") or ""))
	msg.in_reply_to = reply_ids[0] if reply_ids else None
	msg.references = message_ids(fix_8bit(" ".join(_header_values(root, "references"))))


def _build(raw: bytes) -> ParsedMessage:
	defects: list[str] = []
	parsed_raw, elided = _elide(raw)
	root = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(parsed_raw)
	del parsed_raw
	for defect in root.defects:
		defects.append(f"mime: {type(defect).__name__}")
	msg = ParsedMessage(defects=defects)
	hint = header_charset(root)
	msg.headers = _headers(root, defects, hint)

	_read_headers(root, msg, defects, hint)

	plains: list[str] = []
	htmls: list[str] = []
	budget = {"text/plain": MAX_BODY_CHARS, "text/html": MAX_BODY_CHARS}
	pending: list[tuple[email.message.Message, str, str | None]] = []
	named_texts: list[tuple[email.message.Message, str, str | None]] = []
	for part, parent in _walk(root, defects):
		ctype = part.get_content_type()
		try:
			disposition = part.get_content_disposition()
		except Exception:
			disposition = None
		if ctype.startswith("message/"):
			pending.append((part, ctype, None))
			continue
		filename = _part_filename(part, defects)
		if ctype in ("text/plain", "text/html") and disposition != "attachment" and filename is None:
			body = _text_body(part, ctype, elided, defects, budget, msg)
			(plains if ctype == "text/plain" else htmls).append(body)
			continue
		if parent == "multipart/alternative" and not (disposition == "attachment" and filename):
			# Another rendering of the body (text/watch-html, text/enriched, an empty part...):
			# the body is read from its text/plain and text/html siblings; the raw .eml keeps it.
			defects.append(f"alternative {ctype} part not kept (the body is its text or HTML sibling)")
			continue
		if filename is None and not ctype.startswith("text/") and _is_blank(part, elided, defects):
			defects.append(f"empty {ctype} part without a name: not kept")
			continue
		if ctype in ("text/plain", "text/html") and disposition != "attachment":
			named_texts.append((part, ctype, filename))  # an inline text part with a file name
		pending.append((part, ctype, filename))

	if not plains and not htmls and named_texts:
		# No unnamed body: the first inline text part with a file name is the body (not a file).
		part, ctype, _filename = named_texts[0]
		body = _text_body(part, ctype, elided, defects, budget, msg)
		(plains if ctype == "text/plain" else htmls).append(body)
		pending = [entry for entry in pending if entry[0] is not part]

	raw_html = "\n".join(htmls)
	cids = {m.group(1).strip() for m in _CID_REF.finditer(raw_html)}
	for index, (part, ctype, filename) in enumerate(pending, start=1):
		if ctype.startswith("message/"):
			payload = _flatten_message_part(part, elided)
			if ctype == "message/rfc822":
				inner = part.get_payload()
				inner_subject = ""
				if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
					inner_subject = decode_words(_first(inner[0], "subject") or "")
				name = safe_filename(
					_part_filename(part, defects) or (inner_subject or "message"), ctype, index
				)
				if not name.lower().endswith(".eml"):
					name += ".eml"
			else:
				name = safe_filename(_part_filename(part, defects), ctype, index)
				if name.startswith("attachment-"):
					name = f"{ctype.split('/', 1)[1]}-{index}.txt"
		else:
			payload = _payload_bytes(part, elided, defects)
			name = safe_filename(filename, ctype, index)
		cid = _content_id(part)
		msg.attachments.append(
			Attachment(
				filename=name,
				content_type=ctype,
				payload=payload,
				content_id=cid,
				inline=bool(cid) and cid in cids,
			)
		)

	try:
		msg.html = sanitize_html(raw_html)
	except Exception as exc:
		defects.append(f"HTML could not be sanitized ({type(exc).__name__}): dropped")
		msg.html = ""
	msg.text = "\n\n".join(p.strip("\r\n") for p in plains) if plains else html_to_text(raw_html)
	msg.text = msg.text.replace("\r\n", "\n").replace("\x00", "")
	msg.reply_text = quotes.extract_reply(msg.text)

	get = msg.get_header
	msg.auto_submitted = autoreply.auto_submitted_reason(get, msg.subject, msg.has_header_prefix)
	msg.bounce = bounces.detect_bounce(
		root,
		sender_address=msg.from_address,
		sender_name=msg.from_name,
		subject=msg.subject,
		text=msg.text,
		return_path=get("return-path"),
		from_raw=get("from") or "",
	)
	if msg.auto_submitted is None and root.get_content_type() == "multipart/report":
		msg.auto_submitted = "delivery report"
	if msg.bounce is not None and msg.auto_submitted is None:
		msg.auto_submitted = "bounce"
	if msg.bounce is not None or root.get_content_type() == "multipart/report":
		msg.returned = bounces.returned_headers(root, msg.text)
		msg.original_message_id = msg.returned.message_id if msg.returned else None
	msg.suppress_auto_reply = autoreply.suppress_reason(get)
	if msg.suppress_auto_reply is None and msg.auto_submitted is not None:
		msg.suppress_auto_reply = f"machine-written ({msg.auto_submitted})"
	return msg


def _flatten_message_part(part: email.message.Message, elided: _Elided) -> bytes:
	inner = part.get_payload()
	if isinstance(inner, list):
		if part.get_content_type() == "message/rfc822" and len(inner) == 1:
			return _flatten(inner[0], elided)
		return b"\n".join(
			_flatten(block, elided) for block in inner if isinstance(block, email.message.Message)
		)
	if isinstance(inner, str):
		return elided.restore(inner.encode("ascii", errors="surrogateescape"))
	return b""


HEADERS_READ_MAX = 1 << 19


def parse_headers(raw: bytes) -> ParsedMessage:
	"""Only what the headers say (subject, addresses, date, Message-ID): a quick look at stored mail.

	Reads at most the first HEADERS_READ_MAX bytes; never raises (an empty
	ParsedMessage with a defect when even that fails).
	"""
	try:
		head = bytes(raw[:HEADERS_READ_MAX])
		root = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head, headersonly=True)
		defects: list[str] = []
		msg = ParsedMessage(defects=defects)
		try:
			hint = root.get_content_charset()
		except Exception:
			hint = None
		_read_headers(root, msg, defects, hint)
		return msg
	except Exception as exc:
		return ParsedMessage(defects=[f"unreadable headers ({type(exc).__name__})"])


def parse_message(raw: bytes) -> ParsedMessage:
	"""Parse one raw message. Never raises; see the module docstring."""
	try:
		if isinstance(raw, str):
			raw = raw.encode("utf-8", errors="surrogateescape")
		elif not isinstance(raw, bytes):
			raw = bytes(raw)
		return _build(raw)
	except Exception as exc:
		fallback = ParsedMessage(
			defects=[f"unparseable message ({type(exc).__name__}): only the raw text is kept"]
		)
		try:
			head = bytes(raw[: 1 << 20]) if isinstance(raw, bytes | bytearray | memoryview) else b""
			fallback.text = head.decode("utf-8", errors="replace")
			fallback.reply_text = fallback.text
		except Exception:
			pass
		return fallback
