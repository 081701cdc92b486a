"""A TCP proxy that can cut its connections, to test "connection lost" paths."""

from __future__ import annotations

import queue
import socket
import threading
import time

from email_flow_app.testing.net import free_port

CHUNK = 65536


class TCPProxy:
	"""Forwards ``127.0.0.1:port`` to ``upstream``.

	``cut_after(n)`` closes a connection once it has carried ``n`` bytes from
	the server to the client (so a transfer dies half-way); ``cut_all()``
	closes every open connection now. ``latency`` (seconds, one way) delays
	every chunk without limiting bandwidth, to emulate a distant server.
	``refusing = True`` is a server outage: connections are closed at once.
	``throttle`` (bytes per second, server→client; None: unlimited) slows a
	transfer down so that a test can act in the middle of it.
	``carried`` counts the bytes sent server→client so far.
	"""

	def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", latency: float = 0.0) -> None:
		self.upstream = upstream
		self.latency = latency
		self.host = host
		self.port = 0
		self._listener: socket.socket | None = None
		self._conns: list[tuple[socket.socket, socket.socket]] = []
		self._lock = threading.Lock()
		self._cut_after: int | None = None
		self.cuts = 0
		self.carried = 0
		self.refusing = False
		self.throttle: float | None = None

	def __enter__(self) -> TCPProxy:
		self.start()
		return self

	def __exit__(self, *exc: object) -> None:
		self.stop()

	def start(self) -> None:
		self.port = free_port(self.host)
		self._listener = socket.create_server((self.host, self.port))
		threading.Thread(target=self._accept, daemon=True).start()

	def stop(self) -> None:
		if self._listener:
			self._listener.close()
			self._listener = None
		self.cut_all()

	def cut_after(self, nbytes: int | None) -> None:
		"""Cut the next connection(s) once ``nbytes`` went server→client (None: never)."""
		self._cut_after = nbytes

	def cut_all(self) -> None:
		with self._lock:
			conns, self._conns = self._conns, []
		for pair in conns:
			self._close(pair)

	@staticmethod
	def _close(pair: tuple[socket.socket, socket.socket]) -> None:
		for sock in pair:
			try:
				sock.shutdown(socket.SHUT_RDWR)
			except OSError:
				pass
			sock.close()

	def _accept(self) -> None:
		listener = self._listener
		while listener is not None:
			try:
				client, _ = listener.accept()
			except OSError:
				return
			if self.refusing:
				client.close()
				continue
			upstream = socket.create_connection(self.upstream)
			pair = (client, upstream)
			with self._lock:
				self._conns.append(pair)
			threading.Thread(target=self._pump, args=(client, upstream, pair, False), daemon=True).start()
			threading.Thread(target=self._pump, args=(upstream, client, pair, True), daemon=True).start()

	def _pump(self, src: socket.socket, dst: socket.socket, pair, downstream: bool) -> None:
		if self.latency > 0:
			self._pump_delayed(src, dst, pair)
			return
		carried = 0
		try:
			while True:
				data = src.recv(CHUNK)
				if not data:
					break
				limit = self._cut_after if downstream else None
				if limit is not None and carried + len(data) >= limit:
					dst.sendall(data[: max(0, limit - carried)])
					self.cuts += 1
					break
				dst.sendall(data)
				carried += len(data)
				if downstream:
					self.carried += len(data)
					if self.throttle:
						time.sleep(len(data) / self.throttle)
		except OSError:
			pass
		with self._lock:
			if pair in self._conns:
				self._conns.remove(pair)
		self._close(pair)

	def _pump_delayed(self, src: socket.socket, dst: socket.socket, pair) -> None:
		chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

		def deliver() -> None:
			try:
				while True:
					due, data = chunks.get()
					if not data:
						break
					pause = due - time.monotonic()
					if pause > 0:
						time.sleep(pause)
					dst.sendall(data)
			except OSError:
				pass
			with self._lock:
				if pair in self._conns:
					self._conns.remove(pair)
			self._close(pair)

		threading.Thread(target=deliver, daemon=True).start()
		try:
			while True:
				data = src.recv(CHUNK)
				chunks.put((time.monotonic() + self.latency, data))
				if not data:
					break
		except OSError:
			chunks.put((0.0, b""))
