"""Connect an inbox in one step: incoming queue + outgoing channel, mapped, block-listed, tested.

Four ways, one outcome (:class:`Outcome`):

* Office 365 sign-in: msal authorization-code flow with PKCE (:func:`o365_begin`
  stores the flow server-side, :func:`o365_complete` finishes it on the
  site's callback), or app-only (client credentials) for shared mailboxes;
* Google with an App Password (or OAuth with a refresh token, advanced);
* custom IMAP (+ optional SMTP);
* forwarding (a creation address and a webhook).

Nothing is created when a connection test fails before creation (Google,
custom). Office 365 creates after a successful sign-in, then tests and shows
the result: the token is the proof, the test tells what the servers say.
"""

from dataclasses import asdict, dataclass, field
from urllib.parse import quote

import frappe
from frappe import _
from frappe.utils import get_url, validate_email_address
from frappe.utils.password import get_decrypted_password

from email_flow_app.channels import google, office365
from email_flow_app.channels.auth import PasswordAuth
from email_flow_app.channels.check import check_imap, check_smtp
from email_flow_app.channels.errors import ChannelError
from email_flow_app.channels.imap import IMAPConfig
from email_flow_app.channels.smtp import SMTPConfig
from email_flow_app.email_flow.services import channel_admin, connect, credentials, health, settings

SETTINGS = "Email Flow Settings"
QUEUE = "Incoming Email Queue"
CHANNEL = "Outgoing Channel"
CALLBACK = "/api/method/email_flow_app.email_flow.api_connect.o365_callback"
FORWARD_WEBHOOK = "/api/method/email_flow_app.email_flow.api.receive_forwarded?queue={0}"
FLOW_KEY = "email_flow:o365_flow:{0}"
FLOW_TTL_SECONDS = 15 * 60
SEND_VIA_SMTP = "SMTP (XOAUTH2)"
SEND_VIA_GRAPH = "Microsoft Graph"
READ_VIA_IMAP = "IMAP"
READ_VIA_GRAPH = "Microsoft Graph"
# New connections read over IMAP unless the admin picks Graph: the app registration the
# setup steps describe grants Exchange Online's IMAP/SMTP permissions, not Graph's Mail.ReadWrite.
READ_VIA_DEFAULT = READ_VIA_IMAP
SECURITY_CODES = {"SSL": "ssl", "STARTTLS": "starttls", "Plain": "plain"}

# Presets (host, port, security); site config `email_flow_<provider>_<imap|smtp>` = "host:port"
# points them elsewhere (tests, sovereign clouds).
PRESETS = {
	"o365_imap": (office365.IMAP_HOST, office365.IMAP_PORT, "SSL"),
	"o365_smtp": (office365.SMTP_HOST, office365.SMTP_PORT, "STARTTLS"),
	"google_imap": (google.IMAP_HOST, google.IMAP_PORT, "SSL"),
	"google_smtp": (google.SMTP_HOST, google.SMTP_SSL_PORT, "SSL"),
}

# An address whose local part holds one of these words reads as a shared/support mailbox.
ROLE_WORDS = frozenset(
	"support help helpdesk service services servicedesk desk info contact contacts hello sales "
	"billing invoices accounts accounting office team admin care customer customers customercare "
	"enquiries inquiries orders tickets ticket mail feedback shop store reception bookings noreply".split()
)
CONSUMER_DOMAINS = frozenset(
	"gmail.com googlemail.com outlook.com hotmail.com live.com msn.com yahoo.com icloud.com me.com "
	"aol.com gmx.de gmx.net web.de proton.me protonmail.com yandex.com mail.com".split()
)


@dataclass
class Outcome:
	"""What the admin sees after a connect attempt."""

	ok: bool
	message: str
	address: str | None = None
	queue: str | None = None
	channel: str | None = None
	blocked: bool = False
	checks: list[dict] = field(default_factory=list)
	warning: str | None = None
	extra: dict = field(default_factory=dict)

	def as_dict(self) -> dict:
		return asdict(self)


# -- small rules ----------------------------------------------------------------


