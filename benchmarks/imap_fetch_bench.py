"""Benchmark: IMAPSource.fetch_new (batched UID FETCH) vs one round trip per message.

Starts its own Dovecot, appends N messages (default 2,000), then in the same run:

* ``fetch_new`` with ``batch_size`` messages per ``UID FETCH … BODY.PEEK[]``;
* an imaplib loop doing ``UID FETCH <uid> (BODY.PEEK[])`` once per message.

Both run direct to 127.0.0.1 (sub-millisecond round trips, where Dovecot's own
per-message work dominates) and through a proxy adding a realistic round-trip
time (``--rtt-ms``). Prints msgs/s for both and the peak Python memory (tracemalloc) of fetch_new
for a quarter of the mailbox and for all of it: flat means it does not grow
with the mailbox. Run: ``.venv/bin/python benchmarks/imap_fetch_bench.py``.
"""

from __future__ import annotations

import argparse
import imaplib
import time
import tracemalloc

from email_flow_app.channels.auth import PasswordAuth
from email_flow_app.channels.imap import FolderState, IMAPConfig, IMAPSource
from email_flow_app.testing.dovecot import DovecotServer
from email_flow_app.testing.proxy import TCPProxy

USER, PASSWORD = "bench@example.test", "bench-pw"
FOLDER = "INBOX"


def message(n: int, size: int) -> bytes:
	body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * (size // 56 + 1))[:size]
	return (
		f"From: customer{n}@example.org\r\nTo: support@example.test\r\nSubject: Bench {n}\r\n"
		f"Message-ID: <bench{n}@example.org>\r\n\r\n{body}\r\n"
	).encode()


def run_fetch_new(
	config: IMAPConfig, batch_size: int, limit: int | None, trace: bool = False
) -> tuple[int, float, int]:
	if trace:
		tracemalloc.start()
	started = time.perf_counter()
	count = 0
	with IMAPSource(config, PasswordAuth(PASSWORD)) as source:
		for _uid, raw in source.fetch_new(FOLDER, FolderState(FOLDER), batch_size=batch_size, limit=limit):
			count += len(raw) > 0
	elapsed = time.perf_counter() - started
	return count, elapsed, _stop_trace(trace)


def _stop_trace(trace: bool) -> int:
	if not trace:
		return 0
	_, peak = tracemalloc.get_traced_memory()
	tracemalloc.stop()
	return peak


def run_per_message(host: str, port: int, trace: bool = False) -> tuple[int, float, int]:
	if trace:
		tracemalloc.start()
	started = time.perf_counter()
	conn = imaplib.IMAP4(host, port)
	conn.login(USER, PASSWORD)
	conn.select(FOLDER, readonly=True)
	_, data = conn.uid("SEARCH", None, "ALL")
	count = 0
	for uid in data[0].split():
		_, parts = conn.uid("FETCH", uid, "(BODY.PEEK[])")
		count += len(parts[0][1]) > 0
	conn.logout()
	elapsed = time.perf_counter() - started
	return count, elapsed, _stop_trace(trace)


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	parser.add_argument("--messages", type=int, default=2000)
	parser.add_argument("--size", type=int, default=4000, help="body bytes per message")
	parser.add_argument("--batch-size", type=int, default=100)
	parser.add_argument(
		"--rtt-ms",
		type=float,
		nargs="+",
		default=[0, 2, 10],
		help="round-trip times to emulate (0: direct); real IMAP servers are 2-100 ms away",
	)
	args = parser.parse_args()

	print(f"messages: {args.messages} x ~{args.size} B body, batch_size={args.batch_size}")
	with DovecotServer(users={USER: PASSWORD}) as dovecot:
		dovecot.append_many(USER, FOLDER, (message(n, args.size) for n in range(args.messages)))
		# Plain TCP for both, so the comparison is about round trips, not TLS.
		for rtt_ms in args.rtt_ms:
			with TCPProxy((dovecot.host, dovecot.imap_port), latency=rtt_ms / 2000) as proxy:
				port = proxy.port if rtt_ms else dovecot.imap_port
				config = IMAPConfig(dovecot.host, port, "plain", USER)
				run_fetch_new(config, args.batch_size, None)  # warm Dovecot's caches for both contenders
				n_new, t_new, _ = run_fetch_new(config, args.batch_size, None)
				n_old, t_old, _ = run_per_message(dovecot.host, port)
				# Memory in separate runs: tracemalloc slows Python code down.
				quarter = args.messages // 4
				_, _, peak_quarter = run_fetch_new(config, args.batch_size, quarter, trace=True)
				_, _, peak_all = run_fetch_new(config, args.batch_size, None, trace=True)
				_, _, peak_old = run_per_message(dovecot.host, port, trace=True)
			rate_new, rate_old = n_new / t_new, n_old / t_old
			where = "direct to 127.0.0.1" if not rtt_ms else f"through a proxy adding {rtt_ms:g} ms RTT"
			print(f"\n-- {where}")
			print(
				f"fetch_new (batched UID FETCH)   : {n_new} msgs in {t_new:6.2f} s = {rate_new:8,.0f} msgs/s"
			)
			print(
				f"imaplib one FETCH per message   : {n_old} msgs in {t_old:6.2f} s = {rate_old:8,.0f} msgs/s"
			)
			print(f"speed-up                        : {rate_new / rate_old:.1f}x (target >= 5x)")
			print(f"peak memory fetch_new {quarter:>5} msgs : {peak_quarter / 1024:,.0f} KiB")
			print(f"peak memory fetch_new {args.messages:>5} msgs : {peak_all / 1024:,.0f} KiB")
			print(f"peak memory per-message loop    : {peak_old / 1024:,.0f} KiB")
			print(
				f"mailbox size (raw bytes)        : {args.messages * len(message(0, args.size)) / 1024:,.0f} KiB"
			)


if __name__ == "__main__":
	main()
