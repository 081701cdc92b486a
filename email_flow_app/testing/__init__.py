"""Real local servers for tests (Dovecot, SMTP, OAuth endpoints).

Used by the framework-free suite (tests/) and by the Frappe suite alike.
Nothing here imports frappe.
"""