def looks_personal(address: str) -> bool:
	"""True for a consumer-mail address or one without a role word (support@, help@, info@ ...)."""
	local, _sep, domain = (address or "").lower().partition("@")
	if domain in CONSUMER_DOMAINS:
		return True
	tokens = {t for t in local.replace("+", ".").replace("-", ".").replace("_", ".").split(".") if t}
	return not (tokens & ROLE_WORDS)


def personal_warning(address: str) -> str | None:
	if not looks_personal(address):
		return None
	return _(
		"{0} looks like a personal mailbox. Customers' mail and your team's replies will go through it; "
		"a shared support address (for example support@your-company.com) is usually what you want."
	).format(address)


def clean_address(address: str) -> str:
	address = (address or "").strip().lower()
	if not address or not validate_email_address(address):
		frappe.throw(_("Enter a valid email address."), title=_("Connect inbox"))
	return address


def preset(key: str) -> dict:
	"""Host, port and security of a provider preset (queue/channel field values), with the
	site-config override `email_flow_<key>` = "host:port" applied."""
	host, port, security = PRESETS[key]
	override = frappe.conf.get(f"email_flow_{key}")
	if override:
		host, _sep, port_text = str(override).rpartition(":")
		port = int(port_text)
	return {"host": host, "port": port, "security": security}


def _unique_name(doctype: str, wanted: str) -> str:
	name, n = wanted, 2
	while frappe.db.exists(doctype, name):
		name, n = f"{wanted} ({n})", n + 1
	return name


def _timeout() -> float:
	return float(frappe.conf.get("email_flow_timeout") or 30)


def _imap_config(host: str, port: int, security: str, username: str) -> IMAPConfig:
	return IMAPConfig(
		host,
		int(port),
		SECURITY_CODES[security],
		username,
		timeout=_timeout(),
		ssl_context=connect.ssl_context(),
	)


def _smtp_config(host: str, port: int, security: str, username: str | None) -> SMTPConfig:
	return SMTPConfig(
		host,
		int(port),
		SECURITY_CODES[security],
		username or None,
		timeout=_timeout(),
		ssl_context=connect.ssl_context(),
	)


def _check_row(label: str, report) -> dict:
	return {"label": label, "ok": bool(report.ok), "message": report.message}


# -- creating the pair ------------------------------------------------------------


def create_pair(
	address: str,
	queue_values: dict,
	channel_values: dict | None,
	queue_name: str | None = None,
	from_name: str | None = None,
):
	"""Insert the Outgoing Channel (optional) and the Incoming Email Queue mapped to it.

	Both controllers put their address on 'Filter Outgoing Email' (on_update).
	"""
	channel = None
	if channel_values is not None:
		channel = frappe.get_doc(
			{
				"doctype": CHANNEL,
				"channel_name": _unique_name(CHANNEL, address),
				"from_name": from_name or queue_name or None,
				"from_address": address,
				"enabled": 1,
				**channel_values,
			}
		).insert()
	queue = frappe.get_doc(
		{
			"doctype": QUEUE,
			"queue_name": _unique_name(QUEUE, queue_name or address),
			"email_address": address,
			"enabled": 1,
			"outgoing_channel": channel.name if channel else None,
			**queue_values,
		}
	).insert()
	return queue, channel


def _already_connected(address: str) -> str | None:
	return frappe.db.get_value(QUEUE, {"email_address": address}, "name")


def _finish(address: str, queue, channel, checks: list[dict], message: str) -> Outcome:
	"""Run the connection tests on the saved documents, record health, describe the result.

	The incoming test is the one the queue's poll uses: IMAP login and folder
	list, or over Microsoft Graph the mailbox's folder list.
	"""
	if queue.channel_type != "Forwarding":
		result = channel_admin.check_incoming(queue)
		reads_graph = queue.get("o365_read_via") == READ_VIA_GRAPH
		label = _("Incoming (Microsoft Graph)") if reads_graph else _("Incoming (IMAP)")
		checks.append({"label": label, **result})
		_record(queue, result)
	if channel is not None:
		result = channel_admin.check_outgoing(channel)
		checks.append({"label": _("Outgoing ({0})").format(channel.channel_type), **result})
		_record(channel, result)
	blocked = address in settings.blocked_addresses()
	return Outcome(
		ok=all(c["ok"] for c in checks),
		message=message,
		address=address,
		queue=queue.name,
		channel=channel.name if channel else None,
		blocked=blocked,
		checks=checks,
		warning=personal_warning(address),
	)


