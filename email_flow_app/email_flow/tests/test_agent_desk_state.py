"""The agent's desk on the site: needs-reply marker, SLA due times, the Support counts, canned responses.

Mail comes in through a Forwarding queue's real ingest path (store, then file);
the agent is a plain Support Agent (frappe.set_user), the site runs in
America/New_York, and time moves with Frappe's time freeze.
"""

import datetime

import frappe
from frappe.utils import get_datetime

from email_flow_app.email_flow.services import desk, sla
from email_flow_app.email_flow.services.business_hours import WorkCalendar
from email_flow_app.email_flow.services.canned import render_canned_response
from email_flow_app.email_flow.services.ingest import process_inbound, release_locks
from email_flow_app.email_flow.services.store import forwarded_key, store_inbound
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import SiteTestCase, cleanup, customer_email, reply_to

SITE_ZONE = "America/New_York"
MONDAY = datetime.date(2026, 11, 30)  # a Monday
TUESDAY, WEDNESDAY, THURSDAY, FRIDAY = (MONDAY + datetime.timedelta(days=n) for n in range(1, 5))


def at(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
	return datetime.datetime.combine(day, datetime.time(hour, minute))


class TestBusinessHours(SiteTestCase):
	def test_add_skips_nights_weekends_and_holidays(self):
		work = WorkCalendar(
			datetime.time(9), datetime.time(17), frozenset({MONDAY + datetime.timedelta(days=1)})
		)
		# Monday 16:00 + 4 h: 1 h on Monday, Tuesday is a holiday, 3 h on Wednesday.
		self.assertEqual(work.add(at(MONDAY, 16), 4 * 3600), at(MONDAY + datetime.timedelta(days=2), 12))
		# Friday 16:30 + 1 h (no days off but the weekend in a Holiday List would be; here none).
		friday = MONDAY + datetime.timedelta(days=4)
		weekend = frozenset({friday + datetime.timedelta(days=1), friday + datetime.timedelta(days=2)})
		work = WorkCalendar(datetime.time(9), datetime.time(17), weekend)
		self.assertEqual(work.add(at(friday, 16, 30), 3600), at(friday + datetime.timedelta(days=3), 9, 30))
		# Before the day starts: counted from the start.
		self.assertEqual(work.add(at(MONDAY, 6), 3600), at(MONDAY, 10))

	def test_between_counts_only_working_time(self):
		work = WorkCalendar(datetime.time(9), datetime.time(17), frozenset())
		self.assertEqual(work.between(at(MONDAY, 16), at(MONDAY + datetime.timedelta(days=1), 10)), 2 * 3600)
		self.assertEqual(work.between(at(MONDAY, 18), at(MONDAY, 20)), 0)
		all_day = WorkCalendar()
		self.assertEqual(all_day.between(at(MONDAY, 18), at(MONDAY, 20)), 2 * 3600)


class TestAgentDeskState(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.tag = frappe.generate_hash(length=6).lower()
		cls.saved_zone = frappe.db.get_single_value("System Settings", "time_zone")
		frappe.db.set_single_value("System Settings", "time_zone", SITE_ZONE)
		cls.support = f"support-{cls.tag}@example.test"
		cls.agent = make_user(f"ef-desk-agent-{cls.tag}@example.test", ["Support Agent"])
		cls.outsider = make_user(f"ef-desk-outsider-{cls.tag}@example.test", ["Support Agent"])
		# Weekends off (the default), and Wednesday a holiday.
		holidays = frappe.get_doc(
			{
				"doctype": "Support Holiday List",
				"holiday_list_name": f"Support days off {cls.tag}",
				"holidays": [{"holiday_date": WEDNESDAY, "description": "Founders' day"}],
			}
		).insert(ignore_permissions=True)
		cls.holiday_list = holidays.name
		cls.queue = cls.make_queue("Desk", cls.support, first_response_hours=2, resolution_hours=16)
		cls.hidden = cls.make_queue(
			"Hidden",
			f"hidden-{cls.tag}@example.test",
			restrict_to_agents=1,
			assign_to=[{"user": cls.outsider}],
		)
		cls.template = frappe.get_doc(
			{
				"doctype": "Email Template",
				"name": f"Thanks {cls.tag}",
				"subject": "ignored",
				"response": "Hello {{ first_name }}, about {{ doc.name }}: we are on it.",
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()

	@classmethod
	def make_queue(cls, label, address, **values):
		return frappe.get_doc(
			{
				"doctype": "Incoming Email Queue",
				"queue_name": f"{label} {cls.tag}",
				"channel_type": "Forwarding",
				"email_address": address,
				"creation_address": address,
				"holiday_list": cls.holiday_list,
				"workday_start": "09:00",
				"workday_end": "17:00",
				**values,
			}
		).insert(ignore_permissions=True)

	@classmethod
	def tearDownClass(cls):
		frappe.set_user("Administrator")
		frappe.db.rollback()
		cleanup(cls.tag)
		frappe.delete_doc("Email Template", cls.template.name, force=True, ignore_permissions=True)
		frappe.delete_doc("Support Holiday List", cls.holiday_list, force=True, ignore_permissions=True)
		frappe.db.set_single_value("System Settings", "time_zone", cls.saved_zone)
		frappe.db.commit()
		super().tearDownClass()

	def tearDown(self):
		frappe.set_user("Administrator")

	def receive(self, mail, queue=None) -> str:
		queue = queue or self.queue.name
		raw = mail.as_bytes()
		name, _created = store_inbound(queue=queue, raw=raw, key=forwarded_key(queue, raw))
		frappe.db.commit()
		outcome = process_inbound(name)
		frappe.db.commit()
		release_locks()
		self.assertIn(outcome.status, ("Ticket Created", "Appended"), outcome.reason)
		return outcome.ticket

	def agent_reply(self, ticket: str) -> None:
		from frappe.core.doctype.communication.email import make

		frappe.set_user(self.agent)
		make(
			doctype="Ticket",
			name=ticket,
			content="We are looking into it.",
			subject="Re: it",
			recipients="carla@customer.test",
			send_email=0,
			communication_medium="Email",
			sent_or_received="Sent",
		)
		frappe.set_user("Administrator")
		frappe.db.commit()

	def ticket(self, name):
		return frappe.db.get_value(
			"Ticket",
			name,
			[
				"status",
				"needs_reply",
				"due_by",
				"response_by",
				"resolution_by",
				"first_responded_on",
				"last_customer_message_on",
				"is_overdue",
				"_seen",
			],
			as_dict=True,
		)

	def test_needs_reply_set_by_the_customer_and_cleared_by_the_agent(self):
		first = customer_email(self.support, subject=f"Needs reply {self.tag}")
		ticket = self.receive(first)
		self.assertEqual(self.ticket(ticket).needs_reply, 1)
		self.agent_reply(ticket)
		row = self.ticket(ticket)
		self.assertEqual((row.needs_reply, row.status), (0, "Replied"))
		self.assertTrue(row.first_responded_on)
		frappe.db.set_value("Ticket", ticket, "_seen", frappe.as_json([self.agent]))
		frappe.db.commit()
		self.receive(reply_to(first, "Still broken."))
		row = self.ticket(ticket)
		self.assertEqual((row.needs_reply, row.status), (1, "Open"))
		self.assertFalse(row._seen)  # unread again for everyone
		# By hand: the agent marks it answered (a REST/Desk save through the controller).
		frappe.set_user(self.agent)
		doc = frappe.get_doc("Ticket", ticket)
		doc.needs_reply = 0
		doc.save()
		frappe.db.commit()
		self.assertEqual(self.ticket(ticket).needs_reply, 0)

	def test_sla_due_overdue_and_paused_while_pending(self):
		# Monday 16:00 New York (working day 9-17, weekends and Wednesday off): the first response
		# is due 2 working hours later = Tuesday 10:00; the resolution 16 working hours later =
		# Monday 1 h + Tuesday 8 h + Thursday 7 h = Thursday 16:00.
		first = customer_email(self.support, subject=f"SLA {self.tag}")
		with self.freeze_time(at(MONDAY, 16)):
			ticket = self.receive(first)
		row = self.ticket(ticket)
		self.assertEqual(get_datetime(row.response_by), at(TUESDAY, 10))
		self.assertEqual(get_datetime(row.resolution_by), at(THURSDAY, 16))
		self.assertEqual(row.due_by, row.response_by)
		frappe.set_user(self.agent)
		with self.freeze_time(at(TUESDAY, 9, 30)):
			self.assertNotIn(ticket, self.count_list("overdue"))
		with self.freeze_time(at(TUESDAY, 11)):
			self.assertIn(ticket, self.count_list("overdue"))
			self.assertGreaterEqual(desk.support_counts()["overall"]["overdue"], 1)
			self.assertEqual(self.ticket(ticket).is_overdue, 1)
			# Tuesday 11:00 the agent answers (late) and sets Pending: the clock stops.
			self.agent_reply(ticket)
			frappe.set_user(self.agent)
			doc = frappe.get_doc("Ticket", ticket)
			doc.status = "Pending"
			doc.save()
			frappe.db.commit()
		row = self.ticket(ticket)
		self.assertEqual(get_datetime(row.first_responded_on), at(TUESDAY, 11))
		self.assertIsNone(row.due_by)
		with self.freeze_time(at(FRIDAY, 16, 30)):  # paused: never overdue
			self.assertNotIn(ticket, self.count_list("overdue"))
		# Thursday 11:00 the customer writes (ingest reopens it). Paused Tuesday 11-17 (6 h),
		# Wednesday (holiday), Thursday 9-11 (2 h) = 8 working hours: Thursday 16:00 + 8 h =
		# Friday 16:00.
		with self.freeze_time(at(THURSDAY, 11)):
			self.assertEqual(self.receive(reply_to(first, "Any news?")), ticket)
		row = self.ticket(ticket)
		self.assertEqual((row.status, row.needs_reply), ("Open", 1))
		self.assertEqual(get_datetime(row.resolution_by), at(FRIDAY, 16))
		self.assertEqual(row.due_by, row.resolution_by)
		frappe.set_user(self.agent)
		with self.freeze_time(at(FRIDAY, 15)):
			self.assertNotIn(ticket, self.count_list("overdue"))
		with self.freeze_time(at(FRIDAY, 16, 30)):
			self.assertIn(ticket, self.count_list("overdue"))
		# By hand in the Desk: Pending on Friday 16:30, Open again on Monday 10:00. Paused Friday
		# 16:30-17 and Monday 9-10 (1.5 h): Friday 16:00 + 1.5 h = Friday 16-17 + Monday 9-9:30.
		next_monday = MONDAY + datetime.timedelta(days=7)
		for moment, status in ((at(FRIDAY, 16, 30), "Pending"), (at(next_monday, 10), "Open")):
			with self.freeze_time(moment):
				doc = frappe.get_doc("Ticket", ticket)
				doc.status = status
				doc.save()
				frappe.db.commit()
		row = self.ticket(ticket)
		self.assertEqual(get_datetime(row.resolution_by), at(next_monday, 9, 30))
		self.assertEqual((row.due_by, row.is_overdue), (row.resolution_by, 1))

	def count_list(self, key: str) -> list[str]:
		if key == "overdue":
			sla.mark_overdue()  # the scheduler's sweep, at the (frozen) time of the check
		return frappe.get_list("Ticket", filters=desk.count_filters()[key], pluck="name")

	def test_counts_follow_the_agents_permissions(self):
		mine = self.receive(customer_email(self.support, subject=f"Counted {self.tag}"))
		hidden = self.receive(
			customer_email(f"hidden-{self.tag}@example.test", subject=f"Hidden {self.tag}"), self.hidden.name
		)
		frappe.set_user(self.agent)
		counts = desk.support_counts()
		queues = {row["queue"]: row["counts"] for row in counts["queues"]}
		self.assertNotIn(self.hidden.name, queues)
		self.assertGreaterEqual(queues[self.queue.name]["needs_reply"], 1)
		self.assertIn(mine, self.count_list("needs_reply"))
		self.assertNotIn(hidden, self.count_list("needs_reply"))
		self.assertIn(mine, self.count_list("unassigned"))
		frappe.desk.form.assign_to.add({"doctype": "Ticket", "name": mine, "assign_to": [self.agent]})
		self.assertIn(mine, self.count_list("my_open"))
		self.assertNotIn(mine, self.count_list("unassigned"))
		frappe.set_user(self.outsider)
		self.assertIn(hidden, self.count_list("needs_reply"))

	def test_canned_response_is_rendered_for_tickets_the_agent_may_see(self):
		mine = self.receive(customer_email(self.support, subject=f"Canned {self.tag}"))
		hidden = self.receive(
			customer_email(f"hidden-{self.tag}@example.test", subject=f"Canned hidden {self.tag}"),
			self.hidden.name,
		)
		frappe.set_user(self.agent)
		self.assertEqual(
			render_canned_response(self.template.name, mine), f"Hello Carla, about {mine}: we are on it."
		)
		with self.assertRaises(frappe.PermissionError):
			render_canned_response(self.template.name, hidden)

	def test_the_first_message_is_read_only(self):
		ticket = self.receive(customer_email(self.support, subject=f"Read-only {self.tag}"))
		frappe.set_user(self.agent)
		doc = frappe.get_doc("Ticket", ticket)
		doc.description = "<p>I rewrote what the customer said</p>"
		with self.assertRaises(frappe.ValidationError):
			doc.save()
