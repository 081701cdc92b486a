"""Whitelisted endpoints of the "Connect inbox" dialogs (Desk).

Every endpoint checks the role first: System Manager or Support Manager.
"""

import json

import frappe
from frappe import _

from email_flow_app.email_flow.services import onboarding

ADMIN_ROLES = ("System Manager", "Support Manager")


def _require_admin() -> None:
	frappe.only_for(ADMIN_ROLES)


def _values(values: str | dict) -> dict:
	return json.loads(values) if isinstance(values, str) else dict(values or {})


@frappe.whitelist(methods=["GET"])
def o365_setup() -> dict:
	"""What the Office 365 dialog shows: is the app registration there, the redirect URI, read/send-via defaults."""
	_require_admin()
	values = frappe.db.get_values_from_single(
		["o365_tenant", "o365_client_id", "o365_send_via"], None, onboarding.SETTINGS, as_dict=True
	)[0]
	has_secret = bool(
		frappe.db.exists(
			"__Auth",
			{
				"doctype": onboarding.SETTINGS,
				"name": onboarding.SETTINGS,
				"fieldname": "o365_client_secret",
			},
		)
	)
	return {
		"configured": bool(values.o365_tenant and values.o365_client_id and has_secret),
		"redirect_uri": onboarding.o365_redirect_uri(),
		"send_via": values.o365_send_via or onboarding.SEND_VIA_SMTP,
		"read_via": onboarding.READ_VIA_DEFAULT,
	}


@frappe.whitelist(methods=["POST"])
def o365_start(
	send_via: str | None = None,
	login_hint: str | None = None,
	queue_name: str | None = None,
	reconnect: str | None = None,
	read_via: str | None = None,
) -> dict:
	"""Begin the Microsoft sign-in; the Desk then navigates to `auth_url`."""
	_require_admin()
	if reconnect:
		frappe.has_permission(onboarding.QUEUE, "write", reconnect, throw=True)
	return {"auth_url": onboarding.o365_begin(send_via, login_hint, queue_name, reconnect, read_via)}


@frappe.whitelist(methods=["GET"])
def o365_callback(
	code: str | None = None,
	state: str | None = None,
	error: str | None = None,
	error_description: str | None = None,
) -> None:
	"""The redirect URI Microsoft sends the admin back to (register it in Azure)."""
	_require_admin()
	query = {k: v for k, v in frappe.request.args.items()}
	outcome = onboarding.o365_complete(query)
	if outcome.ok or outcome.queue:
		frappe.db.commit()  # a GET request is rolled back unless committed
	else:
		frappe.db.rollback()
	_show_outcome(outcome)


@frappe.whitelist(methods=["POST"])
def o365_app_only(
	address: str,
	send_via: str | None = None,
	queue_name: str | None = None,
	read_via: str | None = None,
) -> dict:
	_require_admin()
	return onboarding.o365_app_only(address, send_via, queue_name, read_via).as_dict()


@frappe.whitelist(methods=["POST"])
def connect_google(
	address: str,
	app_password: str | None = None,
	queue_name: str | None = None,
	client_id: str | None = None,
	client_secret: str | None = None,
	refresh_token: str | None = None,
) -> dict:
	_require_admin()
	outcome = onboarding.connect_google(
		address, app_password, queue_name, client_id, client_secret, refresh_token
	)
	return outcome.as_dict()


@frappe.whitelist(methods=["POST"])
def test_custom(values: str | dict) -> dict:
	_require_admin()
	return onboarding.test_custom(_values(values)).as_dict()


@frappe.whitelist(methods=["POST"])
def connect_custom(values: str | dict) -> dict:
	_require_admin()
	return onboarding.connect_custom(_values(values)).as_dict()


@frappe.whitelist(methods=["POST"])
def connect_forwarding(creation_address: str, queue_name: str | None = None) -> dict:
	_require_admin()
	return onboarding.connect_forwarding(creation_address, queue_name).as_dict()


@frappe.whitelist(methods=["GET"])
def forwarding_details(queue: str) -> dict:
	_require_admin()
	frappe.has_permission(onboarding.QUEUE, "read", queue, throw=True)
	return onboarding.forwarding_details(queue)


@frappe.whitelist(methods=["POST"])
def new_forwarding_secret(queue: str) -> dict:
	_require_admin()
	frappe.has_permission(onboarding.QUEUE, "write", queue, throw=True)
	return onboarding.new_forwarding_secret(queue)


@frappe.whitelist(methods=["POST"])
def replace_password(doctype: str, name: str, password: str) -> dict:
	"""Reconnect a password / App Password queue or channel."""
	_require_admin()
	if doctype not in (onboarding.QUEUE, onboarding.CHANNEL):
		frappe.throw(_("Not a queue or channel: {0}").format(doctype))
	frappe.has_permission(doctype, "write", name, throw=True)
	return onboarding.replace_password(doctype, name, password).as_dict()


def _show_outcome(outcome: onboarding.Outcome) -> None:
	"""The page the browser lands on after Microsoft: result, tests, links to the new records."""
	esc = frappe.utils.escape_html
	rows = "".join(
		f"<li class='ef-check ef-check-{'ok' if c['ok'] else 'fail'}'>"
		f"{'&#10004;' if c['ok'] else '&#10008;'} <b>{esc(c['label'])}</b>: {esc(c['message'])}</li>"
		for c in outcome.checks
	)
	parts = [f"<p class='ef-result-message'>{esc(outcome.message)}</p>"]
	if outcome.queue:
		parts.append(
			"<p>"
			+ _("Incoming Email Queue: {0}").format(
				f"<a href='/app/incoming-email-queue/{esc(outcome.queue)}'>{esc(outcome.queue)}</a>"
			)
			+ "<br>"
			+ (
				_("Outgoing Channel: {0}").format(
					f"<a href='/app/outgoing-channel/{esc(outcome.channel)}'>{esc(outcome.channel)}</a>"
				)
				if outcome.channel
				else ""
			)
			+ "</p>"
		)
		if outcome.blocked:
			parts.append(
				"<p class='ef-blocked'>"
				+ esc(_("{0} is on the 'Filter Outgoing Email' block list.").format(outcome.address))
				+ "</p>"
			)
	if rows:
		parts.append(f"<p><b>{esc(_('Connection test'))}</b></p><ul class='ef-checks'>{rows}</ul>")
	if outcome.warning:
		parts.append(f"<div class='alert alert-warning ef-warning'>{esc(outcome.warning)}</div>")
	title = _("Inbox connected") if outcome.ok else _("Inbox not connected")
	if outcome.queue and not outcome.ok:
		title = _("Inbox connected, but the connection test failed")
	frappe.respond_as_web_page(
		title,
		"".join(parts),
		success=outcome.ok,
		http_status_code=200,
		indicator_color="green" if outcome.ok else "red",
		primary_action=f"/app/incoming-email-queue/{outcome.queue}"
		if outcome.queue
		else "/app/incoming-email-queue",
		primary_label=_("Open the queue") if outcome.queue else _("Back to the queues"),
	)
