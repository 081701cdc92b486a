"""Least privilege over real HTTP: every user logs in with their own session and calls the REST API.

The site is served by Frappe's WSGI application on 127.0.0.1 (as for the
browser tests). Users: Guest, a website user, a Support Agent outside the
restricted queue, an agent of that queue, a Support Manager and a System
Manager. Each attack that once worked is a row of the table, and it is denied.
"""

import json
import socket
import time
from urllib.parse import quote

import frappe
import requests
from frappe.utils.password import get_decrypted_password, update_password

from email_flow_app.email_flow.tests.browser.harness import WebServer
from email_flow_app.email_flow.tests.test_permissions_and_forwarding import make_user
from email_flow_app.email_flow.tests.utils import MailWorld, SiteTestCase, customer_email
from email_flow_app.testing.recorder import RecordingIMAPServer

PASSWORD = "Least-privilege-1!"
PDF = b"%PDF-1.4\n% restricted attachment\n"
WEBHOOK = "/api/method/email_flow_app.email_flow.api.receive_forwarded"

GUEST, WEBSITE, AGENT_OUT, AGENT_IN, MANAGER, SYSMAN = (
	"guest",
	"website",
	"agent_out",
	"agent_in",
	"manager",
	"sysman",
)
EVERYONE = (GUEST, WEBSITE, AGENT_OUT, AGENT_IN, MANAGER, SYSMAN)


def res(doctype: str, name: str | None = None) -> str:
	path = f"/api/resource/{quote(doctype)}"
	return f"{path}/{quote(name, safe='')}" if name else path


def method(name: str) -> str:
	return f"/api/method/{name}"


