"""A queue's or channel's health: last success, last error, back-off, one notification."""

import frappe
from frappe import _
from frappe.utils import add_to_date, now_datetime

MAX_BACKOFF_MINUTES = 60


def record_success(doc) -> None:
	frappe.db.set_value(
		doc.doctype,
		doc.name,
		{
			"last_poll": now_datetime(),
			"last_success": now_datetime(),
			"failure_count": 0,
			"next_poll_after": None,
			"status": "Active",
		},
		update_modified=False,
	)


def record_failure(doc, error: str, reconnect: bool = False) -> None:
	"""Back off exponentially (1, 2, 4 … 60 minutes); notify Support Managers once per outage."""
	failures = int(doc.get("failure_count") or 0) + 1
	status = "Reconnect needed" if reconnect else "Failing"
	was = doc.get("status")
	frappe.db.set_value(
		doc.doctype,
		doc.name,
		{
			"last_poll": now_datetime(),
			"last_error": error[:1000],
			"failure_count": failures,
			"next_poll_after": add_to_date(
				now_datetime(), minutes=min(2 ** (failures - 1), MAX_BACKOFF_MINUTES)
			),
			"status": status,
		},
		update_modified=False,
	)
	if was != status:
		notify_managers(doc, _("{0} {1}: {2}").format(_(doc.doctype), doc.name, status), error)


def record_note(doc, note: str) -> None:
	frappe.db.set_value(doc.doctype, doc.name, "last_error", note[:1000], update_modified=False)


def notify_managers(doc, subject: str, detail: str) -> None:
	managers = frappe.get_all(
		"Has Role",
		filters={"role": "Support Manager", "parenttype": "User"},
		pluck="parent",
		distinct=True,
	)
	for user in managers:
		if not frappe.db.get_value("User", user, "enabled"):
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
