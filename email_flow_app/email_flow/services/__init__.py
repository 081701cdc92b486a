"""Where mail meets documents: ingest, threading, routing, outbound.

These modules import frappe and glue `email_flow_app.mail` (pure) and
`email_flow_app.channels` (transports) to DocTypes.
"""
