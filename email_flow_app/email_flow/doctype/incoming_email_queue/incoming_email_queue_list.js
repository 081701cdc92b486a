// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

frappe.listview_settings["Incoming Email Queue"] = {
	add_fields: ["status", "enabled", "channel_type", "last_error"],
	get_indicator(doc) {
		if (!doc.enabled) return [__("Disabled"), "gray", "enabled,=,0"];
		const colour = { Active: "green", Failing: "orange", "Reconnect needed": "red" }[doc.status] || "gray";
		return [__(doc.status || "Active"), colour, `status,=,${doc.status}`];
	},
	onload(listview) {
		listview.page
			.add_inner_button(__("Connect inbox"), () => email_flow.connect_inbox())
			.removeClass("btn-default")
			.addClass("btn-primary ef-connect-inbox");
		open_from_url();
	},
	refresh() {
		open_from_url();
	},
};

// The workspace's "Connect inbox" shortcut opens /app/incoming-email-queue?connect_inbox=1.
function open_from_url() {
	const params = new URLSearchParams(window.location.search);
	if (!params.has("connect_inbox")) return;
	params.delete("connect_inbox");
	const query = params.toString();
	window.history.replaceState(null, "", window.location.pathname + (query ? `?${query}` : ""));
	email_flow.connect_inbox();
}
