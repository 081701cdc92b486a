"""Ticket mail carries no unsubscribe footer: re-sync every channel's proxy Email Account."""

import frappe

from email_flow_app.email_flow.services.channel_admin import sync_system_mail_account


def execute():
	for name in frappe.get_all("Outgoing Channel", pluck="name"):
		sync_system_mail_account(frappe.get_doc("Outgoing Channel", name))
