// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Inbound Email", {
	refresh(frm) {
		if (["Failed", "Filtered"].includes(frm.doc.status)) {
			frm.add_custom_button(__("Reprocess"), () =>
				frm.call("reprocess").then((r) => {
					frappe.show_alert({ message: __("Now: {0}", [r.message]), indicator: "green" });
					frm.reload_doc();
				})
			);
		}
		if (frm.doc.ticket) {
			frm.add_custom_button(__("Open Ticket"), () => frappe.set_route("Form", "Ticket", frm.doc.ticket));
		}
	},
});
