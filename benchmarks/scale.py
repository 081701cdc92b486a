"""Benchmark: Email Flow at 100k tickets, side by side with a near-empty site, in one run.

What it measures (issue 14, "Scale, at 100k tickets"):

1. Ingest: N stored messages (real-world corpus bodies with fresh headers, as
   benchmarks/ingest.py builds them; a third of them from senders who already
   have tickets) filed by ``ingest.process_batch`` in chunks of 100, the poll
   job's code path: once on the site as it is (few tickets), then after 100,000
   tickets with one Communication each were added, then again at 100k with the
   (raised_by, creation) index dropped, to show what it is for. Target: at 100k
   <= 1.2x the near-empty time.
2. The Desk's calls, as a restricted Support Agent (not an agent of one
   restricted queue) and as a Support Manager, at 100k: the list
   (``frappe.desk.reportview.get``, status filter, 20 rows by modified), the
   count with a status filter (``frappe.client.get_count``, through the app's
   override) and a report view (``reportview.get`` grouped by queue with a
   count). Median of repeated calls. Target: agent <= 2x manager.

Run it on a site of its own (it adds 100k tickets, and removes them again):

    cd /work/benches/v15/sites
    ../env/bin/python /work/main/benchmarks/scale.py --site efscale.localhost

Not a timed test: it prints figures.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import corpus_files, messages  # benchmarks/ingest.py: the same corpus

CHUNK = 100
ROWS_PER_INSERT = 2000
STATUSES = ("Open", "Replied", "Pending", "Resolved", "Closed")
STATUS_WEIGHTS = (10, 10, 5, 25, 50)
SENDERS = 20_000
QUEUES = 8


def ingest(frappe, queue: str, raws: list[bytes], label: str) -> dict:
	from email_flow_app.email_flow.services import ingest as pipeline
	from email_flow_app.email_flow.services import store

	names = []
	for i, raw in enumerate(raws):
		name, _created = store.store_inbound(queue=queue, raw=raw, key=f"scale:{label}:{i}:{time.time()}")
		names.append(name)
	frappe.db.commit()
	started = time.perf_counter()
	for start in range(0, len(names), CHUNK):
		pipeline.process_batch([(name, None) for name in names[start : start + CHUNK]])
		frappe.db.commit()
		pipeline.release_locks()
	elapsed = time.perf_counter() - started
	statuses = dict(
		frappe.get_all(
			"Inbound Email",
			filters={"name": ("in", names)},
			fields=["status", "count(*) as n"],
			group_by="status",
			as_list=True,
		)
	)
	return {"label": label, "seconds": elapsed, "rate": len(names) / elapsed, "statuses": statuses}


def add_tickets(frappe, tag: str, queues: list[str], count: int) -> float:
	"""`count` tickets (one Communication each) spread over a year, the queues, statuses and senders."""
	from frappe.utils import add_to_date, now_datetime

	rng = random.Random(42)
	now = now_datetime()
	started = time.perf_counter()
	ticket_columns = (
		"name, creation, modified, modified_by, owner, docstatus, idx, subject, raised_by, "
		"customer_name, status, priority, email_queue, needs_reply, is_overdue, last_customer_message_on"
	)
	comm_columns = (
		"name, creation, modified, modified_by, owner, docstatus, idx, subject, communication_type, "
		"communication_medium, sent_or_received, sender, content, message_id, reference_doctype, "
		"reference_name, communication_date, status"
	)
	for first in range(0, count, ROWS_PER_INSERT):
		tickets, comms = [], []
		for i in range(first, min(first + ROWS_PER_INSERT, count)):
			when = add_to_date(now, minutes=-rng.randint(1, 365 * 24 * 60))
			sender = f"customer{rng.randint(1, SENDERS)}-{tag}@scale.test"
			status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
			name = f"SCALE-{tag}-{i:06d}"
			queue = queues[i % len(queues)]
			needs = 1 if status == "Open" else 0
			tickets.append(
				(
					name,
					when,
					when,
					"Administrator",
					"Administrator",
					0,
					0,
					f"Case {i}",
					sender,
					f"Customer {i % SENDERS}",
					status,
					"Medium",
					queue,
					needs,
					0,
					when,
				)
			)
			comms.append(
				(
					f"SCALE-C-{tag}-{i:06d}",
					when,
					when,
					"Administrator",
					"Administrator",
					0,
					0,
					f"Case {i}",
					"Communication",
					"Email",
					"Received",
					sender,
					"<p>Hello</p>",
					f"scale-{i}-{tag}@customer.test",
					"Ticket",
					name,
					when,
					"Linked",
				)
			)
		frappe.db.sql(
			f"insert into `tabTicket` ({ticket_columns}) values {_placeholders(tickets)}",
			[value for row in tickets for value in row],
		)
		frappe.db.sql(
			f"insert into `tabCommunication` ({comm_columns}) values {_placeholders(comms)}",
			[value for row in comms for value in row],
		)
		frappe.db.commit()
	return time.perf_counter() - started


def _placeholders(rows: list[tuple]) -> str:
	one = "(" + ", ".join(["%s"] * len(rows[0])) + ")"
	return ", ".join([one] * len(rows))


def desk_calls(frappe, user: str, repeats: int) -> dict[str, float]:
	"""Median milliseconds of the Desk's list, count and report calls as `user`."""
	from frappe.desk import reportview

	from email_flow_app.email_flow import permissions

	frappe.set_user(user)
	calls = {
		"list": lambda: reportview.execute(
			"Ticket",
			fields=["`tabTicket`.`name`", "`tabTicket`.`subject`", "`tabTicket`.`status`"],
			filters=[["Ticket", "status", "=", "Open"]],
			order_by="`tabTicket`.`modified` desc",
			limit_page_length=20,
		),
		"count": lambda: permissions.get_count("Ticket", filters=[["Ticket", "status", "=", "Open"]]),
		"report": lambda: reportview.execute(
			"Ticket",
			fields=["`tabTicket`.`email_queue`", "count(*) as n"],
			filters=[["Ticket", "status", "in", ["Open", "Replied", "Pending"]]],
			group_by="`tabTicket`.`email_queue`",
			order_by="n desc",
		),
	}
	out = {}
	try:
		for label, call in calls.items():
			call()  # warm caches (meta, permissions)
			times = []
			for _ in range(repeats):
				started = time.perf_counter()
				call()
				times.append((time.perf_counter() - started) * 1000)
			out[label] = statistics.median(times)
	finally:
		frappe.set_user("Administrator")
	return out


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	parser.add_argument("--site", required=True)
	parser.add_argument("--messages", type=int, default=1000)
	parser.add_argument("--tickets", type=int, default=100_000)
	parser.add_argument("--repeats", type=int, default=15)
	args = parser.parse_args()

	import frappe

	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")

	tag = frappe.generate_hash(length=6).lower()
	state: dict = {"tag": tag, "queues": [], "users": [], "inbound": []}
	try:
		run(frappe, args, state)
	finally:
		cleanup(frappe, state)


