# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import now_datetime

from email_flow_app.email_flow.services import channel_admin, credentials


class IncomingEmailQueue(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		from email_flow_app.email_flow.doctype.incoming_email_queue_agent.incoming_email_queue_agent import (
			IncomingEmailQueueAgent,
		)
		from email_flow_app.email_flow.doctype.incoming_email_queue_folder.incoming_email_queue_folder import (
			IncomingEmailQueueFolder,
		)

		after_import: DF.Literal["Mark as seen", "Move to folder", "Leave on server"]
		assign_to: DF.TableMultiSelect[IncomingEmailQueueAgent]
		auth_method: DF.Literal["Password", "OAuth"]
		cc_only_creates_ticket: DF.Check
		channel_type: DF.Literal["IMAP", "Office 365", "Google", "Forwarding"]
		color: DF.Color | None
		creation_address: DF.Data | None
		email_address: DF.Data
		enabled: DF.Check
		failure_count: DF.Int
		first_response_hours: DF.Float
		folders: DF.Table[IncomingEmailQueueFolder]
		forwarding_secret: DF.Password | None
		google_client_id: DF.Data | None
		google_client_secret: DF.Password | None
		google_refresh_token: DF.Password | None
		graph_push_error: DF.SmallText | None
		holiday_list: DF.DynamicLink | None
		holiday_list_type: DF.Literal["Support Holiday List", "Holiday List"]
		host: DF.Data | None
		last_assigned_to: DF.Link | None
		last_error: DF.SmallText | None
		last_poll: DF.Datetime | None
		last_success: DF.Datetime | None
		move_to_folder: DF.Data | None
		next_poll_after: DF.Datetime | None
		o365_client_id: DF.Data | None
		o365_client_secret: DF.Password | None
		o365_mode: DF.Literal["Delegated", "App only"]
		o365_read_via: DF.Literal["IMAP", "Microsoft Graph"]
		o365_tenant: DF.Data | None
		outgoing_channel: DF.Link | None
		password: DF.Password | None
		port: DF.Int
		queue_name: DF.Data
		reopen_window_days: DF.Int
		resolution_hours: DF.Float
		restrict_to_agents: DF.Check
		security: DF.Literal["SSL", "STARTTLS", "Plain"]
		send_acknowledgement: DF.Check
		status: DF.Literal["Active", "Failing", "Reconnect needed", "Disabled"]
		username: DF.Data | None
		workday_end: DF.Literal[
			"01:00",
			"02:00",
			"03:00",
			"04:00",
			"05:00",
			"06:00",
			"07:00",
			"08:00",
			"09:00",
			"10:00",
			"11:00",
			"12:00",
			"13:00",
			"14:00",
			"15:00",
			"16:00",
			"17:00",
			"18:00",
			"19:00",
			"20:00",
			"21:00",
			"22:00",
			"23:00",
			"24:00",
		]
		workday_start: DF.Literal[
			"00:00",
			"01:00",
			"02:00",
			"03:00",
			"04:00",
			"05:00",
			"06:00",
			"07:00",
			"08:00",
			"09:00",
			"10:00",
			"11:00",
			"12:00",
			"13:00",
			"14:00",
			"15:00",
			"16:00",
			"17:00",
			"18:00",
			"19:00",
			"20:00",
			"21:00",
			"22:00",
			"23:00",
		]
	# end: auto-generated types

	def validate(self):
		self.email_address = (self.email_address or "").strip().lower()
		self.creation_address = (self.creation_address or "").strip().lower() or None
		channel_admin.apply_incoming_presets(self)
		self.validate_graph_reading()
		if self.channel_type != "Forwarding" and not self.folders:
			self.append("folders", {"folder_name": "INBOX"})
		if self.channel_type == "Forwarding" and not self.forwarding_secret:
			self.forwarding_secret = frappe.generate_hash(length=32)
		credentials.on_validate(self)

	def validate_graph_reading(self):
		"""Only an Office 365 queue reads through Microsoft Graph, and Graph takes OAuth tokens only."""
		if self.channel_type != "Office 365":
			self.o365_read_via = "IMAP"
		elif self.o365_read_via == "Microsoft Graph" and self.auth_method != "OAuth":
			frappe.throw(_("Reading through Microsoft Graph needs the OAuth sign-in (Auth Method: OAuth)."))

	def on_update(self):
		credentials.on_update(self)
		for address in (self.email_address, self.creation_address):
			channel_admin.block_own_address(address, self.doctype, self.name)

	def on_trash(self):
		credentials.on_trash(self)

	@frappe.whitelist()
	def test_connection(self) -> dict:
		frappe.only_for(("System Manager", "Support Manager"))
		return channel_admin.check_incoming(self)

	@frappe.whitelist()
	def poll_now(self) -> dict:
		"""Queue a poll; the Desk asks `poll_outcome` with `requested_at` until the run is done."""
		frappe.only_for(("System Manager", "Support Manager"))
		self.check_permission("read")
		from email_flow_app.email_flow.services.tick import enqueue_poll

		requested_at = str(now_datetime())
		enqueue_poll(self.name)
		return {"requested_at": requested_at}

	@frappe.whitelist()
	def poll_outcome(self, since: str) -> dict:
		"""What the queue's newest poll did, once one finished after `since` ({"done": False} until then)."""
		frappe.only_for(("System Manager", "Support Manager"))
		self.check_permission("read")
		return channel_admin.poll_outcome(self.name, since)
