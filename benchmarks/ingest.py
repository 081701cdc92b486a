"""Benchmark: Frappe's Email Account vs an Email Flow Incoming Email Queue, one site, one Dovecot.

One run: start a Dovecot, build N messages from real-world mail (CPython's
email test data and the corpora of .ci/setup.d/20-mail-corpora.sh) with fresh
From/To/Message-ID/Date per copy, APPEND them to two mailboxes, then ingest

* the first with a Frappe Email Account (IMAP, INBOX appended to a scratch
  DocType with ``email_append_to``, sync UNSEEN): ``EmailAccount.receive()``
  in-process, back to back until a run finds nothing new;
* the second with an Incoming Email Queue: the scheduler entry point
  (``enqueue_polls``, the "tick") enqueues the RQ job, which an RQ
  ``SimpleWorker`` runs in the same process (Frappe's ``execute_job``, the
  code path of ``bench worker`` without its fork) until the queue is empty.

Each side runs in its own child process, so peak RSS (getrusage) is that
side's own. SQL statements are counted by wrapping ``Database.sql`` (the one
function every Frappe query, commit and savepoint goes through). Both
mailboxes use Dovecot's plaintext IMAP port: Frappe's imaplib cannot be
pointed at the test CA without replacing the process-wide trust store.

Run from the bench's ``sites`` folder with the bench's Python::

    cd /work/benches/perf/sites
    ../env/bin/python /work/main/benchmarks/ingest.py --site efperf.localhost --messages 1000

Not a timed test: it prints figures. Records it creates are deleted again
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path

CORPORA = Path(os.environ.get("EMAIL_FLOW_CORPORA", "/var/cache/email-flow/corpora"))
CPYTHON_DATA = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
CPYTHON_DATA = CPYTHON_DATA / "test" / "test_email" / "data"
PASSWORD = "bench-pw"
SCRATCH_DOCTYPE = "EF Bench Issue"
FRAPPE_INTERVAL_S = 600  # frappe/hooks.py: email_account.pull on "0/10 * * * *", 100 per folder per run
OUR_TICK_S = 60  # email_flow hooks: enqueue_polls every minute
REWRITTEN = {b"from", b"to", b"message-id", b"date", b"delivered-to", b"x-original-to", b"return-path"}


# -- corpus ------------------------------------------------------------------


def corpus_files() -> list[Path]:
	files = sorted(CPYTHON_DATA.glob("msg_*.txt"))
	if not files:
		files = sorted((CORPORA / "cpython-test-email").glob("msg_*.txt"))
	files += sorted(p for p in (CORPORA / "mail-parser").glob("mail_*") if p.is_file())
	files += sorted((CORPORA / "talon" / "standard_replies").glob("*.eml"))
	if not files:
		raise SystemExit(f"no corpus found under {CPYTHON_DATA} or {CORPORA}")
	return files


def _split(raw: bytes) -> tuple[list[bytes], bytes]:
	"""Header lines (continuations folded into their header) and the rest, separator included."""
	ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
	end = min(ends) if ends else len(raw)
	head, rest = raw[:end], raw[end:]
	headers: list[bytes] = []
	for line in head.splitlines(keepends=True):
		if line[:1] in (b" ", b"\t") and headers:
			headers[-1] += line
		else:
			headers.append(line)
	return headers, rest


def build_message(template: bytes, side: str, tag: str, i: int, to: str, customers: int) -> bytes:
	headers, rest = _split(template)
	kept = [h for h in headers if h.split(b":", 1)[0].strip().lower() not in REWRITTEN]
	customer = i % customers
	fresh = (
		f"From: Customer {customer} <customer{customer}@{side}-customers.test>\r\n"
		f"To: Support <{to}>\r\n"
		f"Message-ID: <efb-{tag}-{side}-{i}@{side}-customers.test>\r\n"
		f"Date: {formatdate(time.time() - 86400 + i, localtime=False)}\r\n"
	).encode()
	if not rest.strip():
		rest = b"\r\n\r\n(empty)\r\n"
	return fresh + b"".join(kept) + rest


def messages(templates: list[bytes], side: str, tag: str, n: int, to: str):
	customers = max(1, n // 5)  # five mails per customer: under the per-sender rate cap
	for i in range(n):
		yield build_message(templates[i % len(templates)], side, tag, i, to, customers)


# -- measuring ------------------------------------------------------------------


class Counter:
	"""Counts every statement through frappe's Database.sql (all connections of this process)."""

	def __init__(self):
		from frappe.database.database import Database

		self.queries = 0
		self.by_statement: dict[str, int] = {}
		log = bool(os.environ.get("EF_BENCH_QUERY_LOG"))
		original = Database.sql

		def sql(db, query, *args, **kwargs):
			self.queries += 1
			if log:
				key = " ".join(str(query).split())[:160]
				self.by_statement[key] = self.by_statement.get(key, 0) + 1
			return original(db, query, *args, **kwargs)

		Database.sql = sql


