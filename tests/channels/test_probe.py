"""The per-minute tick's probe (IMAPSource.status / has_new) against a real Dovecot."""

from __future__ import annotations

from email_flow_app.channels.auth import PasswordAuth
from email_flow_app.channels.imap import FolderState, IMAPSource
from tests.channels.conftest import ALICE, PASSWORDS
from tests.channels.helpers import imap_config, make_message


def source(dovecot) -> IMAPSource:
	return IMAPSource(imap_config(dovecot, ALICE), PasswordAuth(PASSWORDS[ALICE]))


def test_status_reports_uidnext_and_uidvalidity_without_selecting(dovecot, folder):
	dovecot.append_many(ALICE, folder, [make_message(n) for n in range(3)])
	with source(dovecot) as src:
		status = src.status(folder)
	assert (status.uidnext, status.messages) == (4, 3)
	assert status.uidvalidity == dovecot.uidvalidity(ALICE, folder)


def test_has_new_follows_the_last_uid_fetched(dovecot, folder):
	with source(dovecot) as src:
		assert src.has_new(FolderState(folder)) is False  # empty, never fetched
		dovecot.append(ALICE, folder, make_message(1))
		assert src.has_new(FolderState(folder)) is True  # never fetched, one message
		run = src.fetch_new(folder, None)
		list(run)
		assert src.has_new(run.state) is False
		dovecot.append(ALICE, folder, make_message(2))
		assert src.has_new(run.state) is True


def test_uids_deleted_before_they_were_fetched_are_no_new_mail(dovecot, folder):
	"""UIDNEXT moved, but the messages are gone: a STATUS alone would poll every minute."""
	dovecot.append(ALICE, folder, make_message(1))
	with source(dovecot) as src:
		run = src.fetch_new(folder, None)
		list(run)
		dovecot.append_many(ALICE, folder, [make_message(2), make_message(3)])
		client = dovecot.client(ALICE)
		try:
			client.select_folder(folder)
			client.delete_messages([2, 3])
			client.expunge()
		finally:
			client.logout()
		assert src.status(folder).uidnext == 4
		assert src.has_new(run.state) is False


def test_renumbered_folder_has_new_mail(dovecot, folder):
	dovecot.append(ALICE, folder, make_message(1))
	with source(dovecot) as src:
		run = src.fetch_new(folder, None)
		list(run)
		dovecot.recreate_mailbox(ALICE, folder)
		dovecot.append(ALICE, folder, make_message(1))
		assert src.has_new(run.state) is True
