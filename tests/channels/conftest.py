"""Real servers for the channel tests, started once per session.

Each fixture wraps a plain harness class from ``email_flow_app.testing``; a
server that cannot start raises, so the run fails (never skips).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator

import pytest
import requests

from email_flow_app.testing.dovecot import DovecotServer
from email_flow_app.testing.graph_server import GraphMailServer
from email_flow_app.testing.oauth_provider import OAuthTestProvider
from email_flow_app.testing.smtp_server import SMTPTestServer
from email_flow_app.testing.tls import TestCA

ALICE, BOB, SHARED = "alice@example.test", "bob@example.test", "shared@example.test"
PASSWORDS = {ALICE: "alice-pw", BOB: "bob-pw", SHARED: "shared-pw"}
SENDER, SENDER_PW = "sender@example.test", "smtp-pw"
TENANT = "contoso"
APP_CLIENT, APP_SECRET = "o365-app", "app-secret"
WEB_CLIENT, WEB_SECRET = "o365-web", "web-secret"
GOOGLE_CLIENT, GOOGLE_SECRET = "google-client", "google-secret"


@pytest.fixture(scope="session")
def ca() -> TestCA:
	return TestCA(tempfile.mkdtemp(prefix="efca-"))


@pytest.fixture(scope="session")
def http_session(ca: TestCA) -> requests.Session:
	"""Trusts the test CA; trust_env=False so REQUESTS_CA_BUNDLE cannot override ``verify``."""
	session = requests.Session()
	session.trust_env = False
	session.verify = str(ca.bundle_path)
	return session


@pytest.fixture(scope="session")
def oauth(ca: TestCA) -> Iterator[OAuthTestProvider]:
	with OAuthTestProvider(ca) as provider:
		provider.register_client(APP_CLIENT, APP_SECRET, app_mailbox=SHARED)
		provider.register_client(WEB_CLIENT, WEB_SECRET)
		provider.register_client(GOOGLE_CLIENT, GOOGLE_SECRET)
		yield provider


def _token_validator(oauth: OAuthTestProvider):
	def validate(user: str, token: str) -> bool:
		answer = oauth._handle_introspect({"token": token})
		return bool(answer.get("active")) and answer.get("email") == user

	return validate


@pytest.fixture(scope="session")
def smtp_server(ca: TestCA, oauth: OAuthTestProvider) -> Iterator[SMTPTestServer]:
	with SMTPTestServer(ca, {SENDER: SENDER_PW}, token_validator=_token_validator(oauth)) as server:
		yield server


@pytest.fixture
def smtp(smtp_server: SMTPTestServer) -> Iterator[SMTPTestServer]:
	"""The session SMTP server, emptied and with default rules for this test."""
	smtp_server.reset()
	yield smtp_server
	smtp_server.reset()


@pytest.fixture(scope="session")
def relay(ca: TestCA) -> Iterator[SMTPTestServer]:
	"""Where Dovecot's submission service relays to (no AUTH)."""
	with SMTPTestServer(ca, auth_required=False) as server:
		yield server


@pytest.fixture(scope="session")
def dovecot(ca: TestCA, oauth: OAuthTestProvider, relay: SMTPTestServer) -> Iterator[DovecotServer]:
	server = DovecotServer(
		users=PASSWORDS,
		ca=ca,
		oauth_introspection_url=oauth.introspection_url,
		submission_relay=(relay.host, relay.port),
	)
	server.start()
	yield server
	server.stop()


@pytest.fixture
def folder(dovecot: DovecotServer) -> str:
	"""A fresh, empty folder of ALICE's for one test."""
	name = f"T{uuid.uuid4().hex[:10]}"
	dovecot.create_folder(ALICE, name)
	return name


@pytest.fixture
def graph(oauth: OAuthTestProvider) -> Iterator[GraphMailServer]:
	"""The provider's Graph mail server; throttling rules never leak into the next test."""
	oauth.graph.clear_throttling()
	yield oauth.graph
	oauth.graph.clear_throttling()


@pytest.fixture
def shared_mailbox(oauth: OAuthTestProvider) -> str:
	"""A fresh shared mailbox (app-only tokens reach every mailbox)."""
	address = f"shared-{uuid.uuid4().hex[:10]}@example.test"
	oauth.graph.add_mailbox(address)
	return address
