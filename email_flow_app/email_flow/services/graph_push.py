"""Microsoft Graph change notifications (push) for queues read through Graph.

Graph POSTs to one guest endpoint of the site (api_graph.graph_notification).
What a notification does there is only a signal, as the IDLE listener's is:
a verified one queues the queue's poll job (tick.enqueue_poll, deduplicated),
a lifecycle event also queues :func:`on_lifecycle`. Storing, acknowledging
and exactly-once stay in the poll job; no Graph call is made in the request.

State: per folder one subscription (new mail in ``mailFolders('{folder}')``),
its id and expiry on the folder row; per queue one clientState secret, kept in
Frappe's encrypted store beside the token cache (not a form field, so saving
the form can never erase it). The endpoint trusts a notification only when its
subscription id is one we stored and its clientState is that queue's secret.

- :func:`maintain_subscriptions` (scheduler, every 15 minutes) subscribes the
  folders of every enabled Graph queue that have none, renews a subscription
  that expires within a day, re-creates one Graph no longer has (404: expired,
  removed) or that points at an old URL, and deletes those of queues that
  stopped reading through Graph.
- :func:`on_lifecycle`: reauthorizationRequired → reauthorize (a new
  subscription if Graph no longer has it); subscriptionRemoved → a new
  subscription; then a poll, whose delta round reads whatever was missed.
  ``missed`` needs only that poll, which the endpoint queues itself.
- Graph validates the URL with a handshake and calls only public https URLs:
  ``email_flow_graph_notification_url`` in site config, else the site's own
  URL (host_name). Without an https URL nothing is subscribed and the queue is
  read every minute, as before.

While every folder of a queue has a live subscription, the per-minute tick
reads it only every few minutes, as a safety net (mailboxes.graph_push_watches).
"""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import frappe
from frappe.utils import convert_utc_to_system_timezone, get_datetime, get_system_timezone, get_url
from frappe.utils.password import get_decrypted_password, set_encrypted_password

from email_flow_app.channels.errors import ChannelError
from email_flow_app.channels.graph import (
	LIFECYCLE_EVENTS,
	GraphMailbox,
	GraphSubscriptions,
	NotFound,
	Subscription,
	parse_notifications,
	renewal_due,
)
from email_flow_app.email_flow.services import mailboxes, tick

QUEUE = "Incoming Email Queue"
FOLDER = "Incoming Email Queue Folder"
GRAPH = mailboxes.GRAPH
ENDPOINT = "/api/method/email_flow_app.email_flow.api_graph.graph_notification"
CLIENT_STATE_FIELD = "graph_client_state"  # in __Auth only (connect.TOKEN_CACHE_FIELD is kept the same way)
CLIENT_STATE_BYTES = 32  # secrets.token_urlsafe: 43 characters, Graph allows 128
LIFECYCLE_JOB = "email_flow_app.email_flow.services.graph_push.on_lifecycle"
REAUTHORIZE, REMOVED, MISSED = LIFECYCLE_EVENTS
LOCK_WAIT = 60  # seconds a job waits for another one changing the same queue's subscriptions


def notification_url() -> str | None:
	"""Where Graph sends notifications for this site, if it is https (Graph calls nothing else)."""
	url = frappe.conf.get("email_flow_graph_notification_url") or get_url(ENDPOINT)
	return url if url.startswith("https://") else None


# -- the scheduler's side ---------------------------------------------------------


def maintain_subscriptions() -> None:
	"""Every 15 minutes: subscribe, renew or re-create, queue by queue (one failing stops no other)."""
	eligible = [queue.name for queue in mailboxes.graph_queues()]
	_retire(set(eligible))
	url = notification_url()
	if not url:
		return
	for name in eligible:
		try:
			maintain(name, url)
		except Exception:
			frappe.db.rollback()
			frappe.log_error(title=f"Email Flow: Graph subscriptions of {name}")


def maintain(queue_name: str, url: str) -> None:
	"""Every folder of the queue has a live subscription to `url` (or the reason is on the queue)."""
	created = False
	with _subscription_lock(queue_name) as locked:
		if not locked:
			return  # another job is changing them right now
		queue = frappe.get_doc(QUEUE, queue_name)
		errors = []
		try:
			box = _mailbox(queue)
		except ChannelError as exc:  # e.g. its secret is not bound to this sign-in any more
			_record_error(queue, str(exc))
			return
		for row in queue.folders:  # one folder's failure does not keep the others from push
			try:
				created = _keep_subscribed(queue, box, row, url) or created
			except ChannelError as exc:
				errors.append(f"{row.folder_name}: {exc}")
		_record_error(queue, "\n".join(errors) or None)
	if created:  # mail that came before the new subscription's id was stored was announced to nobody
		tick.enqueue_poll(queue_name)