def _record(doc, result: dict) -> None:
	if result.get("ok"):
		health.record_success(doc)
	else:
		health.record_check_failure(doc, result.get("message") or "")


# -- Office 365 -------------------------------------------------------------------


def o365_registration() -> frappe._dict:
	"""The Azure app registration from Email Flow Settings (throws when incomplete)."""
	values = frappe.db.get_values_from_single(
		["o365_tenant", "o365_client_id", "o365_send_via"], None, SETTINGS, as_dict=True
	)[0]
	secret = get_decrypted_password(SETTINGS, SETTINGS, "o365_client_secret", raise_exception=False)
	if not (values.o365_tenant and values.o365_client_id and secret):
		frappe.throw(
			_(
				"Enter the Azure app registration (tenant, client ID and client secret) in Email Flow Settings first."
			),
			title=_("Office 365 is not set up"),
		)
	return frappe._dict(
		tenant=values.o365_tenant.strip(),
		client_id=values.o365_client_id.strip(),
		client_secret=secret,
		send_via=values.o365_send_via or SEND_VIA_SMTP,
	)


def o365_redirect_uri() -> str:
	"""The site's own redirect URI (register it in Azure as a 'Web' platform redirect URI)."""
	return get_url(CALLBACK)


def o365_read_via(read_via: str | None) -> str:
	"""How a new Office 365 queue reads its mailbox: IMAP (default) or Microsoft Graph."""
	read_via = read_via or READ_VIA_DEFAULT
	if read_via not in (READ_VIA_IMAP, READ_VIA_GRAPH):
		frappe.throw(_("Read mail with: {0} is not IMAP or Microsoft Graph.").format(read_via))
	return read_via


def o365_send_via(send_via: str | None, read_via: str, reg: frappe._dict) -> str:
	"""A queue read through Graph sends its replies through Graph as well.

	One sign-in then asks for Graph scopes only (Microsoft issues a token for
	one resource at a time), and a tenant that turned IMAP off has usually
	turned SMTP AUTH off too.
	"""
	if read_via == READ_VIA_GRAPH:
		return SEND_VIA_GRAPH
	return send_via or reg.send_via


def o365_sign_in_scopes(send_via: str, read_via: str = READ_VIA_IMAP) -> tuple[str, ...]:
	"""What the delegated sign-in asks for; msal adds offline_access, openid, profile.

	Graph reading: Graph Mail.ReadWrite + Mail.Send. IMAP reading: IMAP + SMTP
	(XOAUTH2), or IMAP + Graph Mail.Send.
	"""
	if read_via == READ_VIA_GRAPH:
		return office365.GRAPH_MAIL_DELEGATED_SCOPES
	imap_scope = office365.DELEGATED_SCOPES[0]
	if send_via == SEND_VIA_GRAPH:
		return (imap_scope, *office365.GRAPH_DELEGATED_SCOPES)
	return office365.DELEGATED_SCOPES


def _o365_flow(reg: frappe._dict, send_via: str, read_via: str) -> office365.O365AuthCodeFlow:
	return office365.O365AuthCodeFlow(
		tenant=reg.tenant,
		client_id=reg.client_id,
		client_secret=reg.client_secret,
		scopes=o365_sign_in_scopes(send_via, read_via),
		http_session=connect.http_session(),
		**connect._authority_override(),
	)


