"""Browser tests' world: real mail servers, a local identity provider, the site served over HTTP, Chromium.

* Dovecot (IMAP over TLS; XOAUTH2 checked by the identity provider's introspection endpoint),
* an SMTP server (STARTTLS and implicit TLS; XOAUTH2 checked the same way),
* :class:`OAuthTestProvider`: msal's authority (OpenID discovery, authorize with PKCE, token),
* this site served by Frappe's own WSGI application on 127.0.0.1 (a separate process),
* Debian's Chromium driven by Playwright through its executable path.

The site is pointed at these servers through site config, as an admin would
point it at a private CA or a sovereign cloud: nothing inside the app is
replaced. Missing Chromium or Playwright is an error (the tests fail), never a skip.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import frappe
import requests
from frappe.installer import update_site_config

from email_flow_app.testing.dovecot import DovecotServer
from email_flow_app.testing.net import free_port, wait_for_port
from email_flow_app.testing.oauth_provider import OAuthTestProvider
from email_flow_app.testing.smtp_server import SMTPTestServer
from email_flow_app.testing.tls import TestCA

CHROMIUM = os.environ.get("EMAIL_FLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--disable-quic",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("EMAIL_FLOW_SCREENSHOTS", "/work/screenshots"))
TENANT = "contoso"
CLIENT_ID, CLIENT_SECRET = "email-flow-desk", "desk-secret"
MANAGER_PASSWORD = "Manager-pw-1!"
START_TIMEOUT = 60.0
SETTLE_MS = 400
SETTINGS = "Email Flow Settings"
SITE_KEYS = (
	"email_flow_ca_bundle",
	"email_flow_o365_authority_host",
	"email_flow_google_token_uri",
	"email_flow_graph_base",
	"email_flow_o365_imap",
	"email_flow_o365_smtp",
	"email_flow_google_imap",
	"email_flow_google_smtp",
)

SERVER_SCRIPT = """
import sys
import frappe.app as app
from werkzeug.serving import run_simple
app._site, app._sites_path = sys.argv[1], "."
application = app.application_with_statics()
tls = tuple(sys.argv[3:5]) or None  # certificate chain and key: serve https
run_simple(
	"127.0.0.1", int(sys.argv[2]), application, use_reloader=False, use_debugger=False, threaded=True, ssl_context=tls
)
"""


class WebServer:
	"""The site on http://127.0.0.1:PORT: Frappe's WSGI app with its static files (Desk assets).

	With `tls` (a TestCA) it serves https with that CA's certificate for 127.0.0.1.
	"""

	def __init__(self, site: str, sites_path: str, log_path: str, tls: TestCA | None = None) -> None:
		self.site = site
		self.sites_path = sites_path
		self.log_path = log_path
		self.tls = tls
		self.port = free_port()
		self.proc: subprocess.Popen | None = None

	@property
	def url(self) -> str:
		return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

	def start(self) -> None:
		log = open(self.log_path, "ab")
		env = {**os.environ, "CI": "1"}
		self.proc = subprocess.Popen(
			[sys.executable, "-c", SERVER_SCRIPT, self.site, str(self.port), *self._tls_args()],
			cwd=self.sites_path,
			stdout=log,
			stderr=subprocess.STDOUT,
			env=env,
			start_new_session=True,
		)
		log.close()
		if not wait_for_port("127.0.0.1", self.port, time.monotonic() + START_TIMEOUT, self.proc):
			raise RuntimeError(f"the web server did not start; see {self.log_path}")
		verify = str(self.tls.bundle_path) if self.tls else True
		response = requests.get(f"{self.url}/api/method/ping", timeout=30, verify=verify)
		response.raise_for_status()

	def _tls_args(self) -> list[str]:
		return [str(self.tls.cert_path), str(self.tls.key_path)] if self.tls else []

	def stop(self) -> None:
		if self.proc and self.proc.poll() is None:
			self.proc.terminate()
			try:
				self.proc.wait(10)
			except subprocess.TimeoutExpired:
				self.proc.kill()
				self.proc.wait()
		self.proc = None


class UIWorld:
	"""Everything the browser tests need, started once per test class."""

	def __init__(self, mailboxes: dict[str, str]) -> None:
		self.tag = frappe.generate_hash(length=6).lower()
		self.mailboxes = {self.address(box): password for box, password in mailboxes.items()}
		self.manager = f"ef-ui-manager-{self.tag}@example.test"
		self.ca = TestCA()
		self.oauth = OAuthTestProvider(self.ca)
		self.dovecot: DovecotServer | None = None
		self.smtp: SMTPTestServer | None = None
		self.web: WebServer | None = None
		self._playwright = None
		self.browser = None
		self.context = None
		self.page = None
		self._profile = tempfile.mkdtemp(prefix="ef-chromium-")
		self._saved_settings: dict = {}
		self._setup_was_complete = True

	def address(self, box: str) -> str:
		return f"{box}-{self.tag}@example.test"

	# -- lifecycle ----------------------------------------------------------------

	def start(self) -> "UIWorld":
		if not Path(CHROMIUM).exists():
			raise RuntimeError(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
		from playwright.sync_api import sync_playwright  # ImportError fails the test: pip install playwright

		self.oauth.start()
		self.oauth.register_client(CLIENT_ID, CLIENT_SECRET)
		self.dovecot = DovecotServer(
			users=self.mailboxes, ca=self.ca, oauth_introspection_url=self.oauth.introspection_url
		)
		self.dovecot.start()
		self.smtp = SMTPTestServer(self.ca, users=self.mailboxes, token_validator=self._token_valid)
		self.smtp.start()
		self._configure_site()
		self._create_manager()
		frappe.db.commit()
		self.web = WebServer(
			frappe.local.site,
			frappe.local.sites_path,
			os.path.join(frappe.local.site_path, "logs", "email_flow_browser_web.log"),
		)
		self.web.start()
		SCREENSHOTS.mkdir(parents=True, exist_ok=True)
		self._playwright = sync_playwright().start()
		self.context = self._playwright.chromium.launch_persistent_context(
			self._profile,
			executable_path=CHROMIUM,
			args=CHROMIUM_ARGS,
			headless=True,
			viewport={"width": 1280, "height": 900},
			# The identity provider's certificate comes from the test CA; only the browser hop skips it.
			ignore_https_errors=True,
		)
		self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
		self.page.set_default_timeout(30_000)
		self.page.on("pageerror", lambda err: print(f"browser page error: {err}", file=sys.stderr))
		self.page.on(
			"console",
			lambda msg: msg.type == "error"
			and "socket.io" not in msg.text
			and "Failed to load resource" not in msg.text
			and print(f"browser console error: {msg.text}", file=sys.stderr),
		)
		self.login()
		return self

	def stop(self) -> None:
		for step in (self._stop_browser, self._stop_web, self._restore_site, self._stop_servers):
			try:
				step()
			except Exception as exc:  # keep tearing down; report what failed
				print(f"browser harness teardown: {step.__name__}: {exc}", file=sys.stderr)

	def _stop_browser(self) -> None:
		if self.context:
			self.context.close()
		if self._playwright:
			self._playwright.stop()
		shutil.rmtree(self._profile, ignore_errors=True)

	def _stop_web(self) -> None:
		if self.web:
			self.web.stop()

	def _stop_servers(self) -> None:
		if self.smtp:
			self.smtp.stop()
		if self.dovecot:
			self.dovecot.stop()
		self.oauth.stop()

	# -- site -------------------------------------------------------------------------

	def _token_valid(self, user: str, token: str) -> bool:
		answer = self.oauth._handle_introspect({"token": token})
		return bool(answer.get("active")) and answer.get("email") == user

	def _configure_site(self) -> None:
		imaps = f"127.0.0.1:{self.dovecot.imaps_port}"
		values = {
			"email_flow_ca_bundle": str(self.ca.bundle_path),
			"email_flow_o365_authority_host": self.oauth.base_url,
			"email_flow_google_token_uri": self.oauth.token_uri,
			"email_flow_graph_base": self.oauth.graph_base,
			"email_flow_o365_imap": imaps,
			"email_flow_o365_smtp": f"127.0.0.1:{self.smtp.port}",  # STARTTLS, like smtp.office365.com:587
			"email_flow_google_imap": imaps,
			"email_flow_google_smtp": f"127.0.0.1:{self.smtp.tls_port}",  # implicit TLS, like :465
		}
		for key, value in values.items():
			update_site_config(key, value)
			frappe.local.conf[key] = value
		# A fresh test site still shows the setup wizard instead of the Desk.
		self._setup_was_complete = bool(frappe.db.get_single_value("System Settings", "setup_complete"))
		if not self._setup_was_complete:
			self._set_setup_complete(1)
		settings = frappe.get_single(SETTINGS)
		self._saved_settings = {
			"o365_tenant": settings.o365_tenant,
			"o365_client_id": settings.o365_client_id,
			"o365_send_via": settings.o365_send_via,
		}
		settings.update(
			{
				"o365_tenant": TENANT,
				"o365_client_id": CLIENT_ID,
				"o365_client_secret": CLIENT_SECRET,
				"o365_send_via": "SMTP (XOAUTH2)",
			}
		)
		settings.flags.ignore_permissions = True
		settings.save()

	def _restore_site(self) -> None:
		frappe.db.rollback()
		self.cleanup()
		for key in SITE_KEYS:
			update_site_config(key, "None")  # "None" removes the key
			frappe.local.conf.pop(key, None)
		if not self._setup_was_complete:
			self._set_setup_complete(0)
		settings = frappe.get_single(SETTINGS)
		settings.update(self._saved_settings)
		settings.flags.ignore_permissions = True
		settings.save()
		frappe.db.commit()

	def _set_setup_complete(self, value: int) -> None:
		frappe.db.set_single_value("System Settings", "setup_complete", value)
		frappe.clear_document_cache("System Settings", "System Settings")

	def _create_manager(self) -> None:
		from frappe.utils.password import update_password

		user = frappe.get_doc(
			{
				"doctype": "User",
				"email": self.manager,
				"first_name": "Sam",
				"last_name": "Support-Manager",
				"send_welcome_email": 0,
				"roles": [{"role": "Support Manager"}],
			}
		).insert(ignore_permissions=True)
		update_password(user.name, MANAGER_PASSWORD)

	def cleanup(self) -> None:
		"""Delete every record this world created (the web server committed them)."""
		like = f"%-{self.tag}@example.test"
		queues = frappe.get_all(
			"Incoming Email Queue", filters={"email_address": ("like", like)}, pluck="name"
		)
		channels = frappe.get_all("Outgoing Channel", filters={"from_address": ("like", like)}, pluck="name")
		for name in queues:
			frappe.delete_doc("Incoming Email Queue", name, force=True, ignore_permissions=True)
		for name in channels:
			frappe.delete_doc("Outgoing Channel", name, force=True, ignore_permissions=True)
		frappe.db.delete("Email Flow Blocked Address", {"email_address": ("like", like)})
		frappe.db.delete("Notification Log", {"for_user": self.manager})
		frappe.db.delete("Notification Log", {"document_name": ("in", queues + channels or [""])})
		if frappe.db.exists("User", self.manager):
			frappe.delete_doc("User", self.manager, force=True, ignore_permissions=True)
		frappe.db.commit()

	# -- browser ----------------------------------------------------------------------

	def login(self, user: str | None = None, password: str = MANAGER_PASSWORD) -> None:
		"""Log the browser in (the manager unless `user` is given), ending any earlier session."""
		self.context.clear_cookies()
		response = self.context.request.post(
			f"{self.web.url}/api/method/login", form={"usr": user or self.manager, "pwd": password}
		)
		if not response.ok:
			raise RuntimeError(f"login failed: {response.status} {response.text()[:300]}")

	def forward(self, queue: str, raw: bytes) -> str:
		"""POST `raw` to the forwarding webhook of `queue` (the real ingest path); the ticket made."""
		from frappe.utils.password import get_decrypted_password

		secret = get_decrypted_password("Incoming Email Queue", queue, "forwarding_secret")
		posted = requests.post(
			f"{self.web.url}/api/method/email_flow_app.email_flow.api.receive_forwarded?queue={quote(queue)}",
			data=raw,
			headers={"Content-Type": "message/rfc822", "X-Email-Flow-Secret": secret},
			timeout=60,
		)
		posted.raise_for_status()
		return posted.json()["message"]["ticket"]

	def goto(self, route: str) -> None:
		self.page.goto(f"{self.web.url}{route}")
		self.page.wait_for_selector("body[data-route]", state="attached")
		self.page.wait_for_load_state("networkidle")

	def shot(self, name: str) -> Path:
		path = SCREENSHOTS / f"{name}.png"
		self.page.wait_for_timeout(SETTLE_MS)  # let dialogs finish fading in
		self.page.screenshot(path=str(path), full_page=False)
		return path

	def fresh(self) -> None:
		"""See what the web server committed (end this process's read snapshot)."""
		frappe.db.rollback()
