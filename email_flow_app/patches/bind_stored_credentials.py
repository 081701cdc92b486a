"""Bind the secrets stored before credential binding existed to the server their record names now.

From this version on a stored secret is only sent to the server it was entered
for (services/credentials.py). Records saved earlier have no binding yet; their
current settings are the ones the secrets were last used with, so they are
bound to those.
"""

import frappe

from email_flow_app.email_flow.services import credentials


def execute():
	for doctype in ("Incoming Email Queue", "Outgoing Channel"):
		for name in frappe.get_all(doctype, pluck="name"):
			credentials.bind(frappe.get_doc(doctype, name))
