"""Mail transports (IMAP, SMTP, Office 365, Google, forwarding).

Bytes in, bytes out. Nothing here imports frappe.
"""
