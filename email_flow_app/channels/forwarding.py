"""Forwarding: validate a raw-MIME POST to a queue's creation address.

The Frappe layer exposes this as an endpoint; this module only decides whether
to accept the body. The shared secret is compared in constant time.
"""

from __future__ import annotations

import hmac

from email_flow_app.channels.errors import PermanentError

ACCEPTED_CONTENT_TYPES = ("message/rfc822", "application/octet-stream", "text/plain")


class ForwardRejected(PermanentError):
	"""The POST is refused; ``http_status`` is what the endpoint should answer."""

	def __init__(self, reason: str, http_status: int) -> None:
		super().__init__(reason)
		self.reason = reason
		self.http_status = http_status


def accept_forwarded(
	body: bytes, content_type: str, provided_secret: str, expected_secret: str, max_bytes: int
) -> bytes:
	"""The raw message in ``body`` if the POST is acceptable, else :class:`ForwardRejected`."""
	if not expected_secret:
		raise ForwardRejected("Forwarding is not configured for this queue (no secret set)", 403)
	if not hmac.compare_digest(provided_secret.encode(), expected_secret.encode()):
		raise ForwardRejected("The forwarding secret is wrong", 403)
	media_type = content_type.split(";", 1)[0].strip().lower()
	if media_type not in ACCEPTED_CONTENT_TYPES:
		raise ForwardRejected(
			f"Content type {media_type or '(none)'!r} is not accepted; send the raw message as message/rfc822",
			415,
		)
	if len(body) > max_bytes:
		raise ForwardRejected(
			f"The message is {len(body)} bytes; this queue accepts at most {max_bytes}", 413
		)
	if not body.strip():
		raise ForwardRejected("The body is empty", 400)
	first_line = body[:1000].split(b"\n", 1)[0]
	if b":" not in first_line and not first_line.startswith(b"From "):
		raise ForwardRejected("The body is not an email message (no header section)", 400)
	return body
