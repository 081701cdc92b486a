"""Inbound Emails stored before 'Acknowledged on Server' existed were acknowledged when they were stored.

Only a kill between a batch's commit and its acknowledgement could leave one
unacknowledged, and the poll that follows such a kill now catches it up: mark
the older rows done so the first poll after the upgrade does not re-acknowledge
the whole archive.
"""

import frappe


def execute():
	frappe.db.sql("UPDATE `tabInbound Email` SET `acknowledged` = 1 WHERE `uid` IS NOT NULL AND `uid` > 0")
