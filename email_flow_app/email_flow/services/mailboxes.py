"""The polled queues of a site and how to reach each mailbox, read in a few queries.

Used where many queues are handled at once (the per-minute tick, the IDLE
listener): one query for the queues, one for their folders, one for their
secrets, instead of a document load and two secret reads per queue. Secrets
leave only after the credential binding is checked (services.credentials).
"""

import hmac
import ssl
from dataclasses import dataclass

import frappe
from frappe.utils import add_to_date
from frappe.utils.password import decrypt

from email_flow_app.channels.auth import Authenticator, OAuthAuth, PasswordAuth
from email_flow_app.channels.errors import ReconnectNeeded
from email_flow_app.channels.imap import FolderState, IMAPConfig
from email_flow_app.email_flow.services import connect, credentials

QUEUE = "Incoming Email Queue"
FOLDER = "Incoming Email Queue Folder"
POLLED_TYPES = ("IMAP", "Office 365", "Google")
GRAPH = "Microsoft Graph"  # Office 365 read via (services.graph_poll): no IMAP probe, no IDLE
GRAPH_SAFETY_NET_MINUTES = 5  # a Graph queue change notifications watch is still read this often
DEFAULT_FOLDER = "INBOX"
QUEUE_FIELDS = (
	"name",
	"status",
	"next_poll_after",
	"channel_type",
	"email_address",
	"host",
	"port",
	"security",
	"auth_method",
	"username",
	"o365_tenant",
	"o365_client_id",
	"o365_mode",
	"google_client_id",
)


@dataclass(frozen=True)
class Mailbox:
	"""One polled queue: its row (QUEUE_FIELDS) and the folders it reads, with their sync state."""

	queue: frappe._dict
	folders: tuple[FolderState, ...]

	@property
	def name(self) -> str:
		return self.queue.name


def polled_queues() -> list[Mailbox]:
	"""Enabled queues read over IMAP (IMAP, Office 365, Google) that are not waiting for a new sign-in."""
	rows = frappe.get_all(
		QUEUE,
		filters={
			"enabled": 1,
			"channel_type": ("in", POLLED_TYPES),
			"status": ("!=", "Reconnect needed"),
			"o365_read_via": ("!=", GRAPH),
		},
		fields=list(QUEUE_FIELDS),
		order_by="name",
	)
	if not rows:
		return []
	folders: dict[str, list[FolderState]] = {}
	for row in frappe.get_all(
		FOLDER,
		filters={"parenttype": QUEUE, "parent": ("in", [r.name for r in rows])},
		fields=["parent", "folder_name", "uidvalidity", "last_uid"],
		order_by="idx",
	):
		folders.setdefault(row.parent, []).append(
			FolderState(
				row.folder_name,
				int(row.uidvalidity) if row.uidvalidity else None,
				int(row.last_uid or 0),
			)
		)
	for row in rows:
		row.doctype = QUEUE
	return [Mailbox(row, tuple(folders.get(row.name) or [FolderState(DEFAULT_FOLDER)])) for row in rows]


def graph_queues() -> list[frappe._dict]:
	"""Enabled Office 365 queues read through Microsoft Graph, not waiting for a new sign-in.

	Each row's `push_until` is until when Graph change notifications cover all
	its folders (the earliest subscription expiry; None if a folder has none).
	"""
	rows = frappe.get_all(
		QUEUE,
		filters={
			"enabled": 1,
			"channel_type": "Office 365",
			"o365_read_via": GRAPH,
			"status": ("!=", "Reconnect needed"),
		},
		fields=["name", "status", "next_poll_after", "last_poll"],
		order_by="name",
	)
	if not rows:
		return rows
	until: dict[str, list] = {}
	for folder in frappe.get_all(
		FOLDER,
		filters={"parenttype": QUEUE, "parent": ("in", [r.name for r in rows])},
		fields=["parent", "graph_subscription_id", "graph_subscription_expires"],
	):
		expires = folder.graph_subscription_expires if folder.graph_subscription_id else None
		until.setdefault(folder.parent, []).append(expires)
	for row in rows:
		expiries = until.get(row.name) or [None]
		row.push_until = None if None in expiries else min(expiries)
	return rows


