"""What happens when an admin saves or tests a queue or channel."""

import frappe
from frappe import _
from frappe.utils import get_datetime, now_datetime

from email_flow_app.channels.errors import ChannelError
from email_flow_app.email_flow.services import connect, settings

PROXY_PREFIX = "Email Flow: "
# Where the proxy Email Account 'connects': never, because override_email_send
# hands every message to the Outgoing Channel. '.invalid' can never resolve.
PROXY_SMTP_HOST = "outgoing-channel.email-flow.invalid"

INCOMING_PRESETS = {
	"Office 365": {"host": "outlook.office365.com", "port": 993, "security": "SSL"},
	"Google": {"host": "imap.gmail.com", "port": 993, "security": "SSL"},
}
OUTGOING_PRESETS = {
	"Office 365 SMTP": {"host": "smtp.office365.com", "port": 587, "security": "STARTTLS"},
	"Google": {"host": "smtp.gmail.com", "port": 465, "security": "SSL"},
}


def _fill(doc, preset: dict) -> None:
	for field, value in preset.items():
		if not doc.get(field):
			doc.set(field, value)


def apply_incoming_presets(doc) -> None:
	_fill(doc, INCOMING_PRESETS.get(doc.channel_type, {}))


def apply_outgoing_presets(doc) -> None:
	_fill(doc, OUTGOING_PRESETS.get(doc.channel_type, {}))


def block_own_address(address: str | None, doctype: str, name: str) -> None:
	"""Every connected inbox and outgoing From address goes on 'Filter Outgoing Email'."""
	if address:
		settings.add_blocked_address(address, doctype, name)


def sync_system_mail_account(channel) -> None:
	"""Keep a proxy Email Account so Frappe's mail queue picks this channel.

	Frappe's Email Queue insists on an outgoing Email Account before it calls
	override_email_send. The proxy carries the channel's From address and the
	default flag; it never opens a connection itself.
	"""
	name = PROXY_PREFIX + channel.name
	values = {
		"email_id": channel.from_address,
		"enable_outgoing": 1 if channel.enabled else 0,
		"default_outgoing": 1 if channel.is_default and channel.enabled else 0,
		"enable_incoming": 0,
		"smtp_server": PROXY_SMTP_HOST,
		"no_smtp_authentication": 1,
		"awaiting_password": 0,
		"always_use_account_email_id_as_sender": 1,
		# Ticket replies carry no "Leave this conversation" footer: one click would
		# silence a ticket. (Newsletters add their own, whatever the account says.)
		"send_unsubscribe_message": 0,
	}
	if frappe.db.exists("Email Account", name):
		account = frappe.get_doc("Email Account", name)
		account.update(values)
	else:
		account = frappe.get_doc({"doctype": "Email Account", "email_account_name": name, **values})
	account.flags.ignore_permissions = True
	account.save()


def remove_system_mail_account(channel) -> None:
	name = PROXY_PREFIX + channel.name
	if frappe.db.exists("Email Account", name):
		frappe.delete_doc("Email Account", name, ignore_permissions=True)


def check_incoming(queue) -> dict:
	if queue.channel_type == "Forwarding":
		return {
			"ok": True,
			"message": _("Forwarding queues need no connection: mail is posted to the webhook."),
		}
	from email_flow_app.email_flow.services import graph_poll

	if graph_poll.reads_graph(queue):
		try:
			folders = graph_poll.mailbox(queue).folders()
			return {
				"ok": True,
				"message": _("Signed in to Microsoft Graph, {0} folders").format(len(folders)),
			}
		except ChannelError as exc:
			return {"ok": False, "message": str(exc)}
	try:
		with connect.imap_source(queue) as source:
			folders = source.list_folders()
		message = _("Logged in, {0} folders").format(len(folders))
		ok = True
	except ChannelError as exc:
		message, ok = str(exc), False
	return {"ok": ok, "message": message}


def check_outgoing(channel) -> dict:
	if channel.channel_type == "Office 365 Graph":
		try:
			connect.token_provider(channel).access_token()
			return {"ok": True, "message": _("Signed in to Microsoft Graph")}
		except ChannelError as exc:
			return {"ok": False, "message": str(exc)}
	try:
		with connect.smtp_sink(channel) as sink:
			sink.connect()
		return {"ok": True, "message": _("Logged in to {0}").format(channel.host)}
	except ChannelError as exc:
		return {"ok": False, "message": str(exc)}


# -- Poll Now: what the last poll of a queue did, for the Desk to show ------------------------

POLL_OUTCOME_SECONDS = 3600  # kept this long in the cache; only the newest run per queue


def _poll_outcome_key(queue_name: str) -> str:
	return f"email_flow:poll-outcome:{queue_name}"


def record_poll_outcome(queue_name: str, run: dict) -> None:
	"""Remember the run `polling.poll_queue` returns, with when it finished (site time)."""
	frappe.cache.set_value(
		_poll_outcome_key(queue_name),
		{**run, "finished_at": str(now_datetime())},
		expires_in_sec=POLL_OUTCOME_SECONDS,
	)


def poll_outcome(queue_name: str, since: str) -> dict:
	"""The newest recorded run of the queue if it finished after `since`, as the Desk shows it.

	{"done": False} while there is none. Otherwise the run's figures, how the
	messages it stored since `since` were filed (tickets, replies, filtered,
	failed), and one sentence for the user.
	"""
	run = frappe.cache.get_value(_poll_outcome_key(queue_name))
	if not run or get_datetime(run.get("finished_at")) <= get_datetime(since):
		return {"done": False}
	counts = dict.fromkeys(("Ticket Created", "Appended", "Filtered", "Failed", "Received"), 0)
	for status, count in frappe.get_all(
		"Inbound Email",
		filters={"email_queue": queue_name, "creation": (">=", since)},
		fields=["status", "count(*) as count"],
		group_by="status",
		as_list=True,
	):
		counts[status] = count
	stored = int(run.get("stored") or 0)
	parts = [
		_("{0} new messages").format(stored) if stored != 1 else _("1 new message"),
		_("{0} new tickets").format(counts["Ticket Created"])
		if counts["Ticket Created"] != 1
		else _("1 new ticket"),
	]
	if counts["Appended"]:
		parts.append(_("{0} added to tickets").format(counts["Appended"]))
	if counts["Filtered"]:
		parts.append(_("{0} filtered").format(counts["Filtered"]))
	if counts["Failed"]:
		parts.append(_("{0} failed").format(counts["Failed"]))
	message = ", ".join(parts)
	if run.get("error"):
		message += ". " + _("Error: {0}").format(run["error"])
	return {
		"done": True,
		"ok": not run.get("error"),
		"stored": stored,
		"tickets": counts["Ticket Created"],
		"appended": counts["Appended"],
		"filtered": counts["Filtered"],
		"failed": counts["Failed"],
		"error": run.get("error"),
		"finished_at": run.get("finished_at"),
		"message": message,
	}
