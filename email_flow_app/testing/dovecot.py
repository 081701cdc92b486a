"""A real Dovecot (IMAP, STARTTLS/implicit TLS, submission, XOAUTH2) for tests.

Started from a self-contained config with ``dovecot -F -c FILE``; works as root
or as an ordinary user. XOAUTH2/OAUTHBEARER logins are checked by Dovecot's
oauth2 passdb against ``oauth_introspection_url`` (RFC 7662, POST), which
:class:`~email_flow_app.testing.oauth_provider.OAuthTestProvider` serves.

Usage (no pytest needed)::

        with DovecotServer(users={"alice@example.test": "secret"}, ca=TestCA()) as dc:
            dc.append("alice@example.test", "INBOX", b"Subject: hi\\r\\n\\r\\nbody")
            print(dc.imaps_port)
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from imapclient import IMAPClient

from email_flow_app.testing.net import free_port, wait_for_port
from email_flow_app.testing.tls import TestCA

START_TIMEOUT = 15.0


class HarnessError(RuntimeError):
	"""A test server could not be started or driven (the test run must fail)."""


class DovecotServer:
	"""One Dovecot instance with its own ports, users and mail store."""

	def __init__(
		self,
		workdir: str | Path | None = None,
		users: dict[str, str] | None = None,
		*,
		ca: TestCA | None = None,
		oauth_introspection_url: str | None = None,
		submission_relay: tuple[str, int] | None = None,
		host: str = "127.0.0.1",
	) -> None:
		self.users = dict(users or {})
		self.ca = ca or TestCA()
		self.oauth_introspection_url = oauth_introspection_url
		self.submission_relay = submission_relay
		self.host = host
		self._own_workdir = workdir is None
		self.workdir = Path(workdir or tempfile.mkdtemp(prefix="efdw-"))
		# Socket paths are limited to 108 bytes: keep the runtime dir short.
		self.base_dir = Path(tempfile.mkdtemp(prefix="efd-", dir="/tmp"))
		self.imap_port = 0
		self.imaps_port = 0
		self.submission_port = 0
		self._proc: subprocess.Popen[bytes] | None = None

	# -- lifecycle ------------------------------------------------------------

	def __enter__(self) -> DovecotServer:
		self.start()
		return self

	def __exit__(self, *exc: object) -> None:
		self.stop()

	@property
	def log_path(self) -> Path:
		return self.workdir / "dovecot.log"

	def start(self) -> None:
		binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
		if not Path(binary).exists():
			raise HarnessError("dovecot is not installed (apt-get install dovecot-imapd dovecot-submissiond)")
		self.imap_port, self.imaps_port = free_port(self.host), free_port(self.host)
		if self.submission_relay:
			self.submission_port = free_port(self.host)
		self._spawn(binary, self._write_config())

	def halt(self) -> None:
		"""Stop the server (a restart): ports, users and mail stay for :meth:`resume`.

		Its client processes go too, so every open connection is closed, as when
		an admin restarts the service.
		"""
		children = _descendants(self._proc.pid) if self._proc else []
		self._terminate()
		for pid in children:
			try:
				os.kill(pid, signal.SIGKILL)
			except ProcessLookupError:
				pass

	def resume(self) -> None:
		"""Start a halted server again on the same ports, with the same mail."""
		binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
		self._spawn(binary, self.base_dir / "etc" / "dovecot.conf")

	def _terminate(self) -> None:
		if self._proc and self._proc.poll() is None:
			self._proc.terminate()
			try:
				self._proc.wait(10)
			except subprocess.TimeoutExpired:
				self._proc.kill()
				self._proc.wait()
		self._proc = None

	def _spawn(self, binary: str, config: Path) -> None:
		with open(self.workdir / "dovecot.stderr", "ab") as stderr:
			self._proc = subprocess.Popen(
				[binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=stderr
			)
		ports = [self.imap_port, self.imaps_port] + ([self.submission_port] if self.submission_relay else [])
		deadline = time.monotonic() + START_TIMEOUT
		for port in ports:
			if not wait_for_port(self.host, port, deadline, self._proc):
				log = self._log_tail()
				self.stop()
				raise HarnessError(f"Dovecot did not start listening on {self.host}:{port}:\n{log}")

	def stop(self) -> None:
		self._terminate()
		shutil.rmtree(self.base_dir, ignore_errors=True)
		if self._own_workdir:
			shutil.rmtree(self.workdir, ignore_errors=True)

	def _log_tail(self) -> str:
		parts = []
		for name in ("dovecot.stderr", "dovecot.log"):
			path = self.workdir / name
			if path.exists():
				parts.append(path.read_text(errors="replace")[-3000:])
		return "\n".join(parts)

	# -- config ---------------------------------------------------------------

	def _write_config(self) -> Path:
		self.workdir.mkdir(parents=True, exist_ok=True)
		self.base_dir.chmod(0o755)
		etc = self.base_dir / "etc"
		etc.mkdir(exist_ok=True)
		etc.chmod(0o755)
		uid, gid = os.getuid(), os.getgid()
		me = pwd.getpwuid(uid).pw_name
		if uid == 0:
			# Dovecot refuses mail access as root: mail belongs to "nobody" and
			# lives under the runtime dir, which every helper can traverse.
			nobody = pwd.getpwnam("nobody")
			uid, gid = nobody.pw_uid, nobody.pw_gid
		mail_root = self.base_dir / "mail"
		mail_root.mkdir(exist_ok=True)
		os.chown(mail_root, uid, gid)
		passwd = etc / "users"
		passwd.write_text(
			"".join(
				f"{user}:{{PLAIN}}{password}:{uid}:{gid}::{mail_root / user}\n"
				for user, password in self.users.items()
			)
		)
		passwd.chmod(0o644)
		run_as = "" if os.getuid() == 0 else f"default_internal_user = {me}\ndefault_login_user = {me}\n"
		oauth = ""
		mechanisms = "plain login"
		if self.oauth_introspection_url:
			mechanisms += " xoauth2 oauthbearer"
			oauth_conf = etc / "oauth2.conf"
			oauth_conf.write_text(
				f"introspection_mode = post\n"
				f"introspection_url = {self.oauth_introspection_url}\n"
				f"username_attribute = email\n"
				f"active_attribute = active\n"
				f"active_value = true\n"
				f"tls_ca_cert_file = {self.ca.bundle_path}\n"
				f"timeout_msecs = 5000\n"
			)
			oauth_conf.chmod(0o644)
			oauth = f"passdb {{\n  driver = oauth2\n  args = {oauth_conf}\n}}\n"
		protocols = "imap"
		submission = ""
		if self.submission_relay:
			protocols += " submission"
			relay_host, relay_port = self.submission_relay
			submission = (
				f"submission_relay_host = {relay_host}\n"
				f"submission_relay_port = {relay_port}\n"
				f"submission_relay_trusted = yes\n"
				f"submission_relay_ssl = no\n"
				f"service submission-login {{\n"
				f"  inet_listener submission {{\n    address = {self.host}\n    port = {self.submission_port}\n  }}\n"
				f"}}\n"
			)
		config = f"""
