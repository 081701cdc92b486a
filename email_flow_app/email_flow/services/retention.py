"""The raw-mail archive is append-only; only the System Manager's retention rule removes raw mail.

Nobody deletes an Inbound Email or its raw .eml File by hand (REST, Desk,
or by deleting the File): `guard_inbound_delete` and `protect_raw_file`
refuse. Email Flow Settings' "Keep raw mail for (days)" (permlevel 1, only a
System Manager writes it) is applied every night by `apply_retention`, which
removes finished Inbound Emails (Ticket Created, Appended, Filtered) older
than that, with their raw files. Failed or still Received messages are kept
whatever their age: they are not finished.
"""

from contextlib import contextmanager

import frappe
from frappe import _
from frappe.utils import add_days, cint, now_datetime

SETTINGS = "Email Flow Settings"
FINISHED = ("Ticket Created", "Appended", "Filtered")
BATCH = 500


@contextmanager
def removing_raw_mail():
	"""Within this block raw mail may be removed: the retention job, uninstall-time cleanups."""
	previous = frappe.flags.email_flow_retention
	frappe.flags.email_flow_retention = True
	try:
		yield
	finally:
		frappe.flags.email_flow_retention = previous


def _allowed() -> bool:
	return bool(frappe.flags.email_flow_retention or frappe.flags.in_uninstall)


def guard_inbound_delete(doc) -> None:
	"""Inbound Email.on_trash: raw mail is removed only by the retention rule."""
	if not _allowed():
		raise frappe.PermissionError(
			_(
				"Raw mail is never deleted by hand. A System Manager sets how long it is kept in Email Flow Settings."
			)
		)


def mail_file_refusal(doc, user: str | None = None) -> str | None:
	"""Why `user` may not delete this File, when it is mail: a raw .eml, or an attachment from a customer.

	A raw .eml of the archive is deleted by nobody (only the retention rule).
	An attachment a ticket got from the customer's mail is removed only by a
	Support Manager; an agent may remove files they attached themselves.
	"""
	if _allowed():
		return None
	if doc.attached_to_doctype == "Inbound Email":
		return _("This file is the raw message of {0} and cannot be deleted.").format(doc.attached_to_name)
	user = user or frappe.session.user
	if doc.attached_to_doctype in ("Ticket", "Communication") and doc.owner != user:
		from email_flow_app.email_flow.permissions import is_restricted_user

		if is_restricted_user(user):
			return _(
				"Attachments that came with a customer's mail are kept. A Support Manager can remove them."
			)
	return None


def file_has_permission(doc, ptype: str | None = None, user: str | None = None) -> bool:
	"""File has_permission hook: refuse "delete" of mail files before Frappe removes anything from disk."""
	return ptype != "delete" or mail_file_refusal(doc, user) is None


def protect_raw_file(doc, method: str | None = None) -> None:
	"""File.on_trash (doc_events): the same rule for deletes that skip the permission check."""
	reason = mail_file_refusal(doc)
	if reason:
		raise frappe.PermissionError(reason)


def apply_retention() -> int:
	"""Remove finished raw mail older than the retention period; returns how many were removed."""
	days = cint(frappe.db.get_single_value(SETTINGS, "raw_mail_retention_days"))
	if days <= 0:
		return 0
	cutoff = add_days(now_datetime(), -days)
	removed = 0
	with removing_raw_mail():
		while True:
			names = frappe.get_all(
				"Inbound Email",
				filters={"creation": ("<", cutoff), "status": ("in", FINISHED)},
				pluck="name",
				limit=BATCH,
			)
			if not names:
				break
			for name in names:
				frappe.delete_doc(
					"Inbound Email", name, ignore_permissions=True, force=True, delete_permanently=True
				)
				removed += 1
			frappe.db.commit()
	return removed
