"""A Graph inbox: delta pages, acks, throttling, shared mailboxes and push, over real HTTPS with msal."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from email_flow_app.channels import graph as g
from email_flow_app.channels import office365
from email_flow_app.channels.errors import AuthError, PermanentError
from email_flow_app.channels.office365 import O365AuthCodeFlow, O365TokenProvider
from email_flow_app.testing.graph_server import WebhookReceiver
from tests.channels.conftest import ALICE, APP_CLIENT, APP_SECRET, TENANT, WEB_CLIENT, WEB_SECRET
from tests.channels.helpers import make_message, subject_number
from tests.channels.test_office365 import REDIRECT


def app_tokens(oauth, http_session, client=APP_CLIENT, secret=APP_SECRET, scopes=office365.GRAPH_APP_SCOPES):
	return O365TokenProvider(
		TENANT,
		client,
		secret,
		scopes=scopes,
		authority_host=oauth.base_url,
		mode="app",
		http_session=http_session,
	)


def mailbox(oauth, http_session, address, page_size=g.DEFAULT_PAGE_SIZE, tokens=None, **client_kwargs):
	client = g.GraphClient(
		tokens or app_tokens(oauth, http_session),
		graph_base=oauth.graph_base,
		http_session=http_session,
		**client_kwargs,
	)
	return g.GraphMailbox(client, address, page_size=page_size)


def own_client(oauth) -> tuple[str, str]:
	"""An app registration of this test's own (throttling windows are per caller)."""
	client = f"app-{uuid.uuid4().hex[:8]}"
	oauth.register_client(client, "s3cret", app_mailbox=f"{client}@apps.example.test")
	return client, "s3cret"


def read_all(box, state):
	"""The caller's loop with the commit as a list append; returns (messages, final state, pages)."""
	messages, pages = [], 0
	for page in box.pages(state):
		messages.extend(page.messages)
		state = page.state
		pages += 1
		assert pages <= 100, "the round does not end"
	return messages, state, pages


def sign_in_graph(oauth, http_session, user=ALICE) -> O365TokenProvider:
	flow = O365AuthCodeFlow(
		TENANT,
		WEB_CLIENT,
		WEB_SECRET,
		scopes=office365.GRAPH_MAIL_DELEGATED_SCOPES,
		authority_host=oauth.base_url,
		http_session=http_session,
	)
	auth_url, state = flow.start(REDIRECT, login_hint=user)
	assert "offline_access" in auth_url and "Mail.ReadWrite" in auth_url
	location = http_session.get(auth_url, allow_redirects=False).headers["Location"]
	from urllib.parse import parse_qs, urlsplit

	email, cache = flow.finish(state, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()})
	return O365TokenProvider(
		TENANT,
		WEB_CLIENT,
		WEB_SECRET,
		scopes=office365.GRAPH_MAIL_DELEGATED_SCOPES,
		cache=cache,
		authority_host=oauth.base_url,
		mode="delegated",
		account=email,
		http_session=http_session,
	)


# -- reading -------------------------------------------------------------------


def test_1500_messages_over_several_delta_pages_are_each_read_once(
	oauth, graph, http_session, shared_mailbox
):
	raws = [make_message(n) for n in range(1, 1501)]
	ids = graph.deliver_many(shared_mailbox, raws)
	box = mailbox(oauth, http_session, shared_mailbox, page_size=200)
	started = time.monotonic()
	messages, state, pages = read_all(box, g.GraphFolderState("inbox"))
	elapsed = time.monotonic() - started
	assert pages == 8
	assert [m.id for m in messages] == ids
	assert [m.raw for m in messages] == raws
	assert [m.internet_message_id for m in messages] == [f"<m{n}@example.org>" for n in range(1, 1501)]
	assert state.delta_link and not state.next_link
	assert elapsed < 30, elapsed
	again, _state, _pages = read_all(box, state)
	assert again == []


def test_a_message_marked_read_elsewhere_is_still_returned(oauth, graph, http_session, shared_mailbox):
	first = graph.deliver(shared_mailbox, make_message(1))
	graph.deliver(shared_mailbox, make_message(2))
	graph.mark_read(shared_mailbox, first)  # Outlook opened it before our poll
	box = mailbox(oauth, http_session, shared_mailbox)
	messages, state, _ = read_all(box, g.GraphFolderState("inbox"))
	assert [(subject_number(m.raw), m.is_read) for m in messages] == [(1, True), (2, False)]
	third = graph.deliver(shared_mailbox, make_message(3))
	graph.mark_read(shared_mailbox, third)
	graph.mark_read(shared_mailbox, first, False)  # an update, not new mail
	messages, _, _ = read_all(box, state)
	assert [m.id for m in messages] == [third]