def _keep_subscribed(queue, box: GraphMailbox, row, url: str) -> bool:
	"""Renew (when due), check or create the folder's subscription; True when one was created."""
	subs = GraphSubscriptions(box.client)
	if row.graph_subscription_id:
		expires = _from_db(row.graph_subscription_expires)
		try:
			if expires is None or renewal_due(expires):
				current = subs.renew(row.graph_subscription_id)
			else:
				current = subs.get(row.graph_subscription_id)
		except NotFound:
			current = None  # expired or removed: a new one below
		if current is not None and current.notification_url == url:
			_store(row, current)
			return False
		if current is not None:  # the site's URL changed: Graph would keep calling the old one
			subs.delete(current.id)
		_store(row, None)
	_subscribe(queue, box, row, url)
	return True


def _subscribe(queue, box: GraphMailbox, row, url: str) -> Subscription:
	"""A new subscription for the folder (Graph runs the handshake against `url` first)."""
	from email_flow_app.email_flow.services.graph_poll import folder_ref

	sub = GraphSubscriptions(box.client).create(
		box.mailbox,
		folder_ref(box, row.folder_name),
		url,
		client_state(queue.name),
		lifecycle_url=url,
	)
	_store(row, sub)
	return sub


def _retire(eligible: set[str]) -> None:
	"""Delete the subscriptions of queues that no longer read through Graph (disabled, switched).

	A queue waiting for a new sign-in keeps its own: they lapse by themselves
	within days, and after the sign-in maintenance renews or replaces them.
	"""
	rows = frappe.get_all(
		FOLDER,
		filters={"parenttype": QUEUE, "graph_subscription_id": ("is", "set")},
		fields=["name", "parent", "graph_subscription_id"],
	)
	for parent in sorted({row.parent for row in rows} - eligible):
		queue = frappe.get_doc(QUEUE, parent)
		if queue.enabled and queue.get("o365_read_via") == GRAPH and queue.channel_type == "Office 365":
			continue  # Reconnect needed
		stale = [row for row in rows if row.parent == parent]
		try:
			subs = GraphSubscriptions(_mailbox(queue).client)
			for row in stale:
				subs.delete(row.graph_subscription_id)
		except ChannelError:
			pass  # it lapses by itself; its notifications match no queue any more
		for row in stale:
			_store(row, None)


# -- the endpoint's side ------------------------------------------------------------


def accept_notifications(body: bytes) -> tuple[set[str], list[tuple[str, str, str]]]:
	"""Verify a notification body; queue only polls and lifecycle jobs. Returns what was queued.

	Raises channels.graph.InvalidNotification for a body that is not a
	notification collection. Items of unknown subscriptions or with a wrong
	clientState are dropped without a trace in the answer.
	"""
	lookup = _SubscriptionLookup()
	batch = parse_notifications(body, lookup.client_state)
	polls = {lookup.queues[sub_id] for sub_id in batch.subscriptions_to_poll}
	lifecycle = sorted(
		{
			(lookup.queues[sub_id], sub_id, event)
			for sub_id, event in batch.lifecycle
			if event in (REAUTHORIZE, REMOVED)
		}
	)
	for queue_name in sorted(polls):
		tick.enqueue_poll(queue_name)
	for queue_name, sub_id, event in lifecycle:
		enqueue_lifecycle(queue_name, sub_id, event)
	return polls, lifecycle


class _SubscriptionLookup:
	"""Subscription id → queue and its secret: two queries per request, however many items."""

	def __init__(self) -> None:
		self.queues: dict[str, str] = {}
		self._loaded = False
		self._secrets: dict[str, str | None] = {}

	def client_state(self, subscription_id: str) -> str | None:
		if not self._loaded:
			self._load()
		queue_name = self.queues.get(subscription_id)
		if queue_name is None:
			return None
		if queue_name not in self._secrets:
			self._secrets[queue_name] = get_decrypted_password(
				QUEUE, queue_name, CLIENT_STATE_FIELD, raise_exception=False
			)
		return self._secrets[queue_name]

	def _load(self) -> None:
		self._loaded = True
		rows = frappe.get_all(
			FOLDER,
			filters={"parenttype": QUEUE, "graph_subscription_id": ("is", "set")},
			fields=["parent", "graph_subscription_id"],
		)
		if not rows:
			return
		live = set(
			frappe.get_all(
				QUEUE,
				filters={
					"name": ("in", list({row.parent for row in rows})),
					"enabled": 1,
					"channel_type": "Office 365",
					"o365_read_via": GRAPH,
				},
				pluck="name",
			)
		)
		self.queues = {row.graph_subscription_id: row.parent for row in rows if row.parent in live}


