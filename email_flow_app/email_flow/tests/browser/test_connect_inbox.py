"""Connect inbox, in real headless Chromium against this site served over HTTP.

Office 365: the Desk sends the browser to a local HTTPS identity provider
whose authorize endpoint redirects back with a code; msal finishes the
authorization-code flow (PKCE) on the site's callback. Read over IMAP
(Dovecot) or over Microsoft Graph (the provider's local Graph server, which
refuses to read mail without Mail.ReadWrite in the token). Google: App Password
against Dovecot and the SMTP server. Health: a revoked refresh token.
Screenshots of each step go to /work/screenshots (EMAIL_FLOW_SCREENSHOTS).
"""

import email
import email.policy
from urllib.parse import parse_qs, quote, urlsplit

import frappe
from frappe.utils.password import get_decrypted_password
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from email_flow_app.email_flow.services import channel_admin, connect, onboarding, settings
from email_flow_app.email_flow.services.polling import poll_queue
from email_flow_app.email_flow.tests.browser.harness import CLIENT_ID, CLIENT_SECRET, UIWorld
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import cleanup, customer_email, run_worker

try:  # Frappe v16+
	from frappe.tests import IntegrationTestCase as SiteTestCase
except ImportError:  # Frappe v15
	from frappe.tests.utils import FrappeTestCase as SiteTestCase

AGENT_PASSWORD = "Connect-agent-pw-1!"
O365_PASSWORD = "unused-for-oauth"
GOOGLE_APP_PASSWORD = "abcdefghijklmnop"  # Google shows it as "abcd efgh ijkl mnop"
QUEUE = "Incoming Email Queue"
CHANNEL = "Outgoing Channel"


