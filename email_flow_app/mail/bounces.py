"""Delivery failure reports: RFC 3464 DSNs and common non-standard formats.

Invariants:
- a message is only read as a non-standard bounce when its sender is a
  mail system (mailer-daemon, postmaster, "Mail Delivery ..." or an empty
  envelope sender) or it is a top-level ``multipart/report``; a person
  quoting or forwarding an old bounce is never a bounce;
- recipients are lower-cased, deduplicated, never the sender itself;
- ``permanent`` is False only for delays, 4.x.x codes and "will retry" texts.
"""

from __future__ import annotations

import email.message
import re

from email_flow_app.mail.headers import decode_bytes, fix_8bit, message_ids, unfold
from email_flow_app.mail.types import Bounce, ReturnedHeaders

#: Bounce subjects of non-English mail systems (Exchange, Notes, Exim and others, localised).
_FOREIGN_SUBJECTS = (
	r"non remis|non distribu|remise impossible|[ée]chec de (la )?(remise|distribution|livraison)|"
	r"message non d[ée]livr|nicht zustellbar|unzustellbar|nicht zugestellt|zustellung fehlgeschlagen|"
	r"unzustellbare|no entregado|no se (pudo|puede) entregar|error de entrega|no entregable|"
	r"non recapitabil|mancato recapito|impossibile recapitare|consegna non riuscita|"
	r"n[ãa]o entregue|n[ãa]o (foi poss[íi]vel )?entreg|falha na entrega|onbestelbaar|niet bezorgd|"
	r"kon niet worden bezorgd|ej levererat|kunde inte levereras|olevererbar|ikke levert|"
	r"kan ikke leveres|nie dostarczon|niedostarczon|nedoru[čc]iteln|kézbesíthetetlen|"
	r"недоставлен|не доставлен|не удалось доставить|ulaştırılamadı|iletilemedi|"
	r"配信不能|送信できません|无法投递|退信|未能送达|傳送失敗"
)
_MAILER_LOCALS = re.compile(
	r"^(mailer-daemon|mailer_daemon|mailerdaemon|maildaemon|mail-daemon|postmaster|mdaemon|"
	r"mail\.?delivery.*|mail-delivery.*|mailerdaemon.*|bounce[sd]?|nobody|mail_daemon)$",
	re.IGNORECASE,
)
_MAILER_NAMES = re.compile(
	r"mail delivery|mailer.?daemon|postmaster|mail administrator|delivery status|mail system", re.IGNORECASE
)
_BOUNCE_SUBJECT = re.compile(
	r"undeliver|undelivered|delivery (status notification|failure|failed|has failed|problem|report)|"
	r"mail delivery failed|returned mail|failure notice|could not (be )?deliver|non.?deliver|"
	r"delivery notification|mail system error|message not delivered|warning: could not send|"
	r"delayed mail|delivery delayed|rejected|" + _FOREIGN_SUBJECTS,
	re.IGNORECASE,
)
#: A bounce phrase an MTA appended to the returned message's subject ("RE: Hello : non remis
#: (delivery failed)"): such a subject keeps its sender's reply prefix and is still a bounce.
_BOUNCE_SUFFIX = re.compile(
	r"[:(\-]\s*(" + _FOREIGN_SUBJECTS + r"|undeliverable|undelivered|delivery failed|delivery failure|"
	r"returned mail|non.?delivery)\b[^:]{0,40}$",
	re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(r"^\s*(re|fw|fwd|aw|wg|sv|vs|tr|antw)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_ADDRESS = re.compile(
	r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+"
)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_ORIGINAL_MARKERS = re.compile(
	r"^\s*(-{2,}.*(original message|copy of the message|below this line|returned message|message header|"
	r"undelivered message|headers of your message|unsent message|original headers).*"
	r"|-{3,} ?original message.*|received: from .*|return-path:.*|message-id:.*|"
	r"this is a copy of the message.*|original message follows.*|.*original message headers.*)$",
	re.IGNORECASE | re.MULTILINE,
)
_TEMPORARY = re.compile(
	r"delayed|delay|will (continue|keep) (trying|to try)|will retry|still trying|not yet been delivered|"
	r"temporar|retry|warning|try again later|queued|deferred",
	re.IGNORECASE,
)
_PERMANENT_HINT = re.compile(
	r"permanent|fatal|failed|user unknown|unknown user|does not exist|no such|not found|rejected|"
	r"unrouteable|undeliverable|invalid|disabled|mailbox unavailable|could not be delivered|giving up|"
	r"retry time ?out exceeded|5\.\d\.\d|\b55\d\b",
	re.IGNORECASE,
)
_MTA_WORDING = re.compile(
	r"could not be delivered|delivery (to the following|has failed)|did not reach|following (recipient|address)|"
	r"permanent (fatal )?error|user unknown|unknown user|no such user|mailbox (unavailable|not found|full)|"
	r"\b5\.\d\.\d{1,3}\b|\b55\d\b|returned to (the )?sender|undeliverable|non-delivery|smtp|"
	r"automatically generated|mail delivery|relay|not delivered|address rejected|recipient rejected|"
	r"n'a pas pu [êe]tre (d[ée]livr|remis|distribu|transmis)|impossible de (remettre|livrer|distribuer)|"
	r"konnte nicht (zugestellt|ausgeliefert)|unzustellbar|no se (pudo|ha podido) entregar|"
	r"non (è|e') stato (possibile )?(recapitat|consegnat)|n[ãa]o p[ôo]de ser entregue|"
	r"kon niet worden (bezorgd|afgeleverd)|kunde inte levereras|не (может быть|удалось) доставить",
	re.IGNORECASE,
)
_FAILURE_LINE = re.compile(
	r"user unknown|unknown user|does not exist|no such|not found|rejected|unrouteable|undeliverable|"
	r"invalid|disabled|mailbox|could not be delivered|failed|recipient|unknown|over quota|quota|"
	r"not (be )?delivered|permanent|refused|denied|\b5\d\d\b|\b4\d\d\b|\b[45]\.\d\.\d|delay|"
	r"host|retry|address|account|expired|giving up|no longer|inactive|blocked",
	re.IGNORECASE,
)


def is_mailer_sender(address: str, name: str, return_path: str | None, from_raw: str = "") -> bool:
	"""True when the sender (From, or the envelope sender) is a mail system rather than a person."""
	local = address.split("@", 1)[0] if address else ""
	if local and _MAILER_LOCALS.match(local):
		return True
	if (name and _MAILER_NAMES.search(name)) or (not address and from_raw and _MAILER_NAMES.search(from_raw)):
		return True
	if return_path is None:
		return False
	path = return_path.strip().strip("<>").strip()
	return path == "" or bool(_MAILER_LOCALS.match(path.split("@", 1)[0]))


def _permanent(status: str, action: str, text: str) -> bool:
	if action == "failed":
		return True
	if action == "delayed" or status.startswith("4"):
		return False
	if status.startswith("5"):
		return True
	return not (_TEMPORARY.search(text) and not _PERMANENT_HINT.search(text))


def _field(block: email.message.Message, name: str) -> str:
	value = block.get(name)
	if value is None:
		return ""
	return fix_8bit(unfold(str(value))).strip()


def _recipient_address(value: str) -> str:
	if ";" in value:
		value = value.split(";", 1)[1]
	match = _ADDRESS.search(value)
	return match.group(0).lower() if match else ""


def _dsn_blocks(part: email.message.Message) -> list[email.message.Message]:
	payload = part.get_payload()
	if isinstance(payload, list):
		return [b for b in payload if isinstance(b, email.message.Message)]
	if isinstance(payload, str):
		raw = part.get_payload(decode=True) or b""
		text = decode_bytes(raw if isinstance(raw, bytes) else payload.encode(), "utf-8")
		blocks = []
		for chunk in re.split(r"\r?\n\s*\r?\n", text):
			if chunk.strip():
				blocks.append(email.message_from_string(chunk.strip() + "\n"))
		return blocks
	return []


def dsn_failures(root: email.message.Message, loose: bool = False) -> tuple[list[Bounce], int] | None:
	"""(failed/delayed recipients, number of successful ones) from a top-level RFC 3464 report.

	None when ``root`` has no delivery-status part among its direct children.
	Only a ``multipart/report`` root is read, unless ``loose`` (the sender is
	a mail system): then any multipart root is.
	"""
	if root.get_content_type() != "multipart/report" and not (loose and root.is_multipart()):
		return None
	status_part = None
	for part in root.get_payload() if isinstance(root.get_payload(), list) else []:
		if isinstance(part, email.message.Message) and part.get_content_type() in (
			"message/delivery-status",
			"message/global-delivery-status",
		):
			status_part = part
			break
	if status_part is None:
		return None
	found: dict[str, Bounce] = {}
	successes = 0
	for block in _dsn_blocks(status_part):
		# The original recipient is the address we wrote to; the final one may be an alias target.
		address = _recipient_address(_field(block, "original-recipient")) or _recipient_address(
			_field(block, "final-recipient")
		)
		if not address:
			continue
		action = _field(block, "action").lower()
		if action in ("delivered", "relayed", "expanded"):
			successes += 1
			continue
		status_match = _STATUS.search(_field(block, "status"))
		status = status_match.group(0) if status_match else ""
		diagnostic = _field(block, "diagnostic-code")
		if ";" in diagnostic:
			diagnostic = diagnostic.split(";", 1)[1].strip()
		found.setdefault(
			address,
			Bounce(address, _permanent(status, action, diagnostic), status, diagnostic[:500]),
		)
	return list(found.values()), successes


def _report_text(text: str) -> str:
	"""The part of a bounce text written by the mail system (before the returned message)."""
	match = _ORIGINAL_MARKERS.search(text)
	return text[: match.start()] if match else text[:20000]


def text_failures(text: str, sender_address: str, own_domains: frozenset[str] = frozenset()) -> list[Bounce]:
	"""Failed recipients read from a non-standard bounce text (qmail, Exim, Postfix, Exchange, ...)."""
	report = _report_text(text)
	lines = report.splitlines()
	temporary_report = bool(_TEMPORARY.search(report[:3000])) and not re.search(
		r"permanent|fatal|failed permanently|giving up|retry time ?out exceeded|could not be delivered",
		report[:3000],
		re.IGNORECASE,
	)
	found: dict[str, Bounce] = {}
	for i, line in enumerate(lines):
		for match in _ADDRESS.finditer(line):
			address = match.group(0).lower().strip(".")
			if address == sender_address or address.split("@", 1)[0] in ("mailer-daemon", "postmaster"):
				continue
			context = " ".join(lines[max(0, i - 1) : i + 3])
			stripped = line.strip()
			listed = (
				stripped.startswith(("<", "  ", "\t"))
				or line.startswith((" ", "\t"))
				or stripped.lower().startswith(address)
				or bool(re.match(r"^\S*<?" + re.escape(address) + r">?:?", stripped, re.IGNORECASE))
			)
			if not (listed or _FAILURE_LINE.search(context)):
				continue
			status_match = _STATUS.search(context)
			status = status_match.group(0) if status_match else ""
			permanent = not temporary_report if not status else status.startswith("5")
			found.setdefault(address, Bounce(address, permanent, status, stripped[:500]))
	return list(found.values())


def _has_bounce_suffix(subject: str) -> bool:
	"""True for "RE: <their subject> : non remis (delivery failed)": a bounce phrase after the text.

	Not for "Re: Undelivered Mail ...", a person answering a bounce.
	"""
	rest = subject or ""
	while match := _REPLY_PREFIX.match(rest):
		rest = rest[match.end() :]
	rest = rest.strip()
	if not rest or _BOUNCE_SUBJECT.match(rest):
		return False
	found = _BOUNCE_SUFFIX.search(rest)
	return bool(found) and found.start() > 0


def detect_bounce(
	root: email.message.Message,
	*,
	sender_address: str,
	sender_name: str,
	subject: str,
	text: str,
	return_path: str | None,
	from_raw: str = "",
) -> list[Bounce] | None:
	"""The failed recipients when ``root`` is a delivery failure report, else None.

	See the module docstring for when a message counts as a bounce.
	"""
	mailer = is_mailer_sender(sender_address, sender_name, return_path, from_raw)
	dsn = dsn_failures(root, loose=mailer)
	if dsn is not None:
		failures, successes = dsn
		if failures:
			return failures
		if successes:
			return None  # a report of successful deliveries only
	if _REPLY_PREFIX.match(subject or "") and not _has_bounce_suffix(subject):
		return None
	mailer = mailer or dsn is not None or root.get_content_type() == "multipart/report"
	failures = text_failures(text, sender_address)
	if not failures and root.is_multipart():
		for part in root.walk():
			if part.get_content_type() == "text/plain" and part is not root:
				raw = part.get_payload(decode=True)
				if isinstance(raw, bytes):
					head = raw[:200_000]  # a report is short: never decode a huge body twice
					del raw
					failures = text_failures(decode_bytes(head, part.get_content_charset()), sender_address)
				if failures:
					break
	if mailer:
		if failures or _BOUNCE_SUBJECT.search(subject or "") or _PERMANENT_HINT.search(text[:3000]):
			return failures
		return None
	# A sender that is not obviously a mail system: demand a bounce subject, recipients and MTA wording.
	if _BOUNCE_SUBJECT.search(subject or "") and failures and _MTA_WORDING.search(_report_text(text)):
		return failures
	return None


_HEADER_LINE = re.compile(
	r"^\s*(Message-ID|In-Reply-To|References|X-Email-Flow-Ticket):[ \t]*(.*(?:\r?\n[ \t]+.*)*)",
	re.IGNORECASE | re.MULTILINE,
)


def returned_headers(root: email.message.Message, text: str) -> ReturnedHeaders | None:
	"""Message-ID, In-Reply-To, References and X-Email-Flow-Ticket of the returned message.

	Read from the attached copy (``message/rfc822``) or its headers
	(``text/rfc822-headers``); with no Message-ID there, also from the header
	lines the report's text quotes. None when the report names none of them.
	"""
	values: dict[str, str] = {}
	for part in root.walk():  # every returned copy or header block; the first one naming a header wins
		ctype = part.get_content_type()
		block = ""
		if ctype == "message/rfc822":
			inner = part.get_payload()
			if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
				block = "\n".join(f"{k}: {v}" for k, v in inner[0].items())
		elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
			raw = part.get_payload(decode=True)
			if isinstance(raw, bytes):
				block = raw[:200_000].decode("utf-8", errors="replace")
		for match in _HEADER_LINE.finditer(block):
			values.setdefault(match.group(1).lower(), unfold(match.group(2)))
	if "message-id" not in values:
		# Many MTAs quote the returned headers in the report's text.
		quoted = (text or "")[:200_000]
		marker = _ORIGINAL_MARKERS.search(quoted)
		for match in _HEADER_LINE.finditer(quoted[marker.start() :] if marker else quoted):
			values.setdefault(match.group(1).lower(), unfold(match.group(2)))
	if not values:
		return None
	ids = message_ids(values.get("message-id"))
	replies = message_ids(values.get("in-reply-to"))
	ticket = " ".join((values.get("x-email-flow-ticket") or "").split())
	return ReturnedHeaders(
		message_id=ids[0] if ids else None,
		in_reply_to=replies[0] if replies else None,
		references=message_ids(values.get("references")),
		ticket_header=ticket[:300] or None,
	)
