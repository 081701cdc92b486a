"""Value types returned by the mail core.

Invariants shared by every type here:
- they hold only decoded ``str``/``bytes``/``datetime`` values, never an
  ``email.message.Message``, so they can be pickled into an RQ job;
- addresses are lower-cased, Message-IDs are stored without angle brackets.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

#: (display name, lower-cased address); the name is "" when absent.
AddressPair = tuple[str, str]


@dataclass(slots=True)
class Attachment:
	"""One attached file.

	Invariants: ``filename`` is never empty and has no path part (no ``/``,
	``\\``, control characters or leading dots); ``size == len(payload)``;
	``inline`` is True only when the HTML body references ``cid:<content_id>``.
	"""

	filename: str
	content_type: str
	payload: bytes = field(repr=False)
	size: int = 0
	content_id: str | None = None
	inline: bool = False

	def __post_init__(self) -> None:
		self.size = len(self.payload)


@dataclass(frozen=True, slots=True)
class Bounce:
	"""One recipient a delivery failure report is about.

	``permanent`` is False for delays and temporary (4.x.x) failures.
	``status`` is the RFC 3463 code when known (e.g. ``"5.1.1"``), else "".
	"""

	address: str
	permanent: bool
	status: str = ""
	diagnostic: str = ""


@dataclass(slots=True)
class ReturnedHeaders:
	"""What a delivery report says of the message it returns (its attached copy or headers).

	Message-IDs without angle brackets; ``ticket_header`` is the raw value of our
	``X-Email-Flow-Ticket`` header ("TKT-00001; t=<token>"), not yet verified.
	"""

	message_id: str | None = None
	in_reply_to: str | None = None
	references: list[str] = field(default_factory=list)
	ticket_header: str | None = None


@dataclass(slots=True)
class ParsedMessage:
	"""Everything the ticket layer needs from one raw message.

	Invariants: every ``str`` field is a ``str`` (never None) except the ones
	typed ``| None``; ``html`` is already sanitized; ``bounce is None`` means
	"not a bounce", an empty list means "a bounce whose recipients could not be
	read" (use :attr:`is_bounce`); ``defects`` lists what was wrong with the
	input and how it was recovered.
	"""

	message_id: str | None = None
	in_reply_to: str | None = None
	references: list[str] = field(default_factory=list)
	subject: str = ""
	from_name: str = ""
	from_address: str = ""
	reply_to: list[AddressPair] = field(default_factory=list)
	to: list[AddressPair] = field(default_factory=list)
	cc: list[AddressPair] = field(default_factory=list)
	delivered_to: str | None = None
	date: datetime.datetime | None = None
	text: str = ""
	html: str = ""
	reply_text: str = ""
	attachments: list[Attachment] = field(default_factory=list)
	auto_submitted: str | None = None
	suppress_auto_reply: str | None = None
	bounce: list[Bounce] | None = None
	#: For a bounce or delivery report: the Message-ID of the message it returns
	#: (from the attached original or its headers), so it can be filed as a note
	#: on the ticket that message belonged to. None otherwise or when absent.
	original_message_id: str | None = None
	#: For a bounce or delivery report: the returned message's threading headers (None otherwise).
	returned: ReturnedHeaders | None = None
	defects: list[str] = field(default_factory=list)
	#: True when the text or HTML body was longer than parse.MAX_BODY_CHARS and was cut.
	body_truncated: bool = False
	#: Top-level headers in order, as (name, unfolded and RFC 2047-decoded value).
	headers: list[tuple[str, str]] = field(default_factory=list, repr=False)

	@property
	def is_bounce(self) -> bool:
		"""True when the message is a delivery failure report."""
		return self.bounce is not None

	def get_header(self, name: str, default: str | None = None) -> str | None:
		"""First value of header ``name`` (case-insensitive), decoded; ``default`` if absent."""
		key = name.lower()
		for hname, value in self.headers:
			if hname.lower() == key:
				return value
		return default

	def get_all_headers(self, name: str) -> list[str]:
		"""Every value of header ``name`` (case-insensitive), in message order."""
		key = name.lower()
		return [value for hname, value in self.headers if hname.lower() == key]

	def has_header_prefix(self, prefix: str) -> str | None:
		"""Name of the first header starting with ``prefix`` (case-insensitive), or None."""
		low = prefix.lower()
		for hname, _value in self.headers:
			if hname.lower().startswith(low):
				return hname
		return None
