"""IdleMultiplexer against a real Dovecot: EXISTS after APPEND, restarts, renewals, back-off, XOAUTH2."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from email_flow_app.channels.auth import OAuthAuth, PasswordAuth
from email_flow_app.channels.idle import BUSY, IDLING, WAITING, IdleMultiplexer, backoff_delay
from email_flow_app.channels.imap import FolderState, IMAPConfig, IMAPSource
from email_flow_app.testing.dovecot import DovecotServer
from email_flow_app.testing.net import free_port
from tests.channels.conftest import ALICE, BOB, PASSWORDS
from tests.channels.helpers import StaticTokens, imap_config, make_message

WAIT = 15.0  # seconds a test waits for something that takes well under one


class Recorder:
	"""Collects on_new_mail calls; the loop runs in a background thread like the listener's."""

	def __init__(self) -> None:
		self.calls: list[object] = []
		self.lock = threading.Lock()

	def __call__(self, key: object) -> None:
		with self.lock:
			self.calls.append(key)

	def count(self, key: object) -> int:
		with self.lock:
			return self.calls.count(key)


@pytest.fixture
def running() -> Iterator[Callable[..., tuple[IdleMultiplexer, Recorder]]]:
	"""Start a multiplexer loop in a thread; stopped and closed after the test."""
	started: list[tuple[IdleMultiplexer, threading.Event, threading.Thread]] = []

	def start(**kwargs) -> tuple[IdleMultiplexer, Recorder]:
		recorder = Recorder()
		mux = IdleMultiplexer(recorder, **kwargs)
		stop = threading.Event()
		thread = threading.Thread(target=mux.run, args=(stop.is_set, 0.2), daemon=True)
		thread.start()
		started.append((mux, stop, thread))
		return mux, recorder

	yield start
	for _mux, stop, thread in started:
		stop.set()
		thread.join(30)
		assert not thread.is_alive(), "the IDLE loop did not stop"


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if condition():
			return True
		time.sleep(0.05)
	return condition()


def wait_idling(mux: IdleMultiplexer, *keys: object) -> None:
	assert wait_for(lambda: set(keys) <= mux.idling()), mux.states()


def test_append_signals_exactly_that_key(dovecot, folder, running):
	mux, seen = running()
	mux.watch("alice", imap_config(dovecot, ALICE), PasswordAuth(PASSWORDS[ALICE]), folder)
	mux.watch("bob", imap_config(dovecot, BOB), PasswordAuth(PASSWORDS[BOB]), "INBOX")
	wait_idling(mux, "alice", "bob")
	# Every (re)connect is signalled once: mail may have come while nobody watched.
	assert wait_for(lambda: seen.count("alice") == 1 and seen.count("bob") == 1)

	started = time.monotonic()
	dovecot.append(ALICE, folder, make_message(1))
	assert wait_for(lambda: seen.count("alice") >= 2), seen.calls
	assert time.monotonic() - started < 5
	time.sleep(0.5)
	assert seen.count("bob") == 1


def test_many_mailboxes_share_one_loop_thread(dovecot, running):
	folders = [f"Many{i}" for i in range(12)]
	for name in folders:
		dovecot.create_folder(ALICE, name)
	threads_before = threading.active_count()
	mux, seen = running(connectors=2)
	for name in folders:
		mux.watch(name, imap_config(dovecot, ALICE), PasswordAuth(PASSWORDS[ALICE]), name)
	wait_idling(mux, *folders)
	# One loop thread and at most two connector threads, whatever the number of mailboxes.
	assert threading.active_count() - threads_before <= 3
	dovecot.append(ALICE, folders[7], make_message(7))
	assert wait_for(lambda: seen.count(folders[7]) >= 2)
	assert all(seen.count(name) == 1 for name in folders if name != folders[7])


def test_dovecot_restart_on_the_same_port_reconnects_and_signals(ca, running):
	with DovecotServer(users={ALICE: PASSWORDS[ALICE]}, ca=ca) as server:
		mux, seen = running(backoff_base=0.2, backoff_max=1.0)
		mux.watch("alice", imap_config(server, ALICE), PasswordAuth(PASSWORDS[ALICE]), "INBOX")
		wait_idling(mux, "alice")
		port = server.imaps_port

		server.halt()
		assert wait_for(lambda: "alice" not in mux.idling())
		time.sleep(1.5)  # several refused reconnects while the server is down
		state = mux.states()["alice"]
		assert state.phase in (WAITING, BUSY) and state.failures >= 1 and state.last_error

		server.resume()
		assert server.imaps_port == port
		wait_idling(mux, "alice")
		assert mux.states()["alice"].failures == 0
		calls = seen.count("alice")
		assert calls >= 2  # the reconnect itself is signalled
		server.append(ALICE, "INBOX", make_message(2))
		assert wait_for(lambda: seen.count("alice") > calls)


