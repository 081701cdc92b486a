"""An attacker's IMAP server: greets like IMAP, refuses every login, records every byte it is sent.

Tests point a queue at it (as an attacker who changed the host would) and then
check what our code sent: a stored password must never arrive here.
"""

from __future__ import annotations

import socket
import threading

from email_flow_app.testing.net import free_port


class RecordingIMAPServer:
	def __init__(self, host: str = "127.0.0.1") -> None:
		self.host = host
		self.port = 0
		self.received = bytearray()
		self.connections = 0
		self._sock: socket.socket | None = None
		self._lock = threading.Lock()
		self._stop = threading.Event()

	def __enter__(self) -> RecordingIMAPServer:
		self.start()
		return self

	def __exit__(self, *exc: object) -> None:
		self.stop()

	def start(self) -> None:
		self.port = free_port(self.host)
		self._sock = socket.create_server((self.host, self.port))
		self._sock.settimeout(0.2)
		threading.Thread(target=self._accept, daemon=True).start()

	def stop(self) -> None:
		self._stop.set()
		if self._sock:
			self._sock.close()

	def _accept(self) -> None:
		while not self._stop.is_set():
			try:
				conn, _addr = self._sock.accept()
			except (TimeoutError, OSError):
				continue
			with self._lock:
				self.connections += 1
			threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

	def _serve(self, conn: socket.socket) -> None:
		conn.settimeout(10)
		with conn:
			conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
			buffer = b""
			while True:
				try:
					data = conn.recv(65536)
				except OSError:
					return
				if not data:
					return
				with self._lock:
					self.received += data
				buffer += data
				while b"\r\n" in buffer:
					line, buffer = buffer.split(b"\r\n", 1)
					tag, _, command = line.partition(b" ")
					verb = command.split(b" ", 1)[0].upper()
					if verb == b"CAPABILITY":
						conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
					elif verb == b"LOGOUT":
						conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
						return
					elif tag:
						conn.sendall(tag + b" NO [AUTHENTICATIONFAILED] no\r\n")

	def saw(self, secret: str) -> bool:
		"""True if ``secret`` arrived here in any form a client sends it (plain, quoted, or base64 for AUTH)."""
		import base64
		import binascii

		with self._lock:
			data = bytes(self.received)
		needle = secret.encode()
		if needle in data:
			return True
		for token in data.split():
			try:
				if needle in base64.b64decode(token, validate=True):
					return True
			except (binascii.Error, ValueError):
				continue
		return False
