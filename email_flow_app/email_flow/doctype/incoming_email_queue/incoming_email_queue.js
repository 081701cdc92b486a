// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Incoming Email Queue", {
	refresh(frm) {
		if (frm.is_new()) return;
		if (frm.doc.channel_type === "Forwarding") {
			email_flow.show_health(frm);
			frm.add_custom_button(__("Forwarding instructions"), () =>
				email_flow.show_forwarding(frm.doc.name)
			);
			return;
		}
		email_flow.add_connection_buttons(frm);
		frm.add_custom_button(__("Poll Now"), () =>
			frm.call({ method: "poll_now", doc: frm.doc }).then(() =>
				frappe.show_alert({ message: __("Polling queued"), indicator: "blue" })
			)
		);
	},
});
