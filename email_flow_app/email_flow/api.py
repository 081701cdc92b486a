"""Whitelisted endpoints of Email Flow."""

import frappe
from frappe.utils.password import get_decrypted_password

from email_flow_app.channels.forwarding import ForwardRejected, accept_forwarded
from email_flow_app.email_flow.services import settings
from email_flow_app.email_flow.services.ingest import process_inbound, release_locks
from email_flow_app.email_flow.services.store import forwarded_key, store_inbound

SECRET_HEADER = "X-Email-Flow-Secret"


@frappe.whitelist(allow_guest=True, methods=["POST"])
def receive_forwarded(queue: str) -> dict:
	"""Raw MIME POSTed by a mail server for a Forwarding queue's creation address.

	POST /api/method/email_flow_app.email_flow.api.receive_forwarded?queue=NAME
	with the message as the body (Content-Type: message/rfc822) and the queue's
	webhook secret in the X-Email-Flow-Secret header.
	"""
	request = frappe.request
	row = frappe.db.get_value("Incoming Email Queue", queue, ["name", "enabled"], as_dict=True)
	expected = (
		get_decrypted_password("Incoming Email Queue", queue, "forwarding_secret", raise_exception=False)
		if row and row.enabled
		else None
	)
	if not expected:  # unknown or disabled queue: answer as for a wrong secret
		frappe.local.response.http_status_code = 403
		return {"ok": False, "reason": "forbidden"}
	max_bytes = max(settings.get_int("max_attachment_size_mb", 25), 1) * 2 * 1024 * 1024
	try:
		raw = accept_forwarded(
			request.get_data(cache=False),
			request.content_type or "",
			request.headers.get(SECRET_HEADER) or "",
			expected or "",
			max_bytes,
		)
	except ForwardRejected as exc:
		frappe.local.response.http_status_code = exc.http_status
		return {"ok": False, "reason": str(exc)}
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


@frappe.whitelist()
def reprocess(inbound_email: str) -> str:
	doc = frappe.get_doc("Inbound Email", inbound_email)
	doc.check_permission("write")
	return doc.reprocess()
