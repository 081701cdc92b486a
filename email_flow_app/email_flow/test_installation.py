"""What an admin sees right after `bench --site SITE install-app email_flow_app`."""

import frappe

try:  # Frappe v16+
	from frappe.tests import IntegrationTestCase as SiteTestCase
except ImportError:  # Frappe v15
	from frappe.tests.utils import FrappeTestCase as SiteTestCase


class TestInstallation(SiteTestCase):
	def test_email_flow_module_belongs_to_the_app(self):
		self.assertEqual(frappe.db.get_value("Module Def", "Email Flow", "app_name"), "email_flow_app")

	def test_support_roles_exist_with_desk_access(self):
		for role in ("Support Agent", "Support Manager"):
			with self.subTest(role=role):
				self.assertTrue(frappe.db.exists("Role", role), f"role {role} missing")
				self.assertEqual(frappe.db.get_value("Role", role, "desk_access"), 1)

	def test_app_is_listed_as_installed(self):
		self.assertIn("email_flow_app", frappe.get_installed_apps())