def test_mail_during_the_outage_is_signalled_after_reconnect(ca, running):
	with DovecotServer(users={ALICE: PASSWORDS[ALICE]}, ca=ca) as server:
		mux, seen = running(backoff_base=0.2, backoff_max=0.5)
		mux.watch("alice", imap_config(server, ALICE), PasswordAuth(PASSWORDS[ALICE]), "INBOX")
		wait_idling(mux, "alice")
		server.halt()
		assert wait_for(lambda: "alice" not in mux.idling())
		before = seen.count("alice")
		server.resume()
		server.append(ALICE, "INBOX", make_message(3))  # maybe before the listener is back
		assert wait_for(lambda: seen.count("alice") > before)
		with IMAPSource(imap_config(server, ALICE), PasswordAuth(PASSWORDS[ALICE])) as source:
			assert [uid for uid, _raw in source.fetch_new("INBOX", FolderState("INBOX"))] == [1]


def test_idle_is_renewed_and_keeps_signalling(dovecot, folder, running):
	mux, seen = running(renew_after=0.3)
	mux.watch("alice", imap_config(dovecot, ALICE), PasswordAuth(PASSWORDS[ALICE]), folder)
	wait_idling(mux, "alice")
	time.sleep(1.5)  # several DONE + IDLE renewals
	state = mux.states()["alice"]
	assert state.failures == 0 and state.phase in (IDLING, BUSY)
	assert seen.count("alice") == 1  # renewals are not reconnects
	dovecot.append(ALICE, folder, make_message(4))
	assert wait_for(lambda: seen.count("alice") >= 2)


def test_unreachable_server_backs_off_without_spinning(running):
	mux, seen = running(backoff_base=0.1, backoff_max=0.4)
	config = IMAPConfig("127.0.0.1", free_port("127.0.0.1"), "plain", ALICE, timeout=2)
	mux.watch("nowhere", config, PasswordAuth("x"), "INBOX")
	assert wait_for(lambda: mux.states()["nowhere"].failures >= 3)
	time.sleep(1.0)
	failures = mux.states()["nowhere"].failures
	# At most one attempt per 0.2-0.4 s once the back-off reached its cap.
	assert failures <= 3 + 6, failures
	assert "Could not connect" in (mux.states()["nowhere"].last_error or "")
	assert seen.calls == []


def test_wrong_password_is_retried_with_back_off_and_reported(dovecot, running):
	mux, seen = running(backoff_base=0.1, backoff_max=0.2)
	mux.watch("alice", imap_config(dovecot, ALICE), PasswordAuth("wrong"), "INBOX")
	assert wait_for(lambda: mux.states()["alice"].failures >= 2)
	assert "Authentication failed" in mux.states()["alice"].last_error
	# A corrected password (watch again, same server) is used at the next attempt.
	mux.watch("alice", imap_config(dovecot, ALICE), PasswordAuth(PASSWORDS[ALICE]), "INBOX")
	wait_idling(mux, "alice")
	assert seen.count("alice") == 1


def test_xoauth2_asks_the_token_provider_and_refreshes_a_rejected_token(dovecot, oauth, running):
	fresh = oauth.issue_access_token("google-client", ALICE)
	tokens = StaticTokens("expired-or-revoked", fresh)
	mux, seen = running()
	mux.watch("alice", imap_config(dovecot, ALICE), OAuthAuth(tokens), "INBOX")
	wait_idling(mux, "alice")
	assert tokens.calls == 2  # the cached token, refused; then a refreshed one
	assert seen.count("alice") == 1


def test_unwatch_and_sync_close_connections(dovecot, folder, running):
	mux, seen = running()
	config, auth = imap_config(dovecot, ALICE), PasswordAuth(PASSWORDS[ALICE])
	mux.sync({"a": (config, auth, folder), "b": (config, auth, "INBOX")})
	wait_idling(mux, "a", "b")
	mux.sync({"b": (config, auth, "INBOX")})
	assert mux.keys() == {"b"}
	dovecot.append(ALICE, folder, make_message(5))
	time.sleep(1.0)
	assert seen.count("a") == 1  # no longer watched
	# Changing the folder of a key reconnects it there.
	mux.watch("b", config, auth, folder)
	assert wait_for(lambda: seen.count("b") >= 2)


def test_backoff_doubles_up_to_the_cap_with_jitter():
	assert 0.5 <= backoff_delay(1) <= 1.0
	assert 4.0 <= backoff_delay(4) <= 8.0
	assert 150.0 <= backoff_delay(30) <= 300.0