class TestLeastPrivilegeOverHTTP(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = w = MailWorld(extra_inboxes=("secret",)).start()
		tag = w.tag
		cls.emails = {
			WEBSITE: make_user(f"lp-web-{tag}@example.test", [], user_type="Website User"),
			AGENT_OUT: make_user(f"lp-agent-out-{tag}@example.test", ["Support Agent"]),
			AGENT_IN: make_user(f"lp-agent-in-{tag}@example.test", ["Support Agent"]),
			MANAGER: make_user(f"lp-manager-{tag}@example.test", ["Support Manager"]),
			SYSMAN: make_user(f"lp-sysman-{tag}@example.test", ["System Manager"]),
		}
		for email in cls.emails.values():
			update_password(email, PASSWORD)
		cls.secret_queue = w.make_queue(
			"Secret",
			w.address("secret"),
			restrict_to_agents=1,
			assign_to=[{"user": cls.emails[AGENT_IN]}],
			outgoing_channel=w.channel.name,
		)
		cls.word = f"zebra{tag}"  # a word only the restricted ticket has
		w.deliver(
			customer_email(
				w.address("secret"), subject=f"Payroll {cls.word}", attachment=("salaries.pdf", PDF)
			).as_bytes(),
			user=w.address("secret"),
		)
		w.deliver(customer_email(w.support, subject="Open printer question").as_bytes())
		w.poll()
		cls.hidden_ticket = frappe.get_value("Ticket", {"email_queue": cls.secret_queue.name}, "name")
		cls.open_ticket = frappe.get_value("Ticket", {"email_queue": w.queue.name}, "name")
		assert cls.hidden_ticket and cls.open_ticket, "the two mails did not become tickets"
		cls.hidden_inbound = frappe.get_value("Inbound Email", {"ticket": cls.hidden_ticket}, "name")
		cls.open_inbound = frappe.get_value("Inbound Email", {"ticket": cls.open_ticket}, "name")
		cls.raw_file = frappe.get_value(
			"File",
			{"attached_to_doctype": "Inbound Email", "attached_to_name": cls.hidden_inbound},
			["name", "file_url"],
			as_dict=True,
		)
		cls.attachment = frappe.get_value(
			"File",
			{
				"attached_to_doctype": "Ticket",
				"attached_to_name": cls.hidden_ticket,
				"file_name": ("like", "salaries%.pdf"),
			},
			["name", "file_url"],
			as_dict=True,
		)
		cls.hidden_communication = frappe.get_value(
			"Communication", {"reference_doctype": "Ticket", "reference_name": cls.hidden_ticket}, "name"
		)
		frappe.get_doc(
			{
				"doctype": "ToDo",
				"allocated_to": cls.emails[AGENT_IN],
				"reference_type": "Ticket",
				"reference_name": cls.hidden_ticket,
				"description": "look at this",
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		cls.web = WebServer(
			frappe.local.site, frappe.local.sites_path, frappe.get_site_path("logs", "email_flow_lp_web.log")
		)
		cls.web.start()
		cls.sessions = {GUEST: requests.Session()}
		for who, email in cls.emails.items():
			session = requests.Session()
			login = session.post(
				f"{cls.web.url}/api/method/login", data={"usr": email, "pwd": PASSWORD}, timeout=30
			)
			assert login.status_code == 200, (who, login.status_code, login.text[:300])
			cls.sessions[who] = session

	@classmethod
	def tearDownClass(cls):
		cls.web.stop()
		frappe.db.delete("ToDo", {"reference_name": cls.hidden_ticket})
		cls.world.stop()
		for email in cls.emails.values():
			frappe.delete_doc("User", email, force=True, ignore_permissions=True)
		frappe.db.commit()
		super().tearDownClass()

	# -- helpers --------------------------------------------------------------------

	def call(self, who: str, verb: str, path: str, **kwargs) -> requests.Response:
		kwargs.setdefault("timeout", 60)
		kwargs.setdefault("headers", {"Accept": "application/json"})
		return self.sessions[who].request(verb, f"{self.web.url}{path}", **kwargs)

	def expect(self, rows):
		"""rows: (label, verb, path, kwargs, {user: status or (status, check(response))})."""
		failures = []
		for label, verb, path, kwargs, expected in rows:
			for who, want in expected.items():
				status, check = want if isinstance(want, tuple) else (want, None)
				response = self.call(who, verb, path, **(kwargs or {}))
				ok = response.status_code == status or (status == 403 and response.status_code in (401, 403))
				if ok and check is not None:
					ok = bool(check(response))
				if not ok:
					failures.append(f"{label} as {who}: {response.status_code} {response.text[:200]}")
		self.assertEqual(failures, [], "\n".join(failures))

	def run_test_connection(self, data: dict) -> requests.Response:
		"""The form's "Test connection" as a Support Manager (run_doc_method, saved or unsaved document)."""
		return self.call(
			MANAGER, "POST", method("run_doc_method"), data={**data, "method": "test_connection"}
		)

	def _drop(self, doctype: str, name: str) -> None:
		frappe.db.rollback()
		frappe.delete_doc(doctype, name, force=True, ignore_permissions=True)
		frappe.db.commit()

	def message(self, response):
		return response.json().get("message")

	def data(self, response):
		return response.json().get("data")

	# -- reading ----------------------------------------------------------------------

	def test_raw_mail_tickets_and_everything_made_from_them(self):
		hidden, inbound = self.hidden_ticket, self.hidden_inbound
		no_hidden_ticket = lambda r: hidden not in r.text  # noqa: E731
		self.expect(
			[
				(
					"Inbound Email of a restricted queue",
					"GET",
					res("Inbound Email", inbound),
					None,
					{GUEST: 403, WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 403, MANAGER: 200, SYSMAN: 200},
				),
				(
					"Inbound Email list",
					"GET",
					res("Inbound Email") + "?limit_page_length=0",
					None,
					{
						WEBSITE: 403,
						AGENT_OUT: 403,
						AGENT_IN: 403,
						MANAGER: (200, lambda r: inbound in r.text),
					},
				),
				(
					"raw .eml file",
					"GET",
					self.raw_file.file_url,
					None,
					{
						GUEST: 403,
						WEBSITE: 403,
						AGENT_OUT: 403,
						AGENT_IN: 403,
						MANAGER: (200, lambda r: self.word.encode() in r.content),
					},
				),
				(
					"restricted ticket",
					"GET",
					res("Ticket", hidden),
					None,
					{GUEST: 403, WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 200, MANAGER: 200, SYSMAN: 200},
				),
				(
					"restricted ticket through getdoc",
					"GET",
					method(f"frappe.desk.form.load.getdoc?doctype=Ticket&name={hidden}"),
					None,
					{AGENT_OUT: 403, AGENT_IN: 200},
				),
				(
					"docinfo",
					"GET",
					method(f"frappe.desk.form.load.get_docinfo?doctype=Ticket&name={hidden}"),
					None,
					# The timeline: the agent of the queue reads its Communications here.
					{AGENT_OUT: 403, AGENT_IN: (200, lambda r: self.hidden_communication in r.text)},
				),
				(
					"its attachment",
					"GET",
					self.attachment.file_url,
					None,
					{GUEST: 403, WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: (200, lambda r: r.content == PDF)},
				),
				(
					"its Communication",
					"GET",
					res("Communication", self.hidden_communication),
					None,
					# Frappe gives Desk users no role permission on others' Communications: the
					# timeline reads them through the Ticket (docinfo, above).
					{GUEST: 403, WEBSITE: 403, AGENT_OUT: 403, MANAGER: 403},
				),
				(
					"Ticket list",
					"GET",
					res("Ticket") + "?limit_page_length=0",
					None,
					{
						WEBSITE: 403,
						AGENT_OUT: (200, no_hidden_ticket),
						AGENT_IN: (200, lambda r: hidden in r.text),
					},
				),
				(
					"File list of its attachments",
					"GET",
					res("File")
					+ "?fields="
					+ quote(json.dumps(["name", "file_name", "attached_to_name"]))
					+ "&limit_page_length=0",
					None,
					{AGENT_OUT: (200, lambda r: "salaries.pdf" not in r.text and hidden not in r.text)},
				),
				(
					"Communication list",
					"GET",
					res("Communication")
					+ "?fields="
					+ quote(json.dumps(["name", "subject", "reference_name"]))
					+ "&limit_page_length=0",
					None,
					{AGENT_OUT: (200, lambda r: self.word not in r.text)},
				),
				(
					"link search",
					"GET",
					method(f"frappe.desk.search.search_link?doctype=Ticket&txt={self.word}"),
					None,
					{AGENT_OUT: (200, no_hidden_ticket), AGENT_IN: (200, lambda r: hidden in r.text)},
				),
				(
					"report view",
					"POST",
					method("frappe.desk.reportview.get"),
					{"data": {"doctype": "Ticket", "fields": json.dumps(["name", "subject"])}},
					{WEBSITE: 403, AGENT_OUT: (200, no_hidden_ticket)},
				),
				(
					"export",
					"POST",
					method("frappe.desk.reportview.export_query"),
					{
						"data": {
							"doctype": "Ticket",
							"file_format_type": "CSV",
							"fields": json.dumps(["`tabTicket`.`name`"]),
						}
					},
					{WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 403},
				),
				(
					"assignments",
					"GET",
					res("ToDo") + "?fields=" + quote(json.dumps(["name", "reference_name"])),
					None,
					{AGENT_OUT: (200, no_hidden_ticket)},
				),
			]
		)

	def test_counts_group_by_and_global_search_apply_the_restriction(self):
		hidden = self.hidden_ticket
		like = quote(json.dumps({"subject": ["like", f"%{self.word}%"]}))
		count = lambda n: (200, lambda r: self.message(r) == n)  # noqa: E731
		self.expect(
			[
				(
					"client.get_count oracle",
					"GET",
					method(f"frappe.client.get_count?doctype=Ticket&filters={like}"),
					None,
					{GUEST: 403, WEBSITE: 403, AGENT_OUT: count(0), AGENT_IN: count(1), MANAGER: count(1)},
				),
				(
					"client.get_count of raw mail",
					"GET",
					method("frappe.client.get_count?doctype=Inbound%20Email"),
					None,
					{WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 403},
				),
				(
					"reportview.get_count",
					"POST",
					method("frappe.desk.reportview.get_count"),
					{
						"data": {
							"doctype": "Ticket",
							"filters": json.dumps({"subject": ["like", f"%{self.word}%"]}),
						}
					},
					{GUEST: 403, WEBSITE: 403, AGENT_OUT: count(0), AGENT_IN: count(1)},
				),
				(
					"group-by: assigned to",
					"POST",
					method("frappe.desk.listview.get_group_by_count"),
					{"data": {"doctype": "Ticket", "current_filters": "[]", "field": "assigned_to"}},
					{
						WEBSITE: 403,
						AGENT_OUT: (200, lambda r: self.emails[AGENT_IN] not in r.text),
						AGENT_IN: (200, lambda r: self.emails[AGENT_IN] in r.text),
					},
				),
				(
					"group-by: queue",
					"POST",
					method("frappe.desk.listview.get_group_by_count"),
					{"data": {"doctype": "Ticket", "current_filters": "[]", "field": "email_queue"}},
					{WEBSITE: 403, AGENT_OUT: (200, lambda r: self.secret_queue.name not in r.text)},
				),
			]
		)
		# An admin adds Ticket to global search: agents still find only what they may read.
		settings = frappe.get_single("Global Search Settings")
		if not any(row.document_type == "Ticket" for row in settings.allowed_in_global_search):
			settings.append("allowed_in_global_search", {"document_type": "Ticket"})
			settings.save(ignore_permissions=True)
		from frappe.utils.global_search import rebuild_for_doctype

		rebuild_for_doctype("Ticket")
		frappe.db.commit()
		try:
			search = method(f"frappe.utils.global_search.search?text={self.word}")
			self.expect(
				[
					(
						"global search",
						"GET",
						search,
						None,
						{
							AGENT_OUT: (200, lambda r: hidden not in r.text),
							AGENT_IN: (200, lambda r: hidden in r.text),
						},
					),
				]
			)
		finally:
			settings.reload()
			settings.allowed_in_global_search = [
				row for row in settings.allowed_in_global_search if row.document_type != "Ticket"
			]
			settings.save(ignore_permissions=True)
			frappe.db.delete("__global_search", {"doctype": "Ticket"})
			frappe.db.commit()

	def test_agents_see_queue_names_and_colours_only(self):
		queue, channel = self.secret_queue.name, self.world.channel.name
		fields = quote(json.dumps(["name", "host", "username", "email_address"]))
		probe = quote(json.dumps([["host", "like", "127%"]]))
		no_settings = lambda r: "127.0.0.1" not in r.text and "example.test" not in r.text  # noqa: E731
		self.expect(
			[
				(
					"queue document",
					"GET",
					res("Incoming Email Queue", queue),
					None,
					{GUEST: 403, WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 403, MANAGER: 200},
				),
				(
					"queue list with settings",
					"GET",
					res("Incoming Email Queue") + f"?fields={fields}",
					None,
					{WEBSITE: 403, AGENT_OUT: (200, no_settings), AGENT_IN: (200, no_settings)},
				),
				(
					"queue list probed by a filter",
					"GET",
					res("Incoming Email Queue") + f"?filters={probe}",
					None,
					{
						AGENT_OUT: (200, lambda r: self.data(r) == []),
						MANAGER: (200, lambda r: queue in r.text),
					},
				),
				(
					"channel document",
					"GET",
					res("Outgoing Channel", channel),
					None,
					{WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 403, MANAGER: 200},
				),
				(
					"settings",
					"GET",
					res("Email Flow Settings", "Email Flow Settings"),
					None,
					{WEBSITE: 403, AGENT_OUT: 403, MANAGER: 200},
				),
				(
					"queue link search",
					"GET",
					method("frappe.desk.search.search_link?doctype=Incoming%20Email%20Queue&txt="),
					None,
					{
						AGENT_OUT: (
							200,
							lambda r: queue not in r.text
							and self.world.queue.name in r.text
							and no_settings(r),
						),
						AGENT_IN: (200, lambda r: queue in r.text),
					},
				),
				(
					"queue colours",
					"GET",
					method("email_flow_app.email_flow.boot.queue_colours"),
					None,
					{
						WEBSITE: (200, lambda r: self.message(r) == {}),
						AGENT_OUT: (
							200,
							lambda r: queue not in self.message(r)
							and self.world.queue.name in self.message(r),
						),
					},
				),
				(
					"decrypted secret",
					"POST",
					method("frappe.client.get_password"),
					{"data": {"doctype": "Outgoing Channel", "name": channel, "fieldname": "password"}},
					{AGENT_OUT: 403, MANAGER: 403, SYSMAN: 403},
				),
				(
					"password field in the document",
					"GET",
					res("Outgoing Channel", channel),
					None,
					{
						MANAGER: (200, lambda r: "support-pw" not in r.text),
						SYSMAN: (200, lambda r: "support-pw" not in r.text),
					},
				),
			]
		)

	# -- writing ----------------------------------------------------------------------

	def test_agents_change_no_configuration_and_delete_nothing(self):
		queue, channel = self.secret_queue.name, self.world.channel.name
		self.expect(
			[
				(
					"open a restricted queue",
					"PUT",
					res("Incoming Email Queue", queue),
					{"json": {"restrict_to_agents": 0}},
					{WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 403},
				),
				(
					"join a restricted queue",
					"PUT",
					res("Incoming Email Queue", queue),
					{"json": {"assign_to": [{"user": self.emails[AGENT_OUT]}]}},
					{AGENT_OUT: 403},
				),
				(
					"point a channel at the attacker",
					"PUT",
					res("Outgoing Channel", channel),
					{"json": {"host": "127.0.0.9", "security": "Plain"}},
					{WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 403},
				),
				(
					"set_value on a channel",
					"POST",
					method("frappe.client.set_value"),
					{
						"data": {
							"doctype": "Outgoing Channel",
							"name": channel,
							"fieldname": "host",
							"value": "127.0.0.9",
						}
					},
					{AGENT_OUT: 403},
				),
				(
					"create a queue",
					"POST",
					res("Incoming Email Queue"),
					{
						"json": {
							"queue_name": "Rogue",
							"channel_type": "Forwarding",
							"email_address": "rogue@example.test",
						}
					},
					{WEBSITE: 403, AGENT_OUT: 403},
				),
				(
					"create a channel",
					"POST",
					res("Outgoing Channel"),
					{
						"json": {
							"channel_name": "Rogue",
							"channel_type": "SMTP",
							"from_address": "rogue@example.test",
						}
					},
					{AGENT_OUT: 403},
				),
				(
					"change settings",
					"PUT",
					res("Email Flow Settings", "Email Flow Settings"),
					{"json": {"max_tickets_per_sender_per_hour": 0}},
					{AGENT_OUT: 403},
				),
				(
					"manager sets raw-mail retention",
					"PUT",
					res("Email Flow Settings", "Email Flow Settings"),
					{"json": {"raw_mail_retention_days": 1}},
					{MANAGER: (200, lambda r: not self.data(r).get("raw_mail_retention_days"))},
				),
				(
					"delete a queue",
					"DELETE",
					res("Incoming Email Queue", self.world.queue.name),
					None,
					{AGENT_OUT: 403, AGENT_IN: 403},
				),
				(
					"delete a ticket",
					"DELETE",
					res("Ticket", self.open_ticket),
					None,
					{WEBSITE: 403, AGENT_OUT: 403, AGENT_IN: 403},
				),
				(
					"delete raw mail",
					"DELETE",
					res("Inbound Email", self.open_inbound),
					None,
					{AGENT_OUT: 403, MANAGER: 403, SYSMAN: 403},
				),
				(
					"delete the raw file",
					"DELETE",
					res("File", self.raw_file.name),
					None,
					{AGENT_IN: 403, MANAGER: 403, SYSMAN: 403},
				),
				(
					"reprocess",
					"POST",
					method("email_flow_app.email_flow.api.reprocess"),
					{"data": {"inbound_email": self.open_inbound}},
					{WEBSITE: 403, AGENT_OUT: 403},
				),
				(
					"change a ticket's reply channel",
					"PUT",
					res("Ticket", self.open_ticket),
					{"json": {"outgoing_channel": channel}},
					{AGENT_OUT: (200, lambda r: not self.data(r).get("outgoing_channel"))},
				),
			]
		)
		self.expect(
			[
				(
					"delete an attachment that came by mail",
					"DELETE",
					res("File", self.attachment.name),
					None,
					{AGENT_OUT: 403, AGENT_IN: 403},
				),
			]
		)
		frappe.db.rollback()
		self.assertTrue(frappe.db.exists("File", self.attachment.name))
		queue_doc = frappe.get_doc("Incoming Email Queue", queue)
		self.assertEqual(queue_doc.restrict_to_agents, 1)
		self.assertEqual([a.user for a in queue_doc.assign_to], [self.emails[AGENT_IN]])
		self.assertEqual(frappe.db.get_value("Outgoing Channel", channel, "host"), "127.0.0.1")
		self.assertTrue(frappe.db.exists("Inbound Email", self.open_inbound))
		self.assertTrue(frappe.db.exists("File", self.raw_file.name))
		self.assertTrue(frappe.db.exists("Ticket", self.open_ticket))
		self.assertFalse(frappe.db.exists("Incoming Email Queue", "Rogue"))

	def test_a_restricted_ticket_cannot_be_moved_out(self):
		hidden, open_queue = self.hidden_ticket, self.world.queue.name
		self.expect(
			[
				(
					"move by PUT",
					"PUT",
					res("Ticket", hidden),
					{"json": {"email_queue": open_queue}},
					{AGENT_OUT: (403, lambda r: self.word not in r.text)},
				),
				(
					"move by set_value",
					"POST",
					method("frappe.client.set_value"),
					{
						"data": {
							"doctype": "Ticket",
							"name": hidden,
							"fieldname": "email_queue",
							"value": open_queue,
						}
					},
					{AGENT_OUT: (403, lambda r: self.word not in r.text)},
				),
				(
					"move by savedocs",
					"POST",
					method("frappe.desk.form.save.savedocs"),
					{
						"data": {
							"doc": json.dumps(
								{
									"doctype": "Ticket",
									"name": hidden,
									"email_queue": open_queue,
									"subject": "x",
									"status": "Open",
									"modified": str(frappe.db.get_value("Ticket", hidden, "modified")),
								}
							),
							"action": "Save",
						}
					},
					{AGENT_OUT: 403},
				),
				(
					"create in a hidden queue",
					"POST",
					res("Ticket"),
					{"json": {"subject": "planted", "email_queue": self.secret_queue.name}},
					{AGENT_OUT: 403},
				),
			]
		)
		# Nor handed to an outsider: an assignment would share it with them.
		assign = {
			"data": {
				"doctype": "Ticket",
				"name": hidden,
				"assign_to": json.dumps([self.emails[AGENT_OUT]]),
			}
		}
		share = {"data": {"doctype": "Ticket", "name": hidden, "user": self.emails[AGENT_OUT], "read": 1}}
		self.expect(
			[
				(
					"assign to an outsider",
					"POST",
					method("frappe.desk.form.assign_to.add"),
					assign,
					{AGENT_IN: 403, MANAGER: 403},
				),
				(
					"share with an outsider",
					"POST",
					method("frappe.share.add"),
					share,
					{AGENT_IN: 403, MANAGER: 403},
				),
			]
		)
		frappe.db.rollback()
		self.assertFalse(
			frappe.db.exists("ToDo", {"reference_name": hidden, "allocated_to": self.emails[AGENT_OUT]})
		)
		self.assertFalse(frappe.db.exists("DocShare", {"share_name": hidden, "user": self.emails[AGENT_OUT]}))
		self.assertEqual(frappe.db.get_value("Ticket", hidden, "email_queue"), self.secret_queue.name)
		self.assertEqual(self.call(AGENT_OUT, "GET", self.attachment.file_url).status_code, 403)
		# The queue's own agent may move it into a queue they also see.
		moved = self.call(AGENT_IN, "PUT", res("Ticket", hidden), json={"email_queue": open_queue})
		self.assertEqual(moved.status_code, 200, moved.text[:300])
		back = self.call(MANAGER, "PUT", res("Ticket", hidden), json={"email_queue": self.secret_queue.name})
		self.assertEqual(back.status_code, 200, back.text[:300])

	def test_a_manager_deletes_a_ticket_and_the_raw_mail_stays(self):
		w = self.world
		w.deliver(customer_email(w.support, subject="Delete me later").as_bytes())
		w.poll()
		ticket = frappe.get_value(
			"Ticket", {"subject": "Delete me later", "email_queue": w.queue.name}, "name"
		)
		inbound = frappe.get_value("Inbound Email", {"ticket": ticket}, "name")
		self.assertEqual(self.call(AGENT_IN, "DELETE", res("Ticket", ticket)).status_code, 403)
		deleted = self.call(MANAGER, "DELETE", res("Ticket", ticket))
		self.assertIn(deleted.status_code, (200, 202), deleted.text[:300])
		frappe.db.rollback()
		self.assertFalse(frappe.db.exists("Ticket", ticket))
		self.assertTrue(frappe.db.exists("Inbound Email", inbound))
		raw = frappe.get_value(
			"File", {"attached_to_doctype": "Inbound Email", "attached_to_name": inbound}, "name"
		)
		self.assertTrue(raw and frappe.get_doc("File", raw).get_content())

	# -- credentials stay with their server --------------------------------------------

	def test_a_changed_smtp_host_never_receives_the_stored_password(self):
		from email_flow_app.testing.smtp_server import SMTPTestServer

		w = self.world
		channel = frappe.get_doc(
			{
				"doctype": "Outgoing Channel",
				"channel_name": f"Exfil SMTP {w.tag}",
				"channel_type": "SMTP",
				"from_address": w.address("exfil"),
				"host": "127.0.0.1",
				"port": w.smtp.port,
				"security": "STARTTLS",
				"username": w.support,
				"password": "the-old-secret",
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		attacker = SMTPTestServer(w.ca, users={})
		attacker.start()
		try:
			changed = self.call(
				MANAGER,
				"PUT",
				res("Outgoing Channel", channel.name),
				json={"port": attacker.port, "security": "STARTTLS"},
			)
			self.assertEqual(changed.status_code, 200, changed.text[:300])
			self.assertEqual(self.data(changed)["status"], "Reconnect needed")
			tested = self.run_test_connection({"dt": "Outgoing Channel", "dn": channel.name})
			self.assertEqual(tested.status_code, 200, tested.text[:300])
			self.assertFalse(self.message(tested)["ok"])
			# A direct send as well (the path system mail takes).
			frappe.db.rollback()
			from email_flow_app.email_flow.services import connect

			with self.assertRaises(Exception):
				with connect.smtp_sink(frappe.get_doc("Outgoing Channel", channel.name)) as sink:
					sink.connect()
			secrets = [attempt[2] for attempt in attacker.auth_attempts]
			self.assertNotIn("the-old-secret", secrets)
			self.assertIsNone(
				get_decrypted_password("Outgoing Channel", channel.name, "password", raise_exception=False)
			)
			# Typing the password again in the same save is what a real move looks like.
			moved = self.call(
				MANAGER,
				"PUT",
				res("Outgoing Channel", channel.name),
				json={"port": w.smtp.port, "password": "support-pw"},
			)
			self.assertEqual(moved.status_code, 200, moved.text[:300])
			frappe.db.rollback()
			with connect.smtp_sink(frappe.get_doc("Outgoing Channel", channel.name)) as sink:
				sink.connect()
		finally:
			attacker.stop()
			frappe.delete_doc("Outgoing Channel", channel.name, force=True, ignore_permissions=True)
			frappe.db.commit()

	def test_a_changed_imap_host_never_receives_the_stored_password(self):
		w = self.world
		queue = w.make_queue("Exfil", w.address("exfil-in"), password="the-old-imap-secret")
		frappe.db.commit()
		self.addCleanup(self._drop, "Incoming Email Queue", queue.name)
		with RecordingIMAPServer() as attacker:
			# The form's "Test connection" on an unsaved change (the document comes from the browser).
			unsaved = {**queue.as_dict(), "port": attacker.port, "security": "Plain", "password": "*" * 10}
			tested = self.run_test_connection({"docs": json.dumps(unsaved, default=str)})
			self.assertEqual(tested.status_code, 200, tested.text[:300])
			self.assertFalse(self.message(tested)["ok"])
			saved = self.call(
				MANAGER,
				"PUT",
				res("Incoming Email Queue", queue.name),
				json={"port": attacker.port, "security": "Plain"},
			)
			self.assertEqual(saved.status_code, 200, saved.text[:300])
			self.assertEqual(self.data(saved)["status"], "Reconnect needed")
			frappe.db.rollback()
			from email_flow_app.email_flow.services.polling import poll_queue

			try:
				poll_queue(queue.name)
			except Exception:
				pass
			frappe.db.rollback()
			time.sleep(0.2)
			self.assertFalse(attacker.saw("the-old-imap-secret"), bytes(attacker.received)[:500])
			# A user name with CR LF cannot smuggle a line into the IMAP session.
			smuggled = self.call(
				MANAGER,
				"PUT",
				res("Incoming Email Queue", queue.name),
				json={"username": "x\r\nA2 DELETE INBOX", "password": "new-pw"},
			)
			self.assertEqual(smuggled.status_code, 417, smuggled.text[:300])
			self.assertNotIn(b"DELETE INBOX", bytes(attacker.received))

	def test_test_connection_never_echoes_another_service(self):
		w = self.world
		queue = w.make_queue("Scanner", w.address("scanner"))
		frappe.db.commit()
		self.addCleanup(self._drop, "Incoming Email Queue", queue.name)
		db_port = int(frappe.conf.db_port or 3306)
		changed = self.call(
			MANAGER,
			"PUT",
			res("Incoming Email Queue", queue.name),
			json={"host": "127.0.0.1", "port": db_port, "security": "Plain", "password": "typed-again"},
		)
		self.assertEqual(changed.status_code, 200, changed.text[:300])
		tested = self.run_test_connection({"dt": "Incoming Email Queue", "dn": queue.name})
		result = self.message(tested)
		self.assertFalse(result["ok"])
		self.assertIn("did not answer as an IMAP server", result["message"])
		self.assertNotIn("mysql", result["message"].lower())
		self.assertNotIn("maria", result["message"].lower())

	# -- the forwarding door ----------------------------------------------------------

	def test_forwarding_endpoint_answers_alike_and_limits_failures(self):
		w = self.world
		queue = w.make_queue(
			"Door", w.address("door"), channel_type="Forwarding", creation_address=w.address("door-new")
		)
		disabled = w.make_queue(
			"Shut",
			w.address("shut"),
			channel_type="Forwarding",
			creation_address=w.address("shut-new"),
			enabled=0,
		)
		frappe.db.commit()
		secret = get_decrypted_password("Incoming Email Queue", queue.name, "forwarding_secret")
		raw = customer_email(w.address("door-new"), subject="Through the door").as_bytes()
		mime = {"Content-Type": "message/rfc822"}

		def post(query, body=raw, headers=None, session=GUEST):
			return self.call(
				session, "POST", f"{WEBHOOK}{query}", data=body, headers={**mime, **(headers or {})}
			)

		answers = {
			"unknown": post("?queue=No%20such%20queue", headers={"X-Email-Flow-Secret": secret}),
			"disabled": post(f"?queue={quote(disabled.name)}", headers={"X-Email-Flow-Secret": secret}),
			"wrong secret": post(f"?queue={quote(queue.name)}", headers={"X-Email-Flow-Secret": "nope"}),
		}
		self.assertEqual({k: (r.status_code, r.text) for k, r in answers.items()}.keys(), answers.keys())
		self.assertEqual(
			{(r.status_code, json.dumps(r.json(), sort_keys=True)) for r in answers.values()},
			{(403, json.dumps({"message": {"ok": False, "reason": "forbidden"}}, sort_keys=True))},
		)
		self.assertEqual(post("").status_code, 400)
		as_json = post(
			f"?queue={quote(queue.name)}",
			body=b"{}",
			headers={"Content-Type": "application/json", "X-Email-Flow-Secret": secret},
		)
		self.assertEqual(as_json.status_code, 400, as_json.text[:300])
		# A body cut on the way (Content-Length says more than arrived) is refused and never stored.
		cut = self._raw_post(f"{WEBHOOK}?queue={quote(queue.name)}", raw, secret, declared=len(raw) + 500)
		self.assertIn(cut, (400, 413))
		# Over Frappe's request cap, chunked: refused, nothing stored.
		big = (b"X" * 1024 * 1024 for _ in range(27))
		over = post(
			f"?queue={quote(queue.name)}", body=raw_prefix(raw, big), headers={"X-Email-Flow-Secret": secret}
		)
		self.assertEqual(over.status_code, 413, over.text[:300])
		frappe.db.rollback()
		self.assertEqual(frappe.db.count("Inbound Email", {"email_queue": queue.name}), 0)
		good = post(f"?queue={quote(queue.name)}", headers={"X-Email-Flow-Secret": secret})
		self.assertEqual(good.status_code, 200, good.text[:300])
		# Refused secrets are limited per client address.
		statuses = [
			post(f"?queue={quote(queue.name)}", headers={"X-Email-Flow-Secret": f"guess{i}"}).status_code
			for i in range(15)
		]
		self.assertIn(429, statuses)
		self.assertEqual(
			post(f"?queue={quote(queue.name)}", headers={"X-Email-Flow-Secret": secret}).status_code, 429
		)
		frappe.cache.delete_keys("email_flow:forward-secret-failures")
		frappe.db.rollback()
		self.assertEqual(frappe.db.count("Inbound Email", {"email_queue": queue.name}), 1)

	def _raw_post(self, path: str, body: bytes, secret: str, declared: int) -> int:
		"""A client that announces `declared` bytes, sends fewer and closes its side."""
		with socket.create_connection(("127.0.0.1", self.web.port), timeout=30) as sock:
			head = (
				f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: message/rfc822\r\n"
				f"X-Email-Flow-Secret: {secret}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
			).encode()
			sock.sendall(head + body)
			sock.shutdown(socket.SHUT_WR)
			reply = b""
			while chunk := sock.recv(65536):
				reply += chunk
		return int(reply.split(b" ", 2)[1]) if reply else 0


def raw_prefix(raw: bytes, rest):
	yield raw
	yield from rest
