"""Connect inbox, in real headless Chromium against this site served over HTTP.

Office 365: the Desk sends the browser to a local HTTPS identity provider
whose authorize endpoint redirects back with a code; msal finishes the
authorization-code flow (PKCE) on the site's callback. Google: App Password
against Dovecot and the SMTP server. Health: a revoked refresh token.
Screenshots of each step go to /work/screenshots (EMAIL_FLOW_SCREENSHOTS).
"""

from urllib.parse import quote

import frappe
from frappe.utils.password import get_decrypted_password
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from email_flow_app.email_flow.services import connect, settings
from email_flow_app.email_flow.services.polling import poll_queue
from email_flow_app.email_flow.tests.browser.harness import UIWorld
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user

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

	def sign_in_with_microsoft(self, address: str, shot_prefix: str | None = None) -> None:
		"""Connect inbox → Office 365 → Sign in: through the identity provider and back."""
		w = self.world
		w.oauth.login_as = address  # who signs in at the (local) Microsoft login page
		self.open_connect_dialog(shot_prefix)
		w.page.locator('.modal.show .ef-way[data-way="o365"]').click()
		dialog = w.page.locator(".modal.show", has_text="Sign in with Microsoft")
		dialog.locator(".ef-redirect-uri").wait_for()
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
