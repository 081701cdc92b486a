// Ticket list: status (with the needs-reply marker), customer, the queue as a coloured pill
// (a click filters by it), the age of the customer's last message, the assignees (Frappe's
// avatars); a ticket the customer wrote to since you last opened it is bold (track_seen).
frappe.listview_settings["Ticket"] = {
	add_fields: ["status", "email_queue", "needs_reply", "due_by"],
	has_indicator_for_draft: true,
	hide_name_column: true, // the ID is in the link and the form's title; the columns need the room

	get_indicator(doc) {
		if (doc.needs_reply && !["Resolved", "Closed"].includes(doc.status)) {
			return [__("Needs reply"), "red", "needs_reply,=,1"];
		}
		const colours = {
			Open: "orange",
			Replied: "blue",
			Pending: "yellow",
			Resolved: "green",
			Closed: "gray",
		};
		return [__(doc.status), colours[doc.status] || "gray", "status,=," + doc.status];
	},

	onload(listview) {
		listview.page.wrapper.addClass("email-flow-ticket-list");
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
			// "filterable": a click on the pill filters the list by the queue (Frappe's list handler).
			return `<span class="email-flow-queue-pill filterable" data-filter="email_queue,=,${frappe.utils.escape_html(value)}" title="${__("Show only {0}", [frappe.utils.escape_html(value)])}" style="background:${colour}22;color:${colour};border:1px solid ${colour};border-radius:9px;padding:1px 8px;font-size:var(--text-xs);white-space:nowrap">${frappe.utils.escape_html(value)}</span>`;
		},
		last_customer_message_on(value, df, doc) {
			// The age of the customer's last message: "3 hours ago"; overdue tickets say so.
			if (!value) return "";
			const overdue =
				doc.due_by && frappe.datetime.str_to_obj(doc.due_by) < frappe.datetime.now_datetime(true);
			return `<span class="${overdue ? "text-danger" : "text-muted"}" title="${frappe.datetime.str_to_user(value)}">${frappe.datetime.comment_when(value, true)}${overdue ? " · " + __("overdue") : ""}</span>`;
		},
	},
};

// The subject is the column people read: give it room.
$("<style>")
	.text(".email-flow-ticket-list .list-row-col.list-subject{flex:2.2}")
	.appendTo(document.head);

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
