# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

from contextlib import contextmanager

import frappe
from frappe import _
from frappe.model.document import Document

from email_flow_app.email_flow import permissions
from email_flow_app.email_flow.services import desk, sla
from email_flow_app.mail import desk_text


class Ticket(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		contact: DF.Link | None
		customer_name: DF.Data | None
		description: DF.TextEditor | None
		due_by: DF.Datetime | None
		email_queue: DF.Link | None
		first_responded_on: DF.Datetime | None
		is_overdue: DF.Check
		last_customer_message_on: DF.Datetime | None
		message_id: DF.SmallText | None
		needs_reply: DF.Check
		outgoing_channel: DF.Link | None
		priority: DF.Literal["Low", "Medium", "High", "Urgent"]
		raised_by: DF.Data | None
		reopened_from: DF.Link | None
		resolution_by: DF.Datetime | None
		response_by: DF.Datetime | None
		sla_paused_on: DF.Datetime | None
		status: DF.Literal["Open", "Replied", "Pending", "Resolved", "Closed"]
		subject: DF.Data
	# end: auto-generated types

	def before_insert(self):
		sla.start(self)

	def validate(self):
		self.raised_by = (self.raised_by or "").strip().lower() or None
		# Shown as HTML by Frappe (form title, breadcrumbs, timeline, notifications): stored so
		# that the text reads as written and nothing in it runs (mail.desk_text), whoever writes it.
		self.subject = desk_text.fit(desk_text.plain(self.subject).strip(), 255) or _("(no subject)")
		if self.customer_name:
			self.customer_name = desk_text.fit(desk_text.plain(self.customer_name), 140)
		self.check_queue_move()
		self.keep_first_message()
		self.follow_status_change()

	def keep_first_message(self):
		"""After creation the description is the customer's first message, as it arrived: read-only."""
		if self.is_new() or not self.has_value_changed("description"):
			return
		before = self.get_doc_before_save()
		if _text(self.description) != _text(before.description):
			frappe.throw(
				_(
					"The description is the customer's first message and cannot be changed; add a comment instead."
				)
			)
		self.description = before.description  # an editor's re-rendering of the same text

	def follow_status_change(self):
		"""The SLA clock pauses while Pending and stops when Resolved or Closed (services/sla.py);
		a Resolved or Closed ticket no longer needs a reply."""
		if self.is_new() or not self.has_value_changed("status"):
			return
		before = self.get_doc_before_save()
		if before:
			self.update(sla.transition(before, before.status, self.status))
		if self.status in ("Resolved", "Closed"):
			self.needs_reply = 0

	def check_queue_move(self):
		"""Moving a ticket to another queue needs access to both: checked on the ticket as it was.

		Frappe's write check sees only the document after the change, so an agent
		could otherwise pull a restricted queue's ticket into one they see.
		"""
		if self.is_new() or self.flags.ignore_permissions or not self.has_value_changed("email_queue"):
			return
		before = self.get_doc_before_save()
		if before and not permissions.can_see_queue(before.email_queue):
			raise frappe.PermissionError(
				_("You cannot move a ticket out of a queue you do not have access to.")
			)

	def onload(self):
		# The composer's defaults (email_flow_desk.js): customer + Cc, "Re:", quote, channel signature.
		from email_flow_app.email_flow.services.replies import reply_defaults

		if not self.is_new():
			self.set_onload("email_flow_reply", reply_defaults(self))
			self.set_onload("email_flow_customer", desk.customer_panel(self))
			self.set_onload("email_flow_folded", desk.folded_messages(self.name))

	def on_trash(self):
		"""The raw mail stays in the archive: its Inbound Email no longer points at the deleted ticket."""
		frappe.db.set_value(
			"Inbound Email",
			{"ticket": self.name},
			{"ticket": None, "communication": None},
			update_modified=False,
		)

	def _extract_images_from_editor(self):
		with self._description_as_filed():
			super()._extract_images_from_editor()

	def _sanitize_content(self):
		with self._description_as_filed():
			super()._sanitize_content()

	@contextmanager
	def _description_as_filed(self):
		"""Ingest files a description it sanitized already (mail.sanitize_html with cid: links
		rewritten, or escaped text): Frappe's bleach pass and data: image extraction leave it as
		it is. Every other field, and every other save, goes through them as usual."""
		if not (self.flags.email_flow_sanitized_description and self.is_new()):
			yield
			return
		description, self.description = self.description, None
		try:
			yield
		finally:
			self.description = description


def _text(html: str | None) -> str:
	return " ".join(frappe.utils.strip_html(html or "").split())


def on_doctype_update():
	"""Indexes of the hot queries (also added to existing sites by a patch)."""
	# The per-sender rate cap: raised_by in (...) and creation > now - window.
	frappe.db.add_index("Ticket", ["raised_by", "creation"])
	# Lists and counts by queue (the restricted-queue condition names queues) and status.
	frappe.db.add_index("Ticket", ["email_queue", "status", "modified"])
	# Counts and reports by status for an agent outside a restricted queue:
	# `status = ... and (email_queue is null or email_queue in (visible))` reads
	# this index alone, as a manager's status count reads the status index.
	frappe.db.add_index("Ticket", ["status", "email_queue"])
	# The Support workspace's counts (overdue, needs reply) and the overdue sweep (due_by).
	frappe.db.add_index("Ticket", ["due_by"])
	frappe.db.add_index("Ticket", ["is_overdue", "status"])
	frappe.db.add_index("Ticket", ["needs_reply", "status"])
