"""Who sees which tickets.

Support Managers and System Managers see every ticket. A Support Agent sees the
tickets of queues that are not restricted, and of restricted queues that list
them under 'Assign To'. Website users get no Desk permission on Ticket at all
(the DocType grants none), so they read nothing.
"""

import frappe

UNRESTRICTED_ROLES = {"System Manager", "Support Manager", "Administrator"}


def _is_restricted_user(user: str) -> bool:
	return user != "Administrator" and not (UNRESTRICTED_ROLES & set(frappe.get_roles(user)))


def hidden_queues(user: str) -> list[str]:
	"""Restricted queues that do not list `user` as one of their agents."""
	restricted = frappe.get_all("Incoming Email Queue", filters={"restrict_to_agents": 1}, pluck="name")
	if not restricted:
		return []
	mine = set(
		frappe.get_all(
			"Incoming Email Queue Agent",
			filters={"parenttype": "Incoming Email Queue", "user": user, "parent": ("in", restricted)},
			pluck="parent",
		)
	)
	return [q for q in restricted if q not in mine]


def ticket_query_conditions(user: str | None = None) -> str:
	user = user or frappe.session.user
	if not _is_restricted_user(user):
		return ""
	hidden = hidden_queues(user)
	if not hidden:
		return ""
	names = ", ".join(frappe.db.escape(q) for q in hidden)
	return f"(ifnull(`tabTicket`.`email_queue`, '') not in ({names}))"


def has_ticket_permission(doc, ptype: str | None = None, user: str | None = None) -> bool:
	"""Deny a restricted queue's ticket to agents it does not list.

	Frappe lets this hook only deny: True leaves the decision to role permissions.
	"""
	user = user or frappe.session.user
	if not _is_restricted_user(user) or not doc.get("email_queue"):
		return True
	return doc.email_queue not in hidden_queues(user)
