"""Connection tests produce sentences an admin can act on."""

from __future__ import annotations

from email_flow_app.channels import google
from email_flow_app.channels.auth import PasswordAuth
from email_flow_app.channels.check import check_connection
from email_flow_app.channels.smtp import SMTPConfig
from tests.channels.conftest import BOB, PASSWORDS, SENDER, SENDER_PW
from tests.channels.helpers import StaticTokens, imap_config, make_message


def test_imap_report_counts_folders_and_inbox(dovecot):
	dovecot.create_folder(BOB, "Archive")
	dovecot.append_many(BOB, "INBOX", [make_message(n) for n in range(3)])
	report = check_connection("imap", config=imap_config(dovecot, BOB), auth=PasswordAuth(PASSWORDS[BOB]))
	assert report.ok
	assert report.message == f"Logged in, {len(report.details['folders'])} folders, INBOX has 3 messages"


def test_imap_report_for_a_rejected_app_password(dovecot):
	report = check_connection("imap", config=imap_config(dovecot, BOB), auth=google.app_password("aaaa bbbb"))
	assert not report.ok
	assert (
		report.message == f"Authentication failed: the App Password for {BOB} was rejected by {dovecot.host}"
	)
	assert report.details == {"error": "AuthError", "retryable": False}


def test_smtp_report(smtp):
	config = SMTPConfig(
		smtp.host, smtp.port, "starttls", SENDER, timeout=10, ssl_context=smtp.ca.client_context()
	)
	assert check_connection("smtp", config=config, auth=PasswordAuth(SENDER_PW)).message == (
		f"Connected to {smtp.host}:{smtp.port} (starttls), logged in"
	)
	failed = check_connection("smtp", config=config, auth=PasswordAuth("bad"))
	assert not failed.ok and failed.message.startswith("Authentication failed: the password")


def test_token_report():
	assert check_connection("token", token_provider=StaticTokens("t"), label="support@x").message == (
		"Signed in: got an access token for support@x"
	)