def enqueue_lifecycle(queue_name: str, subscription_id: str, event: str) -> None:
	"""Queue :func:`on_lifecycle` unless the same one is already waiting."""
	from frappe.utils.background_jobs import get_job_status
	from rq.job import JobStatus

	job_id = lifecycle_job_id(queue_name, subscription_id, event)
	if get_job_status(job_id) == JobStatus.QUEUED:
		return
	frappe.enqueue(  # not `event=`: frappe.enqueue takes that keyword for itself
		LIFECYCLE_JOB,
		queue="long",
		job_id=job_id,
		queue_name=queue_name,
		subscription_id=subscription_id,
		lifecycle_event=event,
	)


def lifecycle_job_id(queue_name: str, subscription_id: str, event: str) -> str:
	return f"email_flow_graph_lifecycle::{queue_name}::{subscription_id}::{event}"


def on_lifecycle(queue_name: str, subscription_id: str, lifecycle_event: str) -> None:
	"""Job: answer a lifecycle event, then read the mailbox (its delta round resyncs)."""
	if frappe.session.user != "Administrator":
		frappe.set_user("Administrator")  # queued by the guest endpoint: the work is the system's
	try:
		url = notification_url()
		with _subscription_lock(queue_name) as locked:
			if not (locked and url and frappe.db.exists(QUEUE, queue_name)):
				return  # the other job answers it; or nowhere to subscribe; or the queue is gone
			queue = frappe.get_doc(QUEUE, queue_name)
			for row in queue.folders:
				if row.graph_subscription_id == subscription_id:  # else: already replaced
					_answer_lifecycle(queue, row, lifecycle_event, url)
	finally:
		tick.enqueue_poll(queue_name)


def _answer_lifecycle(queue, row, event: str, url: str) -> None:
	try:
		box = _mailbox(queue)
		if event == REAUTHORIZE:
			try:
				GraphSubscriptions(box.client).reauthorize(row.graph_subscription_id)
			except NotFound:
				_store(row, None)
				_subscribe(queue, box, row, url)
		elif event == REMOVED:
			_store(row, None)  # Graph has dropped it: its id matches nothing from now on
			_subscribe(queue, box, row, url)
	except ChannelError as exc:
		_record_error(queue, str(exc))
	else:
		_record_error(queue, None)


# -- helpers ------------------------------------------------------------------------


def client_state(queue_name: str) -> str:
	"""The queue's clientState secret (made on first use): proof that a notification comes from Graph."""
	value = get_decrypted_password(QUEUE, queue_name, CLIENT_STATE_FIELD, raise_exception=False)
	if not value:
		value = secrets.token_urlsafe(CLIENT_STATE_BYTES)
		set_encrypted_password(QUEUE, queue_name, value, CLIENT_STATE_FIELD)
		frappe.db.commit()  # before Graph may send it back
	return value


def _mailbox(queue) -> GraphMailbox:
	from email_flow_app.email_flow.services.graph_poll import mailbox

	return mailbox(queue)


def _store(row, sub: Subscription | None) -> None:
	"""The folder's subscription (or none), committed at once: notifications are matched by it."""
	values = {
		"graph_subscription_id": sub.id if sub else None,
		"graph_subscription_expires": _to_db(sub.expiration) if sub else None,
	}
	frappe.db.set_value(FOLDER, row.name, values, update_modified=False)
	row.update(values)
	frappe.db.commit()


def _record_error(queue, error: str | None) -> None:
	if (queue.get("graph_push_error") or None) != error:
		frappe.db.set_value(QUEUE, queue.name, "graph_push_error", error, update_modified=False)
		queue.graph_push_error = error
		frappe.db.commit()


def _to_db(moment: datetime) -> datetime:
	"""An aware datetime as the site stores Datetime fields (naive, in the system time zone)."""
	return convert_utc_to_system_timezone(moment.astimezone(timezone.utc)).replace(tzinfo=None)


def _from_db(value) -> datetime | None:
	if not value:
		return None
	stored = get_datetime(value)
	return stored.replace(tzinfo=ZoneInfo(get_system_timezone())).astimezone(timezone.utc)


@contextmanager
def _subscription_lock(queue_name: str) -> Iterator[bool]:
	"""One job at a time changes a queue's subscriptions (maintenance and lifecycle may meet)."""
	if frappe.db.db_type != "mariadb":
		yield True
		return
	key = f"ef-graph-sub-{queue_name}"[:64]
	got = bool(frappe.db.sql("SELECT GET_LOCK(%s, %s)", (key, LOCK_WAIT))[0][0])
	try:
		yield got
	finally:
		if got:
			frappe.db.sql("SELECT RELEASE_LOCK(%s)", (key,))
