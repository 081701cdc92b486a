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
	# The Support workspace's counts block (drawn by public/js/email_flow_desk.js).
	{"dt": "Custom HTML Block", "filters": [["name", "in", ["Support desk counts"]]]},
]

after_install = "email_flow_app.install.after_install"
before_uninstall = "email_flow_app.install.before_uninstall"
# A Contact's form lists the customer's tickets.
override_doctype_dashboards = {"Contact": "email_flow_app.install.contact_dashboard"}

extend_bootinfo = "email_flow_app.email_flow.boot.extend_bootinfo"

scheduler_events = {
	"cron": {
		# The polls' tick and the SLA overdue sweep, in one job (services/tick.py).
		"* * * * *": ["email_flow_app.email_flow.services.tick.every_minute"],
		# Microsoft Graph change notifications: subscribe, renew, replace (services/graph_push.py).
		"*/15 * * * *": ["email_flow_app.email_flow.services.graph_push.maintain_subscriptions"],
	},
	"daily_long": [
		"email_flow_app.email_flow.services.retention.apply_retention",
		"email_flow_app.email_flow.services.store.sweep_orphan_raw_files",
	],
}

# Frappe's Email Queue (system mail and Desk replies) leaves through Outgoing Channels.
override_email_send = "email_flow_app.email_flow.services.outbound.send_email_queue"

doc_events = {
	"Communication": {
		"validate": "email_flow_app.email_flow.services.replies.store_text_safely",
		"after_insert": "email_flow_app.email_flow.services.replies.on_communication_insert",
	},
	# Replies on a Ticket leave at once (a worker job after the commit), not at the next flush.
	"Email Queue": {"after_insert": "email_flow_app.email_flow.services.replies.send_ticket_mail_now"},
	# A restricted queue's ticket is assigned or shared only with its agents.
	"ToDo": {"validate": "email_flow_app.email_flow.permissions.check_assignment"},
	"DocShare": {"validate": "email_flow_app.email_flow.permissions.check_assignment"},
	# Who may see which queue is cached per user (permissions.queue_visibility).
	"Incoming Email Queue": {
		"after_insert": "email_flow_app.email_flow.permissions.clear_queue_visibility",
		"on_update": "email_flow_app.email_flow.permissions.clear_queue_visibility",
		"on_trash": "email_flow_app.email_flow.permissions.clear_queue_visibility",
	},
	# Support Agents land on the Support workspace (unless they chose another).
	"User": {"validate": "email_flow_app.install.default_support_workspace"},
	# The raw-mail archive is append-only: its .eml Files go only by the retention rule.
	"File": {
		"on_trash": "email_flow_app.email_flow.services.retention.protect_raw_file",
	},
}

# Who reaches what: see permissions.py and the README's "Roles" table.
permission_query_conditions = {
	"Ticket": "email_flow_app.email_flow.permissions.ticket_query_conditions",
	"Communication": "email_flow_app.email_flow.permissions.communication_query_conditions",
	"File": "email_flow_app.email_flow.permissions.file_query_conditions",
	"Incoming Email Queue": "email_flow_app.email_flow.permissions.config_query_conditions",
	"Outgoing Channel": "email_flow_app.email_flow.permissions.config_query_conditions",
}
has_permission = {
	"Ticket": "email_flow_app.email_flow.permissions.has_ticket_permission",
	# Mail files (raw .eml, customers' attachments) are refused for delete before anything leaves the disk.
	"File": "email_flow_app.email_flow.services.retention.file_has_permission",
}
# Agents pick queues in link fields without reading any queue setting.
standard_queries = {
	"Incoming Email Queue": "email_flow_app.email_flow.permissions.queue_link_query",
}
# Frappe's count, group-by, global search and password endpoints, with our DocTypes' rules.
override_whitelisted_methods = {
	"frappe.client.get_count": "email_flow_app.email_flow.permissions.get_count",
	"frappe.desk.listview.get_group_by_count": "email_flow_app.email_flow.permissions.get_group_by_count",
	"frappe.utils.global_search.search": "email_flow_app.email_flow.permissions.global_search",
	"frappe.client.get_password": "email_flow_app.email_flow.permissions.get_password",
}

# Desk: the "Connect inbox" dialogs and channel health helpers (public/js/connect_inbox.js),
# and what every user's Desk needs for tickets (public/js/email_flow_desk.js).
app_include_js = [
	"/assets/email_flow_app/js/connect_inbox.js",
	"/assets/email_flow_app/js/email_flow_desk.js",
]
