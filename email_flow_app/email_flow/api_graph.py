"""The guest endpoint Microsoft Graph calls: subscription handshakes and change notifications.

POST /api/method/email_flow_app.email_flow.api_graph.graph_notification

- ``?validationToken=...`` (Graph validating a new subscription's URL): the
  token back as text/plain with 200, at once (nothing here reads the
  database; Graph gives up after a few seconds).
- a notification collection (JSON): each item is checked (a subscription id
  we stored, that queue's clientState, compared in constant time), then only
  jobs are queued: the queue's poll, and for a lifecycle event the job that
  renews or replaces the subscription (services.graph_push). 202, no body, in
  every case, so a caller learns nothing about which ids or secrets are real.

Cheap for anyone who calls it: a body over MAX_BODY_BYTES is refused (413)
before it is parsed, a verified batch costs one query plus one secret per
queue, and a poll already waiting is not queued twice.
"""

import frappe
from werkzeug.wrappers import Response

from email_flow_app.channels.graph import InvalidNotification, validation_response
from email_flow_app.email_flow.services import graph_push

MAX_BODY_BYTES = 1024 * 1024  # Graph sends a few KB; batches of many items stay far below
MAX_TOKEN_CHARS = 1024  # a validation token is a short sentence


@frappe.whitelist(allow_guest=True, methods=["POST"])
def graph_notification() -> Response:
	request = frappe.request
	token = validation_response(request.args)
	if token is not None:
		return _answer(200, token[:MAX_TOKEN_CHARS])
	if (request.content_length or 0) > MAX_BODY_BYTES:
		return _answer(413)
	body = request.get_data(cache=True)
	if len(body) > MAX_BODY_BYTES:  # no Content-Length (chunked)
		return _answer(413)
	try:
		graph_push.accept_notifications(body)
	except InvalidNotification:
		return _answer(400)
	return _answer(202)


def _answer(status: int, text: str = "") -> Response:
	return Response(text, status=status, content_type="text/plain; charset=utf-8")
