"""Loop firewall rules: which inbound mail must never open a ticket.

Invariants: pure functions of their arguments; a verdict is None ("let it
through") or a short reason string whose first word names the rule:
``missing-sender``, ``own-header``, ``own-address``, ``blocked-address``,
``blocked-domain``, ``bounce``, ``auto-submitted``. Addresses compare
case-insensitively and ignore ``+suffix`` sub-addresses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from email_flow_app.mail.types import ParsedMessage

OWN_HEADER_PREFIX = "X-Email-Flow-"


@dataclass(frozen=True)
class LoopSettings:
	"""The admin's loop settings (Email Flow Settings).

	``max_messages_per_sender`` is the cap per ``rate_window_minutes``; 0
	disables the cap.
	"""

	blocked_addresses: frozenset[str] = field(default_factory=frozenset)
	blocked_domains: frozenset[str] = field(default_factory=frozenset)
	max_messages_per_sender: int = 20
	rate_window_minutes: int = 60

	def __post_init__(self) -> None:
		object.__setattr__(
			self, "blocked_addresses", frozenset(canonical_address(a) for a in self.blocked_addresses)
		)
		object.__setattr__(
			self, "blocked_domains", frozenset(d.strip().lower().lstrip("@") for d in self.blocked_domains)
		)


def canonical_address(address: str) -> str:
	"""Lower-cased address without a ``+suffix`` sub-address: ``Support+t.x@Ex.com`` -> ``support@ex.com``."""
	address = (address or "").strip().strip("<>").lower()
	local, at, domain = address.rpartition("@")
	if not at:
		return address
	return f"{local.split('+', 1)[0]}@{domain}"


def loop_verdict(
	msg: ParsedMessage, own_addresses: Iterable[str], settings: LoopSettings | None = None
) -> str | None:
	"""Why ``msg`` must not open a ticket (see the module docstring), or None."""
	settings = settings or LoopSettings()
	sender = canonical_address(msg.from_address)
	if not sender or "@" not in sender:
		return "missing-sender"
	own_header = msg.has_header_prefix(OWN_HEADER_PREFIX)
	if own_header:
		return f"own-header: {own_header}"
	if sender in {canonical_address(a) for a in own_addresses}:
		return f"own-address: {sender}"
	if sender in settings.blocked_addresses:
		return f"blocked-address: {sender}"
	domain = sender.rsplit("@", 1)[1]
	if any(domain == d or domain.endswith("." + d) for d in settings.blocked_domains):
		return f"blocked-domain: {domain}"
	if msg.bounce is not None:
		return f"bounce: {len(msg.bounce)} failed recipient(s)"
	if msg.auto_submitted:
		return f"auto-submitted: {msg.auto_submitted}"
	return None


def rate_cap_exceeded(recent_count: int, settings: LoopSettings | None = None) -> bool:
	"""True when a sender who already sent ``recent_count`` messages in the window must be held.

	``recent_count`` counts this sender's messages in the last
	``settings.rate_window_minutes`` minutes, not including the new one.
	"""
	settings = settings or LoopSettings()
	if settings.max_messages_per_sender <= 0:
		return False
	return recent_count >= settings.max_messages_per_sender