def o365_begin(
	send_via: str | None = None,
	login_hint: str | None = None,
	queue_name: str | None = None,
	reconnect: str | None = None,
	read_via: str | None = None,
) -> str:
	"""Start the sign-in; returns the URL to send the admin's browser to.

	The flow state (PKCE verifier, state, nonce) stays server-side in Redis,
	keyed by its `state`, bound to the signed-in Desk user, for 15 minutes.
	A reconnect asks for the scopes the queue and its channel use now.
	"""
	reg = o365_registration()
	if reconnect:
		queue = frappe.get_doc(QUEUE, reconnect)
		login_hint = login_hint or queue.email_address
		read_via = queue.get("o365_read_via") or READ_VIA_IMAP
		channel_type = frappe.db.get_value(CHANNEL, queue.outgoing_channel, "channel_type")
		send_via = SEND_VIA_GRAPH if channel_type == "Office 365 Graph" else SEND_VIA_SMTP
	read_via = o365_read_via(read_via)
	send_via = o365_send_via(send_via, read_via, reg)
	try:
		auth_url, flow_state = _o365_flow(reg, send_via, read_via).start(
			o365_redirect_uri(), login_hint or None
		)
	except ChannelError as exc:
		frappe.throw(str(exc), title=_("Office 365 sign-in could not start"))
	frappe.cache.set_value(
		FLOW_KEY.format(flow_state["state"]),
		{
			"flow": flow_state,
			"user": frappe.session.user,
			"send_via": send_via,
			"read_via": read_via,
			"queue_name": queue_name,
			"reconnect": reconnect,
		},
		expires_in_sec=FLOW_TTL_SECONDS,
	)
	return auth_url


def o365_complete(query: dict) -> Outcome:
	"""Finish the sign-in with the redirect's query; create (or reconnect) the channels."""
	key = FLOW_KEY.format(query.get("state") or "")
	entry = frappe.cache.get_value(key)
	frappe.cache.delete_value(key)  # one use only
	if not entry or entry.get("user") != frappe.session.user:
		return Outcome(
			False, _("This sign-in expired or was started by someone else. Start again from Connect inbox.")
		)
	if query.get("error"):
		return Outcome(
			False,
			_("Microsoft 365 sign-in was cancelled or refused: {0}").format(
				query.get("error_description") or query.get("error")
			),
		)
	reg = o365_registration()
	read_via = entry.get("read_via") or READ_VIA_IMAP
	try:
		address, token_cache = _o365_flow(reg, entry["send_via"], read_via).finish(entry["flow"], query)
	except ChannelError as exc:
		return Outcome(False, str(exc))
	address = address.strip().lower()
	existing = entry.get("reconnect") or _already_connected(address)
	if existing:
		return _o365_reconnect(existing, address, token_cache)
	oauth = {
		"auth_method": "OAuth",
		"o365_tenant": reg.tenant,
		"o365_client_id": reg.client_id,
		"o365_client_secret": reg.client_secret,
		"o365_mode": "Delegated",
	}
	queue, channel = _o365_pair(address, oauth, entry["send_via"], read_via, entry.get("queue_name"))
	connect.write_token_cache(queue, token_cache)
	if channel and connect.token_cache_owner(channel) != (QUEUE, queue.name):
		connect.write_token_cache(channel, token_cache)
	return _finish(address, queue, channel, [], _("Signed in to Microsoft 365 as {0}.").format(address))


def _o365_pair(address: str, oauth: dict, send_via: str, read_via: str, queue_name: str | None):
	queue_values = {
		"channel_type": "Office 365",
		"o365_read_via": read_via,
		**preset("o365_imap"),
		"username": address,
		**oauth,
	}
	if send_via == SEND_VIA_GRAPH:
		channel_values = {"channel_type": "Office 365 Graph", **oauth}
	else:
		channel_values = {
			"channel_type": "Office 365 SMTP",
			**preset("o365_smtp"),
			"username": address,
			**oauth,
		}
	return create_pair(address, queue_values, channel_values, queue_name)


def _o365_reconnect(queue_name: str, address: str, token_cache: str) -> Outcome:
	queue = frappe.get_doc(QUEUE, queue_name)
	if queue.email_address != address:
		return Outcome(
			False,
			_("You signed in as {0}, but this queue receives {1}. Sign in with {1}.").format(
				address, queue.email_address
			),
		)
	connect.write_token_cache(queue, token_cache)
	credentials.bind(queue)  # a fresh sign-in for the server the queue names now
	channel = frappe.get_doc(CHANNEL, queue.outgoing_channel) if queue.outgoing_channel else None
	if channel and channel.channel_type.startswith("Office 365"):
		if connect.token_cache_owner(channel) != (QUEUE, queue.name):
			connect.write_token_cache(channel, token_cache)
		credentials.bind(channel)
	else:
		channel = None
	outcome = _finish(address, queue, channel, [], _("Reconnected {0}.").format(address))
	outcome.extra["reconnected"] = True
	return outcome


