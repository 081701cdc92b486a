"""Business time: the clock an SLA counts on (pure, no database).

A :class:`WorkCalendar` is a working day (start to end, the same every day),
the weekly days off and the holidays (a holiday list's dates). Time outside
the working day or on a day off does not count.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

MIDNIGHT = datetime.time(0, 0)
MAX_DAYS = 3 * 366  # how far the clock looks for working time before it gives up


class NoWorkingTime(ValueError):
	"""The calendar has no working time within MAX_DAYS (every day is a day off)."""


@dataclass(frozen=True)
class WorkCalendar:
	start: datetime.time = MIDNIGHT
	end: datetime.time = MIDNIGHT  # equal to start: the whole day counts
	days_off: frozenset[datetime.date] = field(default_factory=frozenset)
	weekdays_off: frozenset[int] = field(default_factory=frozenset)  # Monday 0 ... Sunday 6

	def window(self, day: datetime.date) -> tuple[datetime.datetime, datetime.datetime] | None:
		"""The working hours of `day`, or None on a day off."""
		if day in self.days_off or day.weekday() in self.weekdays_off:
			return None
		opens = datetime.datetime.combine(day, self.start)
		if self.end <= self.start:  # 00:00-00:00 (all day), or a working day past midnight
			closes = datetime.datetime.combine(day + datetime.timedelta(days=1), self.end)
		else:
			closes = datetime.datetime.combine(day, self.end)
		return opens, closes

	def add(self, moment: datetime.datetime, seconds: float) -> datetime.datetime:
		"""The moment `seconds` of working time after `moment`."""
		remaining = max(float(seconds), 0.0)
		now = moment
		day = moment.date()
		for _ in range(MAX_DAYS):
			hours = self.window(day)
			if hours:
				opens, closes = hours
				now = max(now, opens)
				if now < closes:
					available = (closes - now).total_seconds()
					if remaining <= available:
						return now + datetime.timedelta(seconds=remaining)
					remaining -= available
			day += datetime.timedelta(days=1)
			now = max(now, datetime.datetime.combine(day, MIDNIGHT))
		raise NoWorkingTime(f"no working time within {MAX_DAYS} days of {moment}")

	def between(self, begin: datetime.datetime, end: datetime.datetime) -> float:
		"""Seconds of working time from `begin` to `end` (0 if end is not after begin)."""
		if end <= begin:
			return 0.0
		total = 0.0
		day = begin.date() - datetime.timedelta(days=1)  # a working day may run past midnight
		for _ in range((end.date() - day).days + 1):
			hours = self.window(day)
			if hours:
				opens, closes = max(hours[0], begin), min(hours[1], end)
				if closes > opens:
					total += (closes - opens).total_seconds()
			day += datetime.timedelta(days=1)
		return total
