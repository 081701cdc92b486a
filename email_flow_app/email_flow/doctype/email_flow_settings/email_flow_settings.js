// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Email Flow Settings", {
	refresh(frm) {
		frm.add_custom_button(__("Connect inbox"), () => email_flow.connect_inbox());
		frappe
			.call({ method: "email_flow_app.email_flow.api_connect.o365_setup", type: "GET" })
			.then((r) => {
				const uri = frappe.utils.escape_html(r.message.redirect_uri);
				frm.get_field("o365_redirect_uri_html").$wrapper.html(
					`<p class="text-muted small">${__(
						"Redirect URI (Azure → App registrations → Authentication → Web)"
					)}:<br><code class="ef-redirect-uri">${uri}</code></p>`
				);
			});
	},
});