def o365_app_only(
	address: str,
	send_via: str | None = None,
	queue_name: str | None = None,
	read_via: str | None = None,
) -> Outcome:
	"""A shared mailbox the app registration may read (client credentials, no sign-in).

	Over IMAP the token is for Exchange Online (`outlook.office365.com/.default`),
	over Graph for Graph (`graph.microsoft.com/.default`): the application
	permissions granted to the app decide what the token may do.
	"""
	reg = o365_registration()
	address = clean_address(address)
	read_via = o365_read_via(read_via)
	send_via = o365_send_via(send_via, read_via, reg)
	if _already_connected(address):
		return Outcome(False, _("{0} is already connected.").format(address), address=address)
	provider = office365.O365TokenProvider(
		reg.tenant,
		reg.client_id,
		reg.client_secret,
		scopes=office365.GRAPH_APP_SCOPES if read_via == READ_VIA_GRAPH else office365.APP_SCOPES,
		mode="app",
		http_session=connect.http_session(),
		**connect._authority_override(),
	)
	try:
		provider.access_token()
	except ChannelError as exc:
		return Outcome(False, str(exc), address=address)
	oauth = {
		"auth_method": "OAuth",
		"o365_tenant": reg.tenant,
		"o365_client_id": reg.client_id,
		"o365_client_secret": reg.client_secret,
		"o365_mode": "App only",
	}
	queue, channel = _o365_pair(address, oauth, send_via, read_via, queue_name)
	return _finish(
		address, queue, channel, [], _("Connected {0} as the app (client credentials).").format(address)
	)


# -- Google -----------------------------------------------------------------------


def connect_google(
	address: str,
	app_password: str | None = None,
	queue_name: str | None = None,
	client_id: str | None = None,
	client_secret: str | None = None,
	refresh_token: str | None = None,
) -> Outcome:
	"""App Password (default) or OAuth refresh token (advanced); tests before creating anything."""
	address = clean_address(address)
	if _already_connected(address):
		return Outcome(False, _("{0} is already connected.").format(address), address=address)
	imap, smtp = preset("google_imap"), preset("google_smtp")
	if refresh_token:
		provider = google.GoogleTokenProvider(
			client_id=client_id or "",
			client_secret=client_secret or "",
			refresh_token=refresh_token,
			http_session=connect.http_session(),
			**connect._google_override(),
		)
		auth = provider.as_auth()
		secrets = {
			"auth_method": "OAuth",
			"google_client_id": client_id,
			"google_client_secret": client_secret,
			"google_refresh_token": refresh_token,
		}
	else:
		if not (app_password or "").strip():
			frappe.throw(_("Enter the App Password."), title=_("Connect inbox"))
		auth = google.app_password(app_password)
		secrets = {"auth_method": "Password", "password": auth.password}
	checks = [
		_check_row(_("Incoming (IMAP)"), check_imap(_imap_config(**imap, username=address), auth)),
		_check_row(_("Outgoing (SMTP)"), check_smtp(_smtp_config(**smtp, username=address), auth)),
	]
	if not all(c["ok"] for c in checks):
		hint = ""
		if isinstance(auth, PasswordAuth):
			hint = " " + _(
				"Google accepts an App Password here, not your normal password; App Passwords need 2-Step Verification."
			)
		return Outcome(
			False,
			_("Google did not accept the connection; nothing was created.") + hint,
			address=address,
			checks=checks,
		)
	base = {"username": address, **secrets}
	queue, channel = create_pair(
		address,
		{**base, "channel_type": "Google", **imap},
		{**base, "channel_type": "Google", **smtp},
		queue_name,
	)
	return _finish(address, queue, channel, [], _("Connected {0} (Google).").format(address))


# -- custom IMAP / SMTP ------------------------------------------------------------


