"""Who may read which ticket, and the forwarding webhook's door."""

import frappe
from frappe.utils.password import get_decrypted_password

from email_flow_app.email_flow.tests.utils import MailWorld, SiteTestCase, customer_email, http_post

WEBHOOK = "/api/method/email_flow_app.email_flow.api.receive_forwarded"


def make_user(email: str, roles: list[str], user_type: str = "System User") -> str:
	if not frappe.db.exists("User", email):
		user = frappe.get_doc(
			{
				"doctype": "User",
				"email": email,
				"first_name": email.split("@")[0],
				"user_type": user_type,
				"send_welcome_email": 0,
			}
		)
		user.insert(ignore_permissions=True)
	user = frappe.get_doc("User", email)
	user.set("roles", [])
	for role in roles:
		user.append("roles", {"role": role})
	user.save(ignore_permissions=True)
	return email


class TestQueuePermissions(SiteTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.world = MailWorld().start()
		w = cls.world
		cls.agent_a = make_user(f"agent-a-{w.tag}@example.test", ["Support Agent"])
		cls.agent_b = make_user(f"agent-b-{w.tag}@example.test", ["Support Agent"])
		cls.website_user = make_user(f"web-{w.tag}@example.test", [], user_type="Website User")
		cls.queue_a = w.make_queue(
			"Queue A", f"a-{w.tag}@example.test", restrict_to_agents=1, assign_to=[{"user": cls.agent_a}]
		)
		cls.queue_b = w.make_queue(
			"Queue B", f"b-{w.tag}@example.test", restrict_to_agents=1, assign_to=[{"user": cls.agent_b}]
		)
		cls.ticket_b = frappe.get_doc(
			{
				"doctype": "Ticket",
				"subject": "Only for B",
				"email_queue": cls.queue_b.name,
				"raised_by": "x@customer.test",
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()

	@classmethod
	def tearDownClass(cls):
		cls.world.stop()
		for user in (cls.agent_a, cls.agent_b, cls.website_user):
			frappe.delete_doc("User", user, force=True, ignore_permissions=True)
		frappe.db.commit()
		super().tearDownClass()

	def test_agent_of_queue_a_cannot_read_a_ticket_of_restricted_queue_b(self):
		self.assertFalse(frappe.has_permission("Ticket", "read", doc=self.ticket_b, user=self.agent_a))
		self.assertTrue(frappe.has_permission("Ticket", "read", doc=self.ticket_b, user=self.agent_b))
		visible_to_a = frappe.get_list(
			"Ticket", filters={"name": self.ticket_b.name}, user=self.agent_a, pluck="name"
		)
		visible_to_b = frappe.get_list(
			"Ticket", filters={"name": self.ticket_b.name}, user=self.agent_b, pluck="name"
		)
		self.assertEqual(visible_to_a, [])
		self.assertEqual(visible_to_b, [self.ticket_b.name])

	def test_website_user_cannot_read_tickets(self):
		self.assertFalse(frappe.has_permission("Ticket", "read", doc=self.ticket_b, user=self.website_user))
		self.assertFalse(frappe.has_permission("Ticket", "read", user=self.website_user))

	def test_forwarding_endpoint_rejects_a_wrong_secret_and_files_a_right_one(self):
		w = self.world
		queue = w.make_queue(
			"Forwarded",
			f"fwd-{w.tag}@example.test",
			channel_type="Forwarding",
			creation_address=f"new-{w.tag}@example.test",
		)
		frappe.db.commit()
		secret = get_decrypted_password("Incoming Email Queue", queue.name, "forwarding_secret")
		raw = customer_email(f"fwd-{w.tag}@example.test", subject="Forwarded to us").as_bytes()
		url = f"{WEBHOOK}?queue={queue.name}"

		wrong = http_post(
			url, raw, {"Content-Type": "message/rfc822", "X-Email-Flow-Secret": "not-the-secret"}
		)
		self.assertEqual(wrong.status_code, 403)
		frappe.db.rollback()
		self.assertEqual(frappe.db.count("Inbound Email", {"email_queue": queue.name}), 0)

		right = http_post(url, raw, {"Content-Type": "message/rfc822", "X-Email-Flow-Secret": secret})
		self.assertEqual(right.status_code, 200, right.get_data(as_text=True))
		frappe.db.rollback()
		tickets = frappe.get_all("Ticket", filters={"email_queue": queue.name}, pluck="subject")
		self.assertEqual(tickets, ["Forwarded to us"])

		again = http_post(url, raw, {"Content-Type": "message/rfc822", "X-Email-Flow-Secret": secret})
		self.assertEqual(again.status_code, 200)
		frappe.db.rollback()
		self.assertEqual(frappe.db.count("Ticket", {"email_queue": queue.name}), 1)
