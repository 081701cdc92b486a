frappe.listview_settings["Inbound Email"] = {
	add_fields: ["status", "reason", "error_type"],
	onload(listview) {
		// Failed rows are triaged by their kind of error: offer it in the sidebar's group-by,
		// unless the user chose the sidebar's fields already.
		const settings = frappe.get_user_settings("Inbound Email") || {};
		if (!settings.group_by_fields) {
			frappe.model.user_settings.save("Inbound Email", "group_by_fields", ["error_type", "status"]);
		}
	},
	get_indicator(doc) {
		const colours = {
			Received: "blue",
			"Ticket Created": "green",
			Appended: "green",
			Filtered: "orange",
			Failed: "red",
		};
		return [__(doc.status), colours[doc.status] || "gray", "status,=," + doc.status];
	},
};
