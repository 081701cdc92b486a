"""A local Microsoft Graph mail server, mounted by :class:`OAuthTestProvider`.

Clients reach it through ``graph_base=provider.graph_base`` with bearer tokens
the provider issued. What it serves (``/v1.0``):

* ``GET  users/{mb}/mailFolders[/{id or well-known name}]``;
* ``GET  users/{mb}/mailFolders/{folder}/messages/delta``: rounds of pages,
  ``@odata.nextLink`` until ``@odata.deltaLink``, ``changeType`` option,
  ``Prefer: odata.maxpagesize``; links stay valid, so a page can be asked for
  again; :meth:`GraphMailServer.expire_delta_links` makes old ones answer 410;
* ``GET  users/{mb}/messages/{id}/$value`` (the MIME), ``PATCH users/{mb}/messages/{id}``
  (``isRead``), ``POST users/{mb}/messages/{id}/move`` (``destinationId``);
  ids do not change on a move (as with ``Prefer: IdType="ImmutableId"``);
* ``POST users/{mb}/sendMail`` (base64 MIME): a copy lands in that mailbox's Sent Items;
* ``POST/GET/PATCH/DELETE subscriptions[/{id}]``, ``POST subscriptions/{id}/reauthorize``:
  creation runs the validation handshake against the notification (and lifecycle)
  URL; new mail in a subscribed folder is POSTed there; lifecycle events on demand;
* throttling on demand (:meth:`GraphMailServer.throttle`): 429/503 with
  ``Retry-After`` in seconds or as an HTTP date; a request that comes back
  before that time is counted in ``early_retries`` and throttled again.

Access: a delegated token reaches its own mailbox and the mailboxes granted to
its user (:meth:`GraphMailServer.grant`); an app-only token reaches every mailbox.
Reading needs ``Mail.ReadWrite`` (or ``.default``) in the token's scope.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import requests

if TYPE_CHECKING:
	from email_flow_app.testing.oauth_provider import IssuedToken, OAuthTestProvider

WELL_KNOWN = {
	"inbox": "Inbox",
	"sentitems": "Sent Items",
	"archive": "Archive",
	"deleteditems": "Deleted Items",
	"drafts": "Drafts",
	"junkemail": "Junk Email",
}
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000
MAX_SUBSCRIPTION_MINUTES = 10080
HANDSHAKE_TIMEOUT = 3.0
NOTIFY_TIMEOUT = 3.0
GRAPH_MAX_BYTES = 4 * 1024 * 1024

Reply = tuple[int, dict[str, str], bytes]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
	return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _error(
	status: int, code: str, message: str | None = None, headers: dict[str, str] | None = None
) -> Reply:
	return _json(status, {"error": {"code": code, "message": message or code}}, headers)


def _iso(dt: datetime) -> str:
	return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(value: str) -> datetime:
	return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _b64(data: dict) -> str:
	return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(text: str) -> dict | None:
	try:
		return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
	except (ValueError, binascii.Error):
		return None


@dataclass
class GraphFolder:
	id: str
	display_name: str
	well_known: str | None = None


@dataclass
class StoredMessage:
	id: str
	mailbox: str
	folder_id: str
	raw: bytes
	internet_message_id: str | None
	subject: str
	received: datetime
	is_read: bool = False
	seq: int = 0  # last change anywhere
	created_seq: int = 0  # when it entered its folder

	def resource(self) -> dict:
		return {
			"@odata.type": "#microsoft.graph.message",
			"id": self.id,
			"internetMessageId": self.internet_message_id,
			"subject": self.subject,
			"isRead": self.is_read,
			"receivedDateTime": _iso(self.received),
			"parentFolderId": self.folder_id,
		}


@dataclass
class _Mailbox:
	address: str
	folders: dict[str, GraphFolder] = field(default_factory=dict)
	tombstones: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, folder id, message id)


@dataclass
class GraphSubscription:
	id: str
	client_id: str
	subject: str | None
	mailbox: str
	folder_id: str
	resource: str
	change_type: str
	notification_url: str
	lifecycle_url: str | None
	client_state: str | None
	expiration: datetime
	removed: bool = False

	def active(self) -> bool:
		return not self.removed and datetime.now(timezone.utc) < self.expiration

	def resource_json(self) -> dict:
		return {
			"id": self.id,
			"resource": self.resource,
			"changeType": self.change_type,
			"notificationUrl": self.notification_url,
			"lifecycleNotificationUrl": self.lifecycle_url,
			"clientState": self.client_state,
			"expirationDateTime": _iso(self.expiration),
			"applicationId": self.client_id,
		}


@dataclass
class _Throttle:
	status: int
	retry_after: int | None  # seconds; None: no header
	as_date: bool
	path_contains: str | None
	method: str | None
	remaining: int


@dataclass
class Delivery:
	"""A POST the server made to a notification URL, and how it was answered."""

	url: str
	payload: dict
	status: int | None  # None: no answer in time / unreachable


class GraphMailServer:
	"""Mailboxes, delta rounds, subscriptions and throttling behind the provider's HTTPS port."""

	def __init__(self, provider: OAuthTestProvider) -> None:
		self.provider = provider
		self.default_page_size = DEFAULT_PAGE_SIZE
		self.handshake_timeout = HANDSHAKE_TIMEOUT
		self._lock = threading.RLock()
		self._seq = itertools.count(1)
		self._last_seq = 0
		self._ids = itertools.count(1)
		self._mailboxes: dict[str, _Mailbox] = {}
		self._messages: dict[str, StoredMessage] = {}
		self._grants: set[tuple[str, str]] = set()
		self._subscriptions: dict[str, GraphSubscription] = {}
		self._throttles: list[_Throttle] = []
		self._not_before: dict[str, float] = {}
		self._generation = 1
		self.early_retries = 0
		self.requests: list[tuple[str, str]] = []  # (method, path) of every Graph request
		self.deliveries: list[Delivery] = []
		self._outbox: queue.Queue[tuple[str, dict] | None] = queue.Queue()
		self._http = requests.Session()
		self._http.trust_env = False
		self._http.verify = str(provider.ca.bundle_path)
		self._notifier = threading.Thread(target=self._notify_loop, name="graph-notifier", daemon=True)
		self._notifier.start()

	# -- test controls -----------------------------------------------------------

	def add_mailbox(self, address: str) -> None:
		with self._lock:
			self._mailbox(address)

	def add_folder(self, mailbox: str, name: str) -> str:
		"""A top-level folder named ``name``; returns its id."""
		with self._lock:
			box = self._mailbox(mailbox)
			folder = GraphFolder(f"AAMk-folder-{secrets.token_hex(8)}", name)
			box.folders[folder.id] = folder
			return folder.id

	def grant(self, user: str, mailbox: str) -> None:
		"""``user``'s delegated tokens may read and send as ``mailbox`` (Full Access + Send As)."""
		with self._lock:
			self._grants.add((user.lower(), mailbox.lower()))

	def deliver(self, mailbox: str, raw: bytes, folder: str = "inbox", is_read: bool = False) -> str:
		"""New mail in ``mailbox``'s ``folder``; returns its Graph id; notifies subscribers."""
		with self._lock:
			msg = self._store(mailbox, raw, folder, is_read)
			self._notify_created(msg)
			return msg.id

	def deliver_many(self, mailbox: str, raws: list[bytes], folder: str = "inbox") -> list[str]:
		with self._lock:
			return [self.deliver(mailbox, raw, folder) for raw in raws]

	def mark_read(self, mailbox: str, message_id: str, is_read: bool = True) -> None:
		"""Another client (Outlook) changes the read flag."""
		with self._lock:
			msg = self._message(mailbox, message_id)
			assert msg is not None, message_id
			msg.is_read = is_read
			msg.seq = self._next_seq()

	def messages(self, mailbox: str, folder: str = "inbox") -> list[StoredMessage]:
		with self._lock:
			box = self._mailbox(mailbox)
			fid = self._folder_id(box, folder)
			return sorted(
				(m for m in self._messages.values() if m.mailbox == box.address and m.folder_id == fid),
				key=lambda m: m.created_seq,
			)

	def throttle(
		self,
		status: int = 429,
		retry_after: int | None = 1,
		times: int = 1,
		path_contains: str | None = None,
		as_date: bool = False,
		method: str | None = None,
	) -> None:
		"""The next ``times`` Graph requests (whose path contains ``path_contains``) answer ``status``.

		``Retry-After`` is ``retry_after`` seconds, or with ``as_date`` the HTTP date
		that many seconds after the request (whole seconds: the wait is a bit shorter);
		None sends no header.
		"""
		with self._lock:
			self._throttles.append(_Throttle(status, retry_after, as_date, path_contains, method, times))

	def clear_throttling(self) -> None:
		"""Forget pending throttle rules and Retry-After windows."""
		with self._lock:
			self._throttles.clear()
			self._not_before.clear()

	def expire_delta_links(self) -> None:
		"""Every delta and next link handed out so far answers 410 (sync state gone)."""
		with self._lock:
			self._generation += 1

	def subscriptions(self) -> list[GraphSubscription]:
		with self._lock:
			return list(self._subscriptions.values())

	def expire_subscription(self, subscription_id: str) -> None:
		with self._lock:
			self._subscriptions[subscription_id].expiration = datetime.now(timezone.utc) - timedelta(
				seconds=1
			)

	def send_lifecycle(self, subscription_id: str, event: str) -> None:
		"""POST a lifecycle event (reauthorizationRequired, subscriptionRemoved, missed)."""
		with self._lock:
			sub = self._subscriptions[subscription_id]
			item = {
				"subscriptionId": sub.id,
				"subscriptionExpirationDateTime": _iso(sub.expiration),
				"tenantId": "tenant-id",
				"clientState": sub.client_state,
				"lifecycleEvent": event,
			}
			if event == "subscriptionRemoved":
				sub.removed = True
			url = sub.lifecycle_url or sub.notification_url
		self._outbox.put((url, {"value": [item]}))

	def wait_notified(self, timeout: float = 5.0) -> None:
		"""Block until every queued notification has been POSTed (answered or not)."""
		done = threading.Event()
		self._outbox.put(("__mark__", {"event": done}))  # type: ignore[dict-item]
		if not done.wait(timeout):
			raise AssertionError("notifications still pending")

	# -- internals (lock held) ---------------------------------------------------

	def _next_seq(self) -> int:
		self._last_seq = next(self._seq)
		return self._last_seq

	def _mailbox(self, address: str) -> _Mailbox:
		key = address.lower()
		box = self._mailboxes.get(key)
		if box is None:
			box = _Mailbox(key)
			for name, display in WELL_KNOWN.items():
				fid = f"AAMk-{name}-{secrets.token_hex(6)}"
				box.folders[fid] = GraphFolder(fid, display, name)
			self._mailboxes[key] = box
		return box

	@staticmethod
	def _folder_id(box: _Mailbox, ref: str) -> str | None:
		for folder in box.folders.values():
			if folder.id == ref or (folder.well_known and folder.well_known == ref.lower()):
				return folder.id
		return None

	def _store(self, mailbox: str, raw: bytes, folder: str, is_read: bool) -> StoredMessage:
		box = self._mailbox(mailbox)
		fid = self._folder_id(box, folder)
		assert fid, f"no folder {folder!r} in {mailbox}"
		headers = BytesHeaderParser().parsebytes(raw)
		seq = self._next_seq()
		msg = StoredMessage(
			id=f"AAMkAG{next(self._ids):08d}{secrets.token_urlsafe(12)}=",
			mailbox=box.address,
			folder_id=fid,
			raw=raw,
			internet_message_id=(headers.get("Message-ID") or "").strip() or None,
			subject=str(headers.get("Subject") or ""),
			received=datetime.now(timezone.utc),
			is_read=is_read,
			seq=seq,
			created_seq=seq,
		)
		self._messages[msg.id] = msg
		return msg

	def _message(self, mailbox: str, message_id: str) -> StoredMessage | None:
		msg = self._messages.get(message_id)
		return msg if msg and msg.mailbox == mailbox.lower() else None

	def _notify_created(self, msg: StoredMessage) -> None:
		for sub in self._subscriptions.values():
			if (
				sub.active()
				and sub.mailbox == msg.mailbox
				and sub.folder_id == msg.folder_id
				and "created" in sub.change_type.split(",")
			):
				item = {
					"subscriptionId": sub.id,
					"subscriptionExpirationDateTime": _iso(sub.expiration),
					"changeType": "created",
					"resource": f"Users/{msg.mailbox}/Messages/{msg.id}",
					"resourceData": {
						"@odata.type": "#Microsoft.Graph.Message",
						"@odata.id": f"Users/{msg.mailbox}/Messages/{msg.id}",
						"id": msg.id,
					},
					"clientState": sub.client_state,
					"tenantId": "tenant-id",
				}
				self._outbox.put((sub.notification_url, {"value": [item]}))

	def _notify_loop(self) -> None:
		while True:
			job = self._outbox.get()
			if job is None:
				return
			url, payload = job
			if url == "__mark__":
				payload["event"].set()
				continue
			try:
				answer = self._http.post(url, json=payload, timeout=NOTIFY_TIMEOUT)
				status: int | None = answer.status_code
			except requests.RequestException:
				status = None
			with self._lock:
				self.deliveries.append(Delivery(url, payload, status))

	def close(self) -> None:
		self._outbox.put(None)

	# -- HTTP ------------------------------------------------------------------

	def handle(self, method: str, path: str, headers: Any, body: bytes) -> Reply:
		"""Answer one ``/v1.0/...`` request."""
		url = urlsplit(path)
		parts = [unquote(p) for p in url.path.split("/") if p][1:]  # drop "v1.0"
		query = {k: v[0] for k, v in parse_qs(url.query).items()}
		with self._lock:
			self.requests.append((method, url.path))
			token = self._token(headers.get("Authorization", ""))
			if token is None:
				return _error(401, "InvalidAuthenticationToken", "Access token is empty, invalid or expired.")
			throttled = self._throttled(method, unquote(url.path), token)
			if throttled:
				return throttled
		try:
			return self._route(method, parts, query, headers, body, token)
		except (ValueError, KeyError, TypeError) as err:
			return _error(400, "BadRequest", str(err))

	def _token(self, authorization: str) -> IssuedToken | None:
		tok = self.provider._state.tokens.get(authorization.removeprefix("Bearer ").strip())
		return tok if tok is not None and tok.kind == "access" and tok.active() else None

	def _throttled(self, method: str, path: str, token: IssuedToken) -> Reply | None:
		who = f"{token.client_id}|{token.subject}"
		now = time.time()
		wait_until = self._not_before.get(who, 0.0)
		if now < wait_until:
			self.early_retries += 1
			return _error(
				429, "TooManyRequests", "Retried too early.", {"Retry-After": str(int(wait_until - now) + 1)}
			)
		for rule in self._throttles:
			if (
				rule.remaining > 0
				and (rule.path_contains is None or rule.path_contains in path)
				and (rule.method is None or rule.method == method)
			):
				rule.remaining -= 1
				headers = {}
				if rule.retry_after is not None:
					if rule.as_date:
						date = formatdate(now + rule.retry_after, usegmt=True)
						headers["Retry-After"] = date
						self._not_before[who] = parsedate_to_datetime(date).timestamp()
					else:
						headers["Retry-After"] = str(rule.retry_after)
						self._not_before[who] = now + rule.retry_after
				code = "TooManyRequests" if rule.status == 429 else "ServiceUnavailable"
				return _error(rule.status, code, "Throttled.", headers)
		self._throttles = [r for r in self._throttles if r.remaining > 0]
		return None

	def _may_access(self, token: IssuedToken, mailbox: str) -> bool:
		client = self.provider._state.clients.get(token.client_id)
		if client is not None and client.app_mailbox is not None and token.subject == client.app_mailbox:
			return True  # app-only: the tenant admin granted Mail.* application permissions
		subject = (token.subject or "").lower()
		return subject == mailbox.lower() or (subject, mailbox.lower()) in self._grants

	@staticmethod
	def _may_read(token: IssuedToken) -> bool:
		scope = token.scope
		return "Mail.ReadWrite" in scope or "graph.microsoft.com/.default" in scope

	def _route(self, method: str, parts: list[str], query: dict, headers: Any, body: bytes, token) -> Reply:
		if parts and parts[0] == "subscriptions":
			return self._route_subscriptions(method, parts[1:], body, token)
		if len(parts) < 3 or parts[0] != "users":
			return _error(404, "ResourceNotFound", "Resource not found for the segment.")
		mailbox, rest = parts[1], parts[2:]
		if rest == ["sendMail"] and method == "POST":
			return self._send_mail(mailbox, headers.get("Content-Type", ""), body, token)
		with self._lock:
			if not self._may_access(token, mailbox):
				return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
			if not self._may_read(token):
				return _error(403, "ErrorAccessDenied", "Access is denied: the token lacks Mail.ReadWrite.")
			box = self._mailbox(mailbox)
			if rest[0] == "mailFolders":
				if len(rest) == 1 and method == "GET":
					return _json(200, {"value": [self._folder_json(box, f) for f in box.folders.values()]})
				fid = self._folder_id(box, rest[1])
				if fid is None:
					return _error(404, "ErrorItemNotFound", "The specified folder could not be found.")
				if len(rest) == 2 and method == "GET":
					return _json(200, self._folder_json(box, box.folders[fid]))
				if rest[2:] == ["messages", "delta"] and method == "GET":
					return self._delta(box, fid, rest[1], query, headers.get("Prefer", ""))
			elif rest[0] == "messages" and len(rest) >= 2:
				msg = self._message(mailbox, rest[1])
				if msg is None:
					return _error(
						404, "ErrorItemNotFound", "The specified object was not found in the store."
					)
				if rest[2:] == ["$value"] and method == "GET":
					return 200, {"Content-Type": "text/plain"}, msg.raw
				if len(rest) == 2 and method == "PATCH":
					changes = json.loads(body or b"{}")
					if "isRead" in changes:
						msg.is_read = bool(changes["isRead"])
						msg.seq = self._next_seq()
					return _json(200, msg.resource())
				if rest[2:] == ["move"] and method == "POST":
					dest = self._folder_id(box, str(json.loads(body or b"{}").get("destinationId", "")))
					if dest is None:
						return _error(404, "ErrorItemNotFound", "The destination folder could not be found.")
					if dest != msg.folder_id:
						seq = self._next_seq()
						box.tombstones.append((seq, msg.folder_id, msg.id))
						msg.folder_id, msg.seq, msg.created_seq = dest, seq, seq
						self._notify_created(msg)
					return _json(201, msg.resource())
		return _error(405, "MethodNotAllowed", f"{method} is not supported here.")

	@staticmethod
	def _folder_json(box: _Mailbox, folder: GraphFolder) -> dict:
		return {"id": folder.id, "displayName": folder.display_name, "parentFolderId": "root"}

	def _delta(self, box: _Mailbox, fid: str, folder_ref: str, query: dict, prefer: str) -> Reply:
		if "$skiptoken" in query or "$deltatoken" in query:
			state = _unb64(query.get("$skiptoken") or query.get("$deltatoken") or "")
			if not state or state.get("g") != self._generation or state.get("f") != fid:
				return _error(410, "SyncStateNotFound", "The sync state generation is not found.")
			if "$deltatoken" in query:  # a new round: everything after the last one's end
				state = {**state, "s": state["u"], "u": self._last_seq, "a": state["u"]}
		else:
			change = query.get("changeType", "")
			if change not in ("", "created", "updated", "deleted"):
				return _error(400, "BadRequest", f"Unsupported changeType {change!r}.")
			state = {"g": self._generation, "f": fid, "c": change, "s": 0, "u": self._last_seq, "a": 0}
		match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
		size = min(int(match.group(1)) if match else self.default_page_size, MAX_PAGE_SIZE)
		items = self._changes(box, fid, state)
		page, more = items[:size], len(items) > size
		base = f"{self.provider.base_url}/v1.0/users/{quote(box.address, safe='@')}/mailFolders/{quote(folder_ref)}/messages/delta"
		body: dict[str, Any] = {
			"@odata.context": "$metadata#Collection(message)",
			"value": [v for _k, v in page],
		}
		if more:
			body["@odata.nextLink"] = f"{base}?{urlencode({'$skiptoken': _b64({**state, 'a': page[-1][0]})})}"
		else:
			body["@odata.deltaLink"] = f"{base}?{urlencode({'$deltatoken': _b64(state)})}"
		return _json(200, body)

	def _changes(self, box: _Mailbox, fid: str, state: dict) -> list[tuple[int, dict]]:
		low, high, change = max(state["s"], state["a"]), state["u"], state["c"]
		found: list[tuple[int, dict]] = []
		for msg in self._messages.values():
			if msg.mailbox != box.address or msg.folder_id != fid:
				continue
			if change == "created" or (change == "" and state["s"] == 0):
				key = msg.created_seq
			elif change in ("", "updated"):
				key = msg.seq
				if change == "updated" and msg.created_seq > state["s"]:
					continue
			else:
				continue
			if low < key <= high:
				found.append((key, msg.resource()))
		if state["s"] and change in ("", "deleted"):
			for seq, folder_id, mid in box.tombstones:
				if folder_id == fid and low < seq <= high:
					found.append((seq, {"id": mid, "@removed": {"reason": "deleted"}}))
		return sorted(found, key=lambda kv: kv[0])

	def _send_mail(self, mailbox: str, content_type: str, body: bytes, token) -> Reply:
		with self._lock:
			if not self._may_access(token, mailbox):
				return _error(403, "ErrorAccessDenied", "Access is denied.")
			failures = self.provider._state.graph_failures
			if failures:
				status, error = failures.pop(0)
				return _json(status, error)
			if len(body) > GRAPH_MAX_BYTES:
				return _error(413, "RequestBodyTooLarge", "The request is too large.")
			if not content_type.startswith("text/plain"):
				return _error(400, "ErrorMimeContentInvalid", "Use text/plain MIME.")
			try:
				raw = base64.b64decode(body, validate=True)
			except binascii.Error:
				return _error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string.")
			from email_flow_app.testing.oauth_provider import GraphMail

			self.provider._state.graph_mail.append(GraphMail(mailbox, raw, token.subject))
			self._store(mailbox, raw, "sentitems", is_read=True)  # saveToSentItems defaults to true
			return 202, {}, b""

	# -- subscriptions ---------------------------------------------------------

	_RESOURCE = re.compile(r"^/?(?:users/([^/]+)|me)/mailFolders\('?([^'/)]+)'?\)/messages$", re.IGNORECASE)

	def _route_subscriptions(self, method: str, rest: list[str], body: bytes, token) -> Reply:
		if not rest and method == "POST":
			return self._create_subscription(json.loads(body or b"{}"), token)
		if not rest:
			return _error(405, "MethodNotAllowed")
		with self._lock:
			sub = self._subscriptions.get(rest[0])
			if sub is None or sub.client_id != token.client_id or not sub.active():
				return _error(404, "ResourceNotFound", "The object was not found.")
			if len(rest) == 1 and method == "GET":
				return _json(200, sub.resource_json())
			if len(rest) == 1 and method == "PATCH":
				expiration = _parse_iso(json.loads(body or b"{}")["expirationDateTime"])
				problem = self._check_expiration(expiration)
				if problem:
					return problem
				sub.expiration = expiration
				return _json(200, sub.resource_json())
			if len(rest) == 1 and method == "DELETE":
				del self._subscriptions[sub.id]
				return 204, {}, b""
			if rest[1:] == ["reauthorize"] and method == "POST":
				return 204, {}, b""
		return _error(405, "MethodNotAllowed")

	@staticmethod
	def _check_expiration(expiration: datetime) -> Reply | None:
		now = datetime.now(timezone.utc)
		if expiration <= now:
			return _error(400, "ExtensionError", "Subscription expiration must be in the future.")
		if expiration > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
			return _error(
				400,
				"ExtensionError",
				f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in the future.",
			)
		return None

	def _create_subscription(self, spec: dict, token) -> Reply:
		resource = str(spec.get("resource", ""))
		match = self._RESOURCE.match(resource)
		if not match:
			return _error(400, "InvalidRequest", f"Unsupported resource {resource!r}.")
		mailbox = match.group(1) or token.subject or ""
		change_type = str(spec.get("changeType", ""))
		if not change_type or not set(change_type.split(",")) <= {"created", "updated", "deleted"}:
			return _error(400, "InvalidRequest", "changeType must be created, updated and/or deleted.")
		client_state = spec.get("clientState")
		if client_state is not None and len(str(client_state)) > 128:
			return _error(400, "InvalidRequest", "clientState is longer than 128 characters.")
		expiration = _parse_iso(str(spec["expirationDateTime"]))
		urls = [str(spec.get("notificationUrl", ""))]
		if spec.get("lifecycleNotificationUrl"):
			urls.append(str(spec["lifecycleNotificationUrl"]))
		with self._lock:
			if not self._may_access(token, mailbox) or not self._may_read(token):
				return _error(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden]")
			box = self._mailbox(mailbox)
			fid = self._folder_id(box, unquote(match.group(2)))
			if fid is None:
				return _error(404, "ExtensionError", "The folder could not be found.")
			problem = self._check_expiration(expiration)
			if problem:
				return problem
		for url in urls:  # the handshake, outside the lock (the endpoint may call us)
			if not url.startswith("https://"):
				return _error(400, "InvalidRequest", "The notification URL must use https.")
			if not self._handshake(url):
				return _error(
					400,
					"InvalidRequest",
					"Subscription validation request failed. Notification endpoint must respond with "
					"200 OK to validation request.",
				)
		with self._lock:
			sub = GraphSubscription(
				id=str(secrets.token_hex(16)),
				client_id=token.client_id,
				subject=token.subject,
				mailbox=box.address,
				folder_id=fid,
				resource=resource,
				change_type=change_type,
				notification_url=urls[0],
				lifecycle_url=urls[1] if len(urls) > 1 else None,
				client_state=client_state,
				expiration=expiration,
			)
			self._subscriptions[sub.id] = sub
			return _json(201, sub.resource_json())

	def _handshake(self, url: str) -> bool:
		"""POST ``?validationToken=``; the endpoint must echo it as text/plain with 200 in time."""
		challenge = f"Validation: Testing client application reachability for subscription Request-Id: {secrets.token_hex(8)}"
		sep = "&" if "?" in url else "?"
		started = time.monotonic()
		try:
			answer = self._http.post(
				f"{url}{sep}{urlencode({'validationToken': challenge})}",
				data=b"",
				headers={"Content-Type": "text/plain; charset=utf-8"},
				timeout=self.handshake_timeout,
			)
		except requests.RequestException:
			ok = False
		else:
			ok = (
				answer.status_code == 200
				and answer.headers.get("Content-Type", "").startswith("text/plain")
				and answer.text == challenge
				and time.monotonic() - started <= self.handshake_timeout
			)
		with self._lock:
			self.deliveries.append(Delivery(url, {"validationToken": challenge}, 200 if ok else None))
		return ok


