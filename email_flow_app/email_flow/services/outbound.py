"""Every mail Frappe sends leaves through an Outgoing Channel (hook `override_email_send`).

- Replies on a Ticket: the channel of the ticket (override) or of its queue
  ('Send replies via outgoing'; empty = the channel with the queue's address;
  else the default), with In-Reply-To / References chaining the ticket's
  thread, the ticket tag in the subject and our X-Email-Flow-Ticket header.
- Frappe's own mail (password reset, invitations, notifications): the
  default channel.
- Mail of an Email Account that is not one of ours: sent by that account,
  exactly as Frappe would.

Errors: a temporary failure postpones the Email Queue (send_after, backing off)
and is raised so Frappe counts a retry; a permanent one uses up the retries.
Recipients already sent are never sent again (Frappe marks each one).
"""

import email
import email.policy
from email.utils import formataddr, parseaddr

import frappe
from frappe.utils import add_to_date, now_datetime

from email_flow_app.channels.errors import ChannelError, PermanentError, ReconnectNeeded
from email_flow_app.email_flow.services import connect, health, settings
from email_flow_app.email_flow.services.threads import normalize_message_id
from email_flow_app.mail import base_subject, desk_text, make_ticket_token, subject_tag

CHANNEL = "Outgoing Channel"
PROXY_PREFIX = "Email Flow: "
REFERENCES_KEPT = 20


def send_email_queue(email_queue, sender: str, recipient: str, message: bytes | str) -> None:
	"""The override_email_send hook: deliver one recipient's copy of an Email Queue."""
	if isinstance(message, str):
		message = message.encode("utf-8")
	channel = channel_for(email_queue)
	if channel is None:
		account = email_queue.get_email_account(raise_error=True)
		account.get_smtp_server().session.sendmail(from_addr=sender, to_addrs=recipient, msg=message)
		return
	if email_queue.reference_doctype == "Ticket" and email_queue.reference_name:
		message = thread_headers(message, email_queue.reference_name, channel, email_queue.communication)
	else:
		message = _with_from(message, channel)
	try:
		deliver(channel, message, recipient)
	except PermanentError as exc:
		from frappe.email.doctype.email_queue.email_queue import get_email_retry_limit

		health.record_failure(channel, str(exc))
		frappe.db.set_value(
			"Email Queue", email_queue.name, "retry", get_email_retry_limit(), update_modified=False
		)
		raise frappe.OutgoingEmailError(f"{channel.name}: {exc}") from exc
	except ChannelError as exc:
		# Temporary trouble, or credentials to fix (then the channel shows "Reconnect needed"):
		# postpone with back-off; Frappe counts the retry.
		health.record_failure(channel, str(exc), reconnect=isinstance(exc, ReconnectNeeded))
		retry = int(email_queue.retry or 0)
		frappe.db.set_value(
			"Email Queue",
			email_queue.name,
			"send_after",
			add_to_date(now_datetime(), minutes=health.backoff_minutes(retry + 1)),
			update_modified=False,
		)
		raise frappe.OutgoingEmailError(f"{channel.name}: {exc} (will retry)") from exc
	health.record_success(channel)


def deliver(channel, message: bytes, recipient: str) -> None:
	if channel.channel_type == "Office 365 Graph":
		from email_flow_app.channels.office365 import GraphSender

		graph_base = frappe.conf.get("email_flow_graph_base")
		kwargs = {"graph_base": graph_base} if graph_base else {}
		GraphSender(
			connect.token_provider(channel),
			channel.from_address,
			http_session=connect.http_session(),
			**kwargs,
		).send(message)
		return
	with connect.smtp_sink(channel) as sink:
		sink.send(message, channel.from_address, [recipient])


def channel_for(email_queue):
	"""The Outgoing Channel that must send this Email Queue, or None when it is not ours.

	Ticket replies: the ticket's channel. Otherwise the Email Account Frappe
	recorded on the queue decides: one of our proxies means its channel, any
	other account is the site's own business. With none recorded, the channel
	of the sender address, else the default channel.
	"""
	if email_queue.reference_doctype == "Ticket" and email_queue.reference_name:
		name = ticket_channel(email_queue.reference_name)
		if name:
			return frappe.get_doc(CHANNEL, name)
	account = email_queue.email_account
	if account and not account.startswith(PROXY_PREFIX):
		return None
	name = account[len(PROXY_PREFIX) :] if account else None
	if not (name and frappe.db.exists(CHANNEL, name)):
		sender = parseaddr(email_queue.sender or "")[1].lower()
		name = (
			sender and frappe.db.get_value(CHANNEL, {"from_address": sender, "enabled": 1})
		) or default_channel()
	return frappe.get_doc(CHANNEL, name) if name else None


