"""Benchmark: what one per-minute tick costs with N idle queues, before and after issue 14, in one run.

One Dovecot (IMAPS, a test CA) with N users, N healthy Incoming Email Queues
with empty inboxes, one real `bench worker --queue long` on RQ queues of the run only (persistent, as in
production). Per mode, one tick:

* ``before``: the old tick: one poll_queue job per queue (each forks a work horse);
* ``after``: the tick as the scheduler runs it now: ONE every_minute job,
  which probes every queue (login + STATUS) and queues nothing for idle ones.

Prints worker CPU seconds per tick (the worker and its forked horses, from
/proc, plus the old tick's own CPU in this process), SQL statements per tick
(the same code run in this process with a counter on frappe.db.sql) and IMAP
logins per tick (= per minute; Dovecot's log). Run from the bench's sites folder:

    cd /work/benches/v15/sites
    ../env/bin/python /work/main/benchmarks/idle_cost.py --site ef15.localhost --queues 50 150

Not a timed test. What it creates is deleted again.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import OwnQueues  # benchmarks/latency.py: RQ queues of this run only

WORKER_SETTLE = 0.5


def cpu_of(pid: int) -> float:
	"""utime + stime of `pid` and its waited-for children (work horses), seconds."""
	fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
	ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
	return ticks / os.sysconf("SC_CLK_TCK")


def descendants_cpu(pid: int) -> float:
	total = cpu_of(pid)
	for entry in os.listdir("/proc"):
		if entry.isdigit():
			try:
				stat = open(f"/proc/{entry}/stat").read()
			except OSError:
				continue
			if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
				total += descendants_cpu(int(entry))
	return total


def wait_until_drained(frappe, timeout: float = 600) -> None:
	from frappe.utils.background_jobs import get_queue

	queue = get_queue("long")
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if queue.count == 0 and queue.started_job_registry.count == 0:
			time.sleep(WORKER_SETTLE)
			if queue.count == 0 and queue.started_job_registry.count == 0:
				return
		time.sleep(0.1)
	raise TimeoutError("the worker did not drain the long queue")


def old_enqueue_polls(frappe, names: list[str]) -> None:
	"""The tick before issue 14: one poll job per queue."""
	from email_flow_app.email_flow.services.tick import enqueue_poll

	for name in names:
		enqueue_poll(name)


class SQLCounter:
	def __init__(self, frappe):
		self.frappe = frappe
		self.count = 0

	def __enter__(self):
		db = self.frappe.db
		self.original = db.sql

		def counted(*args, **kwargs):
			self.count += 1
			return self.original(*args, **kwargs)

		db.sql = counted
		return self

	def __exit__(self, *exc):
		self.frappe.db.sql = self.original


def logins(dovecot) -> int:
	try:
		return dovecot.log_path.read_text(errors="replace").count("Login: user=")
	except FileNotFoundError:
		return 0


def measure(frappe, dovecot, worker_pid: int, names: list[str], mode: str, profile: bool = False) -> dict:
	from email_flow_app.email_flow.services import polling, tick

	wait_until_drained(frappe)
	logins_before = logins(dovecot)
	cpu_before = descendants_cpu(worker_pid)
	own_before = time.process_time()
	if mode == "before":
		old_enqueue_polls(frappe, names)
	else:
		frappe.enqueue("email_flow_app.email_flow.services.tick.every_minute", queue="long")
	frappe.db.commit()
	own = time.process_time() - own_before
	wait_until_drained(frappe)
	worker = descendants_cpu(worker_pid) - cpu_before
	imap_logins = logins(dovecot) - logins_before
	# SQL: the same tick's code in this process, counted.
	with SQLCounter(frappe) as counter:
		if mode == "before":
			for name in names:
				polling.poll_queue(name)
		elif profile:
			import cProfile
			import pstats

			profiler = cProfile.Profile()
			profiler.runcall(tick.every_minute)
			pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
		else:
			tick.every_minute()
	frappe.db.commit()
	wait_until_drained(frappe)
	return {"cpu": worker + own, "sql": counter.count, "logins": imap_logins}


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	parser.add_argument("--site", required=True)
	parser.add_argument("--queues", type=int, nargs="+", default=[50, 150])
	parser.add_argument("--modes", nargs="+", choices=("before", "after"), default=["before", "after"])
	parser.add_argument("--repeats", type=int, default=3, help="ticks per 'after' figure (median)")
	parser.add_argument("--profile", action="store_true", help="print where the 'after' tick spends CPU")
	args = parser.parse_args()

	import frappe
	from frappe.installer import update_site_config

	from email_flow_app.testing.dovecot import DovecotServer
	from email_flow_app.testing.tls import TestCA

	frappe.init(site=args.site)
	frappe.connect()
	tag = frappe.generate_hash(length=6).lower()
	most = max(args.queues)
	users = {f"idle{i}-{tag}@example.test": "pw" for i in range(most)}
	ca = TestCA()
	dovecot = DovecotServer(users=users, ca=ca)
	dovecot.start()
	update_site_config("email_flow_ca_bundle", str(ca.bundle_path))
	frappe.local.conf.email_flow_ca_bundle = str(ca.bundle_path)
	# The worker serves this run's queues only: other sites' jobs on the bench do not
	# land in its CPU figures.
	own = OwnQueues(frappe, tag).__enter__()
	worker = subprocess.Popen(
		[sys.executable, "-m", "frappe.utils.bench_helper", "frappe", "worker", "--queue", "long"],
		stdout=subprocess.DEVNULL,
		stderr=subprocess.DEVNULL,
		start_new_session=True,
		cwd=own.worker_sites,
	)
	names: list[str] = []
	try:
		for i, user in enumerate(users):
			dovecot.create_folder(user, "INBOX")
			doc = frappe.get_doc(
				{
					"doctype": "Incoming Email Queue",
					"queue_name": f"Idle {i:03d} {tag}",
					"color": "#2490ef",
					"channel_type": "IMAP",
					"email_address": user,
					"host": "127.0.0.1",
					"port": dovecot.imaps_port,
					"security": "SSL",
					"username": user,
					"password": "pw",
					"enabled": 0,
				}
			).insert(ignore_permissions=True)
			frappe.db.set_value(doc.doctype, doc.name, "status", "Active", update_modified=False)
			names.append(doc.name)
		frappe.db.commit()
		time.sleep(3)  # the worker is up
		print(f"{'queues':>7} {'mode':>7} {'worker CPU s/tick':>18} {'SQL/tick':>9} {'IMAP logins/min':>16}")
		for count in sorted(args.queues):
			enabled = names[:count]
			frappe.db.sql(
				"update `tabIncoming Email Queue` set enabled=(name in %s) where queue_name like %s",
				(tuple(enabled), f"% {tag}"),
			)
			frappe.db.commit()
			for mode in args.modes:
				# "after" is a second or two of CPU on a shared machine: the median of a few ticks.
				runs = [
					measure(frappe, dovecot, worker.pid, enabled, mode, args.profile)
					for _ in range(args.repeats if mode == "after" else 1)
				]
				result = sorted(runs, key=lambda r: r["cpu"])[len(runs) // 2]
				print(
					f"{count:>7} {mode:>7} {result['cpu']:>18.2f} {result['sql']:>9} {result['logins']:>16}"
				)
			sys.stdout.flush()
		print("(other enabled queues of this site count in 'after' too)")
	finally:
		os.killpg(worker.pid, 15)
		worker.wait()
		own.__exit__()
		frappe.db.rollback()
		for name in names:
			frappe.delete_doc("Incoming Email Queue", name, force=True, ignore_permissions=True)
		frappe.db.commit()
		update_site_config("email_flow_ca_bundle", None)
		dovecot.stop()
		frappe.destroy()


if __name__ == "__main__":
	main()
