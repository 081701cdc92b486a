"""The agent's desk on existing sites: Support Agents and Managers land on the Support workspace,
the Ticket list gets room for its columns, the new indexes exist, queues get a working day, and
existing tickets get
their needs-reply marker and "customer wrote" time from their timeline (a ticket whose latest
message is the customer's, and that is not Resolved or Closed, needs a reply). Due times are
not back-filled: the SLA starts with the tickets made after a queue gets targets."""

import frappe

from email_flow_app.email_flow.doctype.ticket import ticket
from email_flow_app.install import setup_agent_desk


def execute():
	ticket.on_doctype_update()
	setup_agent_desk()
	# Queues made before the SLA fields get a new queue's working day.
	for fieldname, default in (("workday_start", "09:00"), ("workday_end", "17:00")):
		frappe.db.sql(
			f"update `tabIncoming Email Queue` set {fieldname} = %s where ifnull({fieldname}, '') = ''",
			(default,),
		)
	frappe.db.sql(
		"""
		update `tabTicket` t
		join (
			select reference_name, max(communication_date) as last_received
			from `tabCommunication`
			where reference_doctype = 'Ticket' and communication_type = 'Communication'
				and sent_or_received = 'Received'
			group by reference_name
		) r on r.reference_name = t.name
		left join (
			select reference_name, max(communication_date) as last_sent
			from `tabCommunication`
			where reference_doctype = 'Ticket' and communication_type = 'Communication'
				and sent_or_received = 'Sent'
			group by reference_name
		) s on s.reference_name = t.name
		set t.last_customer_message_on = r.last_received,
			t.needs_reply = (t.status not in ('Resolved', 'Closed')
				and (s.last_sent is null or s.last_sent < r.last_received))
		"""
	)
