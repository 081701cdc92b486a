"""Indexes for the hot queries on sites that already have the tables (new sites get them from
the DocTypes' on_doctype_update): Ticket (raised_by, creation) for the per-sender rate cap,
Ticket (email_queue, status, modified) for lists and counts by queue, Ticket (status,
email_queue) for a restricted agent's counts by status, Inbound Email
(status, email_queue) for the sweep of Received rows. Communication.message_id is indexed by
Frappe itself."""

from email_flow_app.email_flow.doctype.inbound_email import inbound_email
from email_flow_app.email_flow.doctype.ticket import ticket


def execute():
	ticket.on_doctype_update()
	inbound_email.on_doctype_update()
