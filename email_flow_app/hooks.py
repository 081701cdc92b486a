app_name = "email_flow_app"
app_title = "Email Flow"
app_publisher = "Email Flow developers"
app_description = "Support inboxes become a shared ticket desk: email in, tickets, replies out."
app_email = "dev@email-flow.invalid"
app_license = "mit"
required_apps = ["frappe"]

export_python_type_annotations = True
require_type_annotated_api_methods = True

# Roles shipped with the app (synced on install and migrate).
fixtures = [
	{"dt": "Role", "filters": [["role_name", "in", ["Support Agent", "Support Manager"]]]},
]