def test_resume_from_a_stored_next_link_reads_the_rest_exactly_once(
	oauth, graph, http_session, shared_mailbox
):
	raws = [make_message(n) for n in range(1, 96)]
	graph.deliver_many(shared_mailbox, raws)
	store: dict[str, bytes] = {}  # dedupe key -> raw: the Inbound Email table
	committed = g.GraphFolderState("inbox")
	box = mailbox(oauth, http_session, shared_mailbox, page_size=10)
	for number, page in enumerate(box.pages(committed), 1):
		if number == 4:
			break  # killed after fetching page 4, before its commit
		for msg in page.messages:
			assert g.dedupe_key(shared_mailbox, msg.id) not in store
			store[g.dedupe_key(shared_mailbox, msg.id)] = msg.raw
		committed = page.state  # committed with the page
	assert committed.in_round and len(store) == 30
	# A new worker, new token provider: only the stored state carries over.
	fresh = mailbox(oauth, http_session, shared_mailbox, page_size=10)
	reread = 0
	for page in fresh.pages(committed):
		for msg in page.messages:
			key = g.dedupe_key(shared_mailbox, msg.id)
			reread += key in store
			store.setdefault(key, msg.raw)
		committed = page.state
	assert reread == 0
	assert sorted(subject_number(raw) for raw in store.values()) == list(range(1, 96))
	assert committed.delta_link and not committed.in_round


def test_a_delta_after_new_mail_returns_only_the_new(oauth, graph, http_session, shared_mailbox):
	graph.deliver_many(shared_mailbox, [make_message(n) for n in range(1, 6)])
	box = mailbox(oauth, http_session, shared_mailbox, page_size=2)
	first, state, _ = read_all(box, g.GraphFolderState("inbox"))
	box.ack([m.id for m in first], "read")  # our own updates do not come back
	new = graph.deliver_many(shared_mailbox, [make_message(n) for n in range(6, 9)])
	second, state, pages = read_all(box, state)
	assert [m.id for m in second] == new and pages == 2
	assert read_all(box, state)[0] == []


def test_an_expired_delta_link_starts_a_full_round_again(oauth, graph, http_session, shared_mailbox):
	ids = graph.deliver_many(shared_mailbox, [make_message(n) for n in range(1, 4)])
	box = mailbox(oauth, http_session, shared_mailbox)
	_, state, _ = read_all(box, g.GraphFolderState("inbox"))
	graph.expire_delta_links()
	pages = list(box.pages(state))
	assert pages[0].restarted
	assert [m.id for p in pages for m in p.messages] == ids  # the caller's dedupe drops them


def test_a_message_deleted_before_its_mime_is_fetched_is_reported_not_fatal(
	oauth, graph, http_session, shared_mailbox
):
	ids = graph.deliver_many(shared_mailbox, [make_message(n) for n in range(1, 4)])
	graph.throttle(404, None, path_contains=f"{ids[1]}/$value")  # gone between listing and fetch
	box = mailbox(oauth, http_session, shared_mailbox)
	[page] = box.pages(g.GraphFolderState("inbox"))
	assert [m.id for m in page.messages] == [ids[0], ids[2]] and page.vanished == (ids[1],)
	assert page.complete


def test_ack_marks_read_moves_or_leaves(oauth, graph, http_session, shared_mailbox):
	ids = graph.deliver_many(shared_mailbox, [make_message(n) for n in range(1, 5)])
	done = graph.add_folder(shared_mailbox, "Done")
	box = mailbox(oauth, http_session, shared_mailbox)
	_, state, _ = read_all(box, g.GraphFolderState("inbox"))
	assert box.ack([ids[0]], "read") == [ids[0]]
	assert box.ack([ids[1]], "move", move_to="archive") == [ids[1]]
	assert box.ack([ids[2]], "move", move_to=box.folder_id("done")) == [ids[2]]
	assert box.ack([ids[3]], "leave") == [ids[3]]
	assert box.ack(["AAMkAG-gone"], "read") == []  # deleted meanwhile: skipped
	inbox = {m.id: m.is_read for m in graph.messages(shared_mailbox)}
	assert inbox == {ids[0]: True, ids[3]: False}
	assert [m.id for m in graph.messages(shared_mailbox, "archive")] == [ids[1]]
	assert [m.id for m in graph.messages(shared_mailbox, done)] == [ids[2]]  # same id after the move
	assert read_all(box, state)[0] == []
	with pytest.raises(g.NotFound):
		box.folder_id("No such folder")


