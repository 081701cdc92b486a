"""Raw mail leaves only by the System Manager's retention rule; the nightly sweep removes only orphans."""

import os
import time

import frappe
from frappe.utils import add_days, get_files_path, now_datetime

from email_flow_app.email_flow.services import retention, store
from email_flow_app.email_flow.tests.utils import SiteTestCase, customer_email

SETTINGS = "Email Flow Settings"


class TestRawMailRetention(SiteTestCase):
	def setUp(self):
		self.tag = frappe.generate_hash(length=6).lower()
		self.queue = frappe.get_doc(
			{
				"doctype": "Incoming Email Queue",
				"queue_name": f"Retention {self.tag}",
				"channel_type": "Forwarding",
				"email_address": f"retention-{self.tag}@example.test",
			}
		).insert(ignore_permissions=True)
		self.before = frappe.db.get_single_value(SETTINGS, "raw_mail_retention_days")
		frappe.db.commit()

	def tearDown(self):
		frappe.db.rollback()
		with retention.removing_raw_mail():
			for name in frappe.get_all(
				"Inbound Email", filters={"email_queue": self.queue.name}, pluck="name"
			):
				frappe.delete_doc("Inbound Email", name, force=True, ignore_permissions=True)
		frappe.db.set_single_value(SETTINGS, "raw_mail_retention_days", self.before or 0)
		frappe.delete_doc("Incoming Email Queue", self.queue.name, force=True, ignore_permissions=True)
		frappe.db.commit()

	def stored(self, subject: str, status: str, age_days: int) -> tuple[str, str]:
		raw = customer_email(self.queue.email_address, subject=f"{subject} {self.tag}").as_bytes()
		name, _created = store.store_inbound(queue=self.queue.name, raw=raw, key=f"test:{self.tag}:{subject}")
		frappe.db.set_value(
			"Inbound Email", name, {"status": status, "creation": add_days(now_datetime(), -age_days)}
		)
		return name, frappe.db.get_value("Inbound Email", name, "raw_file")

	def on_disk(self, url: str) -> bool:
		return os.path.exists(get_files_path(url.rsplit("/", 1)[1], is_private=1))

	def test_finished_old_mail_goes_failed_and_recent_mail_stays(self):
		old_done, old_done_url = self.stored("old filed", "Ticket Created", 40)
		old_failed, old_failed_url = self.stored("old failed", "Failed", 40)
		recent, recent_url = self.stored("recent", "Ticket Created", 2)
		frappe.db.commit()
		with self.assertRaises(frappe.PermissionError):  # nobody deletes raw mail by hand
			frappe.delete_doc("Inbound Email", old_done, ignore_permissions=True)
		frappe.db.rollback()
		self.assertTrue(self.on_disk(old_done_url))

		frappe.db.set_single_value(SETTINGS, "raw_mail_retention_days", 0)
		self.assertEqual(retention.apply_retention(), 0)  # 0 keeps raw mail forever
		frappe.db.set_single_value(SETTINGS, "raw_mail_retention_days", 30)
		frappe.db.commit()
		self.assertGreaterEqual(retention.apply_retention(), 1)
		frappe.db.rollback()
		self.assertFalse(frappe.db.exists("Inbound Email", old_done))
		self.assertFalse(self.on_disk(old_done_url))
		for name, url in ((old_failed, old_failed_url), (recent, recent_url)):
			self.assertTrue(frappe.db.exists("Inbound Email", name))
			self.assertTrue(self.on_disk(url))

	def test_the_nightly_sweep_removes_only_raw_files_no_row_names(self):
		kept, kept_url = self.stored("kept", "Ticket Created", 0)
		frappe.db.commit()
		folder = get_files_path(is_private=1)
		orphan = os.path.join(folder, f"INB-9{self.tag}.eml")  # a store that died before its commit
		fresh = os.path.join(folder, f"INB-8{self.tag}.eml")  # one a running store may still commit
		for path in (orphan, fresh):
			with open(path, "wb") as out:
				out.write(b"Subject: left behind\r\n\r\nbody\r\n")
		day_old = time.time() - 2 * 86400
		os.utime(orphan, (day_old, day_old))
		os.utime(get_files_path(kept_url.rsplit("/", 1)[1], is_private=1), (day_old, day_old))
		try:
			removed = store.sweep_orphan_raw_files()
			self.assertIn(os.path.basename(orphan), removed)
			self.assertFalse(os.path.exists(orphan))
			self.assertTrue(os.path.exists(fresh))
			self.assertTrue(self.on_disk(kept_url))
		finally:
			for path in (orphan, fresh):
				if os.path.exists(path):
					os.unlink(path)
