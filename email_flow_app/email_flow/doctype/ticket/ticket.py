# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document


class Ticket(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		contact: DF.Link | None
		customer_name: DF.Data | None
		description: DF.TextEditor | None
		email_queue: DF.Link | None
		first_responded_on: DF.Datetime | None
		message_id: DF.SmallText | None
		outgoing_channel: DF.Link | None
		priority: DF.Literal["Low", "Medium", "High", "Urgent"]
		raised_by: DF.Data | None
		reopened_from: DF.Link | None
		status: DF.Literal["Open", "Replied", "Pending", "Resolved", "Closed"]
		subject: DF.Data
	# end: auto-generated types

	def validate(self):
		self.raised_by = (self.raised_by or "").strip().lower() or None
