"""Benchmark parse_message against a bare stdlib parse, in the same run.

Baseline: ``email.message_from_bytes(raw, policy=email.policy.default)``, then
``walk()`` with ``get_content()`` on every leaf: the least any parser must do.
Prints messages per second and peak traced memory for both, over the real
corpora installed by .ci/setup.d/20-mail-corpora.sh, then for one message
carrying a 25 MB attachment. Not a test: it asserts nothing, it prints.

Usage: .venv/bin/python benchmarks/parse_bench.py [--rounds N]
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from email_flow_app.mail import parse_message
from tests.mail.corpora import CORPORA_ROOT, cpython_email_data

TARGET_THROUGHPUT = 0.4
TARGET_PEAK = 4.0


def stdlib_parse(raw: bytes) -> None:
	msg = email.message_from_bytes(raw, policy=email.policy.default)
	for part in msg.walk():
		if not part.is_multipart():
			try:
				part.get_content()
			except Exception:
				pass  # the stdlib raises on some real mail; parse_message may not


def corpus() -> list[bytes]:
	folders = [cpython_email_data()]
	folders += [CORPORA_ROOT / name for name in ("mail-parser", "talon", "flufl-bounce")]
	messages: list[bytes] = []
	for folder in folders:
		if not folder.exists():
			sys.exit(f"corpus folder {folder} missing: run .ci/setup.d/20-mail-corpora.sh")
		for path in sorted(folder.rglob("*")):
			if (
				path.is_file()
				and path.suffix not in (".py", ".pyc", ".html", ".gif", ".au", ".png")
				and not path.name.startswith((".", "__"))
			):
				messages.append(path.read_bytes())
	return messages


def throughput(fn: Callable[[bytes], object], messages: list[bytes], rounds: int) -> float:
	start = time.perf_counter()
	for _ in range(rounds):
		for raw in messages:
			fn(raw)
	return rounds * len(messages) / (time.perf_counter() - start)


def peak(fn: Callable[[bytes], object], raw: bytes) -> int:
	tracemalloc.start()
	try:
		fn(raw)
		return tracemalloc.get_traced_memory()[1]
	finally:
		tracemalloc.stop()


def big_message(size: int) -> bytes:
	payload = os.urandom(size)
	head = (
		b"From: c@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
		b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n'
		b'--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="big.bin"\r\n'
		b"Content-Transfer-Encoding: base64\r\n\r\n"
	)
	return head + base64.encodebytes(payload).replace(b"\n", b"\r\n") + b"--B--\r\n"


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--rounds", type=int, default=5)
	args = parser.parse_args()

	messages = corpus()
	total = sum(map(len, messages))
	print(f"corpus: {len(messages)} real messages, {total / 1024:.0f} KiB, {args.rounds} rounds")
	for raw in messages:  # warm up imports and caches
		parse_message(raw)
		stdlib_parse(raw)
	ours = throughput(parse_message, messages, args.rounds)
	base = throughput(stdlib_parse, messages, args.rounds)
	ratio = ours / base
	verdict = "OK" if ratio >= TARGET_THROUGHPUT else "BELOW TARGET"
	print(f"  stdlib parse+walk+get_content : {base:8.0f} msgs/s")
	print(
		f"  parse_message                 : {ours:8.0f} msgs/s  ({ratio:.2f}x stdlib, target >= {TARGET_THROUGHPUT}x: {verdict})"
	)
	largest = max(messages, key=len)
	print(
		f"  peak memory on the largest ({len(largest) / 1024:.0f} KiB): "
		f"stdlib {peak(stdlib_parse, largest) / 1e6:.1f} MB, parse_message {peak(parse_message, largest) / 1e6:.1f} MB"
	)

	raw = big_message(25 * 1024 * 1024)
	size = len(raw)
	print(f"25 MB attachment: message of {size / 1e6:.1f} MB")
	for label, fn in (("stdlib parse+walk+get_content", stdlib_parse), ("parse_message", parse_message)):
		start = time.perf_counter()
		fn(raw)
		elapsed = time.perf_counter() - start
		used = peak(fn, raw)
		mark = ""
		if fn is parse_message:
			mark = f", target < {TARGET_PEAK}x: {'OK' if used < TARGET_PEAK * size else 'ABOVE TARGET'}"
		print(
			f"  {label:30s}: {elapsed:5.2f} s, peak {used / 1e6:6.1f} MB = {used / size:.2f}x message size{mark}"
		)


if __name__ == "__main__":
	main()
