frappe.listview_settings["Inbound Email"] = {
	add_fields: ["status", "reason"],
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
