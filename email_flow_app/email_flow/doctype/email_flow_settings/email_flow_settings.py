# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document


class EmailFlowSettings(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		from email_flow_app.email_flow.doctype.email_flow_blocked_address.email_flow_blocked_address import (
			EmailFlowBlockedAddress,
		)

		blocked_addresses: DF.Table[EmailFlowBlockedAddress]
		max_attachment_size_mb: DF.Int
		max_tickets_per_sender_per_hour: DF.Int
		o365_client_id: DF.Data | None
		o365_client_secret: DF.Password | None
		o365_send_via: DF.Literal["SMTP (XOAUTH2)", "Microsoft Graph"]
		o365_tenant: DF.Data | None
		oversize_action: DF.Literal["Keep the message, drop the attachment", "Quarantine the message"]
	# end: auto-generated types

	def validate(self):
		"""Addresses are compared lower-cased; each appears once."""
		seen = set()
		for row in list(self.blocked_addresses):
			row.email_address = (row.email_address or "").strip().lower()
			if row.email_address in seen:
				self.remove(row)
			seen.add(row.email_address)
		if (self.max_attachment_size_mb or 0) < 0 or (self.max_tickets_per_sender_per_hour or 0) < 0:
			frappe.throw(_("Limits cannot be negative."))
