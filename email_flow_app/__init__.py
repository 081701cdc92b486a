"""Email Flow: support inboxes become a shared ticket desk in Frappe."""

__version__ = "0.1.0"
