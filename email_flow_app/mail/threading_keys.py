"""Threading keys: Message-IDs we issue, signed ticket tokens, subject tags.

Invariants:
- a token is lower-case base32 (``[a-z2-7]``), so it survives MTAs that
  lower-case addresses and is safe in a URL and in an address local part;
- a token is ``base32(ticket name) + base32(HMAC-SHA256(secret, name)[:10])``;
  :func:`parse_ticket_token` returns the name only when the MAC matches
  (constant-time compare), and never raises;
- a subject tag (``[#TKT-00042]``) is *not* proof: the Frappe layer must
  check the sender against the ticket's participants before using it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from email_flow_app.mail.types import ParsedMessage

TOKEN_MARKER = "+t."
_MAC_BYTES = 10
_MAC_CHARS = 16  # base32 length of _MAC_BYTES
_TOKEN_RE = re.compile(r"^[a-z2-7]+$")
_TAG_RE = re.compile(r"\[#([A-Za-z0-9][A-Za-z0-9._-]{0,63})\]")
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_CONTEXT = b"email-flow ticket token v1\x00"


@dataclass(frozen=True, slots=True)
class ThreadEvidence:
	"""One clue linking a message to an earlier one.

	``kind`` is one of "in_reply_to", "references", "reply_address_token",
	"subject_tag"; ``value`` is a bare Message-ID, a raw token (verify it with
	:func:`parse_ticket_token`) or a ticket name from a subject tag.
	"""

	kind: str
	value: str


def _b32(data: bytes) -> str:
	return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
	return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def _secret_bytes(secret: str | bytes) -> bytes:
	key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
	if not key:
		raise ValueError("the ticket token secret must not be empty")
	return key


def _mac(name_bytes: bytes, secret: str | bytes) -> bytes:
	return hmac.new(_secret_bytes(secret), _CONTEXT + name_bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def make_message_id(domain: str) -> str:
	"""A fresh, unique Message-ID header value ``<...@domain>`` (with angle brackets)."""
	domain = domain.strip()
	if not _DOMAIN_RE.match(domain):
		raise ValueError(f"not a usable Message-ID domain: {domain!r}")
	return f"<{int(time.time() * 1000):x}.{secrets.token_hex(12)}@{domain.lower()}>"


def make_ticket_token(ticket_name: str, secret: str | bytes) -> str:
	"""The signed token for ``ticket_name`` (see the module docstring)."""
	if not ticket_name or any(c in ticket_name for c in "\r\n"):
		raise ValueError("ticket name must be a non-empty single line")
	name_bytes = ticket_name.encode("utf-8")
	return _b32(name_bytes) + _b32(_mac(name_bytes, secret))


def parse_ticket_token(token: str, secret: str | bytes) -> str | None:
	"""The ticket name a genuine token stands for; None for anything forged, tampered or malformed."""
	try:
		token = (token or "").strip().lower()
		if len(token) <= _MAC_CHARS or len(token) > 200 or not _TOKEN_RE.match(token):
			return None
		name_part, mac_part = token[:-_MAC_CHARS], token[-_MAC_CHARS:]
		name_bytes = _unb32(name_part)
		if _b32(name_bytes) != name_part:
			return None  # non-canonical encoding: reject so one name has exactly one token
		if not hmac.compare_digest(_b32(_mac(name_bytes, secret)), mac_part):
			return None
		return name_bytes.decode("utf-8")
	except (binascii.Error, ValueError, UnicodeDecodeError):
		return None


def reply_address(base_address: str, token: str) -> str:
	"""``support@example.com`` + token -> ``support+t.<token>@example.com``.

	An existing ``+suffix`` on the base address is replaced. Raises ValueError
	when the result would not be a valid address (local part over 64 octets).
	"""
	base_address = base_address.strip()
	if any(c in base_address for c in '\r\n <>,;"') or base_address.count("@") != 1:
		raise ValueError(f"not a plain address: {base_address!r}")
	if not token or not _TOKEN_RE.match(token):
		raise ValueError("not a ticket token")
	local, domain = base_address.split("@")
	local = local.split("+", 1)[0]
	new_local = f"{local}{TOKEN_MARKER}{token}"
	if len(new_local) > 64 or not local or not domain:
		raise ValueError(f"reply address local part too long or empty: {new_local!r}")
	return f"{new_local}@{domain}"


def token_from_address(address: str) -> str | None:
	"""The token carried in a plus-address, or None."""
	local = (address or "").split("@", 1)[0].lower()
	if TOKEN_MARKER not in local:
		return None
	token = local.split(TOKEN_MARKER, 1)[1]
	return token if _TOKEN_RE.match(token) else None


def subject_tag(ticket_name: str) -> str:
	"""The tag put in subjects, e.g. ``[#TKT-00042]``."""
	if not _TAG_RE.fullmatch(f"[#{ticket_name}]"):
		raise ValueError(f"ticket name cannot be used in a subject tag: {ticket_name!r}")
	return f"[#{ticket_name}]"


def subject_tags(subject: str) -> list[str]:
	"""Ticket names found in subject tags, in order, deduplicated."""
	seen: list[str] = []
	for name in _TAG_RE.findall(subject or ""):
		if name not in seen:
			seen.append(name)
	return seen


def thread_candidates(msg: ParsedMessage) -> list[ThreadEvidence]:
	"""Threading evidence in the order the Frappe layer must check it.

	1. In-Reply-To; 2. References, newest first; 3. tokens in the recipient
	addresses (To, Cc, Delivered-To and the like); 4. subject tags. No value
	appears twice.
	"""
	out: list[ThreadEvidence] = []
	seen: set[tuple[str, str]] = set()

	def add(kind: str, value: str | None) -> None:
		if value and (kind, value) not in seen:
			seen.add((kind, value))
			out.append(ThreadEvidence(kind, value))

	add("in_reply_to", msg.in_reply_to)
	for ref in reversed(msg.references):
		if ref != msg.in_reply_to:
			add("references", ref)
	addresses = [addr for _name, addr in [*msg.to, *msg.cc]]
	if msg.delivered_to:
		addresses.append(msg.delivered_to)
	for header in ("x-original-to", "delivered-to", "envelope-to", "x-forwarded-to"):
		addresses.extend(msg.get_all_headers(header))
	for address in addresses:
		add("reply_address_token", token_from_address(address.strip().strip("<>")))
	for name in subject_tags(msg.subject):
		add("subject_tag", name)
	return out