# -- throttling ----------------------------------------------------------------


def test_a_storm_of_429_and_503_is_waited_out_per_retry_after_and_loses_nothing(oauth, graph, http_session):
	client, secret = own_client(oauth)
	address = f"storm-{uuid.uuid4().hex[:8]}@example.test"
	ids = graph.deliver_many(address, [make_message(n) for n in range(1, 31)])
	graph.throttle(429, 1, path_contains="/delta")
	graph.throttle(503, 2, path_contains="/$value", as_date=True)
	graph.throttle(429, 2, method="PATCH", as_date=True)
	graph.throttle(503, 1, path_contains="/delta")
	early = graph.early_retries
	seen: list[g.Throttling] = []
	box = mailbox(
		oauth,
		http_session,
		address,
		page_size=10,
		tokens=app_tokens(oauth, http_session, client, secret),
		on_throttle=seen.append,
	)
	started = time.monotonic()
	messages, _, _ = read_all(box, g.GraphFolderState("inbox"))
	box.ack([m.id for m in messages], "read")
	elapsed = time.monotonic() - started
	assert [m.id for m in messages] == ids
	assert all(m.is_read for m in graph.messages(address))
	kinds = [
		(e.status, e.path.rsplit("/", 1)[-1] if e.path.endswith(("delta", "$value")) else "item")
		for e in seen
	]
	# the first page's retry meets the second delta throttle: a storm, waited out one by one
	assert kinds == [(429, "delta"), (503, "delta"), (503, "$value"), (429, "item")], seen
	assert seen == box.client.throttling
	assert all(e.wait > 0.5 for e in seen), seen
	assert graph.early_retries == early  # never came back before Retry-After
	assert elapsed >= sum(e.wait for e in seen)


def test_a_long_retry_after_goes_to_the_caller_without_sleeping(oauth, graph, http_session):
	client, secret = own_client(oauth)
	address = f"busy-{uuid.uuid4().hex[:8]}@example.test"
	graph.deliver(address, make_message(1))
	graph.throttle(429, 3600, path_contains="/delta")
	slept: list[float] = []
	box = mailbox(
		oauth,
		http_session,
		address,
		tokens=app_tokens(oauth, http_session, client, secret),
		sleep=slept.append,
	)
	with pytest.raises(g.Throttled) as caught:
		list(box.pages(g.GraphFolderState("inbox")))
	assert caught.value.retry_after == 3600 and caught.value.retryable and slept == []
	assert "retry in 3600 s" in str(caught.value)


def test_retry_after_in_seconds_or_as_an_http_date():
	now = 1_700_000_000.0
	assert g.retry_after_seconds("7", now) == 7
	assert g.retry_after_seconds("Tue, 14 Nov 2023 22:13:30 GMT", now) == 10
	assert g.retry_after_seconds("Tue, 14 Nov 2023 22:13:00 GMT", now) == 0  # already past
	assert g.retry_after_seconds("soon", now) is None and g.retry_after_seconds(None, now) is None


def test_a_link_to_another_host_is_refused(oauth, http_session):
	client = g.GraphClient(
		app_tokens(oauth, http_session), graph_base=oauth.graph_base, http_session=http_session
	)
	with pytest.raises(PermanentError, match="another host"):
		client.check_link("https://attacker.example/v1.0/users/x/messages/delta?$skiptoken=1")


# -- mailboxes, scopes, sending ------------------------------------------------------


def test_app_only_reads_a_shared_mailbox_and_needs_graph_scopes(oauth, graph, http_session, shared_mailbox):
	msg_id = graph.deliver(shared_mailbox, make_message(7))
	box = mailbox(oauth, http_session, shared_mailbox)
	assert [m.id for m in read_all(box, g.GraphFolderState("inbox"))[0]] == [msg_id]
	imap_only = mailbox(
		oauth,
		http_session,
		shared_mailbox,
		tokens=app_tokens(oauth, http_session, scopes=office365.APP_SCOPES),
	)
	with pytest.raises(AuthError, match="permission"):
		list(imap_only.pages(g.GraphFolderState("inbox")))