def run(frappe, args, state: dict) -> None:
	tag = state["tag"]
	agent = _user(frappe, f"scale-agent-{tag}@example.test", "Support Agent")
	manager = _user(frappe, f"scale-manager-{tag}@example.test", "Support Manager")
	other = _user(frappe, f"scale-other-{tag}@example.test", "Support Agent")
	state["users"] += [agent, manager, other]
	for i in range(QUEUES):
		address = f"scale{i}-{tag}@example.test"
		restricted = i == QUEUES - 1  # one restricted queue the agent is not part of
		queue = frappe.get_doc(
			{
				"doctype": "Incoming Email Queue",
				"queue_name": f"Scale {i} {tag}",
				"channel_type": "Forwarding",
				"email_address": address,
				"creation_address": address,
				"send_acknowledgement": 0,
				"restrict_to_agents": 1 if restricted else 0,
				"assign_to": [{"user": other}] if restricted else [],
			}
		).insert(ignore_permissions=True)
		state["queues"].append(queue.name)
	frappe.db.commit()
	queue, address = state["queues"][0], f"scale0-{tag}@example.test"
	templates = [p.read_bytes() for p in corpus_files()]
	n = args.messages

	def batch(side: str) -> list[bytes]:
		raws = list(messages(templates, side, tag, n, address))
		# A third from senders who already have (many) tickets: the rate cap's per-sender count.
		return [
			_with_sender(raw, f"customer{(i * 7) % SENDERS + 1}-{tag}@scale.test") if i % 3 == 0 else raw
			for i, raw in enumerate(raws)
		]

	ingest(frappe, queue, batch("warm"), "warm-up")  # caches, connections, Contacts of the corpus
	results = [ingest(frappe, queue, batch("empty"), f"near-empty ({_tickets(frappe)} tickets)")]
	baseline_calls = {
		"agent": desk_calls(frappe, agent, args.repeats),
		"manager": desk_calls(frappe, manager, args.repeats),
	}
	fill = add_tickets(frappe, tag, state["queues"], args.tickets)
	print(f"added {args.tickets} tickets and Communications in {fill:.1f} s")
	frappe.db.sql("analyze table `tabTicket`, `tabCommunication`")
	results.append(
		ingest(frappe, queue, batch("full"), f"{args.tickets // 1000}k ({_tickets(frappe)} tickets)")
	)
	index = "raised_by_creation_index"
	has_index = frappe.db.sql(f"show index from `tabTicket` where Key_name = '{index}'")
	if has_index:
		frappe.db.sql_ddl(f"alter table `tabTicket` drop index `{index}`")
		try:
			results.append(
				ingest(
					frappe,
					queue,
					batch("noindex"),
					f"{args.tickets // 1000}k, no (raised_by, creation) index",
				)
			)
		finally:
			frappe.db.sql_ddl(f"alter table `tabTicket` add index `{index}` (`raised_by`, `creation`)")
	calls = {
		"agent": desk_calls(frappe, agent, args.repeats),
		"manager": desk_calls(frappe, manager, args.repeats),
	}

	print(f"\n1. filing {n} messages, chunks of {CHUNK} (process_batch, commit per chunk)\n")
	print(f"{'site':<42} {'seconds':>8} {'msg/s':>7} {'x near-empty':>13}  statuses")
	for r in results:
		ratio = r["seconds"] / results[0]["seconds"]
		print(f"{r['label']:<42} {r['seconds']:>8.1f} {r['rate']:>7.1f} {ratio:>13.2f}  {r['statuses']}")
	print(
		f"\n2. the Desk's calls, median of {args.repeats} (ms); agent = Support Agent outside one restricted queue\n"
	)
	print(
		f"{'call':<8} {'agent, few':>11} {'mgr, few':>9} {'agent, 100k':>12} {'mgr, 100k':>10} {'agent/mgr':>10}"
	)
	for label in ("list", "count", "report"):
		a, m = calls["agent"][label], calls["manager"][label]
		print(
			f"{label:<8} {baseline_calls['agent'][label]:>11.1f} {baseline_calls['manager'][label]:>9.1f} "
			f"{a:>12.1f} {m:>10.1f} {a / m:>10.2f}"
		)


