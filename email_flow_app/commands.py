"""Bench commands of Email Flow (bench finds `commands` here): `bench email-flow listen`."""

import click


@click.group("email-flow")
def email_flow():
	"""Email Flow: support inboxes as ticket queues."""


@email_flow.command("listen")
@click.option(
	"--only-site",
	"sites",
	multiple=True,
	help="Watch only this site (repeatable). Default: every site of the bench with Email Flow installed.",
)
@click.option(
	"--refresh",
	default=30.0,
	show_default=True,
	type=float,
	help="Seconds between re-reading the queues and writing the heartbeat.",
)
def listen(sites: tuple[str, ...], refresh: float) -> None:
	"""Hold IMAP IDLE on every enabled IMAP, Office 365 and Google queue; poll a queue as soon as mail arrives.

	Optional: without it, the scheduler polls every minute. Run one per bench
	(Procfile or supervisor); stop it with SIGTERM.
	"""
	from email_flow_app.email_flow.services.listener import run

	run(list(sites) or None, refresh)


commands = [email_flow]
