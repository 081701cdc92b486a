app_name = "email_flow_app"
app_title = "Email Flow"
app_publisher = "Email Flow developers"
app_description = "Support inboxes become a shared ticket desk: email in, tickets, replies out."
app_email = "dev@email-flow.invalid"
app_license = "mit"
required_apps = []  # frappe itself is implied; naming it makes bench look it up online

export_python_type_annotations = True
require_type_annotated_api_methods = True

# Roles shipped with the app (synced on install and migrate).
fixtures = [
	{"dt": "Role", "filters": [["role_name", "in", ["Support Agent", "Support Manager"]]]},
]

before_uninstall = "email_flow_app.install.before_uninstall"

extend_bootinfo = "email_flow_app.email_flow.boot.extend_bootinfo"

scheduler_events = {
	"cron": {
		"* * * * *": ["email_flow_app.email_flow.services.polling.enqueue_polls"],
	},
}

# Frappe's Email Queue (system mail and Desk replies) leaves through Outgoing Channels.
override_email_send = "email_flow_app.email_flow.services.outbound.send_email_queue"

doc_events = {
	"Communication": {
		"after_insert": "email_flow_app.email_flow.services.replies.on_communication_insert",
	},
}

permission_query_conditions = {
	"Ticket": "email_flow_app.email_flow.permissions.ticket_query_conditions",
}
has_permission = {
	"Ticket": "email_flow_app.email_flow.permissions.has_ticket_permission",
}

# Desk: the "Connect inbox" dialogs and channel health helpers (public/js/connect_inbox.js).
app_include_js = ["/assets/email_flow_app/js/connect_inbox.js"]
