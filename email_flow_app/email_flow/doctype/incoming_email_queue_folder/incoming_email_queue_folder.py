# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

# import frappe
from frappe.model.document import Document


class IncomingEmailQueueFolder(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		delta_link: DF.SmallText | None
		folder_name: DF.Data
		graph_subscription_expires: DF.Datetime | None
		graph_subscription_id: DF.Data | None
		last_uid: DF.Int
		next_link: DF.SmallText | None
		parent: DF.Data
		parentfield: DF.Data
		parenttype: DF.Data
		uidvalidity: DF.Data | None
	# end: auto-generated types
	pass
