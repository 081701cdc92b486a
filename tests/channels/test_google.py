"""Google: presets and google-auth refresh-token credentials against a local token_uri."""

from __future__ import annotations

import pytest
import requests

from email_flow_app.channels import google
from email_flow_app.channels.errors import AuthError, ReconnectNeeded, TLSError
from email_flow_app.channels.google import GoogleTokenProvider
from email_flow_app.channels.imap import IMAPSource
from tests.channels.conftest import ALICE, GOOGLE_CLIENT, GOOGLE_SECRET
from tests.channels.helpers import imap_config


def provider_for(oauth, http_session, refresh_token, **kwargs) -> GoogleTokenProvider:
	return GoogleTokenProvider(
		GOOGLE_CLIENT,
		GOOGLE_SECRET,
		refresh_token,
		token_uri=oauth.token_uri,
		http_session=http_session,
		**kwargs,
	)


def test_refresh_token_gives_xoauth2_access_and_rotation_is_reported(dovecot, oauth, http_session):
	original = oauth.issue_refresh_token(GOOGLE_CLIENT, ALICE)
	rotated: list[str] = []
	provider = provider_for(oauth, http_session, original, on_rotate=rotated.append)
	with IMAPSource(imap_config(dovecot, ALICE), provider.as_auth()) as source:
		assert source.list_folders()
	assert rotated == [provider.refresh_token] and provider.refresh_token != original
	token = provider.access_token()
	assert provider.access_token() == token  # cached while valid


def test_expired_token_refreshed_transparently(dovecot, oauth, http_session):
	provider = provider_for(oauth, http_session, oauth.issue_refresh_token(GOOGLE_CLIENT, ALICE))
	first = provider.access_token()
	oauth.expire_access_tokens(ALICE)
	with IMAPSource(imap_config(dovecot, ALICE), provider.as_auth()) as source:
		assert source.list_folders()
	assert provider.access_token() != first


def test_revoked_refresh_token_is_reconnect_needed(oauth, http_session):
	provider = provider_for(oauth, http_session, oauth.issue_refresh_token(GOOGLE_CLIENT, ALICE))
	oauth.revoke_refresh_tokens(ALICE)
	with pytest.raises(ReconnectNeeded, match="sign in again"):
		provider.access_token()


def test_wrong_client_secret_is_an_auth_error(oauth, http_session):
	provider = GoogleTokenProvider(
		GOOGLE_CLIENT, "wrong", "whatever", token_uri=oauth.token_uri, http_session=http_session
	)
	with pytest.raises(AuthError) as caught:
		provider.access_token()
	assert not isinstance(caught.value, ReconnectNeeded)


def test_app_password_presets():
	imap = google.imap_config("a@gmail.com")
	assert (imap.host, imap.port, imap.security) == ("imap.gmail.com", 993, "ssl")
	assert (
		google.smtp_config("a@gmail.com").port,
		google.smtp_config("a@gmail.com", starttls=True).port,
	) == (465, 587)
	auth = google.app_password("abcd efgh ijkl mnop")
	assert auth.password == "abcdefghijklmnop" and auth.label == "App Password"
	assert google.FOLDERS["sent"] == "[Gmail]/Sent Mail" and google.FOLDERS["all"] == "[Gmail]/All Mail"


def test_untrusted_token_endpoint_is_a_tls_error(oauth):
	session = requests.Session()
	session.trust_env = False
	provider = GoogleTokenProvider(
		GOOGLE_CLIENT, GOOGLE_SECRET, "rt", token_uri=oauth.token_uri, http_session=session
	)
	with pytest.raises(TLSError):
		provider.access_token()
