"""Office 365 through msal against the local OpenID/token/Graph endpoints."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from email_flow_app.channels import office365
from email_flow_app.channels.errors import AuthError, ReconnectNeeded, TemporaryError, TLSError
from email_flow_app.channels.imap import IMAPSource
from email_flow_app.channels.office365 import GraphSender, O365AuthCodeFlow, O365TokenProvider
from email_flow_app.channels.smtp import SMTPSink
from tests.channels.conftest import (
	ALICE,
	APP_CLIENT,
	APP_SECRET,
	SHARED,
	TENANT,
	WEB_CLIENT,
	WEB_SECRET,
)
from tests.channels.helpers import imap_config, make_message

REDIRECT = "https://desk.example.test/api/method/email_flow.o365.callback"


def app_provider(oauth, http_session, cache=None, secret=APP_SECRET) -> O365TokenProvider:
	return O365TokenProvider(
		TENANT,
		APP_CLIENT,
		secret,
		scopes=office365.APP_SCOPES,
		cache=cache,
		authority_host=oauth.base_url,
		mode="app",
		http_session=http_session,
	)


def sign_in(oauth, http_session, user: str = ALICE, scopes=office365.DELEGATED_SCOPES) -> tuple[str, str]:
	"""The delegated flow as a browser would run it: authorize redirects back with a code."""
	flow = O365AuthCodeFlow(
		TENANT,
		WEB_CLIENT,
		WEB_SECRET,
		scopes=scopes,
		authority_host=oauth.base_url,
		http_session=http_session,
	)
	auth_url, state = flow.start(REDIRECT, login_hint=user)
	assert auth_url.startswith(f"{oauth.base_url}/{TENANT}/oauth2/v2.0/authorize?")
	assert "code_challenge=" in auth_url  # PKCE from msal
	redirect = http_session.get(auth_url, allow_redirects=False)
	assert redirect.status_code == 302
	location = redirect.headers["Location"]
	assert location.startswith(REDIRECT)
	params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
	return flow.finish(state, params)


def delegated_provider(
	oauth, http_session, cache: str, user: str = ALICE, scopes=office365.DELEGATED_SCOPES
) -> O365TokenProvider:
	return O365TokenProvider(
		TENANT,
		WEB_CLIENT,
		WEB_SECRET,
		scopes=scopes,
		cache=cache,
		authority_host=oauth.base_url,
		mode="delegated",
		account=user,
		http_session=http_session,
	)


def test_app_token_logs_into_the_shared_mailbox_over_imap(dovecot, oauth, http_session):
	provider = app_provider(oauth, http_session)
	with IMAPSource(imap_config(dovecot, SHARED), provider.as_auth()) as source:
		assert "INBOX" in [f.name for f in source.list_folders()]
	assert provider.cache_changed
	cache = provider.serialized_cache()
	assert not provider.cache_changed
	again = app_provider(oauth, http_session, cache=cache)
	grants = len(oauth.grants)
	assert again.access_token() == provider.access_token()  # served from the persisted cache
	assert len(oauth.grants) == grants


def test_wrong_client_secret_is_auth_error_not_reconnect(oauth, http_session):
	with pytest.raises(AuthError) as caught:
		app_provider(oauth, http_session, secret="wrong").access_token()
	assert not isinstance(caught.value, ReconnectNeeded)
	assert "app credentials" in str(caught.value)


def test_auth_code_sign_in_then_imap_and_smtp_with_xoauth2(dovecot, oauth, http_session, smtp):
	email, cache = sign_in(oauth, http_session)
	assert email == ALICE
	provider = delegated_provider(oauth, http_session, cache)
	with IMAPSource(imap_config(dovecot, ALICE), provider.as_auth()) as source:
		assert source.list_folders()
	sink_config = office365.smtp_config(
		ALICE, host=smtp.host, port=dovecot.submission_port, ssl_context=dovecot.ca.client_context()
	)
	with SMTPSink(sink_config, provider.as_auth()) as sink:
		sink.send(make_message(1), ALICE, ["customer@example.org"])


def test_one_sign_in_for_imap_and_graph_send_redeems_one_resource_then_refreshes_the_other(
	dovecot, oauth, http_session
):
	"""Reading over IMAP, sending through Graph: consent for both, a token per resource.

	Microsoft refuses a token request naming two resources (AADSTS28000), as the
	local provider does: the code is redeemed for IMAP, Graph's token comes by refresh.
	"""
	imap_scope = office365.DELEGATED_SCOPES[0]
	email, cache = sign_in(oauth, http_session, scopes=(imap_scope, *office365.GRAPH_DELEGATED_SCOPES))
	assert email == ALICE
	reader = delegated_provider(oauth, http_session, cache, scopes=(imap_scope,))
	with IMAPSource(imap_config(dovecot, ALICE), reader.as_auth()) as source:
		assert source.list_folders()
	sender_tokens = delegated_provider(oauth, http_session, cache, scopes=office365.GRAPH_DELEGATED_SCOPES)
	GraphSender(sender_tokens, ALICE, graph_base=oauth.graph_base, http_session=http_session).send(
		make_message(7)
	)
	assert oauth.grants[-1] == "refresh_token"


def test_expired_access_token_is_refreshed_transparently_and_cache_rotates(dovecot, oauth, http_session):
	_, cache = sign_in(oauth, http_session)
	provider = delegated_provider(oauth, http_session, cache)
	first = provider.access_token()
	provider.serialized_cache()
	oauth.expire_access_tokens(ALICE)  # the server says expired; msal still trusts its cache
	with IMAPSource(imap_config(dovecot, ALICE), provider.as_auth()) as source:
		assert source.list_folders()
	assert provider.access_token() != first
	assert oauth.grants[-1] == "refresh_token"
	assert provider.cache_changed
	rotated = json.loads(provider.serialized_cache())["RefreshToken"]
	assert rotated != json.loads(cache)["RefreshToken"]


def test_short_lived_tokens_are_refreshed_by_msal(oauth, http_session):
	oauth.access_token_lifetime = 60  # msal treats tokens within 5 minutes of expiry as expired
	try:
		_, cache = sign_in(oauth, http_session)
		provider = delegated_provider(oauth, http_session, cache)
		tokens = {provider.access_token() for _ in range(2)}
	finally:
		oauth.access_token_lifetime = 3600
	assert len(tokens) == 2 and oauth.grants[-2:] == ["refresh_token", "refresh_token"]


def test_revoked_refresh_token_is_reconnect_needed(dovecot, oauth, http_session):
	_, cache = sign_in(oauth, http_session)
	provider = delegated_provider(oauth, http_session, cache)
	oauth.revoke_refresh_tokens(ALICE)
	oauth.expire_access_tokens(ALICE)
	with pytest.raises(ReconnectNeeded, match="sign in again"):
		IMAPSource(imap_config(dovecot, ALICE), provider.as_auth()).connect()


def test_unknown_account_in_cache_is_reconnect_needed(oauth, http_session):
	_, cache = sign_in(oauth, http_session)
	with pytest.raises(ReconnectNeeded):
		delegated_provider(oauth, http_session, cache, user="nobody@example.test").access_token()


def test_graph_sendmail_posts_base64_mime(oauth, http_session):
	provider = app_provider(oauth, http_session)
	sender = GraphSender(provider, SHARED, graph_base=oauth.graph_base, http_session=http_session)
	raw = make_message(42)
	sender.send(raw)
	assert oauth.graph_mail[-1].mailbox == SHARED and oauth.graph_mail[-1].raw == raw


def test_graph_retries_once_with_a_fresh_token_and_classifies_failures(oauth, http_session):
	_, cache = sign_in(oauth, http_session)
	provider = delegated_provider(oauth, http_session, cache)
	sender = GraphSender(provider, ALICE, graph_base=oauth.graph_base, http_session=http_session)
	provider.access_token()
	oauth.expire_access_tokens(ALICE)
	sender.send(make_message(1))  # 401, refresh, 202
	assert oauth.graph_mail[-1].mailbox == ALICE
	oauth.fail_graph_send(503, "ServiceUnavailable")
	with pytest.raises(TemporaryError, match="ServiceUnavailable"):
		sender.send(make_message(2))
	other = GraphSender(provider, "bob@example.test", graph_base=oauth.graph_base, http_session=http_session)
	with pytest.raises(AuthError, match="permission"):
		other.send(make_message(3))


def test_graph_body_is_base64_text_plain(oauth, http_session):
	token = oauth.issue_access_token(APP_CLIENT, SHARED)
	url = f"{oauth.graph_base}/v1.0/users/{SHARED}/sendMail"
	bad = http_session.post(
		url, data=b"not base64!", headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
	)
	assert bad.status_code == 400
	good = http_session.post(
		url,
		data=base64.b64encode(b"Subject: x\r\n\r\ny"),
		headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
	)
	assert good.status_code == 202


def test_presets():
	imap = office365.imap_config("a@contoso.com")
	smtp = office365.smtp_config("a@contoso.com")
	assert (imap.host, imap.port, imap.security) == ("outlook.office365.com", 993, "ssl")
	assert (smtp.host, smtp.port, smtp.security) == ("smtp.office365.com", 587, "starttls")


def test_untrusted_authority_certificate_is_a_tls_error(oauth):
	session = requests.Session()
	session.trust_env = False  # system CAs only: the test CA is unknown
	with pytest.raises(TLSError, match="TLS failure"):
		app_provider(oauth, session).access_token()
