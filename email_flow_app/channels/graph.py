"""Office 365 without IMAP: read a mailbox through Microsoft Graph, and push.

Reading is a delta round per folder
(``GET /users/{mailbox}/mailFolders/{folder}/messages/delta?changeType=created``):
pages follow ``@odata.nextLink`` until one ends with ``@odata.deltaLink``; the
next round starts from that link and returns only mail that arrived since. A
message another client marked read is still returned (no ``isRead`` filter);
our own read/move acks are updates, which ``changeType=created`` leaves out.
Ids are immutable (``Prefer: IdType="ImmutableId"``), so a moved message keeps
its id and its dedupe key.

The caller's loop, which never loses or duplicates a message::

        box = GraphMailbox(GraphClient(tokens, graph_base), "support@contoso.com")
        for page in box.pages(stored_state):  # stored_state: GraphFolderState
            store(page.messages, dedupe=(mailbox, msg.id), message_id=msg.internet_message_id)
            save(page.state)  # in the same transaction as the messages
            commit()
            box.ack([m.id for m in page.messages], "read")  # after the commit

A worker killed between pages resumes from the stored ``state.next_link``
(the rest of the round) or ``state.delta_link`` (the next round); a worker
killed inside a page asks for the same page again, and the dedupe key drops
what was already stored. A link the service no longer knows (410) starts a
new full round (``page.restarted``), again deduplicated by the caller.

Throttling (429, 503, 504) is honoured: ``Retry-After`` in seconds or as an
HTTP date, else exponential back-off; every wait is reported to ``on_throttle``
and kept in ``client.throttling`` (for the queue's health). A wait longer than
``max_wait`` is not slept: :class:`Throttled` carries it to the caller, which
reschedules the poll.

Push (change notifications) lives at the bottom: :class:`GraphSubscriptions`
creates, renews and deletes subscriptions; :func:`validation_response` and
:func:`parse_notifications` are what the webhook endpoint calls.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import requests

from email_flow_app.channels.auth import TokenProvider
from email_flow_app.channels.errors import (
	AuthError,
	ChannelError,
	PermanentError,
	TemporaryError,
	TLSError,
	printable,
)

GRAPH_BASE = "https://graph.microsoft.com"
HTTP_TIMEOUT = 30.0
DEFAULT_PAGE_SIZE = 50
DEFAULT_MAX_WAIT = 120.0  # longest Retry-After slept inside one call; longer ones go to the caller
DEFAULT_MAX_RETRIES = 8
RETRY_STATUSES = (429, 503, 504)
BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0
RETRY_MARGIN = 0.05  # seconds added to a Retry-After, against clock edges
DELTA_SELECT = ("id", "internetMessageId", "receivedDateTime", "isRead", "subject")
AckMode = Literal["read", "move", "leave"]
ACK_MODES = ("read", "move", "leave")


class Throttled(TemporaryError):
	"""Graph asked us to wait longer than we may block; retry after ``retry_after`` seconds."""

	def __init__(self, message: str, retry_after: float) -> None:
		super().__init__(message)
		self.retry_after = retry_after


class NotFound(PermanentError):
	"""The mailbox, folder, message or subscription does not exist (404)."""


class DeltaLinkExpired(PermanentError):
	"""The service no longer knows a stored next/delta link (410): a new full round is needed."""


class InvalidNotification(ChannelError):
	"""A webhook body that is not a Graph notification collection."""


@dataclass(frozen=True)
class Throttling:
	"""One wait Graph imposed: shown on the queue's health."""

	status: int
	wait: float  # seconds
	path: str  # request path, no query

	def __str__(self) -> str:
		return f"Microsoft Graph answered {self.status} on {self.path}: waited {self.wait:.1f} s"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
	"""``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
	if not value:
		return None
	value = value.strip()
	if value.isdigit():
		return float(value)
	try:
		when = parsedate_to_datetime(value)
	except (TypeError, ValueError, IndexError):
		return None
	if when.tzinfo is None:
		when = when.replace(tzinfo=timezone.utc)
	return max(0.0, when.timestamp() - (time.time() if now is None else now))


class GraphClient:
	"""Authenticated Graph requests: one token refresh on 401, back-off on 429/503/504."""

	def __init__(
		self,
		token_provider: TokenProvider,
		graph_base: str = GRAPH_BASE,
		http_session: requests.Session | None = None,
		timeout: float = HTTP_TIMEOUT,
		max_wait: float = DEFAULT_MAX_WAIT,
		max_retries: int = DEFAULT_MAX_RETRIES,
		on_throttle: Callable[[Throttling], None] | None = None,
		sleep: Callable[[float], None] = time.sleep,
	) -> None:
		self.token_provider = token_provider
		self.graph_base = graph_base.rstrip("/")
		self.session = http_session or requests.Session()
		self.timeout = timeout
		self.max_wait = max_wait
		self.max_retries = max_retries
		self.on_throttle = on_throttle
		self.sleep = sleep
		self.throttling: list[Throttling] = []

	def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
		full = f"{self.graph_base}/v1.0/{path.lstrip('/')}"
		return f"{full}?{urlencode(query, safe='$,')}" if query else full

	def check_link(self, link: str) -> str:
		"""A next/delta link must point back at Graph: never send our token elsewhere."""
		base, target = urlsplit(self.graph_base), urlsplit(link)
		if (target.scheme, target.netloc) != (base.scheme, base.netloc):
			raise PermanentError(f"Microsoft Graph returned a link to another host ({target.netloc})")
		return link

	def request(
		self,
		method: str,
		url: str,
		*,
		json_body: Any = None,
		data: bytes | None = None,
		headers: Mapping[str, str] | None = None,
		ok: Sequence[int] = (200,),
		what: str = "",
	) -> requests.Response:
		refreshed = False
		attempt = 0
		while True:
			token = self.token_provider.force_refresh() if refreshed else self.token_provider.access_token()
			response = self._send(method, url, token, json_body, data, headers)
			status = response.status_code
			if status in ok:
				return response
			if status == 401 and not refreshed:
				refreshed = True
				continue
			if status in RETRY_STATUSES and attempt < self.max_retries:
				attempt += 1
				self._wait(response, attempt)
				continue
			raise self._error(response, what or urlsplit(url).path)

	def _send(self, method, url, token, json_body, data, headers) -> requests.Response:
		all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
		try:
			return self.session.request(
				method, url, json=json_body, data=data, headers=all_headers, timeout=self.timeout
			)
		except requests.exceptions.SSLError as err:
			raise TLSError(f"TLS failure with Microsoft Graph ({err})")
		except (requests.ConnectionError, requests.Timeout) as err:
			raise TemporaryError(f"Could not reach Microsoft Graph ({err})")

	def _wait(self, response: requests.Response, attempt: int) -> None:
		told = retry_after_seconds(response.headers.get("Retry-After"))
		wait = told if told is not None else min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
		path = urlsplit(response.url).path
		if wait > self.max_wait:
			raise Throttled(
				f"Microsoft Graph is throttling ({response.status_code} on {path}): retry in {wait:.0f} s",
				wait,
			)
		event = Throttling(response.status_code, wait, path)
		self.throttling.append(event)
		if self.on_throttle:
			self.on_throttle(event)
		self.sleep(wait + RETRY_MARGIN)

	@staticmethod
	def _error(response: requests.Response, what: str) -> ChannelError:
		status = response.status_code
		try:
			error = response.json().get("error", {})
		except ValueError:
			error = {}
		detail = printable(f"{status} {error.get('code', '')}: {error.get('message') or response.text}")
		if status == 401:
			return AuthError(f"Authentication failed: Microsoft Graph rejected the token ({detail})")
		if status == 403:
			return AuthError(f"Microsoft Graph refused access to {what}: permission missing ({detail})")
		if status == 404:
			return NotFound(f"Microsoft Graph: {what} not found ({detail})")
		if status in RETRY_STATUSES:
			wait = retry_after_seconds(response.headers.get("Retry-After")) or BACKOFF_CAP
			return Throttled(f"Microsoft Graph is still busy after retries ({detail})", wait)
		if status >= 500:
			return TemporaryError(f"Microsoft Graph is unavailable, will retry ({detail})")
		return PermanentError(f"Microsoft Graph refused the request for {what} ({detail})")


# -- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class GraphFolderState:
	"""Where reading a folder resumes: persist it with the messages of the page that produced it.

	``next_link`` set: inside a round (the rest of it comes from there).
	Otherwise ``delta_link`` (None before the first round) starts the next round.
	"""

	folder: str
	delta_link: str | None = None
	next_link: str | None = None

	@property
	def in_round(self) -> bool:
		return self.next_link is not None


@dataclass(frozen=True)
class GraphMessage:
	"""One new message: its Graph id (immutable), Message-ID header and MIME bytes."""

	id: str
	internet_message_id: str | None
	raw: bytes
	received: str | None = None
	is_read: bool = False
	subject: str = ""


@dataclass(frozen=True)
class DeltaPage:
	"""A page of new messages and the state to commit together with them."""

	messages: tuple[GraphMessage, ...]
	state: GraphFolderState
	removed: tuple[str, ...] = ()  # ids the round reports deleted (not with changeType=created)
	vanished: tuple[str, ...] = ()  # listed, but deleted before their MIME could be fetched
	restarted: bool = False  # the stored link had expired: this is a full round again

	@property
	def complete(self) -> bool:
		"""The round ended with this page (``state.delta_link`` is the next start)."""
		return self.state.next_link is None


def dedupe_key(mailbox: str, message_id: str) -> str:
	"""Per mailbox + Graph id (ids are immutable, so a move keeps the key)."""
	return f"{mailbox.strip().lower()}/{message_id}"


@dataclass(frozen=True)
class GraphFolderInfo:
	id: str
	name: str
	total: int | None = None
	unread: int | None = None


class GraphMailbox:
	"""One mailbox (a user's or a shared one) at ``/users/{mailbox}``."""

	def __init__(self, client: GraphClient, mailbox: str, page_size: int = DEFAULT_PAGE_SIZE) -> None:
		if not mailbox or "/" in mailbox or any(ch.isspace() for ch in mailbox):
			raise PermanentError("The mailbox must be an address or id without spaces or slashes")
		self.client = client
		self.mailbox = mailbox
		self.page_size = page_size
		self._base = f"users/{quote(mailbox, safe='@')}"

	@property
	def headers(self) -> dict[str, str]:
		return {"Prefer": f'IdType="ImmutableId", odata.maxpagesize={self.page_size}'}

	def delta_url(self, folder: str) -> str:
		"""The first request of a folder's first round."""
		return self.client.url(
			f"{self._base}/mailFolders/{quote(folder, safe='')}/messages/delta",
			{"changeType": "created", "$select": ",".join(DELTA_SELECT)},
		)

	def pages(self, state: GraphFolderState) -> Iterator[DeltaPage]:
		"""Pages of new messages, MIME included, until the round ends.

		Each page's ``state`` is where to resume once its messages are stored:
		persist both in one transaction before asking for the next page.
		"""
		url = state.next_link or state.delta_link or self.delta_url(state.folder)
		restarted = False
		while True:
			try:
				body = self._get_page(url)
			except DeltaLinkExpired:
				if restarted:
					raise
				url, restarted = self.delta_url(state.folder), True
				continue
			messages, removed, vanished = [], [], []
			for item in body.get("value", []):
				if "@removed" in item:
					removed.append(str(item.get("id")))
					continue
				try:
					raw = self.fetch_mime(str(item["id"]))
				except NotFound:
					vanished.append(str(item["id"]))
					continue
				messages.append(
					GraphMessage(
						id=str(item["id"]),
						internet_message_id=item.get("internetMessageId"),
						raw=raw,
						received=item.get("receivedDateTime"),
						is_read=bool(item.get("isRead")),
						subject=str(item.get("subject") or ""),
					)
				)
			next_link = body.get("@odata.nextLink")
			delta_link = body.get("@odata.deltaLink")
			if next_link:
				page_state = GraphFolderState(
					state.folder, state.delta_link, self.client.check_link(next_link)
				)
			elif delta_link:
				page_state = GraphFolderState(state.folder, self.client.check_link(delta_link), None)
			else:
				raise PermanentError("Microsoft Graph returned a delta page without a next or delta link")
			yield DeltaPage(tuple(messages), page_state, tuple(removed), tuple(vanished), restarted)
			if not next_link:
				return
			url = next_link

	def _get_page(self, url: str) -> dict:
		what = f"folder delta of {self.mailbox}"
		response = self.client.request("GET", url, headers=self.headers, ok=(200, 410), what=what)
		if response.status_code == 410:
			raise DeltaLinkExpired(f"Microsoft Graph no longer knows the sync state of {self.mailbox}")
		try:
			return response.json()
		except ValueError:
			raise TemporaryError(f"Microsoft Graph returned a delta page that is not JSON for {self.mailbox}")

	def fetch_mime(self, message_id: str) -> bytes:
		"""The message as RFC 5322 bytes (``/messages/{id}/$value``)."""
		response = self.client.request(
			"GET",
			self.client.url(f"{self._base}/messages/{quote(message_id, safe='')}/$value"),
			headers=self.headers,
			what=f"message {message_id[:24]}… in {self.mailbox}",
		)
		return response.content

	def ack(self, message_ids: Sequence[str], mode: AckMode, move_to: str | None = None) -> list[str]:
		"""After the commit: mark read, move to ``move_to`` (folder id or well-known name), or leave.

		Returns the ids acknowledged; a message already gone (404) is skipped.
		"""
		if mode not in ACK_MODES:
			raise ValueError(f"mode must be one of {ACK_MODES}")
		if mode == "move" and not move_to:
			raise PermanentError("Moving after import needs a destination folder")
		done: list[str] = []
		for message_id in message_ids if mode != "leave" else ():
			url = self.client.url(f"{self._base}/messages/{quote(message_id, safe='')}")
			try:
				if mode == "read":
					self.client.request("PATCH", url, json_body={"isRead": True}, headers=self.headers)
				else:
					self.client.request(
						"POST",
						f"{url}/move",
						json_body={"destinationId": move_to},
						headers=self.headers,
						ok=(200, 201),
					)
			except NotFound:
				continue
			done.append(message_id)
		return done if mode != "leave" else list(message_ids)

	def folders(self) -> list[GraphFolderInfo]:
		"""Top-level folders, for the admin's folder picker."""
		url: str | None = self.client.url(f"{self._base}/mailFolders", {"$top": "100"})
		found: list[GraphFolderInfo] = []
		while url:
			body = self.client.request("GET", url, what=f"folders of {self.mailbox}").json()
			for item in body.get("value", []):
				found.append(
					GraphFolderInfo(
						str(item["id"]),
						str(item.get("displayName") or ""),
						item.get("totalItemCount"),
						item.get("unreadItemCount"),
					)
				)
			link = body.get("@odata.nextLink")
			url = self.client.check_link(link) if link else None
		return found

	def folder_id(self, name: str) -> str:
		"""A folder's id from a well-known name (``inbox``, ``archive``…), an id, or a display name."""
		try:
			url = self.client.url(f"{self._base}/mailFolders/{quote(name, safe='')}")
			return str(self.client.request("GET", url, what=f"folder {name!r}").json()["id"])
		except NotFound:
			pass
		for folder in self.folders():
			if folder.name.casefold() == name.casefold():
				return folder.id
		raise NotFound(f"Microsoft Graph: no folder {name!r} in {self.mailbox}")

	def send(self, raw: bytes) -> None:
		"""Send ``raw`` as this mailbox (``/users/{mailbox}/sendMail``): the copy goes to its Sent Items."""
		from email_flow_app.channels.office365 import GraphSender

		GraphSender(
			self.client.token_provider,
			self.mailbox,
			graph_base=self.client.graph_base,
			http_session=self.client.session,
			timeout=self.client.timeout,
		).send(raw)


# -- push: change notifications ------------------------------------------------

MAX_SUBSCRIPTION_MINUTES = 10080  # Outlook messages: under 7 days
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
MAX_CLIENT_STATE = 128


def message_resource(mailbox: str, folder: str = "inbox") -> str:
	"""The subscription resource for new mail in one folder of one mailbox."""
	return f"users/{mailbox}/mailFolders('{folder}')/messages"


def subscription_expiry(
	now: datetime | None = None, minutes: int = MAX_SUBSCRIPTION_MINUTES - 10
) -> datetime:
	"""An expiration Graph accepts: ``minutes`` ahead, never past the maximum."""
	now = now or datetime.now(timezone.utc)
	return now + timedelta(minutes=min(minutes, MAX_SUBSCRIPTION_MINUTES - 1))


def renewal_due(
	expiration: datetime, now: datetime | None = None, margin: timedelta = timedelta(hours=24)
) -> bool:
	"""Renew when less than ``margin`` is left (the scheduler calls this every tick)."""
	return expiration - (now or datetime.now(timezone.utc)) < margin


def _iso(dt: datetime) -> str:
	if dt.tzinfo is None:
		raise ValueError("expiration must be timezone-aware")
	return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(value: str | None) -> datetime | None:
	if not value:
		return None
	try:
		return datetime.fromisoformat(value.replace("Z", "+00:00"))
	except ValueError:
		trimmed = value.replace("Z", "")[:26]  # Graph may send 7 fraction digits
		try:
			return datetime.fromisoformat(trimmed).replace(tzinfo=timezone.utc)
		except ValueError:
			return None


def subscription_body(
	mailbox: str,
	folder: str,
	notification_url: str,
	client_state: str,
	expiration: datetime,
	lifecycle_url: str | None = None,
) -> dict:
	"""``POST /subscriptions`` body for new mail in ``folder``."""
	if not notification_url.startswith("https://"):
		raise PermanentError("Microsoft Graph sends notifications only to https:// URLs")
	if not client_state or len(client_state) > MAX_CLIENT_STATE:
		raise ValueError(f"client_state must be 1 to {MAX_CLIENT_STATE} characters")
	body = {
		"changeType": "created",
		"notificationUrl": notification_url,
		"resource": message_resource(mailbox, folder),
		"expirationDateTime": _iso(expiration),
		"clientState": client_state,
	}
	if lifecycle_url:
		body["lifecycleNotificationUrl"] = lifecycle_url
	return body


@dataclass(frozen=True)
class Subscription:
	"""What to store on the queue: the id (renew, delete, match notifications) and expiry."""

	id: str
	resource: str
	expiration: datetime
	notification_url: str
	lifecycle_url: str | None = None

	@classmethod
	def from_json(cls, data: Mapping[str, Any]) -> Subscription:
		expiration = _parse_iso(data.get("expirationDateTime"))
		if not data.get("id") or expiration is None:
			raise PermanentError("Microsoft Graph returned a subscription without id or expiration")
		return cls(
			str(data["id"]),
			str(data.get("resource") or ""),
			expiration,
			str(data.get("notificationUrl") or ""),
			data.get("lifecycleNotificationUrl"),
		)


class GraphSubscriptions:
	"""Create, renew, reauthorize and delete change-notification subscriptions."""

	def __init__(self, client: GraphClient) -> None:
		self.client = client

	def create(
		self,
		mailbox: str,
		folder: str,
		notification_url: str,
		client_state: str,
		expiration: datetime | None = None,
		lifecycle_url: str | None = None,
	) -> Subscription:
		"""Graph first POSTs a validation token to the URL(s); the endpoint must echo it."""
		body = subscription_body(
			mailbox,
			folder,
			notification_url,
			client_state,
			expiration or subscription_expiry(),
			lifecycle_url,
		)
		response = self.client.request(
			"POST",
			self.client.url("subscriptions"),
			json_body=body,
			ok=(201,),
			what=f"subscription for {mailbox}",
		)
		return Subscription.from_json(response.json())

	def get(self, subscription_id: str) -> Subscription:
		"""The subscription as Graph has it; :class:`NotFound` once it expired or was removed."""
		response = self.client.request(
			"GET",
			self.client.url(f"subscriptions/{quote(subscription_id, safe='')}"),
			what=f"subscription {subscription_id}",
		)
		return Subscription.from_json(response.json())

	def renew(self, subscription_id: str, expiration: datetime | None = None) -> Subscription:
		"""Push the expiry out; a :class:`NotFound` means it is gone: create a new one."""
		response = self.client.request(
			"PATCH",
			self.client.url(f"subscriptions/{quote(subscription_id, safe='')}"),
			json_body={"expirationDateTime": _iso(expiration or subscription_expiry())},
			what=f"subscription {subscription_id}",
		)
		return Subscription.from_json(response.json())

	def reauthorize(self, subscription_id: str) -> None:
		"""Answer a ``reauthorizationRequired`` lifecycle event."""
		self.client.request(
			"POST",
			self.client.url(f"subscriptions/{quote(subscription_id, safe='')}/reauthorize"),
			ok=(200, 202, 204),
			what=f"subscription {subscription_id}",
		)

	def delete(self, subscription_id: str) -> None:
		"""Remove it; one already gone counts as removed."""
		try:
			self.client.request(
				"DELETE",
				self.client.url(f"subscriptions/{quote(subscription_id, safe='')}"),
				ok=(200, 204),
				what=f"subscription {subscription_id}",
			)
		except NotFound:
			pass


def validation_response(query: Mapping[str, str]) -> str | None:
	"""The handshake: when the request carries ``validationToken``, answer 200 text/plain with it.

	Returns the text to echo (decoded, as received), or None for an ordinary notification.
	"""
	token = query.get("validationToken")
	return None if token is None else str(token)


@dataclass(frozen=True)
class Notification:
	"""One verified item of a notification collection."""

	subscription_id: str
	change_type: str | None = None  # "created" for new mail
	lifecycle_event: str | None = None  # reauthorizationRequired | subscriptionRemoved | missed
	message_id: str | None = None  # resourceData.id
	resource: str | None = None
	expiration: datetime | None = None
	tenant_id: str | None = None

	@property
	def is_lifecycle(self) -> bool:
		return self.lifecycle_event is not None


@dataclass(frozen=True)
class NotificationBatch:
	"""Verified notifications; ``rejected`` counts items with a wrong or missing clientState."""

	notifications: tuple[Notification, ...] = ()
	rejected: int = 0
	unknown_lifecycle: tuple[str, ...] = field(default=())

	@property
	def subscriptions_to_poll(self) -> set[str]:
		"""Subscriptions whose mailbox should be polled now.

		New mail, and every lifecycle event: after ``missed``, a
		``reauthorizationRequired`` or a ``subscriptionRemoved`` notifications may
		have been lost, and a poll (deduplicated) costs little.
		"""
		return {n.subscription_id for n in self.notifications if n.change_type == "created" or n.is_lifecycle}

	@property
	def lifecycle(self) -> list[tuple[str, str]]:
		"""``(subscription id, event)``: reauthorizationRequired → ``reauthorize`` (or renew);
		subscriptionRemoved → create a new subscription; missed → nothing more than the poll."""
		return [(n.subscription_id, n.lifecycle_event) for n in self.notifications if n.lifecycle_event]


def parse_notifications(
	body: bytes | str, client_state: str | Callable[[str], str | None]
) -> NotificationBatch:
	"""Verify a webhook body: keep only items whose ``clientState`` matches the queue's secret.

	``client_state`` is the secret, or a function from subscription id to the
	secret (None: unknown subscription). The comparison is constant-time. The
	endpoint answers 202 in any case and only then polls (Graph wants an answer
	within seconds).
	"""
	try:
		data = json.loads(body)
	except (ValueError, UnicodeDecodeError):
		raise InvalidNotification("The notification body is not JSON")
	items = data.get("value") if isinstance(data, dict) else None
	if not isinstance(items, list):
		raise InvalidNotification("The notification body has no 'value' list")
	kept: list[Notification] = []
	rejected = 0
	unknown: list[str] = []
	for item in items:
		if not isinstance(item, dict) or not item.get("subscriptionId"):
			rejected += 1
			continue
		sub_id = str(item["subscriptionId"])
		expected = client_state(sub_id) if callable(client_state) else client_state
		given = item.get("clientState")
		if (
			not expected
			or not isinstance(given, str)
			or not hmac.compare_digest(given.encode(), expected.encode())
		):
			rejected += 1
			continue
		event = item.get("lifecycleEvent")
		if event is not None and event not in LIFECYCLE_EVENTS:
			unknown.append(str(event))
			continue
		data_part = item.get("resourceData") if isinstance(item.get("resourceData"), dict) else {}
		kept.append(
			Notification(
				subscription_id=sub_id,
				change_type=item.get("changeType"),
				lifecycle_event=event,
				message_id=data_part.get("id"),
				resource=item.get("resource"),
				expiration=_parse_iso(item.get("subscriptionExpirationDateTime")),
				tenant_id=item.get("tenantId"),
			)
		)
	return NotificationBatch(tuple(kept), rejected, tuple(unknown))