base_dir = {self.base_dir}/run
state_dir = {self.base_dir}/state
instance_name = efd-{self.imap_port}
log_path = {self.log_path}
protocols = {protocols}
listen = {self.host}
hostname = localhost
postmaster_address = postmaster@localhost
{run_as}first_valid_uid = 0
first_valid_gid = 0
ssl = yes
ssl_cert = <{self.ca.cert_path}
ssl_key = <{self.ca.key_path}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_failure_delay = 0
auth_cache_size = 0
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 1000
imap_idle_notify_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
{oauth}userdb {{
  driver = passwd-file
  args = {passwd}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
{submission}
"""
		path = etc / "dovecot.conf"
		path.write_text(config)
		path.chmod(0o644)
		return path

	# -- mailbox helpers -------------------------------------------------------

	def client(self, user: str) -> IMAPClient:
		"""A logged-in imapclient over implicit TLS (caller logs out)."""
		client = IMAPClient(
			self.host, self.imaps_port, ssl=True, ssl_context=self.ca.client_context(), timeout=30
		)
		client.login(user, self.users[user])
		return client

	def append(self, user: str, folder: str, raw: bytes) -> None:
		self.append_many(user, folder, [raw])

	def append_many(self, user: str, folder: str, messages: Iterable[bytes], chunk: int = 200) -> None:
		"""APPEND messages in order (MULTIAPPEND, ``chunk`` per command)."""
		client = self.client(user)
		try:
			if folder.upper() != "INBOX" and not client.folder_exists(folder):
				client.create_folder(folder)
			batch: list[bytes] = []
			for raw in messages:
				batch.append(raw)
				if len(batch) >= chunk:
					client.multiappend(folder, batch)
					batch = []
			if batch:
				client.multiappend(folder, batch)
		finally:
			client.logout()

	def create_folder(self, user: str, folder: str) -> None:
		client = self.client(user)
		try:
			if not client.folder_exists(folder):
				client.create_folder(folder)
		finally:
			client.logout()

	def uidvalidity(self, user: str, folder: str) -> int:
		client = self.client(user)
		try:
			return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
		finally:
			client.logout()

	def recreate_mailbox(self, user: str, folder: str) -> int:
		"""Delete and re-create ``folder`` (not INBOX); returns the new UIDVALIDITY."""
		if folder.upper() == "INBOX":
			raise HarnessError("IMAP cannot delete INBOX; recreate another folder")
		client = self.client(user)
		try:
			if client.folder_exists(folder):
				client.delete_folder(folder)
			client.create_folder(folder)
			return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
		finally:
			client.logout()


def _descendants(pid: int) -> list[int]:
	"""Process ids below ``pid`` (from /proc), children first."""
	parents: dict[int, list[int]] = {}
	for entry in Path("/proc").iterdir():
		if not entry.name.isdigit():
			continue
		try:
			stat = (entry / "stat").read_text()
		except OSError:
			continue
		ppid = int(stat.rsplit(")", 1)[1].split()[1])
		parents.setdefault(ppid, []).append(int(entry.name))
	found: list[int] = []
	todo = [pid]
	while todo:
		for child in parents.get(todo.pop(), []):
			found.append(child)
			todo.append(child)
	return found


__all__ = ["DovecotServer", "HarnessError"]
