"""A queue's or channel's health: last success, last error, back-off, one notification.

Works for Incoming Email Queues (last_poll, failure_count, next_poll_after)
and Outgoing Channels (status, last_success, last_error only): fields a
DocType does not have are skipped.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import frappe
from frappe import _
from frappe.utils import add_to_date, now_datetime

from email_flow_app.channels.errors import ChannelError, ReconnectNeeded

MAX_BACKOFF_MINUTES = 60
MANAGER_ROLE = "Support Manager"
HEALTHY = "Active"
RECONNECT = "Reconnect needed"
FAILING = "Failing"


def _set(doc, values: dict) -> None:
	meta = frappe.get_meta(doc.doctype)
	values = {k: v for k, v in values.items() if meta.has_field(k)}
	frappe.db.set_value(doc.doctype, doc.name, values, update_modified=False)
	doc.update(values)


def record_success(doc) -> None:
	_set(
		doc,
		{
			"last_poll": now_datetime(),
			"last_success": now_datetime(),
			"last_error": None,
			"failure_count": 0,
			"next_poll_after": None,
			"status": HEALTHY,
		},
	)


def record_failure(doc, error: str, reconnect: bool = False) -> None:
	"""Back off exponentially (1, 2, 4 … 60 minutes); notify Support Managers once per outage."""
	failures = int(doc.get("failure_count") or 0) + 1
	status = RECONNECT if reconnect else FAILING
	was = doc.get("status")
	_set(
		doc,
		{
			"last_poll": now_datetime(),
			"last_error": error[:1000],
			"failure_count": failures,
			"next_poll_after": add_to_date(now_datetime(), minutes=backoff_minutes(failures)),
			"status": status,
		},
	)
	if was != status:
		notify_managers(doc, _("{0} {1}: {2}").format(_(doc.doctype), doc.name, _(status)), error)


def record_throttled(doc, error: str, retry_after: float) -> None:
	"""The provider asked us to wait (HTTP 429/503 with Retry-After): no poll before then.

	Not a failure: no back-off growth, no notification; the wait shows in
	last_error and next_poll_after until a poll succeeds.
	"""
	_set(
		doc,
		{
			"last_poll": now_datetime(),
			"last_error": error[:1000],
			"next_poll_after": add_to_date(now_datetime(), seconds=max(1.0, retry_after)),
		},
	)


@contextmanager
def recording(doc, run: dict) -> Iterator[None]:
	"""A poll run's outcome on the queue's health: success, a failure (Reconnect needed for a
	refused sign-in), or throttling (the channel's Retry-After); the error also goes in `run`."""
	try:
		yield
	except ReconnectNeeded as exc:
		run["error"] = str(exc)
		record_failure(doc, str(exc), reconnect=True)
	except ChannelError as exc:
		run["error"] = str(exc)
		retry_after = getattr(exc, "retry_after", None)  # channels.graph.Throttled
		if retry_after is not None:
			record_throttled(doc, str(exc), retry_after)
		else:
			record_failure(doc, str(exc))
	else:
		record_success(doc)


def record_check_failure(doc, error: str) -> None:
	"""A connection test an admin ran failed: show the error, keep the status and the back-off."""
	_set(doc, {"last_error": error[:1000]})


def backoff_minutes(failures: int) -> int:
	return min(2 ** max(failures - 1, 0), MAX_BACKOFF_MINUTES)


def record_note(doc, note: str) -> None:
	"""Something an admin should know that is not an error: a comment in the record's timeline."""
	frappe.get_doc(
		{
			"doctype": "Comment",
			"comment_type": "Info",
			"reference_doctype": doc.doctype,
			"reference_name": doc.name,
			"content": frappe.utils.escape_html(note),
		}
	).insert(ignore_permissions=True)


def notify_managers(doc, subject: str, detail: str) -> None:
	"""One Desk notification (Notification Log) per enabled Support Manager, not per failure.

	A manager who still has an unread notification about this document gets no second one.
	"""
	managers = frappe.get_all(
		"Has Role",
		filters={"role": MANAGER_ROLE, "parenttype": "User"},
		pluck="parent",
		distinct=True,
	)
	for user in managers:
		if not frappe.db.get_value("User", user, "enabled"):
			continue
		if frappe.db.exists(
			"Notification Log",
			{
				"for_user": user,
				"document_type": doc.doctype,
				"document_name": doc.name,
				"subject": subject,
				"read": 0,
			},
		):
			continue
		frappe.get_doc(
			{
				"doctype": "Notification Log",
				"for_user": user,
				"type": "Alert",
				"document_type": doc.doctype,
				"document_name": doc.name,
				"subject": subject,
				"email_content": frappe.utils.escape_html(detail),
			}
		).insert(ignore_permissions=True)
