# Copyright (c) 2026, Email Flow developers and contributors
# For license information, please see license.txt

from frappe.model.document import Document

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class SupportHolidayList(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		from email_flow_app.email_flow.doctype.support_holiday.support_holiday import SupportHoliday

		holiday_list_name: DF.Data
		holidays: DF.Table[SupportHoliday]
		off_friday: DF.Check
		off_monday: DF.Check
		off_saturday: DF.Check
		off_sunday: DF.Check
		off_thursday: DF.Check
		off_tuesday: DF.Check
		off_wednesday: DF.Check
	# end: auto-generated types

	def weekdays_off(self) -> frozenset[int]:
		"""Weekday numbers (Monday 0) on which the SLA clock does not run."""
		return frozenset(i for i, day in enumerate(WEEKDAYS) if self.get(f"off_{day}"))
