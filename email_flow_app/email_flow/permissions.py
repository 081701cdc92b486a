"""Who reaches what (the "Roles" table of the README).

* Support Agent: reads, writes and comments on the Tickets of the queues they may
  see; may *select* Incoming Email Queues (link fields, list pills) but reads none
  of their settings; never Outgoing Channels, settings or raw mail; never deletes.
* Support Manager: also queues, channels, settings, the Inbound Email archive
  (read, reprocess), Ticket delete.
* System Manager: everything, and the raw-mail retention rule.

A restricted queue (restrict_to_agents) hides from the agents it does not list
everything made from its mail: Tickets, their Communications, Files and
assignments (through the Ticket), list/report/count/group-by/export and global
search. Frappe's has_permission hooks can only deny (v15 and v16), so every
hook here returns True ("no objection") or False.
"""

import frappe
from frappe import _

UNRESTRICTED_ROLES = {"System Manager", "Support Manager", "Administrator"}
CONFIG_DOCTYPES = ("Incoming Email Queue", "Outgoing Channel", "Email Flow Settings", "Inbound Email")
OUR_DOCTYPES = ("Ticket", *CONFIG_DOCTYPES)


def is_restricted_user(user: str | None = None) -> bool:
	"""True for users the queue restriction applies to (everyone but managers)."""
	user = user or frappe.session.user
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


VISIBILITY_CACHE = "email_flow:queue_visibility"


def queue_visibility(user: str) -> tuple[list[str], list[str]]:
	"""(hidden, visible) queues of a restricted user, kept in Redis until any queue changes.

	Every list, count and report of Tickets asks it; computed, it costs three
	queries, which at a few milliseconds would be most of an indexed list call.
	"""
	cached = frappe.cache.hget(VISIBILITY_CACHE, user)
	if cached is None:
		hidden = hidden_queues(user)
		visible = [q for q in frappe.get_all("Incoming Email Queue", pluck="name") if q not in set(hidden)]
		cached = (hidden, visible)
		frappe.cache.hset(VISIBILITY_CACHE, user, cached)
	return cached


def clear_queue_visibility(doc=None, method=None) -> None:
	"""Incoming Email Queue inserted, saved (agents, restriction) or deleted: ask again."""
	frappe.cache.delete_value(VISIBILITY_CACHE)


def hidden_for(user: str | None) -> list[str]:
	user = user or frappe.session.user
	return queue_visibility(user)[0] if is_restricted_user(user) else []


def _in_list(names: list[str]) -> str:
	return ", ".join(frappe.db.escape(n) for n in names)


def ticket_query_conditions(user: str | None = None) -> str:
	user = user or frappe.session.user
	if not is_restricted_user(user):
		return ""
	hidden, visible = queue_visibility(user)
	if not hidden:
		return ""
	# The queues the user sees, named: with the (email_queue, status, modified) index a count
	# or list reads only those queues' rows (a `not in` would scan them all). No function
	# around the column. Tickets without a queue stay visible.
	if not visible:
		return "`tabTicket`.`email_queue` is null"
	return f"(`tabTicket`.`email_queue` is null or `tabTicket`.`email_queue` in ({_in_list(visible)}))"


def _hidden_ticket_subquery(hidden: list[str]) -> str:
	return f"select `name` from `tabTicket` where `email_queue` in ({_in_list(hidden)})"


def can_see_queue(queue: str | None, user: str | None = None) -> bool:
	return not queue or queue not in hidden_for(user)


def has_ticket_permission(doc, ptype: str | None = None, user: str | None = None) -> bool:
	"""Deny a restricted queue's ticket to agents it does not list."""
	return can_see_queue(doc.get("email_queue"), user)


def check_assignment(doc, method: str | None = None) -> None:
	"""ToDo / DocShare validate (doc_events): a restricted queue's ticket goes only to its agents.

	Frappe shares a document with an assignee who cannot read it, and a share
	would put the ticket in that user's lists: refuse instead.
	"""
	if doc.doctype == "ToDo":
		doctype, name, user = doc.reference_type, doc.reference_name, doc.allocated_to
	else:
		doctype, name, user = doc.share_doctype, doc.share_name, doc.user
	if doctype != "Ticket" or not name or not user:
		return
	queue = frappe.db.get_value("Ticket", name, "email_queue")
	if not can_see_queue(queue, user):
		frappe.throw(
			_(
				"{0} is not an agent of the restricted queue {1}, so the ticket cannot be given to them."
			).format(frappe.bold(user), frappe.bold(queue)),
			frappe.PermissionError,
			title=_("Not an agent of this queue"),
		)


def communication_query_conditions(user: str | None = None) -> str:
	hidden = hidden_for(user)
	if not hidden:
		return ""
	return (
		"not (`tabCommunication`.`reference_doctype` = 'Ticket' and "
		f"`tabCommunication`.`reference_name` in ({_hidden_ticket_subquery(hidden)}))"
	)


def file_query_conditions(user: str | None = None) -> str:
	"""Ticket and Communication attachments of hidden tickets stay out of File lists."""
	hidden = hidden_for(user)
	if not hidden:
		return ""
	tickets = _hidden_ticket_subquery(hidden)
	communications = (
		"select `name` from `tabCommunication` where `reference_doctype` = 'Ticket' "
		f"and `reference_name` in ({tickets})"
	)
	return (
		"not ((`tabFile`.`attached_to_doctype` = 'Ticket' "
		f"and `tabFile`.`attached_to_name` in ({tickets})) "
		"or (`tabFile`.`attached_to_doctype` = 'Communication' "
		f"and `tabFile`.`attached_to_name` in ({communications})))"
	)


