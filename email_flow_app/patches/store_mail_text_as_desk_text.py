"""Subjects and sender names filed before mail.desk_text: stored escaped when they hold < or >.

Frappe renders them as HTML (form title, timeline header, notifications); a
value its sanitizer let through (a string with no complete tag) could run
there. Values without < or > are left as they are.
"""

import frappe

from email_flow_app.mail import desk_text

# (DocType, field, filters, length of the column: the escaped value is cut to fit)
FIELDS = (
	("Ticket", "subject", {}, 255),
	("Ticket", "customer_name", {}, 140),
	("Communication", "subject", {"reference_doctype": "Ticket"}, None),
	("Communication", "sender_full_name", {"reference_doctype": "Ticket"}, 140),
	("Inbound Email", "subject", {}, None),
)


def execute():
	for doctype, field, filters, length in FIELDS:
		for angle in ("<", ">"):
			rows = frappe.get_all(
				doctype, filters={**filters, field: ("like", f"%{angle}%")}, fields=["name", field]
			)
			for row in rows:
				value = row.get(field) or ""
				stored = desk_text.fit(value, length) if length else desk_text.stored(value)
				if stored != value:
					frappe.db.set_value(doctype, row.name, field, stored, update_modified=False)