def graph_push_watches(queue: frappe._dict, now) -> bool:
	"""Change notifications cover `queue` (graph_queues) and it was read less than
	GRAPH_SAFETY_NET_MINUTES ago: the per-minute tick leaves it alone."""
	return bool(
		queue.push_until
		and queue.push_until > now
		and queue.last_poll
		and queue.last_poll > add_to_date(now, minutes=-GRAPH_SAFETY_NET_MINUTES)
	)


def tls_context() -> ssl.SSLContext:
	"""One TLS context for many connections (building one per connection costs milliseconds of CPU)."""
	return connect.ssl_context() or ssl.create_default_context()


def password_logins(
	mailboxes: list[Mailbox], context: ssl.SSLContext
) -> dict[str, tuple[IMAPConfig, Authenticator]]:
	"""Config and password of every password-auth mailbox whose secret is bound to its server.

	One query for all secrets. A mailbox left out (OAuth, unbound or missing
	secret) is for the caller to handle one by one (connect.imap_source).
	"""
	wanted = [m for m in mailboxes if m.queue.auth_method != "OAuth"]
	if not wanted:
		return {}
	secrets: dict[tuple[str, str], str] = {}
	for name, fieldname, value in frappe.db.sql(
		"""select `name`, `fieldname`, `password` from `__Auth`
		where `doctype`=%s and `encrypted`=1 and `fieldname` in ('password', %s) and `name` in %s""",
		(QUEUE, credentials.BINDING_FIELD, tuple(m.name for m in wanted)),
	):
		secrets[(name, fieldname)] = decrypt(value, key=f"{QUEUE}.{name}.{fieldname}")
	logins = {}
	for mailbox in wanted:
		binding = secrets.get((mailbox.name, credentials.BINDING_FIELD))
		password = secrets.get((mailbox.name, "password"))
		if not binding or password is None:
			continue
		if not hmac.compare_digest(binding, credentials._fingerprint(mailbox.queue)):
			continue
		logins[mailbox.name] = (connect.imap_config(mailbox.queue, context), PasswordAuth(password))
	return logins


class HandedToken:
	"""An OAuth token fetched in the Frappe thread, handed to connector threads.

	Token providers write rotated caches to the database, which only the
	thread that owns the Frappe connection may do. A rejected token is noted
	(``refresh_wanted``) and refreshed by the owner at its next pass.
	"""

	def __init__(self, token: str) -> None:
		self.token = token
		self.refresh_wanted = False

	def access_token(self) -> str:
		return self.token

	def force_refresh(self) -> str:
		self.refresh_wanted = True
		return self.token


def oauth_login(
	mailbox: Mailbox, context: ssl.SSLContext, refresh: bool = False
) -> tuple[IMAPConfig, OAuthAuth]:
	"""Config and a token fetched now (refreshed if `refresh`), for use from another thread.

	Raises ChannelError (ReconnectNeeded when the grant is gone).
	"""
	queue = frappe.get_doc(QUEUE, mailbox.name)
	provider = connect.token_provider(queue)
	token = provider.force_refresh() if refresh else provider.access_token()
	return connect.imap_config(queue, context), OAuthAuth(HandedToken(token))


def login(mailbox: Mailbox, context: ssl.SSLContext, logins: dict, refresh: bool = False):
	"""(config, auth) for `mailbox` from `logins` (password_logins), else one by one (OAuth)."""
	if mailbox.name in logins:
		return logins[mailbox.name]
	if mailbox.queue.auth_method == "OAuth":
		return oauth_login(mailbox, context, refresh)
	raise ReconnectNeeded(f"{mailbox.name}: no password bound to its server")
