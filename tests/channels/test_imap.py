"""IMAPSource against a real Dovecot."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from email_flow_app.channels.auth import OAuthAuth, PasswordAuth
from email_flow_app.channels.errors import (
	AuthError,
	PermanentError,
	ReconnectNeeded,
	TemporaryError,
	TLSError,
	UIDValidityChanged,
)
from email_flow_app.channels.imap import FolderState, IMAPConfig, IMAPSource, uid_set
from email_flow_app.testing.proxy import TCPProxy
from tests.channels.conftest import ALICE, PASSWORDS
from tests.channels.helpers import StaticTokens, imap_config, make_message, subject_number

ALICE_AUTH = PasswordAuth(PASSWORDS[ALICE])


def test_uid_set_collapses_runs():
	assert uid_set([1, 2, 3, 5, 7, 8, 10]) == "1:3,5,7:8,10"
	assert uid_set([]) == ""


def test_thousand_messages_fetched_exactly_once_across_three_runs(dovecot, folder):
	seen: list[int] = []
	uids: list[int] = []
	state = FolderState(folder)
	batches = [range(0, 400), range(400, 750), range(750, 1000)]
	with IMAPSource(imap_config(dovecot, ALICE), ALICE_AUTH) as source:
		for numbers in batches:
			dovecot.append_many(ALICE, folder, (make_message(n) for n in numbers))
			run = source.fetch_new(folder, state, batch_size=100)
			for uid, raw in run:
				uids.append(uid)
				seen.append(subject_number(raw))
			state = run.state
		assert list(source.fetch_new(folder, state)) == []
	assert seen == list(range(1000))
	assert uids == sorted(set(uids))
	assert state.last_uid == uids[-1]


def test_fetch_peeks_and_leaves_messages_unseen(dovecot, folder):
	dovecot.append_many(ALICE, folder, [make_message(n) for n in range(3)])
	with IMAPSource(imap_config(dovecot, ALICE), ALICE_AUTH) as source:
		assert len(list(source.fetch_new(folder, None))) == 3
		unseen = {f.name: f.unseen for f in source.list_folders()}[folder]
	assert unseen == 3


def test_partial_iteration_state_resumes_without_skip_or_duplicate(dovecot, folder):
	dovecot.append_many(ALICE, folder, [make_message(n) for n in range(10)])
	with IMAPSource(imap_config(dovecot, ALICE), ALICE_AUTH) as source:
		run = source.fetch_new(folder, FolderState(folder), batch_size=4)
		first = [subject_number(next(run)[1]) for _ in range(5)]
		rest = [subject_number(raw) for _, raw in source.fetch_new(folder, run.state, batch_size=4)]
		limited = source.fetch_new(folder, FolderState(folder), limit=3)
		assert len(list(limited)) == 3
	assert first + rest == list(range(10))


def test_recreated_mailbox_reports_uidvalidity_change(dovecot, folder):
	dovecot.append(ALICE, folder, make_message(1))
	with IMAPSource(imap_config(dovecot, ALICE), ALICE_AUTH) as source:
		run = source.fetch_new(folder, None)
		list(run)
		new_validity = dovecot.recreate_mailbox(ALICE, folder)
		dovecot.append(ALICE, folder, make_message(2))
		with pytest.raises(UIDValidityChanged) as caught:
			source.fetch_new(folder, run.state)
	assert (caught.value.old, caught.value.new) == (run.state.uidvalidity, new_validity)
	assert folder in str(caught.value) and "recreated" in str(caught.value)


def test_dropped_connection_mid_fetch_is_retryable_and_resume_skips_nothing(dovecot, folder):
	dovecot.append_many(ALICE, folder, (make_message(n, body_size=2000) for n in range(300)))
	committed: list[int] = []
	with TCPProxy((dovecot.host, dovecot.imap_port)) as proxy:
		config = IMAPConfig(dovecot.host, proxy.port, "plain", ALICE, timeout=10)
		with IMAPSource(config, ALICE_AUTH) as source:
			proxy.cut_after(250_000)  # about 110 messages into the transfer
			run = source.fetch_new(folder, FolderState(folder), batch_size=50)
			with pytest.raises(TemporaryError) as caught:
				for _, raw in run:
					committed.append(subject_number(raw))
			assert caught.value.retryable
			assert proxy.cuts == 1
			proxy.cut_after(None)
			for _, raw in source.fetch_new(folder, run.state, batch_size=50):  # reconnects by itself
				committed.append(subject_number(raw))
	assert 0 < run.state.last_uid < 300
	assert committed == list(range(300))


@pytest.mark.parametrize("security", ["ssl", "starttls", "plain"])
def test_connects_with_each_security_mode(dovecot, security):
	with IMAPSource(imap_config(dovecot, ALICE, security), ALICE_AUTH) as source:
		assert "INBOX" in [f.name for f in source.list_folders()]


def test_wrong_password_is_a_clear_auth_error(dovecot):
	source = IMAPSource(imap_config(dovecot, ALICE), PasswordAuth("nope", label="App Password"))
	with pytest.raises(AuthError) as caught:
		source.connect()
	assert not isinstance(caught.value, ReconnectNeeded)
	assert str(caught.value) == (
		f"Authentication failed: the App Password for {ALICE} was rejected by {dovecot.host}"
	)


def test_untrusted_certificate_is_a_tls_error(dovecot):
	config = imap_config(dovecot, ALICE, ssl_context=ssl.create_default_context(cafile=None))
	with pytest.raises(TLSError, match="certificate not trusted"):
		IMAPSource(config, ALICE_AUTH).connect()


def test_tls_on_a_plain_port_is_a_tls_error(dovecot):
	config = IMAPConfig(
		dovecot.host, dovecot.imap_port, "ssl", ALICE, timeout=5, ssl_context=dovecot.ca.client_context()
	)
	with pytest.raises(TLSError, match="TLS handshake"):
		IMAPSource(config, ALICE_AUTH).connect()


def test_silent_server_times_out_as_temporary_error():
	with socket.create_server(("127.0.0.1", 0)) as silent:
		config = IMAPConfig("127.0.0.1", silent.getsockname()[1], "plain", ALICE, timeout=0.5)
		started = time.monotonic()
		with pytest.raises(TemporaryError, match="timed out"):
			IMAPSource(config, ALICE_AUTH).connect()
	assert time.monotonic() - started < 5


def test_refused_connection_is_temporary():
	with socket.create_server(("127.0.0.1", 0)) as sock:
		port = sock.getsockname()[1]
	with pytest.raises(TemporaryError, match="Could not connect"):
		IMAPSource(IMAPConfig("127.0.0.1", port, "plain", ALICE, timeout=2), ALICE_AUTH).connect()


def test_missing_folder_is_permanent(dovecot):
	with IMAPSource(imap_config(dovecot, ALICE), ALICE_AUTH) as source:
		with pytest.raises(PermanentError, match="Nope"):
			source.fetch_new("Nope", None)
		assert source.list_folders()  # connection still usable


def test_wrong_oauth_token_is_an_auth_error(dovecot):
	tokens = StaticTokens("forged-1", "forged-2")
	with pytest.raises(AuthError, match="rejected a freshly issued OAuth token"):
		IMAPSource(imap_config(dovecot, ALICE), OAuthAuth(tokens)).connect()
	assert tokens.calls == 2


def test_xoauth2_login_validated_by_dovecot_introspection(dovecot, oauth):
	token = oauth.issue_access_token("google-client", ALICE)
	with IMAPSource(imap_config(dovecot, ALICE), OAuthAuth(StaticTokens(token))) as source:
		assert source.list_folders()


def test_token_for_another_user_is_refused(dovecot, oauth):
	token = oauth.issue_access_token("google-client", "bob@example.test")
	with pytest.raises(AuthError):
		IMAPSource(imap_config(dovecot, ALICE), OAuthAuth(StaticTokens(token))).connect()


def test_ack_seen_move_and_leave(dovecot, folder):
	dovecot.append_many(ALICE, folder, [make_message(n) for n in range(6)])
	archive = folder + "-done"
	dovecot.create_folder(ALICE, archive)
	with IMAPSource(imap_config(dovecot, ALICE), ALICE_AUTH) as source:
		run = source.fetch_new(folder, None)
		uids = [uid for uid, _ in run]
		source.ack(folder, uids[:2], "seen", uidvalidity=run.state.uidvalidity)
		source.ack(folder, uids[2:4], "move", move_to=archive)
		source.ack(folder, uids[4:], "leave")
		counts = {f.name: (f.messages, f.unseen) for f in source.list_folders()}
	assert counts[folder] == (4, 2)
	assert counts[archive] == (2, 2)


def test_ack_refuses_a_recreated_folder(dovecot, folder):
	dovecot.append(ALICE, folder, make_message(1))
	with IMAPSource(imap_config(dovecot, ALICE), ALICE_AUTH) as source:
		run = source.fetch_new(folder, None)
		uids = [uid for uid, _ in run]
		dovecot.recreate_mailbox(ALICE, folder)
		with pytest.raises(UIDValidityChanged):
			source.ack(folder, uids, "seen", uidvalidity=run.state.uidvalidity)


def test_idle_returns_when_mail_arrives_and_times_out_otherwise(dovecot, folder):
	with IMAPSource(imap_config(dovecot, ALICE), ALICE_AUTH) as source:
		assert source.idle(folder, timeout=0.3) is False
		timer = threading.Timer(0.3, dovecot.append, (ALICE, folder, make_message(1)))
		timer.start()
		started = time.monotonic()
		assert source.idle(folder, timeout=10) is True
		assert time.monotonic() - started < 5
		timer.join()
		assert [subject_number(raw) for _, raw in source.fetch_new(folder, None)] == [1]
