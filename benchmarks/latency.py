"""Benchmark: how long from a message's arrival to its Ticket, with the IDLE listener and with polling only.

One Dovecot (IMAPS, a test CA) and one Incoming Email Queue on a real site
(the site tests' MailWorld), and the bench's real processes, started here as
bench starts them (`python -m frappe.utils.bench_helper frappe ...`, which is
what `bench schedule`, `bench worker` and `bench email-flow listen` run):

* `bench schedule` and `bench worker` (persistent; one for all queues, as `bench
  start` runs it, or `--workers per-queue`: default, short and long, as the
  production supervisor config runs them), for both runs;
* run 1 ``listener``: `bench email-flow listen --only-site SITE` runs too;
* run 2 ``polling``: the listener is stopped (SIGTERM: its heartbeat goes at
  once), so only the per-minute tick finds the mail.

Per run, MESSAGES messages (each from a customer of its own: the per-sender
rate cap is not what is measured) are APPENDed at random moments over DURATION
seconds. Arrival is the moment the APPEND completed; the Ticket's time is its
`creation` (found by Message-ID, polled from the DB every 0.2 s). Prints p50,
p95 (nearest rank) and max of arrival -> ticket per run, side by side. Run
from the bench's sites folder, on a site of your own whose scheduler is on
and with no other `bench schedule` running (the one started here enqueues the
scheduled jobs of every site of the bench whose scheduler is on):

    cd /work/benches/v15/sites
    ../env/bin/python /work/main/benchmarks/latency.py --site ef14.localhost
    ../env/bin/python /work/main/benchmarks/latency.py --site ef14.localhost --duration 30 --messages 5

RQ queues are per bench, not per site: a worker started here would run other
sites' jobs, and their workers this site's. So by default the run gets queues
of its own: the site's config names a bench_id of its own for the run (the
scheduler, the listener and this script enqueue in the site's context), and
the worker runs from a scratch sites folder whose common config names the same
bench_id (the site linked in). `--shared-queues` uses the bench's queues as is.

Not a timed test. What it creates is deleted again (the bench_id too); every
process it starts is stopped again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DB_POLL = 0.2  # seconds between looks for new tickets
POLLING_WAIT = 150.0  # after the last APPEND: one missed tick (60 s) + a slow second one + the poll
LISTENER_WAIT = 60.0
WATCH_TIMEOUT = 60.0  # the listener holds IDLE on the queue by then


def percentile(values: list[float], q: float) -> float:
	"""Nearest rank: the smallest value with at least q of the values at or below it."""
	ordered = sorted(values)
	return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Processes:
	"""The bench processes this benchmark starts; each in its own session, stopped with its children."""

	def __init__(self, sites_path: str, log_dir: str) -> None:
		self.sites_path = sites_path
		self.log_dir = log_dir
		self.procs: dict[str, subprocess.Popen] = {}

	def start(self, name: str, *args: str, cwd: str | None = None) -> subprocess.Popen:
		command = [sys.executable, "-m", "frappe.utils.bench_helper", "frappe", *args]
		with open(os.path.join(self.log_dir, f"email_flow_latency_{name}.log"), "ab") as log:
			proc = subprocess.Popen(
				command,
				cwd=cwd or self.sites_path,
				stdout=log,
				stderr=subprocess.STDOUT,
				start_new_session=True,
			)
		self.procs[name] = proc
		return proc

	def stop(self, name: str, timeout: float = 40) -> None:
		import psutil

		proc = self.procs.pop(name, None)
		if proc is None or proc.poll() is not None:
			return
		try:  # RQ's work horses run in sessions of their own: collect them first
			children = psutil.Process(proc.pid).children(recursive=True)
		except psutil.NoSuchProcess:
			children = []
		os.killpg(proc.pid, signal.SIGTERM)  # what supervisor sends
		try:
			proc.wait(timeout)
		except subprocess.TimeoutExpired:
			os.killpg(proc.pid, signal.SIGKILL)
			proc.wait()
		for child in children:
			try:
				child.kill()
			except psutil.NoSuchProcess:
				pass

	def stop_all(self) -> None:
		for name in list(self.procs):
			self.stop(name)


def epoch_of(frappe, creation) -> float:
	"""A Frappe datetime (naive, in the system time zone) as a Unix time."""
	from zoneinfo import ZoneInfo

	from frappe.utils import get_datetime, get_system_timezone

	return get_datetime(creation).replace(tzinfo=ZoneInfo(get_system_timezone())).timestamp()


def wait_for(frappe, condition, timeout: float) -> bool:
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		frappe.db.rollback()  # a fresh snapshot: other processes commit
		frappe.local.cache = {}
		if condition():
			return True
		time.sleep(DB_POLL)
	return False


class Run:
	"""APPEND messages at random moments; record when each became a Ticket."""

	def __init__(self, frappe, world, mode: str, duration: float, count: int, rng: random.Random):
		self.frappe = frappe
		self.world = world
		self.mode = mode
		self.moments = sorted(rng.uniform(0, duration) for _ in range(count))
		self.arrived: dict[str, float] = {}  # Message-ID -> APPEND completed (Unix time)
		self.created: dict[str, float] = {}  # Message-ID -> Ticket.creation (Unix time)
		self.seen: dict[str, float] = {}  # Message-ID -> first seen committed here

	def append(self, index: int) -> None:
		from email_flow_app.email_flow.tests.utils import customer_email

		# A customer each: one sender's 40 messages within the hour would meet the per-sender rate cap.
		sender = (f"Customer {index}", f"c{index}-{self.mode}-{self.world.tag}@customer.test")
		msg = customer_email(
			self.world.support, subject=f"Latency {self.mode} {index:02d} {self.world.tag}", sender=sender
		)
		raw = msg.as_bytes()  # a fresh Message-ID each
		client = self.world.dovecot.client(self.world.support)
		try:
			client.append("INBOX", raw)
			self.arrived[str(msg["Message-ID"]).strip("<>")] = time.time()
		finally:
			client.logout()

	def look(self) -> None:
		waiting = [mid for mid in self.arrived if mid not in self.created]
		if not waiting:
			return
		self.frappe.db.rollback()
		now = time.time()
		for row in self.frappe.get_all(
			"Ticket",
			filters={"message_id": ("in", waiting), "email_queue": self.world.queue.name},
			fields=["message_id", "creation"],
		):
			self.created[row.message_id] = epoch_of(self.frappe, row.creation)
			self.seen[row.message_id] = now

	def execute(self, wait_after: float) -> None:
		start = time.monotonic()
		pending = list(enumerate(self.moments))
		while pending:
			index, moment = pending[0]
			if time.monotonic() - start >= moment:
				pending.pop(0)
				self.append(index)
				continue
			self.look()
			time.sleep(min(DB_POLL, max(0.0, moment - (time.monotonic() - start))))
		deadline = time.monotonic() + wait_after
		while len(self.created) < len(self.arrived) and time.monotonic() < deadline:
			self.look()
			time.sleep(DB_POLL)
		self.look()

	def figures(self) -> dict:
		latencies = [self.created[mid] - at for mid, at in self.arrived.items() if mid in self.created]
		visible = [self.seen[mid] - at for mid, at in self.arrived.items() if mid in self.seen]
		result = {"sent": len(self.arrived), "tickets": len(latencies)}
		for label, values in (("", latencies), ("seen_", visible)):
			if values:
				result[f"{label}p50"] = percentile(values, 0.50)
				result[f"{label}p95"] = percentile(values, 0.95)
				result[f"{label}max"] = max(values)
		return result


class OwnQueues:
	"""RQ queues for this run only: a bench_id of its own in the site's config and a worker's sites folder."""

	def __init__(self, frappe, tag: str) -> None:
		from frappe.utils import get_bench_id

		self.frappe = frappe
		self.bench_id = f"{get_bench_id()}-latency-{tag}"
		# A scratch bench root: sites/ of its own; logs, config, apps and env are the bench's.
		self.root = tempfile.mkdtemp(prefix="ef-latency-bench-")
		self.worker_sites = os.path.join(self.root, "sites")

	def __enter__(self) -> OwnQueues:
		from frappe.installer import update_site_config

		frappe, sites = self.frappe, os.path.abspath(self.frappe.local.sites_path)
		os.mkdir(self.worker_sites)
		for name in ("logs", "config", "apps", "env"):
			os.symlink(os.path.join(os.path.dirname(sites), name), os.path.join(self.root, name))
		with open(os.path.join(sites, "common_site_config.json")) as f:
			common = json.load(f)
		common["bench_id"] = self.bench_id
		with open(os.path.join(self.worker_sites, "common_site_config.json"), "w") as f:
			json.dump(common, f, indent=1)
		for name in ("apps.txt", "apps.json", "assets"):
			if os.path.exists(os.path.join(sites, name)):
				os.symlink(os.path.abspath(os.path.join(sites, name)), os.path.join(self.worker_sites, name))
		os.symlink(
			os.path.abspath(frappe.local.site_path), os.path.join(self.worker_sites, frappe.local.site)
		)
		update_site_config("bench_id", self.bench_id)
		frappe.local.conf.bench_id = self.bench_id
		return self

	def __exit__(self, *exc) -> None:
		from frappe.installer import update_site_config

		update_site_config("bench_id", "None")  # the string removes the key; None would write null
		self.frappe.local.conf.pop("bench_id", None)
		shutil.rmtree(self.root, ignore_errors=True)  # the links, not what they point to


def drain(frappe, timeout: float = 30) -> None:
	"""Wait (bounded: other sites' jobs share these queues) until the default and long queues are idle."""
	from frappe.utils.background_jobs import get_queue

	queues = [get_queue(name) for name in ("default", "long")]
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if all(q.count == 0 and q.started_job_registry.count == 0 for q in queues):
			return
		time.sleep(0.2)


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	parser.add_argument("--site", required=True)
	parser.add_argument(
		"--duration", type=float, default=120.0, help="seconds over which messages arrive, per run"
	)
	parser.add_argument("--messages", type=int, default=20, help="messages per run")
	parser.add_argument(
		"--seed", type=int, default=None, help="random moments (default: a fresh seed, printed)"
	)
	parser.add_argument(
		"--shared-queues",
		action="store_true",
		help="use the bench's RQ queues (the worker then also runs other sites' jobs)",
	)
	parser.add_argument(
		"--modes", nargs="+", choices=("listener", "polling"), default=["listener", "polling"]
	)
	parser.add_argument(
		"--workers",
		choices=("one", "per-queue"),
		default="one",
		help="one `bench worker` for all queues (bench start's Procfile), or one per queue: "
		"default, short and long (bench setup supervisor, production)",
	)
	args = parser.parse_args()
	seed = args.seed if args.seed is not None else random.randrange(1 << 30)

	import frappe

	frappe.init(site=args.site)
	frappe.connect()
	from frappe.utils.scheduler import is_scheduler_inactive, schedule_jobs_based_on_activity

	if is_scheduler_inactive(verbose=False):
		sys.exit(
			f"{args.site}: the scheduler is off (bench --site {args.site} enable-scheduler; pause_scheduler 0)"
		)
	if not schedule_jobs_based_on_activity():
		sys.exit(f"{args.site}: the scheduler skips this dormant site (no Activity Log lately): log in once")

	from email_flow_app.email_flow.services import listener, polling, tick
	from email_flow_app.email_flow.tests.utils import MailWorld

	world = MailWorld()
	procs = Processes(frappe.local.sites_path, os.path.join(frappe.local.site_path, "logs"))
	own = None if args.shared_queues else OwnQueues(frappe, world.tag)
	results: dict[str, dict] = {}
	try:
		if own:
			own.__enter__()
		world.start()
		queue = world.queue.name
		polling.poll_queue(queue)  # healthy, folder state known
		tick.enqueue_polls()  # the tick's probe clock starts
		frappe.db.commit()
		if args.workers == "one":
			procs.start("worker", "worker", cwd=own.worker_sites if own else None)
		else:
			for name in ("default", "short", "long"):
				procs.start(
					f"worker-{name}", "worker", "--queue", name, cwd=own.worker_sites if own else None
				)
		procs.start("schedule", "schedule")
		time.sleep(2)
		if procs.procs["schedule"].poll() is not None:  # it exits at once when another holds the bench's lock
			raise RuntimeError("bench schedule exited: is another one running on this bench?")
		print(
			f"site {args.site}, queue {queue}, {args.messages} messages over {args.duration:.0f} s per run, "
			f"seed {seed}, RQ queues {own.bench_id + ':*' if own else 'of the bench (shared)'}, "
			f"workers: {args.workers}"
		)
		sys.stdout.flush()
		rng = random.Random(seed)
		for mode in args.modes:
			if mode == "listener":
				procs.start("listener", "email-flow", "listen", "--only-site", args.site)
				if not wait_for(frappe, lambda q=queue: listener.listener_alive(q), WATCH_TIMEOUT):
					raise RuntimeError("the listener never held IDLE on the queue (see its log)")
			else:
				procs.stop("listener")
				if not wait_for(frappe, lambda q=queue: not listener.listener_alive(q), 10):
					raise RuntimeError("the listener's heartbeat outlived it")
			drain(frappe)
			run = Run(frappe, world, mode, args.duration, args.messages, rng)
			run.execute(LISTENER_WAIT if mode == "listener" else POLLING_WAIT)
			results[mode] = run.figures()
			print(f"  {mode}: {results[mode]['tickets']}/{results[mode]['sent']} tickets")
			sys.stdout.flush()
	finally:
		procs.stop_all()
		frappe.db.rollback()
		world.stop()
		if own:
			own.__exit__()
		frappe.destroy()

	print()
	print(
		"arrival (APPEND done) -> Ticket.creation, seconds; 'seen' = committed and found by a 0.2 s DB poll"
	)
	print(f"{'':>10}" + "".join(f"{mode:>12}" for mode in results))
	for key in ("sent", "tickets", "p50", "p95", "max", "seen_p50", "seen_p95", "seen_max"):
		cells = []
		for mode in results:
			value = results[mode].get(key)
			cells.append(
				f"{'-':>12}"
				if value is None
				else f"{value:>12}"
				if isinstance(value, int)
				else f"{value:>12.2f}"
			)
		print(f"{key:>10}" + "".join(cells))
	if "listener" in results and "p95" in results["listener"]:
		met = (
			results["listener"]["p95"] <= 5 and results["listener"]["tickets"] == results["listener"]["sent"]
		)
		print(f"target p95 <= 5 s with the listener: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
	main()
