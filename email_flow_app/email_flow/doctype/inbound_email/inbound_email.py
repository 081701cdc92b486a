# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document

from email_flow_app.email_flow.services import inbound_review, retention

REVIEWER_ROLES = ("System Manager", "Support Manager")


class InboundEmail(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		acknowledged: DF.Check
		attempts: DF.Int
		communication: DF.Link | None
		dedupe_key: DF.Data | None
		email_queue: DF.Link | None
		error_type: DF.Data | None
		folder: DF.Data | None
		graph_id: DF.Data | None
		message_id: DF.Data | None
		raw_file: DF.Attach | None
		raw_size: DF.Int
		reason: DF.SmallText | None
		received_at: DF.Datetime | None
		recipients: DF.SmallText | None
		sender: DF.Data | None
		sent_at: DF.Datetime | None
		status: DF.Literal["Received", "Ticket Created", "Appended", "Filtered", "Failed"]
		subject: DF.SmallText | None
		thread_rule: DF.Data | None
		ticket: DF.Link | None
		uid: DF.Int
		uidvalidity: DF.Data | None
	# end: auto-generated types

	def on_trash(self):
		retention.guard_inbound_delete(self)

	@frappe.whitelist()
	def reprocess(self) -> str:
		"""Run a Failed or Filtered message through the pipeline again (e.g. after fixing a setting)."""
		self._check_reviewer()
		if self.status not in ("Failed", "Filtered"):
			frappe.throw(_("Only Failed or Filtered messages can be reprocessed."))
		from email_flow_app.email_flow.services.ingest import process_inbound, release_locks

		outcome = process_inbound(self.name)
		frappe.db.commit()
		release_locks()
		return outcome.status

	@frappe.whitelist()
	def create_ticket_anyway(self) -> dict:
		"""A Filtered message becomes a new ticket past the loop rules; never a second ticket."""
		self._check_reviewer()
		return inbound_review.create_ticket_anyway(self)

	@frappe.whitelist()
	def unblock_sender_and_reprocess(self) -> dict:
		"""Take the sender off the block list (never our own inboxes), then reprocess."""
		self._check_reviewer()
		return inbound_review.unblock_sender_and_reprocess(self)

	@frappe.whitelist()
	def body_preview(self) -> dict:
		"""The text body, escaped and cut (mail HTML is never rendered)."""
		self._check_reviewer()
		return inbound_review.body_preview(self)

	def _check_reviewer(self) -> None:
		frappe.only_for(REVIEWER_ROLES)
		self.check_permission("read")


def on_doctype_update():
	"""Indexes of the hot queries (also added to existing sites by a patch)."""
	# The sweep of Received rows per queue, the Failed/Filtered lists per queue.
	frappe.db.add_index("Inbound Email", ["status", "email_queue"])