def config_query_conditions(user: str | None = None) -> str:
	"""Users who may only *select* a queue (agents) list no queue rows at all.

	Frappe's select permission would still return names and let filters probe
	other columns (host, user name); agents get names and colours through
	`queue_link_query` and the Desk boot instead.
	"""
	user = user or frappe.session.user
	if user == "Administrator" or UNRESTRICTED_ROLES & set(frappe.get_roles(user)):
		return ""
	return "1 = 0"


@frappe.whitelist()
@frappe.validate_and_sanitize_search_inputs
def queue_link_query(
	doctype: str, txt: str, searchfield: str, start: int, page_len: int, filters: dict | str | None = None
) -> list:
	"""Link search for Incoming Email Queue (standard_queries): names and colours only.

	An agent sees the queues whose tickets they may see; nothing else of a queue.
	"""
	if not (
		frappe.has_permission("Incoming Email Queue", "select") or frappe.has_permission("Ticket", "read")
	):
		raise frappe.PermissionError(_("Not permitted"))
	hidden = set(hidden_for(None))
	rows = frappe.get_all(
		"Incoming Email Queue",
		filters={"name": ("like", f"%{txt}%")} if txt else None,
		fields=["name", "color"],
		order_by="name asc",
		limit_start=start,
		limit_page_length=page_len + len(hidden),
	)
	return [(row.name, row.color or "") for row in rows if row.name not in hidden][:page_len]


# -- counts, group-by and global search: Frappe's own endpoints, checked -------------


@frappe.whitelist()
def get_count(
	doctype: str, filters: str | dict | list | None = None, debug: bool = False, cache: bool = False
) -> int:
	"""frappe.client.get_count, with permissions for Email Flow's DocTypes.

	Frappe v15's version counts straight from the table (any logged-in user, any
	filter: a search oracle). For our DocTypes the count goes through get_list,
	so the role check and the queue restriction apply; other DocTypes are
	answered by Frappe's own function, unchanged.
	"""
	from frappe.client import get_count as frappe_get_count

	if doctype not in OUR_DOCTYPES:
		return frappe_get_count(doctype, filters=filters, debug=debug, cache=cache)
	_require_read(doctype)
	from frappe.client import get_safe_filters

	rows = frappe.get_list(doctype, filters=get_safe_filters(filters), fields=["count(*) as count"])
	return rows[0].count if rows else 0


@frappe.whitelist()
def get_group_by_count(doctype: str, current_filters: str, field: str) -> list[dict]:
	"""The list sidebar's group-by counts; the 'Assigned To' one honours permissions for our DocTypes."""
	from frappe.desk.listview import get_group_by_count as frappe_group_by_count

	if doctype not in OUR_DOCTYPES:
		return frappe_group_by_count(doctype, current_filters, field)
	_require_read(doctype)
	if field != "assigned_to":
		return frappe_group_by_count(doctype, current_filters, field)
	# Frappe builds this one with frappe.qb.get_query, which applies no permission:
	# count ToDos over the names the user may list.
	names = frappe.get_list(doctype, filters=frappe.parse_json(current_filters), pluck="name", limit=0)
	if not names:
		return []
	ToDo = frappe.qb.DocType("ToDo")
	User = frappe.qb.DocType("User")
	count = frappe.query_builder.functions.Count("*").as_("count")
	return (
		frappe.qb.from_(ToDo)
		.from_(User)
		.select(ToDo.allocated_to.as_("name"), count)
		.where(
			(ToDo.status != "Cancelled")
			& (ToDo.allocated_to == User.name)
			& (User.user_type == "System User")
			& (ToDo.reference_type == doctype)
			& (ToDo.reference_name.isin(names))
		)
		.groupby(ToDo.allocated_to)
		.orderby(count, order=frappe.qb.desc)
		.limit(50)
		.run(as_dict=True)
	)


@frappe.whitelist()
def global_search(text: str, start: int = 0, limit: int = 20, doctype: str = "") -> list:
	"""frappe.utils.global_search.search, minus the rows of our DocTypes the user may not read.

	Frappe checks only the DocType; a restricted queue's Ticket would be found by
	any agent once an admin adds Ticket to global search.
	"""
	from frappe.utils.global_search import search

	results = search(text, start=start, limit=limit, doctype=doctype)
	return [
		row
		for row in results
		if row.get("doctype") not in OUR_DOCTYPES
		or frappe.has_permission(row["doctype"], "read", doc=row.get("name"))
	]


@frappe.whitelist()
def get_password(doctype: str, name: str, fieldname: str) -> str:
	"""frappe.client.get_password: Email Flow's stored secrets are decrypted for nobody.

	Mailbox passwords, client secrets, refresh tokens and token caches are only
	ever sent to the server they were entered for; other DocTypes keep Frappe's rule.
	"""
	from frappe.client import get_password as frappe_get_password

	if doctype in OUR_DOCTYPES:
		raise frappe.PermissionError(_("Email Flow never shows a stored secret."))
	return frappe_get_password(doctype, name, fieldname)


def _require_read(doctype: str) -> None:
	if not frappe.has_permission(doctype, "read"):
		raise frappe.PermissionError(_("Not permitted to read {0}").format(_(doctype)))
