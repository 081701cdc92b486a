"""What the agent's desk shows: who must answer, the counts, the conversation with quotes folded.

- needs_reply: set when a customer message arrives after the last agent reply
  (and the ticket becomes unread again for everyone: `_seen`), cleared when an
  agent replies, when the ticket is Resolved or Closed, or by hand.
- The Support workspace's counts (overall and per queue), each the filter of a
  Ticket list, computed through the Ticket permissions of the user asking.
- The Ticket form's customer panel and the folded conversation (mail/quotes.py
  finds the new part of each received message).
"""

from __future__ import annotations

import frappe
from frappe import _

from email_flow_app.email_flow.services import sla
from email_flow_app.mail.quotes import extract_reply

ACTIVE = ("Open", "Replied", "Pending")
FOLD_LIMIT = 200  # received messages of one ticket that get a folded view
OTHER_TICKETS = 10


# -- the needs-reply marker ------------------------------------------------------------------


def customer_replied(facts: frappe._dict, when) -> None:
	"""A customer message was filed on an existing ticket (ingest): it needs a reply, and is unread.

	`facts.status` is the status before the message (ingest has set Open since):
	a paused SLA clock starts again.
	"""
	values = {"needs_reply": 1, "last_customer_message_on": when, "_seen": None}
	if facts.status in sla.PAUSED:
		row = frappe.db.get_value("Ticket", facts.name, sla.SLA_FIELDS, as_dict=True)
		values.update(sla.transition(row, facts.status, "Open"))
	frappe.db.set_value("Ticket", facts.name, values, update_modified=False)


def agent_replied(ticket: str) -> None:
	"""An agent's reply left on the ticket: the marker clears and the first response is met."""
	row = frappe.db.get_value(
		"Ticket", ticket, ["name", "status", "needs_reply", *sla.SLA_FIELDS], as_dict=True
	)
	if not row:
		return
	values = {"needs_reply": 0} if row.needs_reply else {}
	if row.status in ("Open", "Pending"):
		values["status"] = "Replied"
		values.update(sla.transition(row, row.status, "Replied"))  # a Pending clock runs again
	values.update(sla.agent_replied({**row, **values}))
	if values:
		frappe.db.set_value("Ticket", ticket, values)


# -- the Support workspace's counts --------------------------------------------------------


def count_filters(user: str | None = None) -> dict[str, list]:
	"""Each count of the Support workspace as Ticket list filters (the same ones the Desk links open)."""
	user = user or frappe.session.user
	return {
		"my_open": [["_assign", "like", f'%"{user}"%'], ["status", "in", ACTIVE]],
		"unassigned": [["_assign", "in", ["", "[]"]], ["status", "in", ACTIVE]],
		"waiting": [["status", "in", ["Replied", "Pending"]]],
		"needs_reply": [["needs_reply", "=", 1], ["status", "in", ACTIVE]],
		# A flag (sla.mark_overdue, every minute), not "due_by < now": a Desk list filter can say
		# is_overdue = 1 exactly, while Frappe widens a datetime range to whole days and reads an
		# empty due time as the year 1 for "<".
		"overdue": [["is_overdue", "=", 1], ["status", "in", ACTIVE]],
	}


COUNT_LABELS = {
	"my_open": "My open",
	"unassigned": "Unassigned",
	"waiting": "Waiting on customer",
	"needs_reply": "Needs reply",
	"overdue": "Overdue",
}


@frappe.whitelist()
def support_counts() -> dict:
	"""Counts for the Support workspace: overall and per queue, as the user may see tickets.

	Returns {"labels", "filters" (for the list links), "overall": {key: n},
	"queues": [{"queue", "color", "counts": {key: n}}]}; tickets without a queue
	count in the overall figures only.
	"""
	frappe.has_permission("Ticket", "read", throw=True)
	filters = count_filters()
	overall = dict.fromkeys(filters, 0)
	per_queue: dict[str, dict[str, int]] = {}
	for key, conditions in filters.items():
		rows = frappe.get_list(
			"Ticket",
			filters=conditions,
			fields=["email_queue", "count(name) as n"],
			group_by="email_queue",
			order_by="email_queue asc",
		)
		for row in rows:
			overall[key] += row.n
			if row.email_queue:
				per_queue.setdefault(row.email_queue, dict.fromkeys(filters, 0))[key] = row.n
	from email_flow_app.email_flow.boot import queue_colours

	colours = queue_colours()
	for queue in colours:  # every queue the user may see, also those with nothing to do
		per_queue.setdefault(queue, dict.fromkeys(filters, 0))
	return {
		"labels": {key: _(label) for key, label in COUNT_LABELS.items()},
		"filters": filters,
		"overall": overall,
		"queues": [
			{"queue": queue, "color": colours.get(queue), "counts": per_queue[queue]}
			for queue in sorted(per_queue)
		],
	}


# -- the Ticket form -----------------------------------------------------------------------


def customer_panel(ticket) -> dict:
	"""The side panel: the customer, their Contact, and their other tickets the user may see."""
	others = []
	if ticket.raised_by:
		others = frappe.get_list(
			"Ticket",
			filters={"raised_by": ticket.raised_by, "name": ("!=", ticket.name)},
			fields=["name", "subject", "status", "modified"],
			order_by="modified desc",
			limit_page_length=OTHER_TICKETS,
		)
	return {
		"name": ticket.customer_name or "",
		"email": ticket.raised_by or "",
		"contact": ticket.contact,
		"tickets": others,
		"more": len(others) == OTHER_TICKETS,  # the panel links to the whole list
	}


def folded_messages(ticket: str) -> dict[str, str]:
	"""For each received message whose text quotes older mail or ends in a signature: its new part.

	Keyed by Communication; the value is the new part as HTML-escaped text. The
	timeline shows it with a "Show quoted text" toggle for the whole message.
	"""
	rows = frappe.get_all(
		"Communication",
		filters={
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"communication_type": "Communication",
			"sent_or_received": "Received",
		},
		fields=["name", "text_content"],
		order_by="communication_date desc",
		limit_page_length=FOLD_LIMIT,
	)
	folded = {}
	for row in rows:
		text = (row.text_content or "").strip()
		if not text:
			continue
		new = extract_reply(text)
		if new and len(new) < len(text.replace("\r\n", "\n")) - 1:
			folded[row.name] = frappe.utils.escape_html(new).replace("\n", "<br>")
	return folded
