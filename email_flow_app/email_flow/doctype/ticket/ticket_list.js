// Ticket list: status indicator and the queue as a coloured pill.
frappe.listview_settings["Ticket"] = {
	add_fields: ["status", "email_queue"],
	has_indicator_for_draft: true,

	get_indicator(doc) {
		const colours = {
			Open: "red",
			Replied: "blue",
			Pending: "orange",
			Resolved: "green",
			Closed: "gray",
		};
		return [__(doc.status), colours[doc.status] || "gray", "status,=," + doc.status];
	},

	onload(listview) {
		email_flow_load_queue_colours().then(() => listview.refresh());
	},

	formatters: {
		// The list puts the subject in as text: show the text a stored subject stands for.
		subject(value) {
			return email_flow.plain_text(value);
		},
		email_queue(value) {
			if (!value) return "";
			const colour = (email_flow_queue_colours[value] || "#8d99a6").replace(/[^#0-9a-zA-Z]/g, "");
			return `<span class="email-flow-queue-pill" style="background:${colour}22;color:${colour};border:1px solid ${colour};border-radius:9px;padding:1px 8px;font-size:var(--text-xs);white-space:nowrap">${frappe.utils.escape_html(value)}</span>`;
		},
	},
};

// Known at login (boot), refreshed when the list loads (a queue may have been added since).
var email_flow_queue_colours = Object.assign({}, frappe.boot.email_flow_queue_colours || {});

function email_flow_load_queue_colours() {
	// Agents may not list queues: the app answers with names and colours only.
	return frappe.xcall("email_flow_app.email_flow.boot.queue_colours").then((colours) => {
		Object.entries(colours || {}).forEach(([name, colour]) => {
			email_flow_queue_colours[name] = colour || "#8d99a6";
		});
	});
}