def ticket_channel(ticket: str) -> str | None:
	override, queue = frappe.db.get_value("Ticket", ticket, ["outgoing_channel", "email_queue"])
	if override:
		return override
	if queue:
		mapped, address = frappe.db.get_value(
			"Incoming Email Queue", queue, ["outgoing_channel", "email_address"]
		)
		if mapped:
			return mapped
		same_account = frappe.db.get_value(CHANNEL, {"from_address": address, "enabled": 1})
		if same_account:
			return same_account
	return default_channel()


def default_channel() -> str | None:
	return frappe.db.get_value(CHANNEL, {"is_default": 1, "enabled": 1})


def thread_headers(message: bytes, ticket: str, channel, communication: str | None) -> bytes:
	"""Make an agent's reply thread in the customer's mail client and back into the ticket."""
	msg = email.message_from_bytes(message, policy=email.policy.SMTP)
	own_id = normalize_message_id(msg.get("Message-Id"))
	thread = _thread_message_ids(ticket, exclude=own_id)
	in_reply_to = normalize_message_id(msg.get("In-Reply-To")) or (thread[-1] if thread else "")
	if in_reply_to:
		_replace(msg, "In-Reply-To", f"<{in_reply_to}>")
		chain = ([thread[0]] if thread else []) + thread[-(REFERENCES_KEPT - 1) :]
		if in_reply_to not in chain:
			chain.append(in_reply_to)
		_replace(msg, "References", " ".join(f"<{mid}>" for mid in dict.fromkeys(chain)))
	# The subject as the Desk stores it (mail.desk_text): the mail carries the text itself.
	base = base_subject(desk_text.plain(str(msg.get("Subject") or "")), ticket)
	_replace(msg, "Subject", f"Re: {base} {subject_tag(ticket)}" if base else f"Re: {subject_tag(ticket)}")
	_replace(msg, "X-Email-Flow-Ticket", f"{ticket}; t={make_ticket_token(ticket, settings.token_secret())}")
	_set_from(msg, channel)
	# Frappe's composer puts the agent's own address in Reply-To: a mail client would
	# send the customer's answer to the agent's mailbox instead of the ticket.
	del msg["Reply-To"]
	reply_to = _reply_address(ticket)
	if reply_to and reply_to != (channel.from_address or "").lower():
		msg["Reply-To"] = reply_to
	if communication and own_id:
		frappe.db.set_value("Communication", communication, "message_id", own_id, update_modified=False)
	return msg.as_bytes()


def _reply_address(ticket: str) -> str | None:
	"""Where the customer's answer must go: the address of the ticket's queue."""
	queue = frappe.db.get_value("Ticket", ticket, "email_queue")
	if not queue:
		return None
	creation, address = frappe.db.get_value(
		"Incoming Email Queue", queue, ["creation_address", "email_address"]
	)
	return (creation or address or "").strip().lower() or None


def _thread_message_ids(ticket: str, exclude: str) -> list[str]:
	ids = frappe.get_all(
		"Communication",
		filters={
			"reference_doctype": "Ticket",
			"reference_name": ticket,
			"communication_type": "Communication",
		},
		pluck="message_id",
		order_by="creation asc",
	)
	first = frappe.db.get_value("Ticket", ticket, "message_id")
	ordered = [normalize_message_id(first)] if first else []
	ordered += [normalize_message_id(mid) for mid in ids if mid]
	return [mid for mid in dict.fromkeys(ordered) if mid and mid != exclude]


def _with_from(message: bytes, channel) -> bytes:
	msg = email.message_from_bytes(message, policy=email.policy.SMTP)
	_set_from(msg, channel)
	return msg.as_bytes()


def _set_from(msg, channel) -> None:
	name, _address = parseaddr(str(msg.get("From") or ""))
	_replace(msg, "From", formataddr((channel.from_name or name or "", channel.from_address)))


def _replace(msg, header: str, value: str) -> None:
	del msg[header]
	msg[header] = value