def test_custom(values: dict) -> Outcome:
	"""Test IMAP (and SMTP when given) with what the admin typed; saves nothing."""
	v = frappe._dict(values)
	checks = [
		_check_row(
			_("Incoming (IMAP)"),
			check_imap(
				_imap_config(
					v.imap_host, v.imap_port, v.imap_security or "SSL", v.imap_username or v.email_address
				),
				PasswordAuth(v.imap_password or ""),
			),
		)
	]
	if v.with_outgoing:
		username = v.smtp_username or v.imap_username or v.email_address
		password = v.smtp_password or v.imap_password or ""
		checks.append(
			_check_row(
				_("Outgoing (SMTP)"),
				check_smtp(
					_smtp_config(v.smtp_host, v.smtp_port, v.smtp_security or "STARTTLS", username),
					PasswordAuth(password),
				),
			)
		)
	ok = all(c["ok"] for c in checks)
	return Outcome(ok, _("Connection works.") if ok else _("The connection test failed."), checks=checks)


def connect_custom(values: dict) -> Outcome:
	v = frappe._dict(values)
	address = clean_address(v.email_address)
	if _already_connected(address):
		return Outcome(False, _("{0} is already connected.").format(address), address=address)
	tested = test_custom({**v, "email_address": address})
	if not tested.ok:
		tested.message = _("The connection test failed; nothing was created.")
		tested.address = address
		return tested
	queue_values = {
		"channel_type": "IMAP",
		"host": v.imap_host,
		"port": int(v.imap_port),
		"security": v.imap_security or "SSL",
		"auth_method": "Password",
		"username": v.imap_username or address,
		"password": v.imap_password,
	}
	channel_values = None
	if v.with_outgoing:
		channel_values = {
			"channel_type": "SMTP",
			"host": v.smtp_host,
			"port": int(v.smtp_port),
			"security": v.smtp_security or "STARTTLS",
			"auth_method": "Password",
			"username": v.smtp_username or v.imap_username or address,
			"password": v.smtp_password or v.imap_password,
		}
	queue, channel = create_pair(address, queue_values, channel_values, v.queue_name, v.from_name)
	message = _("Connected {0}.").format(address)
	if channel is None:
		message += " " + _("Replies leave through the default Outgoing Channel.")
	return _finish(address, queue, channel, [], message)


# -- forwarding ------------------------------------------------------------------


def connect_forwarding(creation_address: str, queue_name: str | None = None) -> Outcome:
	address = clean_address(creation_address)
	if _already_connected(address):
		return Outcome(False, _("{0} is already connected.").format(address), address=address)
	queue, _channel = create_pair(
		address, {"channel_type": "Forwarding", "creation_address": address}, None, queue_name
	)
	outcome = _finish(address, queue, None, [], _("Forwarding queue {0} created.").format(queue.name))
	# The one time the secret is shown: to the manager who just created it.
	outcome.extra = forwarding_details(
		queue.name, secret=get_decrypted_password(QUEUE, queue.name, "forwarding_secret")
	)
	return outcome


def forwarding_details(queue_name: str, secret: str | None = None) -> dict:
	"""Where to forward to. A stored secret is never shown again: `secret` only when just made."""
	queue = frappe.get_doc(QUEUE, queue_name)
	return {
		"creation_address": queue.creation_address or queue.email_address,
		"webhook_url": get_url(FORWARD_WEBHOOK.format(quote(queue.name, safe=""))),
		"webhook_secret": secret,
		"secret_header": "X-Email-Flow-Secret",
	}


def new_forwarding_secret(queue_name: str) -> dict:
	"""Replace the webhook secret (the old one stops working at once) and show the new one, once."""
	queue = frappe.get_doc(QUEUE, queue_name)
	if queue.channel_type != "Forwarding":
		frappe.throw(_("{0} is not a Forwarding queue.").format(queue_name))
	secret = frappe.generate_hash(length=32)
	queue.forwarding_secret = secret
	queue.save()
	return forwarding_details(queue.name, secret=secret)


# -- reconnect with a password ------------------------------------------------------


def replace_password(doctype: str, name: str, password: str) -> Outcome:
	"""A new password / App Password for a queue or channel; tested, then saved."""
	doc = frappe.get_doc(doctype, name)
	doc.auth_method = "Password"
	doc.password = password.replace(" ", "") if doc.channel_type == "Google" else password
	doc.save()
	result = (channel_admin.check_incoming if doctype == QUEUE else channel_admin.check_outgoing)(doc)
	_record(doc, result)
	return Outcome(
		bool(result.get("ok")),
		result.get("message") or "",
		address=doc.get("email_address") or doc.get("from_address"),
		checks=[{"label": _(doctype), **result}],
	)
