# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document

from email_flow_app.email_flow.services import channel_admin, credentials


class OutgoingChannel(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		auth_method: DF.Literal["Password", "OAuth"]
		channel_name: DF.Data
		channel_type: DF.Literal["SMTP", "Office 365 SMTP", "Office 365 Graph", "Google"]
		enabled: DF.Check
		from_address: DF.Data
		from_name: DF.Data | None
		google_client_id: DF.Data | None
		google_client_secret: DF.Password | None
		google_refresh_token: DF.Password | None
		host: DF.Data | None
		is_default: DF.Check
		last_error: DF.SmallText | None
		last_success: DF.Datetime | None
		o365_client_id: DF.Data | None
		o365_client_secret: DF.Password | None
		o365_mode: DF.Literal["Delegated", "App only"]
		o365_tenant: DF.Data | None
		password: DF.Password | None
		port: DF.Int
		security: DF.Literal["SSL", "STARTTLS", "Plain"]
		signature: DF.TextEditor | None
		status: DF.Literal["Active", "Failing", "Reconnect needed"]
		username: DF.Data | None
	# end: auto-generated types

	def validate(self):
		self.from_address = (self.from_address or "").strip().lower()
		channel_admin.apply_outgoing_presets(self)
		self.keep_one_default()
		credentials.on_validate(self)

	def keep_one_default(self):
		"""Exactly one enabled channel is the default: the first one becomes it, a new default demotes the old."""
		others = frappe.db.exists("Outgoing Channel", {"is_default": 1, "name": ("!=", self.name)})
		if not others and self.enabled:
			self.is_default = 1
		if self.is_default and not self.enabled:
			frappe.throw(_("A disabled channel cannot be the default for system mail."))

	def on_update(self):
		credentials.on_update(self)
		if self.is_default:
			frappe.db.set_value(
				"Outgoing Channel", {"is_default": 1, "name": ("!=", self.name)}, "is_default", 0
			)
		channel_admin.block_own_address(self.from_address, self.doctype, self.name)
		channel_admin.sync_system_mail_account(self)

	def on_trash(self):
		credentials.on_trash(self)
		channel_admin.remove_system_mail_account(self)

	@frappe.whitelist()
	def test_connection(self) -> dict:
		frappe.only_for(("System Manager", "Support Manager"))
		return channel_admin.check_outgoing(self)
