"""Benchmark: what failing messages cost a filing batch, side by side in one run.

Three runs over the same N stored messages (real-world corpus bodies with
fresh headers, as benchmarks/ingest.py builds them), each filed by
``ingest.process_batch`` in chunks of 100, the code path of the poll job:

* ``clean``: no message fails;
* ``failing``: every second message fails (a site rule in Ticket.validate
  rejects it, as another app's hook would), with this code: one concise Error Log,
  the batch's lookups restored to what they were before the failed message;
* ``failing, old``: the same failures handled as before: ``frappe.log_error``
  with every frame's locals, and the batch's lookups cleared after each one.

Prints messages/s, Error Log size per failure and SQL statements per message.
Run from the bench's ``sites`` folder with the bench's Python::

    cd /work/benches/v15/sites
    ../env/bin/python /work/main/benchmarks/failure_cost.py --site ef15.localhost --messages 600

Not a timed test: it prints figures. What it creates is deleted again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import corpus_files, messages  # benchmarks/ingest.py: the same corpus

CHUNK = 100


def reject_marked(doc, method=None):
	"""The site rule: a ticket whose subject says FAIL is refused."""
	import frappe

	if "FAIL" in (doc.subject or ""):
		frappe.throw("Rejected by a site rule")


def run(frappe, label: str, queue: str, raws: list[bytes], old_way: bool) -> dict:
	from email_flow_app.email_flow.services import ingest, settings, store

	names = []
	for i, raw in enumerate(raws):
		name, _created = store.store_inbound(queue=queue, raw=raw, key=f"bench:{label}:{i}:{time.time()}")
		names.append(name)
	frappe.db.commit()
	saved = ingest._log_failure, ingest._restore_batch_state
	if old_way:

		def log_failure(name, reason):
			frappe.log_error(
				title=f"Email Flow: could not process {name}",
				reference_doctype="Inbound Email",
				reference_name=name,
			)

		def restore(_snapshot):
			for key in ingest.BATCH_STATE:
				settings.run_state(key).clear()

		ingest._log_failure, ingest._restore_batch_state = log_failure, restore
	queries = [0]
	from frappe.database.database import Database

	original_sql = Database.sql

	def counting(db, *args, **kwargs):
		queries[0] += 1
		return original_sql(db, *args, **kwargs)

	Database.sql = counting
	started = time.perf_counter()
	try:
		for start in range(0, len(names), CHUNK):
			ingest.process_batch([(name, None) for name in names[start : start + CHUNK]])
			frappe.db.commit()
			ingest.release_locks()
	finally:
		elapsed = time.perf_counter() - started
		Database.sql = original_sql
		ingest._log_failure, ingest._restore_batch_state = saved
	statuses = frappe.get_all(
		"Inbound Email",
		filters={"name": ("in", names)},
		fields=["status", "count(*) as n"],
		group_by="status",
		as_list=True,
	)
	reasons = frappe.get_all(
		"Inbound Email",
		filters={"name": ("in", names), "status": "Failed"},
		fields=["reason", "count(*) as n"],
		group_by="reason",
		order_by="n desc",
		limit=3,
		as_list=True,
	)
	logs = frappe.get_all(
		"Error Log",
		filters={"reference_doctype": "Inbound Email", "reference_name": ("in", names)},
		pluck="error",
	)
	return {
		"label": label,
		"n": len(names),
		"seconds": elapsed,
		"rate": len(names) / elapsed,
		"statuses": dict(statuses),
		"log_kb": (sum(len(e or "") for e in logs) / len(logs) / 1024) if logs else 0.0,
		"queries_per_msg": queries[0] / len(names),
		"names": names,
		"reasons": reasons,
	}


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	parser.add_argument("--site", required=True)
	parser.add_argument("--messages", type=int, default=600)
	args = parser.parse_args()

	import frappe

	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	from email_flow_app.email_flow.services.retention import removing_raw_mail

	tag = frappe.generate_hash(length=6).lower()
	address = f"bench-{tag}@example.test"
	queue = frappe.get_doc(
		{
			"doctype": "Incoming Email Queue",
			"queue_name": f"Failure bench {tag}",
			"color": "#888888",
			"channel_type": "Forwarding",
			"email_address": address,
			"creation_address": address,
			"send_acknowledgement": 0,
		}
	).insert(ignore_permissions=True)
	# A site rule that rejects some tickets (as another app's validate hook would), in this process.
	from email_flow_app.email_flow.doctype.ticket.ticket import Ticket

	validate = Ticket.validate

	def validate_with_rule(doc):
		reject_marked(doc)
		validate(doc)

	Ticket.validate = validate_with_rule
	frappe.db.commit()
	templates = [p.read_bytes() for p in corpus_files()]
	n = args.messages
	results = []
	try:
		for label, fail, old_way in (
			("warm-up", False, False),  # caches and connections, not reported
			("clean", False, False),
			("failing", True, False),
			("failing, old", True, True),
		):
			raws = []
			count = 50 if label == "warm-up" else n
			side = label.replace(", ", "-")
			for i, raw in enumerate(messages(templates, side, tag, count, address)):
				subject = f"Subject: {'FAIL ' if fail and i % 2 else ''}case {i}\r\n".encode()
				raws.append(_with_subject(raw, subject))
			results.append(run(frappe, label, queue.name, raws, old_way))
	finally:
		frappe.db.rollback()
		for result in results:
			names = result["names"]
			tickets = frappe.get_all("Inbound Email", filters={"name": ("in", names)}, pluck="ticket")
			for ticket in filter(None, tickets):
				for doctype in ("Communication", "Comment", "ToDo"):
					frappe.db.delete(doctype, {"reference_name": ticket})
				frappe.delete_doc("Ticket", ticket, force=True, ignore_permissions=True)
			frappe.db.delete("Error Log", {"reference_name": ("in", names)})
			with removing_raw_mail():
				for name in names:
					frappe.delete_doc("Inbound Email", name, force=True, ignore_permissions=True)
		frappe.delete_doc("Incoming Email Queue", queue.name, force=True, ignore_permissions=True)
		frappe.db.commit()

	print(f"\nfiling {n} messages per run, chunks of {CHUNK} (process_batch, commit per chunk)\n")
	print(f"{'run':<14} {'msg/s':>7} {'seconds':>8} {'SQL/msg':>8} {'Error Log KB':>13}  statuses")
	for r in results[1:]:
		print(
			f"{r['label']:<14} {r['rate']:>7.1f} {r['seconds']:>8.1f} {r['queries_per_msg']:>8.1f} "
			f"{r['log_kb']:>13.1f}  {r['statuses']}"
		)
		for reason, count in r["reasons"]:
			print(f"{'':<14} {count:>5} x {reason[:100]}")


def _with_subject(raw: bytes, subject: bytes) -> bytes:
	"""`raw` with its Subject header replaced by `subject` (one line, CRLF)."""
	head, sep, rest = raw.partition(b"\r\n\r\n")
	if not sep:
		head, sep, rest = raw.partition(b"\n\n")
	lines = head.splitlines(keepends=True)
	kept, skipping = [], False
	for line in lines:
		if line[:1] in (b" ", b"\t") and skipping:
			continue
		skipping = line.lower().startswith(b"subject:")
		if not skipping:
			kept.append(line)
	return subject + b"".join(kept) + sep + rest


if __name__ == "__main__":
	main()
