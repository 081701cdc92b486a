# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

# import frappe
from frappe.model.document import Document


class EmailFlowBlockedAddress(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		email_address: DF.Data
		parent: DF.Data
		parentfield: DF.Data
		parenttype: DF.Data
		reference: DF.Data | None
		source: DF.Literal["Manual", "Incoming Email Queue", "Outgoing Channel"]
	# end: auto-generated types
	pass