def peak_rss_mb() -> float:
	return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(values: list[float], q: float) -> float:
	if not values:
		return 0.0
	values = sorted(values)
	return values[min(len(values) - 1, int(q * len(values)))]


# -- the two sides (child processes) -------------------------------------------


def run_frappe_side(site: str, state: dict) -> dict:
	import frappe

	frappe.init(site=site, sites_path=".")
	frappe.connect()
	counter = Counter()
	from frappe.email.receive import InboundMail

	latencies: list[float] = []  # mail filed for the first time
	known: list[float] = []  # mail fetched again and found filed already (not counted as work)
	original = InboundMail.process

	def process(mail):
		started = time.perf_counter()
		try:
			return original(mail)
		finally:
			(latencies if mail.flags.is_new_communication else known).append(time.perf_counter() - started)

	InboundMail.process = process
	runs, processing, failed_runs = [], 0.0, 0
	while len(runs) < state["n"] // 50 + 10:
		before = len(latencies) + len(known)
		started = time.perf_counter()
		account = frappe.get_doc("Email Account", state["email_account"])
		try:
			account.receive()
		except Exception:
			failed_runs += 1  # receive() raises after the loop when any mail failed
		elapsed = time.perf_counter() - started
		got = len(latencies) + len(known) - before
		if not got:
			break
		runs.append(got)
		processing += elapsed
	frappe.db.commit()
	return {
		"runs": len(runs),
		"per_run": runs,
		"failed_runs": failed_runs,
		"processed": len(latencies),
		"refetched": len(known),
		"processing_s": processing - sum(known),
		"median_ms": statistics.median(latencies) * 1000 if latencies else 0,
		"p95_ms": _pct(latencies, 0.95) * 1000,
		"queries": counter.queries,
		"peak_rss_mb": peak_rss_mb(),
	}