@dataclass
class WebhookCall:
	path: str
	query: dict[str, str]
	body: bytes
	status: int


class WebhookReceiver:
	"""An HTTPS endpoint for Graph's POSTs; ``respond(query, body) -> (status, content_type, bytes)``.

	It stands where the site's webhook will be: tests give it the same pure
	functions the site calls. Every call is kept in ``calls``.
	"""

	def __init__(self, ca: Any, respond: Any, host: str = "127.0.0.1") -> None:
		self.ca = ca
		self.respond = respond
		self.host = host
		self.calls: list[WebhookCall] = []
		self._lock = threading.Lock()
		self._httpd: Any = None

	def __enter__(self) -> WebhookReceiver:
		from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

		receiver = self

		class Handler(BaseHTTPRequestHandler):
			protocol_version = "HTTP/1.1"
			disable_nagle_algorithm = True

			def log_message(self, format: str, *args: object) -> None:
				pass

			def do_POST(self) -> None:
				url = urlsplit(self.path)
				query = {k: v[0] for k, v in parse_qs(url.query).items()}
				length = int(self.headers.get("Content-Length") or 0)
				body = self.rfile.read(length) if length else b""
				status, content_type, payload = receiver.respond(query, body)
				with receiver._lock:
					receiver.calls.append(WebhookCall(url.path, query, body, status))
				self.send_response(status)
				self.send_header("Content-Type", content_type)
				self.send_header("Content-Length", str(len(payload)))
				self.end_headers()
				self.wfile.write(payload)

		class Server(ThreadingHTTPServer):
			daemon_threads = True

			def handle_error(self, request: object, client_address: object) -> None:
				pass

		httpd = Server((self.host, 0), Handler)
		httpd.socket = self.ca.server_context().wrap_socket(
			httpd.socket, server_side=True, do_handshake_on_connect=False
		)
		self._httpd = httpd
		threading.Thread(target=httpd.serve_forever, name="webhook-receiver", daemon=True).start()
		return self

	def __exit__(self, *exc: object) -> None:
		if self._httpd:
			self._httpd.shutdown()
			self._httpd.server_close()

	def url(self, path: str = "/hook") -> str:
		return f"https://{self.host}:{self._httpd.server_address[1]}{path}"
