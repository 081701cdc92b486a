"""A host or port that is not a mail server: a clear message, never the other service's bytes.

The other service is real: the MariaDB server this machine runs (its greeting is
binary and names its version), and a small HTTP-like server made here.
"""

from __future__ import annotations

import socket
import threading

import pytest

from email_flow_app.channels.auth import PasswordAuth
from email_flow_app.channels.errors import ChannelError, PermanentError
from email_flow_app.channels.imap import IMAPConfig, IMAPSource
from email_flow_app.channels.smtp import SMTPConfig, SMTPSink

BANNER = b"HTTP/1.1 400 Bad Request\r\nServer: secret-internal-service/9.9\r\n\r\n"


@pytest.fixture
def chatty_service():
	"""A TCP service that greets every client with its own banner and closes."""
	server = socket.create_server(("127.0.0.1", 0))
	server.settimeout(0.2)
	stop = threading.Event()

	def serve():
		while not stop.is_set():
			try:
				conn, _ = server.accept()
			except (TimeoutError, OSError):
				continue
			with conn:
				conn.sendall(BANNER)

	threading.Thread(target=serve, daemon=True).start()
	yield server.getsockname()[1]
	stop.set()
	server.close()


def _mariadb_port() -> int:
	with socket.socket() as probe:
		if probe.connect_ex(("127.0.0.1", 3306)) != 0:
			pytest.fail("MariaDB is not listening on 127.0.0.1:3306 (the machine starts it)")
	return 3306


def _imap(port: int):
	return IMAPSource(IMAPConfig("127.0.0.1", port, "plain", "alice", timeout=5), PasswordAuth("pw"))


def _smtp(port: int):
	return SMTPSink(SMTPConfig("127.0.0.1", port, "plain", "alice", timeout=5), PasswordAuth("pw"))


@pytest.mark.parametrize(("make", "says"), [(_imap, "did not answer as an IMAP server"), (_smtp, None)])
@pytest.mark.parametrize("service", ["mariadb", "banner"])
def test_a_mail_client_to_another_service_says_so_without_echoing_it(make, says, service, chatty_service):
	port = _mariadb_port() if service == "mariadb" else chatty_service
	with pytest.raises(ChannelError) as caught:
		make(port).connect()
	message = str(caught.value)
	if says:
		assert says in message
	for leaked in ("maria", "mysql", "secret-internal-service", "http/1.1"):
		assert leaked not in message.lower()


@pytest.mark.parametrize("field", ["host", "username"])
@pytest.mark.parametrize("bad", ["x\r\nA2 DELETE INBOX", "a b", "x\0y", "tab\there"])
def test_line_breaks_nul_and_spaces_are_refused_before_any_connection(field, bad):
	values = {"host": "127.0.0.1", "username": "alice", field: bad}
	for make in (
		lambda: IMAPConfig(values["host"], 993, "ssl", values["username"]),
		lambda: SMTPConfig(values["host"], 587, "starttls", values["username"]),
	):
		with pytest.raises(PermanentError, match="must not contain"):
			make()
