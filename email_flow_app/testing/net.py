"""Small socket helpers shared by the test servers."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
	"""A TCP port that was free a moment ago (the server binds it right after)."""
	with socket.socket() as sock:
		sock.bind((host, 0))
		return sock.getsockname()[1]


def wait_for_port(host: str, port: int, deadline: float, proc: subprocess.Popen | None = None) -> bool:
	"""True once ``host:port`` accepts connections; False at ``deadline`` or if ``proc`` exits."""
	while time.monotonic() < deadline:
		if proc is not None and proc.poll() is not None:
			return False
		try:
			with socket.create_connection((host, port), timeout=0.5):
				return True
		except OSError:
			time.sleep(0.02)
	return False
