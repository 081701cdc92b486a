"""Header and charset decoding that never raises.

Invariants: every function here returns ``str`` for any input; bytes that no
declared charset can decode are recovered as UTF-8, else Windows-1252 (which
maps every byte), and the caller is told through ``defects``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime
import email.utils
import re

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_ANGLE_ID = re.compile(r"<([^<>\s]+)>")
_CHARSET_ALIASES = {
	"unknown-8bit": None,
	"x-unknown": None,
	"unknown": None,
	"default": None,
	"x-user-defined": None,
	"us-ascii": "ascii",
	"ascii": "ascii",
	"ks_c_5601-1987": "cp949",
	"gb2312": "gb18030",
	"gbk": "gb18030",
	"iso-8859-8-i": "iso-8859-8",
	"windows-874": "cp874",
	"x-mac-roman": "mac_roman",
	"utf8": "utf-8",
}


def _codec(charset: str | None) -> str | None:
	"""A Python codec name for ``charset``, or None when unknown or absent."""
	if not charset:
		return None
	name = charset.strip().strip("\"'").lower()
	name = name.split("*", 1)[0]  # RFC 2231 language suffix
	if name in _CHARSET_ALIASES:
		return _CHARSET_ALIASES[name]
	try:
		return codecs.lookup(name).name
	except (LookupError, ValueError):
		return None


def decode_bytes(data: bytes, charset: str | None, defects: list[str] | None = None, where: str = "") -> str:
	"""Decode ``data`` with ``charset``; recover sensibly when that fails.

	Order: the declared charset (ASCII declared on 8-bit data counts as a
	failure), then UTF-8, then Windows-1252. Never raises.
	"""
	codec = _codec(charset)
	if codec is not None:
		try:
			return data.decode(codec)
		except (UnicodeDecodeError, LookupError):
			pass
	elif charset and charset.strip().lower() not in ("unknown-8bit", "x-unknown", "us-ascii", "ascii"):
		if defects is not None:
			defects.append(f"unknown charset {charset[:40]!r}{where}: recovered as utf-8/cp1252")
	if codec is None or codec != "utf-8":
		try:
			return data.decode("utf-8")
		except UnicodeDecodeError:
			pass
	if defects is not None and codec is not None:
		defects.append(f"bytes invalid for {charset[:40]!r}{where}: recovered as cp1252")
	return data.decode("cp1252", errors="replace")


def guess_charset(data: bytes) -> str | None:
	"""The charset chardet (which Frappe ships) reads in ``data``, or None when unsure or absent."""
	try:
		import chardet
	except ImportError:
		return None
	try:
		found = chardet.detect(data)
	except Exception:
		return None
	codec = _codec(found.get("encoding"))
	if codec is None or codec == "ascii" or (found.get("confidence") or 0) < 0.5:
		return None
	return codec


def fix_8bit(
	value: str, defects: list[str] | None = None, where: str = "", charset: str | None = None
) -> str:
	"""Turn surrogate-escaped raw 8-bit header bytes (not RFC 2047 words) into text.

	Order: UTF-8 when the bytes are valid UTF-8 (an 8-bit legacy text almost
	never is); else ``charset``, the message body's declared charset (a mail
	client writes its headers in the charset of its body); else what chardet
	reads; else Windows-1252.
	"""
	try:
		value.encode("utf-8")
		return value
	except UnicodeEncodeError:
		pass
	raw = value.encode("utf-8", errors="surrogateescape")
	try:
		return raw.decode("utf-8")
	except UnicodeDecodeError:
		pass
	for codec in (_codec(charset), guess_charset(raw)):
		if codec and codec not in ("ascii", "utf-8"):
			try:
				return raw.decode(codec)
			except (UnicodeDecodeError, LookupError):
				continue
	if defects is not None:
		defects.append(f"raw 8-bit bytes{where}: recovered as cp1252")
	return raw.decode("cp1252", errors="replace")


def unfold(value: str) -> str:
	"""Remove RFC 5322 folding (CRLF followed by whitespace)."""
	return _FOLD.sub("", value)


def _decode_word_bytes(encoding: str, text: str) -> bytes:
	if encoding in "bB":
		text = re.sub(r"[^A-Za-z0-9+/]", "", text)
		if len(text) % 4 == 1:
			text = text[:-1]
		return base64.b64decode(text + "=" * (-len(text) % 4))
	return binascii.a2b_qp(text.encode("ascii", errors="replace"), header=True)


def decode_words(
	value: str, defects: list[str] | None = None, where: str = "", charset: str | None = None
) -> str:
	"""Unfold and RFC 2047-decode every encoded word in ``value``.

	Whitespace between adjacent encoded words is dropped (RFC 2047 6.2);
	adjacent words in the same charset are joined before decoding, so a
	multi-byte character split across two words survives. Never raises.
	"""
	value = fix_8bit(unfold(value), defects, where, charset)
	if "=?" not in value:
		return value
	out: list[str] = []
	pending: list[bytes] = []
	pending_charset: str | None = None
	pos = 0

	def flush() -> None:
		nonlocal pending, pending_charset
		if pending:
			out.append(decode_bytes(b"".join(pending), pending_charset, defects, where))
		pending = []
		pending_charset = None

	for match in _ENCODED_WORD.finditer(value):
		gap = value[pos : match.start()]
		if gap and (not pending or gap.strip()):
			flush()
			out.append(gap)
		charset = match.group(1)
		try:
			data = _decode_word_bytes(match.group(2), match.group(3))
		except (binascii.Error, ValueError):
			if defects is not None:
				defects.append(f"undecodable encoded word{where}: kept as is")
			flush()
			out.append(match.group(0))
			pos = match.end()
			continue
		if pending and (pending_charset or "").lower() != charset.lower():
			flush()
		pending_charset = charset
		pending.append(data)
		pos = match.end()
	flush()
	out.append(value[pos:])
	return "".join(out)


def clean_text(value: str) -> str:
	"""Drop control characters (keeping tab) and collapse runs of whitespace."""
	value = "".join(ch if ch >= " " or ch == "\t" else " " for ch in value)
	return re.sub(r"\s+", " ", value).strip()


def parse_addresses(
	values: list[str], defects: list[str] | None = None, where: str = "", charset: str | None = None
) -> list[tuple[str, str]]:
	"""Parse address header values into (decoded name, lower-cased address) pairs.

	Encoded words are decoded after the address list is split, so an encoded
	comma in a display name cannot create a recipient. Entries without an
	``@`` address are dropped.
	"""
	pairs: list[tuple[str, str]] = []
	cleaned = [fix_8bit(unfold(v), defects, where, charset) for v in values]
	try:
		parsed = email.utils.getaddresses(cleaned)
	except Exception:
		parsed = []
		if defects is not None:
			defects.append(f"unparseable address list{where}: dropped")
	for name, addr in parsed:
		addr = addr.strip().strip("<>").strip().lower()
		if "@" not in addr or any(c in addr for c in " \t\r\n,;<>"):
			continue
		pairs.append((clean_text(decode_words(name, defects, where, charset)), addr))
	return pairs


def message_ids(value: str | None) -> list[str]:
	"""Every Message-ID in a header value, without angle brackets, in order, deduplicated."""
	if not value:
		return []
	value = unfold(value)
	found = _ANGLE_ID.findall(value)
	if not found:
		found = [tok.strip("<>") for tok in value.split() if "@" in tok]
	seen: set[str] = set()
	ids: list[str] = []
	for mid in found:
		if mid and mid not in seen:
			seen.add(mid)
			ids.append(mid)
	return ids


def normalize_message_id(value: str) -> str:
	"""A Message-ID as the mail core stores it: trimmed, without angle brackets."""
	ids = message_ids(value)
	return ids[0] if ids else value.strip().strip("<>")


def parse_date(value: str | None, defects: list[str] | None = None) -> datetime.datetime | None:
	"""An aware datetime for a Date header; naive dates are taken as UTC; None when unreadable."""
	if not value:
		return None
	try:
		parsed = email.utils.parsedate_to_datetime(unfold(value).strip())
	except Exception:
		parsed = None
	if parsed is None:
		if defects is not None:
			defects.append("unreadable Date header: date is None")
		return None
	if parsed.tzinfo is None:
		parsed = parsed.replace(tzinfo=datetime.timezone.utc)
	return parsed
