"""Site-side test helpers: real mail servers wired to real queues and channels.

Everything here runs against the test site's MariaDB and Redis, a real Dovecot
and a real SMTP server. The ingest pipeline commits by design (the raw message
must be durable before the server copy is acknowledged), so each test class
creates uniquely named records and deletes them again in `cleanup`.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

import frappe
from frappe.installer import update_site_config

try:  # Frappe v16+
	from frappe.tests import IntegrationTestCase as SiteTestCase
except ImportError:  # Frappe v15
	from frappe.tests.utils import FrappeTestCase as SiteTestCase

from email_flow_app.testing.dovecot import DovecotServer
from email_flow_app.testing.smtp_server import SMTPTestServer
from email_flow_app.testing.tls import TestCA

SUPPORT_PASSWORD = "support-pw"
CUSTOMER = ("Carla Customer", "carla@customer.test")


class MailWorld:
	"""A support inbox on Dovecot + an SMTP server, connected as a queue and a channel."""

	def __init__(self, tag: str | None = None, extra_inboxes: tuple[str, ...] = ()):
		self.tag = tag or frappe.generate_hash(length=6).lower()
		self.support = self.address("support")
		self.ca = TestCA()
		users = {self.address(box): SUPPORT_PASSWORD for box in ("support", *extra_inboxes)}
		self.dovecot = DovecotServer(users=users, ca=self.ca)
		self.smtp = SMTPTestServer(self.ca, users={self.support: SUPPORT_PASSWORD})
		self.queue = None
		self.channel = None

	def start(self) -> "MailWorld":
		self.dovecot.start()
		self.smtp.start()
		# Workers (separate processes) must trust the test CA too: site config, like an admin would set it.
		update_site_config("email_flow_ca_bundle", str(self.ca.bundle_path))
		frappe.local.conf.email_flow_ca_bundle = str(self.ca.bundle_path)
		self.channel = frappe.get_doc(
			{
				"doctype": "Outgoing Channel",
				"channel_name": f"Support SMTP {self.tag}",
				"channel_type": "SMTP",
				"from_name": "Acme Support",
				"from_address": self.support,
				"host": "127.0.0.1",
				"port": self.smtp.port,
				"security": "STARTTLS",
				"username": self.support,
				"password": SUPPORT_PASSWORD,
				"is_default": 1,
			}
		).insert(ignore_permissions=True)
		self.queue = self.make_queue("Support", self.support, outgoing_channel=self.channel.name)
		frappe.db.commit()
		return self

	def address(self, box: str) -> str:
		"""The test address of inbox `box` (unique per run)."""
		return f"{box}-{self.tag}@example.test"

	def make_queue(self, label: str, address: str, **values):
		return frappe.get_doc(
			{
				"doctype": "Incoming Email Queue",
				"queue_name": f"{label} {self.tag}",
				"color": "#2490ef",
				"channel_type": "IMAP",
				"email_address": address,
				"host": "127.0.0.1",
				"port": self.dovecot.imaps_port,
				"security": "SSL",
				"username": address,
				"password": SUPPORT_PASSWORD,
				**values,
			}
		).insert(ignore_permissions=True)

	def poll(self, worker_queue: str = "long") -> None:
		"""What the scheduler does every minute, then a real worker runs the queued jobs.

		Raises with the queue's last error when a poll of this world's queues failed,
		so a test never mistakes a failed (or backed-off) poll for 'no mail'.
		"""
		from email_flow_app.email_flow.services.tick import enqueue_polls

		enqueue_polls()
		frappe.db.commit()
		code = run_worker(worker_queue)
		frappe.db.rollback()
		if code != 0:
			raise AssertionError(f"worker exited with {code}")
		failing = frappe.get_all(
			"Incoming Email Queue",
			filters={
				"queue_name": ("like", f"% {self.tag}"),
				"status": ("!=", "Active"),
				"channel_type": "IMAP",
			},
			fields=["name", "status", "last_error", "next_poll_after"],
		)
		expected_failing = getattr(self, "expected_failing", set())
		failing = [q for q in failing if q.name not in expected_failing]
		if failing:
			raise AssertionError(f"poll failed: {failing}")

	def deliver(self, raw: bytes, user: str | None = None) -> None:
		self.dovecot.append(user or self.support, "INBOX", raw)

	def stop(self) -> None:
		cleanup(self.tag)
		update_site_config("email_flow_ca_bundle", None)
		self.smtp.stop()
		self.dovecot.stop()


def customer_email(
	to: str,
	subject: str = "My printer is on fire",
	body: str = "Hello,\n\nthe printer in room 4 is on fire again.\n\nCarla",
	sender: tuple[str, str] = CUSTOMER,
	attachment: tuple[str, bytes] | None = None,
	headers: dict[str, str] | None = None,
) -> EmailMessage:
	msg = EmailMessage()
	msg["From"] = formataddr(sender)
	msg["To"] = to
	msg["Subject"] = subject
	msg["Message-ID"] = make_msgid(domain="customer.test")
	msg["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
	for name, value in (headers or {}).items():
		msg[name] = value
	msg.set_content(body)
	if attachment:
		msg.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
	return msg


def reply_to(original: EmailMessage, body: str, sender: tuple[str, str] = CUSTOMER) -> EmailMessage:
	"""What a mail client does when the customer hits Reply on the agent's email."""
	reply = EmailMessage()
	reply["From"] = formataddr(sender)
	reply["To"] = original.get("Reply-To") or original["From"]
	subject = str(original["Subject"])
	reply["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
	reply["Message-ID"] = make_msgid(domain="customer.test")
	reply["In-Reply-To"] = original["Message-ID"]
	references = (str(original.get("References") or "") + " " + str(original["Message-ID"])).strip()
	reply["References"] = references
	reply.set_content(
		body
		+ "\n\nOn Friday you wrote:\n> "
		+ (original.get_body(("plain",)) or original).get_content().replace("\n", "\n> ")
	)
	return reply


def spawn_worker(queue: str = "long") -> subprocess.Popen:
	"""Start a real RQ worker (`bench worker --burst`) for the test site; it exits when the queue is empty."""
	command = [
		sys.executable,
		"-m",
		"frappe.utils.bench_helper",
		"frappe",
		"--site",
		frappe.local.site,
		"worker",
		"--queue",
		queue,
		"--burst",
	]
	with open(os.path.join(frappe.local.site_path, "logs", "email_flow_test_worker.log"), "ab") as log:
		return subprocess.Popen(
			command, cwd=frappe.local.sites_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
		)


def run_worker(queue: str = "long", timeout: float = 300, kill_when=None) -> int:
	"""Run a real RQ worker (`bench worker --burst`) for the test site.

	`kill_when` is polled every 0.1 s; when it returns True the worker is
	killed with SIGKILL (what an OOM killer or a deploy does). Returns the
	worker's exit code (negative: killed by that signal).
	"""
	proc = spawn_worker(queue)
	deadline = time.monotonic() + timeout
	while proc.poll() is None:
		if kill_when is not None and kill_when():
			_kill_tree(proc)
			break
		if time.monotonic() > deadline:
			_kill_tree(proc)
			raise TimeoutError(f"worker did not finish within {timeout}s")
		time.sleep(0.1)
	return proc.returncode


def _kill_tree(proc: subprocess.Popen) -> None:
	"""SIGKILL the worker and its work horse (RQ forks the job into its own session)."""
	import psutil

	for child in psutil.Process(proc.pid).children(recursive=True):
		child.send_signal(signal.SIGKILL)
	os.killpg(proc.pid, signal.SIGKILL)
	proc.wait()


def http_post(path: str, data: bytes, headers: dict[str, str]):
	"""A real WSGI request to Frappe's application, in its own thread (own frappe.local)."""
	from frappe.app import application
	from werkzeug.test import Client

	site = frappe.local.site
	result = {}

	def run():
		client = Client(application)
		result["response"] = client.post(path, data=data, headers={"Host": site, **headers})

	thread = threading.Thread(target=run)
	thread.start()
	thread.join(60)
	return result["response"]


def cleanup(tag: str) -> None:
	"""Delete everything a MailWorld with this tag created, and commit.

	Raw mail goes as the retention rule removes it (nobody else may).
	"""
	from email_flow_app.email_flow.services.retention import removing_raw_mail

	with removing_raw_mail():
		_cleanup(tag)


def _cleanup(tag: str) -> None:
	queues = frappe.get_all(
		"Incoming Email Queue", filters={"queue_name": ("like", f"% {tag}")}, pluck="name"
	)
	channels = frappe.get_all(
		"Outgoing Channel", filters={"channel_name": ("like", f"% {tag}")}, pluck="name"
	)
	tickets = frappe.get_all("Ticket", filters={"email_queue": ("in", queues or [""])}, pluck="name")
	inbound = frappe.get_all("Inbound Email", filters={"email_queue": ("in", queues or [""])}, pluck="name")
	for file in (
		frappe.get_all("File", filters={"attached_to_name": ("in", tickets + inbound)}, pluck="name")
		if tickets + inbound
		else []
	):
		frappe.delete_doc("File", file, force=True, ignore_permissions=True)  # from disk too
	for doctype, field, names in (
		("Communication", "reference_name", tickets),
		("Comment", "reference_name", tickets),
		("ToDo", "reference_name", tickets),
		("Notification Log", "document_name", tickets),
	):
		if names:
			frappe.db.delete(doctype, {field: ("in", names)})
	for doctype, names in (("Ticket", tickets), ("Inbound Email", inbound)):
		if names:
			frappe.db.delete(doctype, {"name": ("in", names)})
	for name in queues:
		frappe.delete_doc("Incoming Email Queue", name, force=True, ignore_permissions=True)
	for name in channels:
		frappe.delete_doc("Outgoing Channel", name, force=True, ignore_permissions=True)
	frappe.db.delete("Email Flow Blocked Address", {"reference": ("like", f"% {tag}")})
	frappe.db.commit()


class MailWorldTestCase(SiteTestCase):
	"""A site test class with its own MailWorld (`cls.world`), started once per class."""

	extra_inboxes: tuple[str, ...] = ()

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = MailWorld(extra_inboxes=cls.extra_inboxes).start()

	@classmethod
	def tearDownClass(cls):
		cls.world.stop()
		super().tearDownClass()