def run_our_side(site: str, state: dict) -> dict:
	import frappe

	frappe.init(site=site, sites_path=".")
	frappe.connect()
	counter = Counter()
	from frappe.utils.background_jobs import get_queue_list, get_redis_conn
	from rq import SimpleWorker

	from email_flow_app.email_flow.services import polling, tick

	jobs: list[float] = []
	original = polling.poll_queue

	def poll_queue(*args, **kwargs):
		started = time.perf_counter()
		try:
			return original(*args, **kwargs)
		finally:
			jobs.append(time.perf_counter() - started)

	polling.poll_queue = poll_queue  # the job is looked up by this dotted path
	latencies: list[float] = []  # per message: each filing chunk's time over its size
	original_batch = polling.process_batch

	def process_batch(items, *args, **kwargs):
		started = time.perf_counter()
		try:
			return original_batch(items, *args, **kwargs)
		finally:
			latencies.extend([(time.perf_counter() - started) / max(len(items), 1)] * len(items))

	polling.process_batch = process_batch

	redis = get_redis_conn()
	queues = get_queue_list(["long"], build_queue_name=True)
	started = time.perf_counter()
	tick.enqueue_polls()  # the scheduler's tick
	frappe.db.commit()
	frappe.destroy()  # the worker's job sets up its own site context, like `bench worker`
	worker = SimpleWorker(queues, connection=redis)
	if state.get("profile"):
		import cProfile

		cProfile.runctx(
			'worker.work(burst=True, logging_level="WARNING")', globals(), locals(), state["profile"]
		)
	else:
		worker.work(burst=True, logging_level="WARNING")
	drained = time.perf_counter() - started
	if os.environ.get("EF_BENCH_CHUNK_LOG"):
		with open(os.environ["EF_BENCH_CHUNK_LOG"], "w") as out:
			out.writelines(f"{t * 1000:.1f}\n" for t in latencies)  # per message, chunk by chunk
	if counter.by_statement:
		with open(os.environ["EF_BENCH_QUERY_LOG"], "w") as out:
			for key, count in sorted(counter.by_statement.items(), key=lambda kv: -kv[1]):
				out.write(f"{count:7d} {key}\n")
	return {
		"jobs": len(jobs),
		"processing_s": sum(jobs),
		"drain_s": drained,
		"median_ms": statistics.median(latencies) * 1000 if latencies else 0,
		"p95_ms": _pct(latencies, 0.95) * 1000,
		"latency_what": "filing chunk / its size" if latencies else "",
		"queries": counter.queries,
		"peak_rss_mb": peak_rss_mb(),
	}


# -- setup, accounting, cleanup (parent) --------------------------------------------


