// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Incoming Email Queue", {
	refresh(frm) {
		if (frm.is_new()) return;
		frm.add_custom_button(__("Test Connection"), () =>
			frm.call({ method: "test_connection", doc: frm.doc, freeze: true }).then((r) => {
				const result = r.message || {};
				frappe.msgprint({
					title: result.ok ? __("Connection works") : __("Connection failed"),
					message: frappe.utils.escape_html(result.message || ""),
					indicator: result.ok ? "green" : "red",
				});
			})
		);
	},
});

frappe.ui.form.on("Incoming Email Queue", {
	refresh(frm) {
		if (frm.is_new() || frm.doc.channel_type === "Forwarding") return;
		frm.add_custom_button(__("Poll Now"), () =>
			frm.call({ method: "poll_now", doc: frm.doc }).then(() =>
				frappe.show_alert({ message: __("Polling queued"), indicator: "blue" })
			)
		);
	},
});

// Health (last success, last error), Reconnect, forwarding instructions.
frappe.ui.form.on("Incoming Email Queue", {
	refresh(frm) {
		if (frm.is_new()) return;
		email_flow.show_health(frm);
		if (frm.doc.channel_type === "Forwarding") {
			frm.add_custom_button(__("Forwarding instructions"), () =>
				email_flow.show_forwarding(frm.doc.name)
			);
			return;
		}
		const reconnect = frm.add_custom_button(__("Reconnect"), () => email_flow.reconnect(frm));
		if (frm.doc.status === "Reconnect needed") {
			reconnect.removeClass("btn-default").addClass("btn-primary ef-reconnect-needed");
		}
	},
});