def test_delegated_user_reads_own_inbox_and_a_shared_one_once_granted(
	oauth, graph, http_session, shared_mailbox
):
	tokens = sign_in_graph(oauth, http_session)
	own = graph.deliver(ALICE, make_message(11), folder="inbox")
	mine = mailbox(oauth, http_session, ALICE, tokens=tokens, page_size=500)
	assert own in [m.id for m in read_all(mine, g.GraphFolderState("inbox"))[0]]
	shared = mailbox(oauth, http_session, shared_mailbox, tokens=tokens)
	with pytest.raises(AuthError):
		list(shared.pages(g.GraphFolderState("inbox")))
	graph.grant(ALICE, shared_mailbox)
	msg_id = graph.deliver(shared_mailbox, make_message(12))
	assert [m.id for m in read_all(shared, g.GraphFolderState("inbox"))[0]] == [msg_id]


def test_a_reply_sent_from_a_shared_mailbox_lands_in_its_sent_items(
	oauth, graph, http_session, shared_mailbox
):
	raw = make_message(21)
	mailbox(oauth, http_session, shared_mailbox).send(raw)  # app-only
	assert [m.raw for m in graph.messages(shared_mailbox, "sentitems")] == [raw]
	tokens = sign_in_graph(oauth, http_session)
	graph.grant(ALICE, shared_mailbox)
	before = len(graph.messages(ALICE, "sentitems"))
	mailbox(oauth, http_session, shared_mailbox, tokens=tokens).send(make_message(22))
	assert [subject_number(m.raw) for m in graph.messages(shared_mailbox, "sentitems")] == [21, 22]
	assert len(graph.messages(ALICE, "sentitems")) == before
	assert ("POST", f"/v1.0/users/{shared_mailbox}/sendMail") in graph.requests


# -- push ----------------------------------------------------------------------------


class Endpoint:
	"""What the site's webhook does, with the pure functions: echo the handshake, verify, 202."""

	def __init__(self, secret: str) -> None:
		self.secret = secret
		self.batches: list[g.NotificationBatch] = []
		self.echo = True
		self.delay = 0.0

	def __call__(self, query: dict, body: bytes) -> tuple[int, str, bytes]:
		token = g.validation_response(query)
		if token is not None:
			time.sleep(self.delay)
			return 200, "text/plain; charset=utf-8", (token if self.echo else "nope").encode()
		self.batches.append(g.parse_notifications(body, self.secret))
		return 202, "text/plain", b""


def subscriptions(oauth, http_session) -> g.GraphSubscriptions:
	return g.GraphSubscriptions(
		g.GraphClient(app_tokens(oauth, http_session), graph_base=oauth.graph_base, http_session=http_session)
	)


def test_subscription_handshake_notifications_renew_and_delete(oauth, graph, http_session, shared_mailbox):
	endpoint = Endpoint(secret="queue-secret-1")
	subs = subscriptions(oauth, http_session)
	with WebhookReceiver(oauth.ca, endpoint) as hook:
		sub = subs.create(
			shared_mailbox, "inbox", hook.url("/hook"), "queue-secret-1", lifecycle_url=hook.url("/life")
		)
		assert [(c.path, c.status) for c in hook.calls] == [("/hook", 200), ("/life", 200)]
		assert all("validationToken" in c.query for c in hook.calls)
		assert sub.resource == f"users/{shared_mailbox}/mailFolders('inbox')/messages"
		assert sub.expiration > datetime.now(timezone.utc) + timedelta(days=6)
		assert subs.get(sub.id) == sub
		msg_id = graph.deliver(shared_mailbox, make_message(31))
		graph.wait_notified()
		[batch] = endpoint.batches
		assert batch.rejected == 0 and batch.subscriptions_to_poll == {sub.id}
		[note] = batch.notifications
		assert (note.change_type, note.message_id, note.is_lifecycle) == ("created", msg_id, False)
		later = datetime.now(timezone.utc) + timedelta(days=2)
		renewed = subs.renew(sub.id, later)
		assert abs((renewed.expiration - later).total_seconds()) < 1
		assert g.renewal_due(renewed.expiration, margin=timedelta(days=3))
		assert not g.renewal_due(renewed.expiration, margin=timedelta(days=1))
		subs.delete(sub.id)
		subs.delete(sub.id)  # already gone: fine
		with pytest.raises(g.NotFound):
			subs.renew(sub.id)
		with pytest.raises(g.NotFound):
			subs.get(sub.id)
		graph.deliver(shared_mailbox, make_message(32))
		graph.wait_notified()
		assert len(endpoint.batches) == 1


