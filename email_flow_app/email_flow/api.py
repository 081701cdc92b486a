"""Whitelisted endpoints of Email Flow."""

import frappe
from frappe import _
from frappe.utils.password import get_decrypted_password

from email_flow_app.channels.forwarding import ForwardRejected, accept_forwarded
from email_flow_app.email_flow.services import settings
from email_flow_app.email_flow.services.ingest import process_inbound, release_locks
from email_flow_app.email_flow.services.store import forwarded_key, store_inbound

SECRET_HEADER = "X-Email-Flow-Secret"


FAILED_SECRET_LIMIT = 10  # refused secrets per client address ...
FAILED_SECRET_WINDOW = 600  # ... in this many seconds; then 429 until the window ends


@frappe.whitelist(allow_guest=True, methods=["POST"])
def receive_forwarded(queue: str | None = None) -> dict:
	"""Raw MIME POSTed by a mail server for a Forwarding queue's creation address.

	POST /api/method/email_flow_app.email_flow.api.receive_forwarded?queue=NAME
	with the message as the body (Content-Type: message/rfc822) and the queue's
	webhook secret in the X-Email-Flow-Secret header.

	Answers: 400 (no queue, not a MIME body), 403 "forbidden" (unknown queue,
	disabled queue or wrong secret: one answer for all three), 413 (over the
	limit, or cut on the way: nothing is stored), 429 (too many refused secrets
	from this address), 200 with the Inbound Email and its outcome.
	"""
	if not queue:
		return _refuse(400, _("The queue parameter is missing: POST to ...receive_forwarded?queue=NAME"))
	request = frappe.request
	_check_failed_secret_rate()
	row = frappe.db.get_value(
		"Incoming Email Queue", queue, ["name", "enabled", "channel_type"], as_dict=True
	)
	expected = None
	if row and row.enabled and row.channel_type == "Forwarding":
		expected = get_decrypted_password(
			"Incoming Email Queue", row.name, "forwarding_secret", raise_exception=False
		)
	max_bytes = max(settings.get_int("max_attachment_size_mb", 25), 1) * 2 * 1024 * 1024
	body = request.get_data(cache=True)
	try:
		raw = accept_forwarded(
			body,
			request.content_type or "",
			request.headers.get(SECRET_HEADER) or "",
			expected or "",
			max_bytes,
			declared_length=request.content_length,
		)
	except ForwardRejected as exc:
		if exc.http_status == 403:
			_count_failed_secret()
		return _refuse(exc.http_status, exc.reason)
	if request.content_length is None and len(body) >= (request.max_content_length or max_bytes + 1):
		# A chunked body as long as the request cap was cut by it: refuse it, never store part of a mail.
		return _refuse(413, _("The message is larger than this site accepts; nothing was stored"))
	name, created = store_inbound(queue=row.name, raw=raw, key=forwarded_key(row.name, raw))
	frappe.db.commit()  # kept before it is parsed (rule 1)
	outcome = process_inbound(name)
	frappe.db.commit()
	release_locks()
	return {
		"ok": True,
		"inbound_email": name,
		"duplicate": not created,
		"status": outcome.status,
		"ticket": outcome.ticket,
	}


def _refuse(status: int, reason: str) -> dict:
	frappe.local.response.http_status_code = status
	return {"ok": False, "reason": reason}


def _failed_secret_key() -> str:
	return frappe.cache.make_key(f"email_flow:forward-secret-failures:{frappe.local.request_ip}")


def _check_failed_secret_rate() -> None:
	"""Like Frappe's rate limiter (a counter in Redis per client address), counting refused secrets only."""
	if int(frappe.cache.get(_failed_secret_key()) or 0) >= FAILED_SECRET_LIMIT:
		raise frappe.RateLimitExceededError(
			_("Too many refused forwarding secrets from this address. Try again later.")
		)


def _count_failed_secret() -> None:
	key = _failed_secret_key()
	if frappe.cache.incrby(key, 1) == 1:
		frappe.cache.expire(key, FAILED_SECRET_WINDOW)


@frappe.whitelist()
def reprocess(inbound_email: str) -> str:
	doc = frappe.get_doc("Inbound Email", inbound_email)
	return doc.reprocess()