def _tickets(frappe) -> int:
	return frappe.db.count("Ticket")


def _user(frappe, email: str, role: str) -> str:
	user = frappe.get_doc(
		{"doctype": "User", "email": email, "first_name": email.split("@")[0], "send_welcome_email": 0}
	).insert(ignore_permissions=True)
	user.add_roles(role)
	return user.name


def _with_sender(raw: bytes, address: str) -> bytes:
	head, sep, rest = raw.partition(b"\r\n\r\n")
	if not sep:
		head, sep, rest = raw.partition(b"\n\n")
	lines, skipping = [], False
	for line in head.splitlines(keepends=True):
		if line[:1] in (b" ", b"\t") and skipping:
			continue
		skipping = line.lower().startswith(b"from:")
		if not skipping:
			lines.append(line)
	return f"From: Returning Customer <{address}>\r\n".encode() + b"".join(lines) + sep + rest


def cleanup(frappe, state: dict) -> None:
	from email_flow_app.email_flow.services.retention import removing_raw_mail

	frappe.db.rollback()
	frappe.set_user("Administrator")
	tag = state["tag"]
	frappe.db.sql("delete from `tabCommunication` where name like %s", (f"SCALE-C-{tag}-%",))
	frappe.db.sql("delete from `tabTicket` where name like %s", (f"SCALE-{tag}-%",))
	queues = state["queues"]
	if queues:
		tickets = frappe.get_all("Ticket", filters={"email_queue": ("in", queues)}, pluck="name")
		inbound = frappe.get_all("Inbound Email", filters={"email_queue": ("in", queues)}, pluck="name")
		with removing_raw_mail():
			for chunk in range(0, len(tickets), 500):
				names = tickets[chunk : chunk + 500]
				for doctype in ("Communication", "Comment", "ToDo"):
					frappe.db.delete(doctype, {"reference_name": ("in", names)})
				frappe.db.delete("Ticket", {"name": ("in", names)})
			# Attachments and raw .eml files: each File document removes its file from disk.
			for chunk in range(0, len(tickets + inbound), 500):
				names = (tickets + inbound)[chunk : chunk + 500]
				for file in frappe.get_all("File", filters={"attached_to_name": ("in", names)}, pluck="name"):
					frappe.delete_doc("File", file, force=True, ignore_permissions=True)
			for chunk in range(0, len(inbound), 500):
				frappe.db.delete("Inbound Email", {"name": ("in", inbound[chunk : chunk + 500])})
		for name in queues:
			frappe.delete_doc("Incoming Email Queue", name, force=True, ignore_permissions=True)
	for user in state["users"]:
		frappe.delete_doc("User", user, force=True, ignore_permissions=True)
	frappe.db.commit()


if __name__ == "__main__":
	main()
