"""SMTPSink against aiosmtpd (AUTH, STARTTLS, implicit TLS) and Dovecot submission."""

from __future__ import annotations

import ssl
import time
from email.message import EmailMessage

import pytest

from email_flow_app.channels.auth import OAuthAuth, PasswordAuth
from email_flow_app.channels.errors import (
	AuthError,
	MessageTooLarge,
	PermanentError,
	RecipientRefused,
	TemporaryError,
	TLSError,
)
from email_flow_app.channels.smtp import SMTPConfig, SMTPSink
from email_flow_app.testing.proxy import TCPProxy
from tests.channels.conftest import ALICE, SENDER, SENDER_PW
from tests.channels.helpers import StaticTokens, make_message

AUTH = PasswordAuth(SENDER_PW)


def starttls_config(server, **kwargs) -> SMTPConfig:
	kwargs.setdefault("ssl_context", server.ca.client_context())
	return SMTPConfig(server.host, server.port, "starttls", SENDER, timeout=10, **kwargs)


def ssl_config(server, **kwargs) -> SMTPConfig:
	kwargs.setdefault("ssl_context", server.ca.client_context())
	return SMTPConfig(server.host, server.tls_port, "ssl", SENDER, timeout=10, **kwargs)


def test_starttls_batch_reuses_one_connection(smtp):
	with SMTPSink(starttls_config(smtp), AUTH) as sink:
		for n in range(3):
			result = sink.send(make_message(n), SENDER, [f"c{n}@example.org"])
			assert result.accepted == (f"c{n}@example.org",) and result.refused == {}
		assert sink.connections_opened == 1
	assert [m.rcpt_tos for m in smtp.messages] == [["c0@example.org"], ["c1@example.org"], ["c2@example.org"]]
	assert smtp.messages[0].mail_from == SENDER and smtp.messages[0].login == SENDER
	assert b"Subject: Ticket 0" in smtp.messages[0].data


def test_implicit_tls_and_email_message(smtp):
	msg = EmailMessage()
	msg["From"], msg["To"], msg["Subject"] = SENDER, "x@example.org", "Héllo"
	msg.set_content("body ✓")
	with SMTPSink(ssl_config(smtp), AUTH) as sink:
		sink.send(msg, SENDER, ["x@example.org"])
	assert len(smtp.messages) == 1 and b"Subject: =?utf-8?" in smtp.messages[0].data


def test_wrong_password_is_an_auth_error(smtp):
	with pytest.raises(AuthError, match=f"the password for {SENDER} was rejected"):
		SMTPSink(starttls_config(smtp), PasswordAuth("wrong")).connect()


def test_untrusted_certificate_is_a_tls_error(smtp):
	with pytest.raises(TLSError, match="certificate not trusted"):
		SMTPSink(ssl_config(smtp, ssl_context=ssl.create_default_context()), AUTH).connect()
	with pytest.raises(TLSError, match="certificate not trusted"):
		SMTPSink(starttls_config(smtp, ssl_context=ssl.create_default_context()), AUTH).connect()


def test_xoauth2_token_accepted_and_wrong_token_refused(smtp, oauth):
	good = oauth.issue_access_token("google-client", SENDER)
	with SMTPSink(starttls_config(smtp), OAuthAuth(StaticTokens(good))) as sink:
		sink.send(make_message(1), SENDER, ["a@example.org"])
	tokens = StaticTokens("bad-1", "bad-2")
	with pytest.raises(AuthError, match="rejected a freshly issued OAuth token"):
		SMTPSink(starttls_config(smtp), OAuthAuth(tokens)).connect()
	assert tokens.calls == 2


def test_expired_token_is_refreshed_once(smtp, oauth):
	stale = oauth.issue_access_token("google-client", SENDER, lifetime=-1)
	fresh = oauth.issue_access_token("google-client", SENDER)
	tokens = StaticTokens(stale, fresh)
	with SMTPSink(starttls_config(smtp), OAuthAuth(tokens)) as sink:
		sink.send(make_message(1), SENDER, ["a@example.org"])
	assert tokens.calls == 2 and len(smtp.messages) == 1


