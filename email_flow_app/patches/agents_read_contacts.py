"""Support Agents read Contacts (the ticket's customer, their other tickets): see install.py."""

from email_flow_app.install import grant_agents_contact_read


def execute():
	grant_agents_contact_read()
