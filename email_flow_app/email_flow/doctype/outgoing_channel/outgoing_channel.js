// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Outgoing Channel", {
	refresh(frm) {
		if (frm.is_new()) return;
		email_flow.add_connection_buttons(frm);
	},
});
