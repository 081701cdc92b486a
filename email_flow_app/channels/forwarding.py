"""Forwarding: validate a raw-MIME POST to a queue's creation address.

The Frappe layer exposes this as an endpoint; this module only decides whether
to accept the body. The shared secret is compared in constant time, and every
refusal of the secret has the same reason and status (``FORBIDDEN``), so an
unknown queue, a disabled one and a wrong secret cannot be told apart.
"""

from __future__ import annotations

import hmac

from email_flow_app.channels.errors import PermanentError

ACCEPTED_CONTENT_TYPES = ("message/rfc822", "application/octet-stream", "text/plain")
FORBIDDEN = "forbidden"


class ForwardRejected(PermanentError):
	"""The POST is refused; ``http_status`` is what the endpoint should answer."""

	def __init__(self, reason: str, http_status: int) -> None:
		super().__init__(reason)
		self.reason = reason
		self.http_status = http_status


def check_secret(provided_secret: str, expected_secret: str | None) -> None:
	"""Constant-time secret check; one answer for every refusal (no secret set, wrong secret)."""
	expected = (expected_secret or "").encode()
	# Compare even when nothing is expected, so timing says nothing either.
	matches = hmac.compare_digest(provided_secret.encode(), expected or b"\0" * 32)
	if not expected or not matches:
		raise ForwardRejected(FORBIDDEN, 403)


def accept_forwarded(
	body: bytes,
	content_type: str,
	provided_secret: str,
	expected_secret: str,
	max_bytes: int,
	declared_length: int | None = None,
) -> bytes:
	"""The raw message in ``body`` if the POST is acceptable, else :class:`ForwardRejected`.

	``declared_length`` is the request's Content-Length when it had one: a body
	of another length was cut on the way and is refused (413), never stored.
	"""
	check_secret(provided_secret, expected_secret)
	media_type = content_type.split(";", 1)[0].strip().lower()
	if media_type not in ACCEPTED_CONTENT_TYPES:
		raise ForwardRejected(
			f"Content type {media_type or '(none)'!r} is not accepted; send the raw message as message/rfc822",
			400,
		)
	if len(body) > max_bytes:
		raise ForwardRejected(
			f"The message is {len(body)} bytes; this queue accepts at most {max_bytes}", 413
		)
	if declared_length is not None and declared_length != len(body):
		raise ForwardRejected(
			f"The body was cut: {len(body)} of {declared_length} bytes arrived; nothing was stored", 413
		)
	if not body.strip():
		raise ForwardRejected("The body is empty", 400)
	first_line = body[:1000].split(b"\n", 1)[0]
	if b":" not in first_line and not first_line.startswith(b"From "):
		raise ForwardRejected("The body is not an email message (no header section)", 400)
	return body
