"""A simple SLA per queue: first-response and resolution due times in business hours.

The queue sets the targets (hours of working time), its days off (a Support
Holiday List, or ERPNext's Holiday List where ERPNext is installed) and its
working day. A ticket gets `response_by` and `resolution_by` when it is
made; `due_by` is the next of them that is still ahead (the first response
until an agent has answered, then the resolution). The clock:

- pauses while the ticket is Pending (waiting on the customer), and stops when
  it is Resolved or Closed: `due_by` is empty, `sla_paused_on` says since when;
- when the ticket is active again (Open or Replied: the customer wrote, or an
  agent changed the status), the due times move on by the working time it was
  paused.

A ticket is overdue when `due_by` has passed: `is_overdue`, set when the due time
changes and swept every minute by the scheduler (mark_overdue, run by
tick.every_minute). Every change of status goes through :func:`transition`, from the Ticket controller (Desk, REST) and from
ingest (a customer reply reopens without the controller).
"""

from __future__ import annotations

import datetime

import frappe
from frappe.utils import get_datetime, now_datetime

from email_flow_app.email_flow.services import settings
from email_flow_app.email_flow.services.business_hours import WorkCalendar

PAUSED = frozenset({"Pending", "Resolved", "Closed"})
OWN_HOLIDAY_LIST = "Support Holiday List"
SLA_FIELDS = ("email_queue", "response_by", "resolution_by", "first_responded_on", "sla_paused_on")
HOUR = 3600


def calendar(queue: str | None) -> tuple[float, float, WorkCalendar]:
	"""(first-response hours, resolution hours, calendar) of a queue; (0, 0, …) without targets.

	Read once per poll run or batch (settings.run_cache), else every time."""
	return settings.cached(("sla_calendar", queue), lambda: _calendar(queue))


def _calendar(queue: str | None) -> tuple[float, float, WorkCalendar]:
	row = (
		frappe.db.get_value(
			"Incoming Email Queue",
			queue,
			[
				"first_response_hours",
				"resolution_hours",
				"holiday_list_type",
				"holiday_list",
				"workday_start",
				"workday_end",
			],
			as_dict=True,
		)
		if queue
		else None
	)
	if not row or not (row.first_response_hours or row.resolution_hours):
		return 0.0, 0.0, WorkCalendar()
	return (
		float(row.first_response_hours or 0),
		float(row.resolution_hours or 0),
		WorkCalendar(
			_hour(row.workday_start, "00:00"),
			_hour(row.workday_end, "24:00"),
			*_days_off(row.holiday_list_type or OWN_HOLIDAY_LIST, row.holiday_list),
		),
	)


def _hour(value: str | None, default: str) -> datetime.time:
	"""'09:00' as a time; '24:00' is the end of the day (midnight, which WorkCalendar reads as such)."""
	hours, _sep, minutes = (value or default).partition(":")
	return datetime.time(int(hours) % 24, int(minutes or 0))


def _days_off(doctype: str, name: str | None) -> tuple[frozenset, frozenset]:
	"""(holiday dates, weekdays off) of a Support Holiday List, or of ERPNext's Holiday List
	(which lists its weekly offs as dates). Nothing when none is set or the DocType is missing."""
	if not name or not frappe.db.exists("DocType", doctype) or not frappe.db.exists(doctype, name):
		return frozenset(), frozenset()
	holidays = frappe.get_doc(doctype, name)
	dates = frozenset(get_datetime(row.holiday_date).date() for row in holidays.get("holidays") or [])
	weekly = holidays.weekdays_off() if hasattr(holidays, "weekdays_off") else frozenset()
	return dates, weekly


def start(ticket, at: datetime.datetime | None = None) -> None:
	"""Due times of a new ticket (Ticket.before_insert), counted from `at` (default: now)."""
	at = get_datetime(at) if at else now_datetime()
	response_hours, resolution_hours, work = calendar(ticket.email_queue)
	ticket.response_by = work.add(at, response_hours * HOUR) if response_hours else None
	ticket.resolution_by = work.add(at, resolution_hours * HOUR) if resolution_hours else None
	ticket.sla_paused_on = at if ticket.status in PAUSED else None
	ticket.due_by = None if ticket.status in PAUSED else next_due(ticket)
	ticket.is_overdue = overdue(ticket.due_by, at)


def mark_overdue(now: datetime.datetime | None = None) -> None:
	"""Every minute (scheduler): a ticket whose due time has passed is overdue, and no longer once
	it has none or a later one. Two indexed updates; `modified` stays as it is."""
	now = now or now_datetime()
	frappe.db.sql("update `tabTicket` set is_overdue = 1 where is_overdue = 0 and due_by <= %s", (now,))
	frappe.db.sql(
		"update `tabTicket` set is_overdue = 0 where is_overdue = 1 and (due_by is null or due_by > %s)",
		(now,),
	)


def overdue(due_by, now: datetime.datetime | None = None) -> int:
	return int(bool(due_by) and get_datetime(due_by) <= (now or now_datetime()))


def next_due(row) -> datetime.datetime | None:
	"""The first response until an agent answered, then the resolution."""
	if row.get("response_by") and not row.get("first_responded_on"):
		return row.get("response_by")
	return row.get("resolution_by")


def transition(row, old_status: str | None, new_status: str, now: datetime.datetime | None = None) -> dict:
	"""The SLA fields to write when a ticket goes from `old_status` to `new_status`.

	`row` (a Ticket, or a dict) holds SLA_FIELDS as they were. Active -> paused: the clock stops.
	Paused -> active: the due times move on by the working time spent paused.
	"""
	now = now or now_datetime()
	was_paused, paused = old_status in PAUSED, new_status in PAUSED
	if paused and not was_paused:
		return {"sla_paused_on": now, "due_by": None, "is_overdue": 0}
	if was_paused and not paused:
		_response_hours, _resolution_hours, work = calendar(row.get("email_queue"))
		since = get_datetime(row.get("sla_paused_on")) if row.get("sla_paused_on") else now
		paused_for = work.between(since, now)
		values = {"sla_paused_on": None}
		for fieldname in ("response_by", "resolution_by"):
			due = row.get(fieldname)
			if due and not (fieldname == "response_by" and row.get("first_responded_on")):
				values[fieldname] = work.add(get_datetime(due), paused_for)
		values["due_by"] = next_due({**{f: row.get(f) for f in SLA_FIELDS}, **values})
		values["is_overdue"] = overdue(values["due_by"], now)
		return values
	return {}


def agent_replied(row, now: datetime.datetime | None = None) -> dict:
	"""The first agent reply meets the first-response target: the resolution is due next."""
	if row.get("first_responded_on"):
		return {}
	now = now or now_datetime()
	values = {"first_responded_on": now}
	if not row.get("sla_paused_on"):
		values["due_by"] = row.get("resolution_by")
		values["is_overdue"] = overdue(values["due_by"], now)
	return values