class TestConnectInboxInTheBrowser(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = UIWorld(
			{
				"support": O365_PASSWORD,
				"helpdesk": O365_PASSWORD,
				"reader": O365_PASSWORD,
				"service": GOOGLE_APP_PASSWORD,
			}
		)
		try:
			cls.world.start()
		except BaseException:
			cls.world.stop()
			raise

	@classmethod
	def tearDownClass(cls):
		cls.world.stop()
		super().tearDownClass()

	def test_a_plain_agent_gets_no_connect_inbox_and_cannot_call_it(self):
		"""Connecting inboxes is a manager's job: an agent's Desk offers nothing, its API refuses."""
		w = self.world
		agent = make_user(f"ef-ui-connect-agent-{w.tag}@example.test", ["Support Agent"])
		from frappe.utils.password import update_password

		update_password(agent, AGENT_PASSWORD)
		frappe.db.commit()
		try:
			w.login(agent, AGENT_PASSWORD)
			w.goto("/app/ticket")
			w.page.evaluate("() => frappe.set_route('List', 'Incoming Email Queue')")
			w.page.wait_for_timeout(1500)  # the route and the list's own scripts (the button) have run
			self.assertEqual(w.page.locator(".ef-connect-inbox:visible").count(), 0)
			w.shot("06-agent-no-connect-inbox")
			statuses = w.page.evaluate(
				"""async (address) => {
					const post = (method, args) => fetch(`/api/method/email_flow_app.email_flow.api_connect.${method}`, {
						method: "POST",
						headers: {"Content-Type": "application/json", "X-Frappe-CSRF-Token": frappe.csrf_token},
						body: JSON.stringify(args),
					}).then((r) => r.status);
					return [
						await post("connect_forwarding", {creation_address: address}),
						await post("connect_custom", {values: {address: address, imap_host: "127.0.0.1"}}),
					];
				}""",
				w.address("agent-made"),
			)
			self.assertEqual(statuses, [403, 403])
			frappe.db.rollback()
			self.assertFalse(frappe.db.exists(QUEUE, {"email_address": w.address("agent-made")}))
		finally:
			w.login()  # the other tests are the manager's
			frappe.delete_doc("User", agent, force=True, ignore_permissions=True)
			frappe.db.commit()

	# -- steps ---------------------------------------------------------------------------

	def open_connect_dialog(self, shot_prefix: str | None = None):
		w = self.world
		w.goto("/app/incoming-email-queue")
		button = w.page.locator(".ef-connect-inbox:visible")
		button.wait_for()
		if shot_prefix:
			w.shot(f"{shot_prefix}-1-list")
		button.click()
		w.page.locator(".modal.show .ef-way").first.wait_for()
		if shot_prefix:
			w.shot(f"{shot_prefix}-2-ways")

	def sign_in_with_microsoft(
		self,
		address: str,
		shot_prefix: str | None = None,
		choices: dict[str, str] | None = None,
		queue_name: str | None = None,
	) -> None:
		"""Connect inbox → Office 365 → Sign in (with `choices` in its Selects): through the identity provider and back."""
		w = self.world
		w.oauth.login_as = address  # who signs in at the (local) Microsoft login page
		self.open_connect_dialog(shot_prefix)
		w.page.locator('.modal.show .ef-way[data-way="o365"]').click()
		dialog = w.page.locator(".modal.show", has_text="Sign in with Microsoft")
		dialog.locator(".ef-redirect-uri").wait_for()
		for fieldname, value in (choices or {}).items():
			self.choose(dialog, fieldname, value)
		if queue_name:
			self.fill(dialog, "queue_name", queue_name)
		if shot_prefix:
			w.shot(f"{shot_prefix}-3-dialog")
		with w.page.expect_navigation(url="**o365_callback**", timeout=60_000):
			dialog.locator(".btn-primary", has_text="Sign in with Microsoft").click()
		w.page.wait_for_load_state("load")

	def fill(self, dialog, fieldname: str, value: str) -> None:
		"""Type into a dialog field, leave it, and wait until the dialog holds the value.

		Frappe's controls take the value on change, asynchronously: clicking too early
		would submit the old value.
		"""
		field = dialog.locator(f'[data-fieldname="{fieldname}"] input')
		for attempt in range(3):
			field.fill(value)
			field.press("Tab")
			try:
				self.world.page.wait_for_function(
					# Any open dialog: `cur_dialog` may still name the "Connect inbox" chooser behind it.
					"([name, value]) => [...(frappe.ui.open_dialogs || []), window.cur_dialog].some("
					"(d) => d && d.fields_dict && d.fields_dict[name] && d.get_value(name) === value)",
					arg=[fieldname, value],
					timeout=15_000,
				)
				return
			except PlaywrightTimeout:
				# A busy machine can drop the change event of a field typed into: type it again.
				if attempt == 2:
					raise

	def choose(self, dialog, fieldname: str, value: str) -> None:
		"""Pick `value` in a dialog's Select and wait until the dialog holds it."""
		dialog.locator(f'select[data-fieldname="{fieldname}"]').select_option(value)
		self.world.page.wait_for_function(
			"([name, value]) => [...(frappe.ui.open_dialogs || []), window.cur_dialog].some("
			"(d) => d && d.fields_dict && d.fields_dict[name] && d.get_value(name) === value)",
			arg=[fieldname, value],
			timeout=15_000,
		)

	def error_dialogs(self) -> list[str]:
		texts = self.world.page.locator(".modal.show .msgprint, .modal.show .modal-title").all_inner_texts()
		return [
			t for t in texts if "not permitted" in t.lower() or "error" in t.lower() or "failed" in t.lower()
		]

	def queue_for(self, address: str):
		self.world.fresh()
		name = frappe.db.get_value(QUEUE, {"email_address": address}, "name")
		return frappe.get_doc(QUEUE, name) if name else None

	# -- tests ----------------------------------------------------------------------------

	def test_office365_sign_in_round_trip_creates_both_channels_mapped_blocked_and_tested(self):
		w = self.world
		address = w.address("support")
		introspections_before = w.oauth._state.introspections
		self.sign_in_with_microsoft(address, shot_prefix="01-o365")

		page_text = w.page.locator("body").inner_text()
		w.shot("01-o365-4-result")
		self.assertIn("Inbox connected", page_text)
		self.assertIn(f"Signed in to Microsoft 365 as {address}", page_text)
		self.assertIn("Filter Outgoing Email", page_text)
		self.assertNotIn("looks like a personal mailbox", page_text)  # support-… is a role address

		# The real msal code path ran: authorization code (with PKCE, checked by the provider) for tokens.
		self.assertIn("authorization_code", w.oauth.grants)

		queue = self.queue_for(address)
		self.assertIsNotNone(queue, "no Incoming Email Queue was created")
		self.assertEqual(queue.channel_type, "Office 365")
		self.assertEqual(queue.auth_method, "OAuth")
		self.assertEqual(queue.o365_mode, "Delegated")
		self.assertTrue(queue.outgoing_channel, "the queue is not mapped to an Outgoing Channel")
		channel = frappe.get_doc(CHANNEL, queue.outgoing_channel)
		self.assertEqual(channel.channel_type, "Office 365 SMTP")
		self.assertEqual(channel.from_address, address)
		self.assertEqual(connect.token_cache_owner(channel), (QUEUE, queue.name))
		token_cache = get_decrypted_password(QUEUE, queue.name, connect.TOKEN_CACHE_FIELD)
		self.assertIn("RefreshToken", token_cache)
		self.assertIn(address, settings.blocked_addresses())

		# The connection test passed against Dovecot (XOAUTH2 validated by the identity provider)
		# and the SMTP server (XOAUTH2 too).
		self.assertEqual(queue.status, "Active")
		self.assertTrue(queue.last_success)
		self.assertFalse(queue.last_error)
		self.assertEqual(channel.status, "Active")
		self.assertIn("Incoming (IMAP)", page_text)
		self.assertIn("Logged in", page_text)
		self.assertIn("Outgoing (Office 365 SMTP)", page_text)
		self.assertEqual(page_text.count("✘"), 0, page_text)
		self.assertGreater(w.oauth._state.introspections, introspections_before)

		w.goto(f"/app/incoming-email-queue/{queue.name}")
		w.page.locator(".ef-health").wait_for()
		w.shot("01-o365-5-queue-form")
		self.assertIn("Active", w.page.locator(".ef-health").inner_text())

	def test_office365_sign_in_reading_imap_and_sending_through_graph_survives_a_token_refresh(self):
		"""IMAP reading with "Send replies via: Microsoft Graph": one sign-in, two resources.

		Like Microsoft, the local identity provider redeems a code for one resource
		only (AADSTS28000) and refuses a refresh asking for a scope never consented
		(AADSTS65001): the queue must ask for IMAP alone, the channel for Graph alone.
		"""
		w = self.world
		address = w.address("reader")
		queue_name = f"Mixed support {w.tag}"
		self.addCleanup(cleanup, w.tag)
		self.sign_in_with_microsoft(address, choices={"send_via": "Microsoft Graph"}, queue_name=queue_name)
		page_text = w.page.locator("body").inner_text()
		w.shot("15-mixed-1-result")
		self.assertIn("Inbox connected", page_text)
		self.assertIn("Incoming (IMAP)", page_text)
		self.assertIn("Outgoing (Office 365 Graph)", page_text)
		self.assertEqual(page_text.count("✘"), 0, page_text)

		queue = self.queue_for(address)
		self.assertEqual((queue.name, queue.status), (queue_name, "Active"))
		channel = frappe.get_doc(CHANNEL, queue.outgoing_channel)
		self.assertEqual(channel.channel_type, "Office 365 Graph")

		# An hour later the access tokens are gone: the poll and the reply refresh them.
		subject = f"Badge reader offline {w.tag}"
		w.dovecot.append(
			address,
			"INBOX",
			customer_email(
				address, subject=subject, sender=("Rita", f"rita-{w.tag}@customer.test")
			).as_bytes(),
		)
		self.assertGreater(w.oauth.expire_access_tokens(address), 0)
		run = poll_queue(queue.name)
		w.fresh()
		self.assertIsNone(run["error"], run)
		self.assertEqual(frappe.db.get_value(QUEUE, queue.name, "status"), "Active")
		self.assertTrue(frappe.db.exists("Ticket", {"email_queue": queue.name, "subject": subject}))
		self.assertTrue(channel_admin.check_outgoing(frappe.get_doc(CHANNEL, channel.name))["ok"])
		scopes = self.token_scopes(address)
		self.assertTrue(any("IMAP" in s and "graph.microsoft.com" not in s for s in scopes), scopes)
		self.assertTrue(any("Mail.Send" in s and "outlook.office.com" not in s for s in scopes), scopes)

	def test_office365_sign_in_reading_through_graph_files_a_ticket_and_replies_through_graph(self):
		"""A Support Manager connects a mailbox read with Microsoft Graph; its mail becomes a ticket.

		The sign-in asks for Graph's mail scopes (the local Graph server refuses to
		read without Mail.ReadWrite), the connection test lists the folders over
		Graph, "Poll Now" queues the poll job a real worker runs (a Graph delta
		round), and the reply leaves through Graph sendMail.
		"""
		w = self.world
		address = w.address("support-graph")
		queue_name = f"Graph support {w.tag}"
		self.addCleanup(cleanup, w.tag)  # the queue ("... <tag>"), its tickets and raw mail
		failed_responses = self.watch_failed_responses()
		dialogs: list[str] = []
		introspections_before = w.oauth._state.introspections

		# 1. Connect inbox → Office 365 — Sign in → Read mail with: Microsoft Graph.
		w.oauth.login_as = address
		self.open_connect_dialog(shot_prefix="15-graph")
		w.page.locator('.modal.show .ef-way[data-way="o365"]').click()
		dialog = w.page.locator(".modal.show", has_text="Sign in with Microsoft")
		dialog.locator(".ef-redirect-uri").wait_for()
		read_via = dialog.locator('select[data-fieldname="read_via"]')
		self.assertEqual(read_via.input_value(), "IMAP")  # the default: what the registration steps grant
		self.assertIn("tenant turned IMAP off", dialog.inner_text())
		expect(dialog.locator('select[data-fieldname="send_via"]')).to_be_visible()
		self.choose(dialog, "read_via", "Microsoft Graph")
		expect(dialog.locator('select[data-fieldname="send_via"]')).to_be_hidden()  # Graph sends too
		self.fill(dialog, "queue_name", queue_name)
		w.shot("15-graph-3-dialog")
		dialogs += self.error_dialogs()
		with w.page.expect_navigation(url="**o365_callback**", timeout=60_000):
			dialog.locator(".btn-primary", has_text="Sign in with Microsoft").click()
		w.page.wait_for_load_state("load")

		# 2. Back from the identity provider: connected, and tested over Graph (not IMAP).
		page_text = w.page.locator("body").inner_text()
		w.shot("15-graph-4-result")
		self.assertIn("Inbox connected", page_text)
		self.assertIn(f"Signed in to Microsoft 365 as {address}", page_text)
		self.assertIn("Incoming (Microsoft Graph)", page_text)
		self.assertIn("Signed in to Microsoft Graph", page_text)
		self.assertIn("folders", page_text)
		self.assertIn("Outgoing (Office 365 Graph)", page_text)
		self.assertNotIn("Incoming (IMAP)", page_text)
		self.assertEqual(page_text.count("✘"), 0, page_text)
		self.assertIn(("GET", f"/v1.0/users/{address}/mailFolders"), w.oauth.graph.requests)
		self.assertEqual(w.oauth._state.introspections, introspections_before)  # Dovecot never asked

		queue = self.queue_for(address)
		self.assertIsNotNone(queue, "no Incoming Email Queue was created")
		self.assertEqual(queue.name, queue_name)
		self.assertEqual(queue.channel_type, "Office 365")
		self.assertEqual(queue.o365_read_via, "Microsoft Graph")
		self.assertEqual(queue.o365_mode, "Delegated")
		self.assertEqual(queue.status, "Active")
		channel = frappe.get_doc(CHANNEL, queue.outgoing_channel)
		self.assertEqual(channel.channel_type, "Office 365 Graph")
		self.assertEqual(connect.token_cache_owner(channel), (QUEUE, queue.name))
		self.assertIn(address, settings.blocked_addresses())
		# The sign-in asked for Graph's mail scopes, not IMAP/SMTP's.
		scopes = self.token_scopes(address)
		self.assertTrue(scopes, "no token was issued")
		self.assertTrue(all("Mail.ReadWrite" in s and "Mail.Send" in s for s in scopes), scopes)
		self.assertFalse(any("IMAP" in s or "SMTP" in s for s in scopes), scopes)
		# Reconnecting this queue later asks for the same Graph scopes.
		reconnect_url = urlsplit(onboarding.o365_begin(reconnect=queue.name))
		reconnect_scope = parse_qs(reconnect_url.query)["scope"][0]
		self.assertIn("https://graph.microsoft.com/Mail.ReadWrite", reconnect_scope)
		self.assertNotIn("IMAP", reconnect_scope)

		# 3. A customer writes; Microsoft revokes the access tokens meanwhile, so the poll
		#    must refresh, and the refreshed token must carry Graph's scopes again.
		subject = f"Scanner jams {w.tag}"
		mail = customer_email(
			address,
			subject=subject,
			body="Hello,\n\nthe scanner on floor 3 jams on every page.\n\nGina",
			sender=("Gina Graph", f"gina-{w.tag}@customer.test"),
		)
		graph_id = w.oauth.graph.deliver(address, mail.as_bytes())
		self.assertGreater(w.oauth.expire_access_tokens(address), 0)
		refreshes_before = w.oauth.grants.count("refresh_token")

		w.goto(f"/app/incoming-email-queue/{quote(queue.name)}")
		w.page.locator(".ef-health").wait_for()
		w.page.get_by_role("button", name="Poll Now").click()
		w.page.locator(".desk-alert", has_text="Polling").first.wait_for()  # the poll job is queued
		self.assertEqual(run_worker("long"), 0)  # a real `bench worker --burst` runs it
		outcome = w.page.locator(".modal.show", has_text="Poll finished")
		outcome.wait_for(timeout=60_000)
		self.assertIn("1 new ticket", outcome.inner_text())
		w.shot("15-graph-5-polled")
		dialogs += self.error_dialogs()
		w.page.keyboard.press("Escape")

		self.assertGreater(w.oauth.grants.count("refresh_token"), refreshes_before)
		refreshed = self.token_scopes(address)[-1]
		self.assertIn("Mail.ReadWrite", refreshed)
		w.fresh()
		ticket = frappe.db.get_value("Ticket", {"email_queue": queue.name}, ["name", "subject"], as_dict=True)
		self.assertIsNotNone(ticket, "the Graph message made no ticket")
		self.assertEqual(ticket.subject, subject)
		self.assertTrue(frappe.db.get_value("Inbound Email", {"graph_id": graph_id}, "acknowledged"))
		self.assertEqual([m.is_read for m in w.oauth.graph.messages(address)], [True])

		# 4. The ticket in the Desk, and a reply from it: out through Graph sendMail.
		w.goto("/app/ticket")
		row = w.page.locator(".list-row-container", has_text=subject).first
		row.wait_for()
		w.shot("15-graph-6-ticket-list")
		w.goto(f"/app/ticket/{ticket.name}")
		expect(w.page.locator(".title-text").first).to_contain_text(subject)
		w.page.locator(".timeline-item", has_text="jams on every page").first.wait_for()
		w.shot("15-graph-7-ticket")
		w.page.locator(".timeline-actions button", has_text="New Email").first.click()
		composer = w.page.locator(".modal.show").filter(has=w.page.locator(".ql-editor")).first
		composer.wait_for()
		w.page.wait_for_timeout(800)  # the composer fetches its defaults
		recipients = composer.locator('input[data-fieldname="recipients"]').first
		if f"gina-{w.tag}@customer.test" not in recipients.input_value():
			recipients.fill(f"gina-{w.tag}@customer.test")
			recipients.press("Enter")
		composer.locator(".ql-editor").first.click()
		w.page.keyboard.press("Control+Home")  # above the quoted message the composer adds
		composer.locator(".ql-editor").first.type("Hello Gina, a technician is on the way.")
		dialogs += self.error_dialogs()
		composer.locator(".modal-footer .btn-primary").first.click()
		composer.wait_for(state="hidden")
		sent_item = w.page.locator(".timeline-item", has_text="a technician is on the way").first
		sent_item.wait_for()
		sent_item.scroll_into_view_if_needed()
		w.shot("15-graph-8-replied")
		dialogs += self.error_dialogs()

		self.assertEqual(run_worker("short"), 0)
		sent = [m for m in w.oauth.graph_mail if m.mailbox == address]
		self.assertEqual(len(sent), 1, sent)
		self.assertEqual(sent[0].token_subject, address)
		reply = email.message_from_bytes(sent[0].raw, policy=email.policy.default)
		self.assertEqual(reply["From"].addresses[0].addr_spec, address)
		self.assertIn(f"gina-{w.tag}@customer.test", str(reply["To"]))
		self.assertIn("a technician is on the way", reply.get_body(("plain", "html")).get_content())
		self.assertEqual(len(w.oauth.graph.messages(address, "sentitems")), 1)

		self.assertEqual(dialogs, [])
		self.assertEqual(failed_responses, [])

	def test_office365_app_only_reading_through_graph_asks_graph_for_an_app_token(self):
		"""App only + Microsoft Graph: client credentials for graph.microsoft.com/.default, tested over Graph."""
		w = self.world
		address = w.address("support-shared")
		app_mailbox = f"{CLIENT_ID}@apps.example.test"  # whom the app's own tokens act for
		w.oauth.register_client(CLIENT_ID, CLIENT_SECRET, app_mailbox=app_mailbox)
		self.addCleanup(w.oauth.register_client, CLIENT_ID, CLIENT_SECRET)
		self.addCleanup(cleanup, w.tag)
		failed_responses = self.watch_failed_responses()

		self.open_connect_dialog()
		w.page.locator('.modal.show .ef-way[data-way="o365"]').click()
		dialog = w.page.locator(".modal.show", has_text="Office 365 — Sign in")
		dialog.locator(".ef-redirect-uri").wait_for()
		self.choose(dialog, "mode", "app")
		self.choose(dialog, "read_via", "Microsoft Graph")
		self.fill(dialog, "address", address)
		self.fill(dialog, "queue_name", f"Graph shared {w.tag}")
		w.shot("15-graph-app-1-dialog")
		dialog.locator(".btn-primary", has_text="Connect").click()
		result = w.page.locator(".modal.show", has_text="Inbox connected")
		result.locator(".ef-queue-link").wait_for()
		w.shot("15-graph-app-2-connected")
		text = result.inner_text()
		self.assertIn("Incoming (Microsoft Graph)", text)
		self.assertIn("Outgoing (Office 365 Graph)", text)
		self.assertNotIn("✘", text)
		self.assertEqual(self.error_dialogs(), [])

		queue = self.queue_for(address)
		self.assertEqual(queue.o365_read_via, "Microsoft Graph")
		self.assertEqual(queue.o365_mode, "App only")
		self.assertEqual(queue.status, "Active")
		channel = frappe.get_doc(CHANNEL, queue.outgoing_channel)
		self.assertEqual((channel.channel_type, channel.o365_mode), ("Office 365 Graph", "App only"))
		self.assertIn(("GET", f"/v1.0/users/{address}/mailFolders"), w.oauth.graph.requests)
		scopes = self.token_scopes(app_mailbox)
		self.assertTrue(scopes, "no app token was issued")
		self.assertTrue(all("https://graph.microsoft.com/.default" in s for s in scopes), scopes)
		self.assertEqual(failed_responses, [])

	def watch_failed_responses(self) -> list[str]:
		"""Every HTTP answer >= 400 the page receives from now until the test ends.

		The harness serves the site's WSGI application only, without Frappe's
		realtime (socket.io) server, so the Desk's socket.io polling is not counted.
		"""
		page, failed = self.world.page, []

		def on_response(response):
			if response.status >= 400 and "/socket.io/" not in response.url:
				failed.append(f"{response.status} {response.request.method} {response.url}")

		page.on("response", on_response)
		self.addCleanup(page.remove_listener, "response", on_response)
		return failed

	def token_scopes(self, subject: str) -> list[str]:
		"""The scope of every access token the identity provider issued to `subject`, oldest first."""
		with self.world.oauth._lock:
			tokens = list(self.world.oauth._state.tokens.values())
		return [t.scope for t in tokens if t.kind == "access" and t.subject == subject]

	def test_google_wrong_app_password_creates_nothing_right_one_creates_both(self):
		w = self.world
		address = w.address("service")
		self.open_connect_dialog(shot_prefix="02-google")
		w.page.locator('.modal.show .ef-way[data-way="google"]').click()
		dialog = w.page.locator(".modal.show", has_text="Test and connect")
		self.fill(dialog, "address", address)
		self.fill(dialog, "app_password", "wrong pass word here")
		dialog.locator(".ef-google-note").wait_for()
		w.shot("02-google-3-dialog")
		dialog.locator(".btn-primary", has_text="Test and connect").click()
		error = dialog.locator(".ef-error")
		error.wait_for()
		w.shot("02-google-4-wrong-app-password")
		text = error.inner_text()
		self.assertIn("nothing was created", text)
		self.assertIn("App Password", text)
		self.assertIn("Authentication failed", text)
		self.assertIsNone(self.queue_for(address))
		self.assertFalse(frappe.db.exists(CHANNEL, {"from_address": address}))
		self.assertNotIn(address, settings.blocked_addresses())

		# The right one, typed the way Google shows it (with spaces).
		spaced = " ".join(GOOGLE_APP_PASSWORD[i : i + 4] for i in range(0, 16, 4))
		self.fill(dialog, "app_password", spaced)
		dialog.locator(".btn-primary", has_text="Test and connect").click()
		result = w.page.locator(".modal.show", has_text="Inbox connected")
		result.locator(".ef-queue-link").wait_for()
		w.shot("02-google-5-connected")
		result_text = result.inner_text()
		self.assertNotIn("✘", result_text)
		queue = self.queue_for(address)
		self.assertIsNotNone(queue)
		self.assertEqual(queue.channel_type, "Google")
		self.assertEqual(queue.auth_method, "Password")
		channel = frappe.get_doc(CHANNEL, queue.outgoing_channel)
		self.assertEqual(channel.channel_type, "Google")
		self.assertEqual(channel.from_address, address)
		self.assertEqual(get_decrypted_password(CHANNEL, channel.name, "password"), GOOGLE_APP_PASSWORD)
		self.assertIn(address, settings.blocked_addresses())
		self.assertEqual(queue.status, "Active")

	def test_revoked_refresh_token_means_reconnect_needed_and_one_notification(self):
		w = self.world
		address = w.address("helpdesk")
		self.sign_in_with_microsoft(address)
		self.assertIn("Inbox connected", w.page.locator("body").inner_text())
		queue = self.queue_for(address)

		# The admin revokes the app's sessions at Microsoft; current access tokens stop working too.
		self.assertGreater(w.oauth.revoke_refresh_tokens(address), 0)
		w.oauth.expire_access_tokens(address)

		poll_queue(queue.name)
		poll_queue(queue.name)  # and again: still one notification, and a longer back-off
		queue = self.queue_for(address)
		self.assertEqual(queue.status, "Reconnect needed")
		self.assertIn("sign in again", queue.last_error)
		self.assertEqual(queue.failure_count, 2)
		self.assertTrue(queue.next_poll_after)
		notifications = frappe.get_all(
			"Notification Log",
			filters={"for_user": w.manager, "document_type": QUEUE, "document_name": queue.name},
			fields=["subject", "type"],
		)
		self.assertEqual(len(notifications), 1, notifications)
		self.assertIn("Reconnect needed", notifications[0].subject)
		self.assertFalse(
			frappe.db.exists("ToDo", {"reference_type": QUEUE, "reference_name": queue.name}),
			"a failing queue must not create ToDos",
		)

		w.goto(f"/app/incoming-email-queue/{queue.name}")
		w.page.locator(".ef-health").wait_for()
		reconnect = w.page.locator(".ef-reconnect-needed:visible")
		reconnect.wait_for()
		self.assertIn("Reconnect needed", w.page.locator(".ef-health").inner_text())
		w.shot("03-revoked-1-reconnect-needed")
		w.page.locator(".notifications-icon").first.click()
		w.page.locator(".notification-item-tabs, .notifications-list").first.wait_for()
		w.shot("03-revoked-2-notification")
		w.page.keyboard.press("Escape")

		# Reconnect: sign in again from the queue; the queue is Active again, nothing duplicated.
		with w.page.expect_navigation(url="**o365_callback**", timeout=60_000):
			reconnect.click()
		w.page.wait_for_load_state("load")
		w.shot("03-revoked-3-reconnected")
		self.assertIn("Reconnected", w.page.locator("body").inner_text())
		queue = self.queue_for(address)
		self.assertEqual(queue.status, "Active")
		self.assertEqual(frappe.db.count(QUEUE, {"email_address": address}), 1)

	def test_workspace_shortcut_opens_connect_inbox_and_forwarding_shows_address_and_webhook(self):
		w = self.world
		address = w.address("support-forward")
		w.goto("/app/email-flow")
		shortcut = w.page.locator(".shortcut-widget-box", has_text="Connect inbox")
		shortcut.wait_for()
		w.shot("04-forwarding-1-workspace")
		# Frappe v15 follows a URL shortcut in the same tab, v16 opens a new one: go where it went.
		tabs = len(w.context.pages)
		shortcut.click()
		w.page.wait_for_timeout(1500)
		if len(w.context.pages) > tabs:
			w.page = w.context.pages[-1]
			w.page.set_default_timeout(30_000)
			w.page.wait_for_load_state("networkidle")
		w.page.locator('.modal.show .ef-way[data-way="forwarding"]').click()
		dialog = w.page.locator(".modal.show", has_text="Create queue")
		self.fill(dialog, "creation_address", address)
		dialog.locator(".btn-primary", has_text="Create queue").click()
		result = w.page.locator(".modal.show", has_text="Webhook for mail servers")
		result.locator(".ef-webhook-secret").wait_for()
		w.shot("04-forwarding-2-instructions")
		queue = self.queue_for(address)
		self.assertEqual(queue.channel_type, "Forwarding")
		self.assertEqual(result.locator(".ef-creation-address").inner_text(), address)
		self.assertIn(
			f"email_flow_app.email_flow.api.receive_forwarded?queue={quote(queue.name)}",
			result.locator(".ef-webhook-url").inner_text(),
		)
		self.assertEqual(
			result.locator(".ef-webhook-secret").inner_text(),
			get_decrypted_password(QUEUE, queue.name, "forwarding_secret"),
		)
		self.assertEqual(result.locator(".ef-copy").count(), 3)
		self.assertIn(address, settings.blocked_addresses())