def test_subscription_is_refused_when_the_endpoint_does_not_echo_in_time(
	oauth, graph, http_session, shared_mailbox
):
	endpoint = Endpoint(secret="s")
	subs = subscriptions(oauth, http_session)
	with WebhookReceiver(oauth.ca, endpoint) as hook:
		endpoint.echo = False
		with pytest.raises(PermanentError, match="validation request failed"):
			subs.create(shared_mailbox, "inbox", hook.url(), "s")
		endpoint.echo, endpoint.delay = True, 0.5
		graph.handshake_timeout = 0.2
		try:
			with pytest.raises(PermanentError, match="validation request failed"):
				subs.create(shared_mailbox, "inbox", hook.url(), "s")
		finally:
			graph.handshake_timeout = 3.0
	assert not [s for s in graph.subscriptions() if s.mailbox == shared_mailbox]
	with pytest.raises(PermanentError, match="https"):
		subs.create(shared_mailbox, "inbox", "http://127.0.0.1:1/hook", "s")


def test_lifecycle_events_and_expiry(oauth, graph, http_session, shared_mailbox):
	endpoint = Endpoint(secret="life-secret")
	subs = subscriptions(oauth, http_session)
	with WebhookReceiver(oauth.ca, endpoint) as hook:
		sub = subs.create(
			shared_mailbox, "inbox", hook.url("/hook"), "life-secret", lifecycle_url=hook.url("/life")
		)
		for event in ("reauthorizationRequired", "missed", "subscriptionRemoved"):
			graph.send_lifecycle(sub.id, event)
		graph.wait_notified()
		events = [n.lifecycle_event for b in endpoint.batches for n in b.notifications]
		assert events == ["reauthorizationRequired", "missed", "subscriptionRemoved"]
		assert all(b.subscriptions_to_poll == {sub.id} for b in endpoint.batches)
		assert endpoint.batches[-1].lifecycle == [(sub.id, "subscriptionRemoved")]
		assert [c.path for c in hook.calls[-3:]] == ["/life"] * 3
		with pytest.raises(g.NotFound):  # removed: the caller creates a new one
			subs.renew(sub.id)
		second = subs.create(shared_mailbox, "inbox", hook.url("/hook"), "life-secret")
		subs.reauthorize(second.id)
		graph.expire_subscription(second.id)
		graph.deliver(shared_mailbox, make_message(41))
		graph.wait_notified()
		assert len(endpoint.batches) == 3  # an expired subscription notifies nobody
		with pytest.raises(g.NotFound):
			subs.renew(second.id)


def test_notifications_with_a_wrong_client_state_are_dropped():
	item = {
		"subscriptionId": "sub-1",
		"changeType": "created",
		"clientState": "right",
		"resourceData": {"id": "AAMk1"},
		"subscriptionExpirationDateTime": "2030-01-01T00:00:00.0000000Z",
	}
	forged = {**item, "clientState": "wrong"}
	stateless = {k: v for k, v in item.items() if k != "clientState"}
	odd = {**item, "lifecycleEvent": "somethingNew"}
	batch = g.parse_notifications(json.dumps({"value": [item, forged, stateless, odd]}), "right")
	assert [n.message_id for n in batch.notifications] == ["AAMk1"] and batch.rejected == 2
	assert batch.unknown_lifecycle == ("somethingNew",)
	assert batch.notifications[0].expiration == datetime(2030, 1, 1, tzinfo=timezone.utc)
	by_sub = g.parse_notifications(json.dumps({"value": [item]}), {"sub-1": "right"}.get)
	assert by_sub.subscriptions_to_poll == {"sub-1"}
	assert g.parse_notifications(json.dumps({"value": [item]}), {}.get).rejected == 1  # unknown subscription
	for bad in (b"not json", b'{"value": 3}', b"[]"):
		with pytest.raises(g.InvalidNotification):
			g.parse_notifications(bad, "right")
	assert g.validation_response({"validationToken": "a b+c"}) == "a b+c"
	assert g.validation_response({}) is None