def test_recipient_4xx_is_temporary_and_5xx_is_permanent(smtp):
	smtp.reply_to_recipient("busy@example.org", "450 4.2.1 Mailbox busy, try later")
	smtp.reply_to_recipient("gone@example.org", "550 5.1.1 No such user")
	with SMTPSink(starttls_config(smtp), AUTH) as sink:
		with pytest.raises(TemporaryError) as temp:
			sink.send(make_message(1), SENDER, ["busy@example.org"])
		assert temp.value.retryable and temp.value.refused["busy@example.org"][0] == 450
		with pytest.raises(RecipientRefused) as perm:
			sink.send(make_message(2), SENDER, ["gone@example.org"])
		assert not perm.value.retryable and perm.value.refused["gone@example.org"][0] == 550
		partial = sink.send(make_message(3), SENDER, ["ok@example.org", "gone@example.org"])
		assert partial.accepted == ("ok@example.org",)
		assert partial.refused["gone@example.org"][0] == 550
		assert sink.connections_opened == 1  # refusals do not break the connection
	assert [m.rcpt_tos for m in smtp.messages] == [["ok@example.org"]]


def test_data_4xx_is_temporary_and_5xx_is_permanent(smtp):
	with SMTPSink(starttls_config(smtp), AUTH) as sink:
		smtp.reply_to_data("451 4.3.0 Local error, try again")
		with pytest.raises(TemporaryError, match="451"):
			sink.send(make_message(1), SENDER, ["a@example.org"])
		smtp.reply_to_data("554 5.7.1 Message rejected as spam")
		with pytest.raises(PermanentError, match="554") as perm:
			sink.send(make_message(2), SENDER, ["a@example.org"])
		assert type(perm.value) is PermanentError
		smtp.reply_to_data(None)
		sink.send(make_message(3), SENDER, ["a@example.org"])
	assert len(smtp.messages) == 1


def test_message_too_large(smtp):
	smtp.size_limit = 10_000
	try:
		with SMTPSink(starttls_config(smtp), AUTH) as sink:
			with pytest.raises(MessageTooLarge, match="too large"):
				sink.send(make_message(1, body_size=50_000), SENDER, ["a@example.org"])
	finally:
		smtp.size_limit = 10 * 1024 * 1024


def test_stale_connection_is_replaced_before_sending(smtp):
	with TCPProxy((smtp.host, smtp.port)) as proxy:
		config = SMTPConfig(
			smtp.host, proxy.port, "starttls", SENDER, timeout=10, ssl_context=smtp.ca.client_context()
		)
		with SMTPSink(config, AUTH) as sink:
			sink.send(make_message(1), SENDER, ["a@example.org"])
			proxy.cut_all()
			time.sleep(0.05)
			sink.send(make_message(2), SENDER, ["a@example.org"])
			assert sink.connections_opened == 2
	assert len(smtp.messages) == 2


def test_connection_lost_mid_send_is_temporary(smtp):
	with TCPProxy((smtp.host, smtp.port)) as proxy:
		config = SMTPConfig(smtp.host, proxy.port, "plain", None, timeout=10)
		with SMTPSink(config) as sink:
			proxy.cut_all()  # a fresh connection is not probed: the transaction itself fails
			with pytest.raises(TemporaryError, match="lost"):
				sink.send(make_message(1), SENDER, ["a@example.org"])


def test_dovecot_submission_with_xoauth2_relays_the_message(dovecot, oauth, relay):
	relay.reset()
	token = oauth.issue_access_token("google-client", ALICE)
	config = SMTPConfig(
		dovecot.host,
		dovecot.submission_port,
		"starttls",
		ALICE,
		timeout=10,
		ssl_context=dovecot.ca.client_context(),
	)
	with SMTPSink(config, OAuthAuth(StaticTokens(token))) as sink:
		sink.send(make_message(7), ALICE, ["customer@example.org"])
	assert [(m.mail_from, m.rcpt_tos) for m in relay.messages] == [(ALICE, ["customer@example.org"])]
	assert b"Subject: Ticket 7" in relay.messages[0].data


def test_dovecot_submission_refuses_a_revoked_token(dovecot, oauth):
	token = oauth.issue_access_token("google-client", ALICE, lifetime=-1)
	config = SMTPConfig(
		dovecot.host,
		dovecot.submission_port,
		"starttls",
		ALICE,
		timeout=10,
		ssl_context=dovecot.ca.client_context(),
	)
	with pytest.raises(AuthError):
		SMTPSink(config, OAuthAuth(StaticTokens(token))).connect()