def setup_records(frappe, dovecot, tag: str, users: dict[str, str]) -> dict:
	if not frappe.db.exists("DocType", SCRATCH_DOCTYPE):
		frappe.get_doc(
			{
				"doctype": "DocType",
				"name": SCRATCH_DOCTYPE,
				"module": "Custom",
				"custom": 1,
				"autoname": "hash",
				"email_append_to": 1,
				"subject_field": "subject",
				"sender_field": "raised_by",
				"fields": [
					{"fieldname": "subject", "label": "Subject", "fieldtype": "Data"},
					{"fieldname": "raised_by", "label": "Raised By", "fieldtype": "Data", "options": "Email"},
					{"fieldname": "status", "label": "Status", "fieldtype": "Data"},
				],
				"permissions": [{"role": "System Manager", "read": 1, "write": 1, "create": 1}],
			}
		).insert(ignore_permissions=True)
	account = frappe.get_doc(
		{
			"doctype": "Email Account",
			"email_account_name": f"Bench {tag}",
			"email_id": users["fr"],
			"login_id_is_different": 0,
			"password": PASSWORD,
			"enable_incoming": 1,
			"enable_outgoing": 0,
			"use_imap": 1,
			"email_server": "127.0.0.1",
			"incoming_port": dovecot.imap_port,
			"use_ssl": 0,
			"use_starttls": 0,
			"email_sync_option": "UNSEEN",
			"imap_folder": [{"folder_name": "INBOX", "append_to": SCRATCH_DOCTYPE}],
		}
	).insert(ignore_permissions=True)
	queue = frappe.get_doc(
		{
			"doctype": "Incoming Email Queue",
			"queue_name": f"Bench {tag}",
			"channel_type": "IMAP",
			"email_address": users["ef"],
			"host": "127.0.0.1",
			"port": dovecot.imap_port,
			"security": "Plain",
			"username": users["ef"],
			"password": PASSWORD,
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()
	return {"email_account": account.name, "queue": queue.name}


def account_frappe(frappe, state: dict, n: int, tag: str) -> dict:
	ids = frappe.db.sql(
		"""select message_id, count(*) from `tabCommunication`
		where email_account = %s and sent_or_received = 'Received' group by message_id""",
		state["email_account"],
	)
	ours = {f"efb-{tag}-fr-{i}@fr-customers.test" for i in range(n)}
	filed = {mid: count for mid, count in ids if mid in ours}
	unhandled = {
		(mid or "").strip(" <>")
		for mid in frappe.get_all(
			"Unhandled Email", {"email_account": state["email_account"]}, pluck="message_id"
		)
	}
	unhandled = len((unhandled & ours) - set(filed))
	docs = frappe.db.count(SCRATCH_DOCTYPE, {"raised_by": ("like", "%@fr-customers.test")})
	return {
		"filed": len(filed),
		"documents": docs,
		"quarantined": unhandled,
		"nowhere": n - len(filed) - unhandled,
		"duplicates": sum(c - 1 for c in filed.values()),
	}


def account_ours(frappe, state: dict, n: int) -> dict:
	by_status = dict(
		frappe.db.sql(
			"select status, count(*) from `tabInbound Email` where email_queue = %s group by status",
			state["queue"],
		)
	)
	accounted = frappe.db.sql(
		"""select count(*) from `tabInbound Email` i
		where i.email_queue = %s and (
			(i.status in ('Ticket Created', 'Appended') and exists (select 1 from `tabCommunication` c
				where c.name = i.communication and c.reference_doctype = 'Ticket'))
			or (i.status in ('Filtered', 'Failed') and ifnull(i.reason, '') != ''))""",
		state["queue"],
	)[0][0]
	tickets = frappe.db.count("Ticket", {"email_queue": state["queue"]})
	dup_comm = frappe.db.sql(
		"""select coalesce(sum(c - 1), 0) from (select count(*) c from `tabCommunication`
		where reference_doctype = 'Ticket' and message_id like %s and sent_or_received = 'Received'
		group by message_id having c > 1) d""",
		(f"efb-{state['tag']}-ef-%",),
	)[0][0]
	dup_tickets = frappe.db.sql(
		"""select coalesce(sum(c - 1), 0) from (select count(*) c from `tabTicket`
		where email_queue = %s group by message_id having c > 1) d""",
		state["queue"],
	)[0][0]
	return {
		"by_status": by_status,
		"tickets": tickets,
		"filed": by_status.get("Ticket Created", 0) + by_status.get("Appended", 0),
		"quarantined": by_status.get("Filtered", 0) + by_status.get("Failed", 0),
		"nowhere": n - accounted,
		"without_raw": frappe.db.count(
			"Inbound Email", {"email_queue": state["queue"], "raw_file": ("is", "not set")}
		),
		"duplicates": int(dup_comm) + int(dup_tickets),
	}


def cleanup(frappe, state: dict) -> None:
	"""Bulk delete what the run created (files from disk too)."""
	from frappe.utils import get_files_path

	tickets = frappe.get_all("Ticket", {"email_queue": state["queue"]}, pluck="name")
	inbound = frappe.get_all("Inbound Email", {"email_queue": state["queue"]}, pluck="name")
	docs = frappe.get_all(SCRATCH_DOCTYPE, {"raised_by": ("like", "%-customers.test")}, pluck="name")
	comms = frappe.get_all(
		"Communication",
		or_filters={"email_account": state["email_account"], "reference_name": ("in", tickets or [""])},
		pluck="name",
	)
	attached = tickets + inbound + docs + comms
	for chunk in range(0, len(attached), 1000):
		part = attached[chunk : chunk + 1000]
		for file_url, is_private in frappe.get_all(
			"File", {"attached_to_name": ("in", part)}, ["file_url", "is_private"], as_list=True
		):
			if file_url and "/files/" in file_url:
				path = get_files_path(file_url.rsplit("/", 1)[1], is_private=is_private)
				if os.path.exists(path):
					os.remove(path)
		frappe.db.delete("File", {"attached_to_name": ("in", part)})
		frappe.db.delete("Communication Link", {"parent": ("in", part)})
		frappe.db.delete("Comment", {"reference_name": ("in", part)})
		frappe.db.delete("ToDo", {"reference_name": ("in", part)})
	for doctype, names in (
		("Communication", comms),
		("Ticket", tickets),
		("Inbound Email", inbound),
		(SCRATCH_DOCTYPE, docs),
	):
		for chunk in range(0, len(names), 1000):
			frappe.db.delete(doctype, {"name": ("in", names[chunk : chunk + 1000])})
	contacts = frappe.get_all("Contact Email", {"email_id": ("like", "%-customers.test")}, pluck="parent")
	for chunk in range(0, len(contacts), 1000):
		frappe.db.delete("Contact", {"name": ("in", contacts[chunk : chunk + 1000])})
		frappe.db.delete("Contact Email", {"parent": ("in", contacts[chunk : chunk + 1000])})
		frappe.db.delete("Dynamic Link", {"parent": ("in", contacts[chunk : chunk + 1000])})
	frappe.db.delete("Unhandled Email", {"email_account": state["email_account"]})
	frappe.delete_doc("Email Account", state["email_account"], force=True, ignore_permissions=True)
	frappe.delete_doc("Incoming Email Queue", state["queue"], force=True, ignore_permissions=True)
	frappe.db.commit()


SKIPPED_FRAPPE = {
	"runs": 0,
	"per_run": [],
	"failed_runs": 0,
	"processed": 0,
	"refetched": 0,
	"processing_s": 0.0,
	"median_ms": 0,
	"p95_ms": 0,
	"queries": 0,
	"peak_rss_mb": 0,
}
SKIPPED_FRAPPE_ACCOUNT = {"filed": "", "documents": "", "quarantined": "", "nowhere": "", "duplicates": ""}


def child(side: str, site: str, state: dict) -> dict:
	env = dict(os.environ)
	if state.get("offline"):
		# Frappe's Contact.validate asks gravatar.com (requests, 5 s timeout) for every new
		# Contact; both sides create Contacts. Without internet that call fails at once or after
		# 5 s, at random: a closed local proxy port makes it fail at once on both sides.
		for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
			env[var] = "http://127.0.0.1:9"
		env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
	proc = subprocess.run(
		[sys.executable, __file__, "--site", site, "--child", side, "--state", json.dumps(state)],
		capture_output=True,
		text=True,
		env=env,
	)
	lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
	if proc.returncode or not lines:
		sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
		raise SystemExit(f"{side} side failed (exit {proc.returncode})")
	return json.loads(lines[-1][len("RESULT ") :])


def report(n: int, fr: dict, ef: dict, fr_acc: dict, ef_acc: dict, build_s: float) -> None:
	fr_rate = fr["processed"] / fr["processing_s"] if fr["processing_s"] else 0
	ef_rate = n / ef["processing_s"] if ef["processing_s"] else 0
	fr_sched = fr["runs"] * FRAPPE_INTERVAL_S
	rows = [
		("messages in mailbox", n, n),
		(
			"processing msgs/s",
			f"{fr_rate:.1f}",
			f"{ef_rate:.1f}  ({ef_rate / fr_rate:.1f}x)" if fr_rate else "",
		),
		("processing time s", f"{fr['processing_s']:.1f}", f"{ef['processing_s']:.1f}"),
		(
			"per message median / p95 ms",
			f"{fr['median_ms']:.0f} / {fr['p95_ms']:.0f}",
			f"{ef['median_ms']:.0f} / {ef['p95_ms']:.0f} ({ef['latency_what'] or 'n/a'})",
		),
		("runs (jobs) to drain", f"{fr['runs']} {fr['per_run']}", f"{ef['jobs']}"),
		("mail fetched again (known)", fr["refetched"], 0),
		(
			"drain, scheduled",
			f"{fr_sched / 60:.0f} min ({fr['runs']} x {FRAPPE_INTERVAL_S // 60} min)",
			f"{ef['drain_s']:.1f} s from the first tick",
		),
		("drain, back to back s", f"{fr['processing_s']:.1f}", f"{ef['drain_s']:.1f}"),
		("SQL statements per message", f"{fr['queries'] / n:.1f}", f"{ef['queries'] / n:.1f}"),
		("peak RSS MB (worker process)", f"{fr['peak_rss_mb']:.0f}", f"{ef['peak_rss_mb']:.0f}"),
		(
			"filed (ticket/doc or appended)",
			fr_acc["filed"],
			f"{ef_acc['filed']} ({ef_acc['tickets']} tickets)",
		),
		(
			"quarantined, visible w/ reason",
			f"{fr_acc['quarantined']} (Unhandled Email)",
			ef_acc["quarantined"],
		),
		("ended up nowhere", fr_acc["nowhere"], ef_acc["nowhere"]),
		("duplicates", fr_acc["duplicates"], ef_acc["duplicates"]),
		("Inbound Email without raw file", "", ef_acc["without_raw"]),
	]
	print(f"\nIngest benchmark: {n} messages per mailbox (built and appended in {build_s:.1f} s)")
	print(f"{'':32} {'Frappe Email Account':34} Email Flow queue")
	for label, a, b in rows:
		print(f"{label:32} {a!s:34} {b}")
	print(f"\nEmail Flow Inbound Email by status: {ef_acc['by_status']}")
	print(
		"Frappe msgs/s and latency: mail filed for the first time, over receive() time minus the time spent on "
		"mail it fetched again and found filed.\n"
		"Frappe: EmailAccount.receive() in-process, back to back; Email Flow: enqueue_polls() then the RQ job "
		"in an in-process rq.SimpleWorker (execute_job, as bench worker runs it, without the fork)."
	)


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	parser.add_argument("--site", required=True)
	parser.add_argument("--messages", type=int, default=1000)
	parser.add_argument("--keep", action="store_true", help="keep the records and mail store afterwards")
	parser.add_argument("--profile", help="write a cProfile of the Email Flow side to this file")
	parser.add_argument(
		"--offline",
		action="store_true",
		help="both sides: outbound HTTP(S) (gravatar lookups of new Contacts) fails at once",
	)
	parser.add_argument(
		"--ours-only", action="store_true", help="run only the Email Flow side (Frappe's column stays empty)"
	)
	parser.add_argument("--child", choices=("frappe", "ours"), help=argparse.SUPPRESS)
	parser.add_argument("--state", help=argparse.SUPPRESS)
	args = parser.parse_args()
	if args.child:
		run = run_frappe_side if args.child == "frappe" else run_our_side
		print("RESULT " + json.dumps(run(args.site, json.loads(args.state))))
		return

	import frappe

	from email_flow_app.testing.dovecot import DovecotServer
	from email_flow_app.testing.tls import TestCA

	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	tag = frappe.generate_hash(length=6).lower()
	users = {side: f"support-{side}-{tag}@example.test" for side in ("fr", "ef")}
	templates = [p.read_bytes() for p in corpus_files()]
	dovecot = DovecotServer(users={u: PASSWORD for u in users.values()}, ca=TestCA())
	dovecot.start()
	state = None
	try:
		started = time.perf_counter()
		for side, user in users.items():
			dovecot.append_many(user, "INBOX", messages(templates, side, tag, args.messages, user))
		build_s = time.perf_counter() - started
		print(
			f"{len(templates)} corpus messages; {args.messages} copies appended to {', '.join(users.values())}"
		)
		state = {**setup_records(frappe, dovecot, tag, users), "n": args.messages, "tag": tag}
		if args.profile:
			state["profile"] = os.path.abspath(args.profile)
		state["offline"] = args.offline
		frappe.db.commit()
		fr = SKIPPED_FRAPPE if args.ours_only else child("frappe", args.site, state)
		ef = child("ours", args.site, state)
		frappe.db.rollback()
		report(
			args.messages,
			fr,
			ef,
			SKIPPED_FRAPPE_ACCOUNT if args.ours_only else account_frappe(frappe, state, args.messages, tag),
			account_ours(frappe, state, args.messages),
			build_s,
		)
		if args.offline:
			print(
				"--offline: outbound HTTP(S) from both sides (gravatar lookups of new Contacts) failed at once."
			)
		if args.ours_only:
			print("Frappe's side was not run (--ours-only): its column is empty.")
	finally:
		if state and not args.keep:
			frappe.db.rollback()
			cleanup(frappe, state)
		if not args.keep:
			dovecot.stop()
		frappe.destroy()


if __name__ == "__main__":
	main()
