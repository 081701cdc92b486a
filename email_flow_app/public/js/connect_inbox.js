// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

// "Connect inbox": one step from a mailbox to a mapped, block-listed, tested
// Incoming Email Queue + Outgoing Channel. Loaded on every Desk page (hooks.app_include_js).

frappe.provide("email_flow.connect");

email_flow.API = "email_flow_app.email_flow.api_connect.";
email_flow.GOOGLE_APP_PASSWORD_HELP = "https://support.google.com/accounts/answer/185833";
email_flow.CUSTOM_PRESETS = {
	Fastmail: ["imap.fastmail.com", 993, "SSL", "smtp.fastmail.com", 465, "SSL"],
	"iCloud Mail": ["imap.mail.me.com", 993, "SSL", "smtp.mail.me.com", 587, "STARTTLS"],
	"Yahoo Mail": ["imap.mail.yahoo.com", 993, "SSL", "smtp.mail.yahoo.com", 465, "SSL"],
	"Zoho Mail": ["imap.zoho.com", 993, "SSL", "smtp.zoho.com", 465, "SSL"],
	IONOS: ["imap.ionos.com", 993, "SSL", "smtp.ionos.com", 587, "STARTTLS"],
	"GMX Mail": ["imap.gmx.com", 993, "SSL", "mail.gmx.com", 587, "STARTTLS"],
};

email_flow.esc = (text) => frappe.utils.escape_html(text == null ? "" : String(text));

email_flow.call = (method, args, type) =>
	frappe.call({ method: email_flow.API + method, args: args || {}, type: type || "POST", freeze: true });

email_flow.connect_inbox = function () {
	const ways = [
		["o365", __("Office 365 — Sign in"), __("Sign in once with the support mailbox (Microsoft OAuth).")],
		["google", __("Google — App Password"), __("Gmail or Google Workspace with an App Password.")],
		["custom", __("Custom IMAP / SMTP"), __("Any other provider: host, port, user name, password.")],
		["forwarding", __("Forwarding"), __("Auto-forward mail to a creation address, or POST it to a webhook.")],
	];
	const dialog = new frappe.ui.Dialog({
		title: __("Connect inbox"),
		fields: [{ fieldtype: "HTML", fieldname: "ways" }],
	});
	const $ways = dialog.fields_dict.ways.$wrapper;
	$ways.html(
		`<p class="text-muted">${__(
			"Both the incoming queue and the outgoing channel are set up, mapped to each other, and the address goes on the list of blocked senders (Filter Outgoing Email), so the app never files its own mail."
		)}</p>` +
			ways
				.map(
					([key, label, help]) =>
						`<button class="btn btn-default btn-block text-left ef-way" data-way="${key}"
							style="margin-bottom: 8px; padding: 12px; white-space: normal;">
							<div class="bold">${email_flow.esc(label)}</div>
							<div class="text-muted small">${email_flow.esc(help)}</div>
						</button>`
				)
				.join("")
	);
	$ways.find(".ef-way").on("click", function () {
		dialog.hide();
		email_flow.connect[$(this).attr("data-way")]();
	});
	dialog.show();
	return dialog;
};

// The queue's colour (list pills, ticket badges): every Connect dialog asks for it.
email_flow.colour_field = () => ({
	fieldtype: "Color",
	fieldname: "colour",
	label: __("Colour"),
	description: __("Marks this queue's tickets in lists."),
});

// A connect call returned a new queue: give it the colour chosen in the dialog.
email_flow.apply_colour = async function (outcome, colour) {
	if (!outcome || !outcome.queue || !colour) return;
	await frappe.db.set_value("Incoming Email Queue", outcome.queue, "color", colour);
};

// Put a result into a dialog's result field and scroll it into view (it sits below the fields).
email_flow.show_in_dialog = function (dialog, html) {
	const $result = dialog.fields_dict.result.$wrapper;
	$result.html(`<div class="ef-dialog-result">${html}</div>`);
	// "center": the dialog's footer stays on screen and would cover a result scrolled just to the edge.
	$result[0].scrollIntoView({ block: "center" });
};

email_flow.render_checks = function (outcome) {
	const checks = (outcome.checks || [])
		.map(
			(c) =>
				`<li class="ef-check ef-check-${c.ok ? "ok" : "fail"}" style="color: var(--${
					c.ok ? "green" : "red"
				}-600)">${c.ok ? "&#10004;" : "&#10008;"} <b>${email_flow.esc(c.label)}</b>: ${email_flow.esc(
					c.message
				)}</li>`
		)
		.join("");
	return checks ? `<ul class="ef-checks list-unstyled">${checks}</ul>` : "";
};

email_flow.render_outcome = function (outcome) {
	let html = `<p class="ef-result-message ${outcome.ok ? "" : "text-danger"}">${email_flow.esc(
		outcome.message
	)}</p>`;
	html += email_flow.render_checks(outcome);
	if (outcome.warning) {
		html += `<div class="alert alert-warning ef-warning">${email_flow.esc(outcome.warning)}</div>`;
	}
	return html;
};

email_flow.show_result = function (outcome) {
	let html = email_flow.render_outcome(outcome);
	if (outcome.queue) {
		html += `<p>${__("Incoming Email Queue")}: <a class="ef-queue-link" href="/app/incoming-email-queue/${encodeURIComponent(
			outcome.queue
		)}">${email_flow.esc(outcome.queue)}</a></p>`;
	}
	if (outcome.channel) {
		html += `<p>${__("Outgoing Channel")}: <a class="ef-channel-link" href="/app/outgoing-channel/${encodeURIComponent(
			outcome.channel
		)}">${email_flow.esc(outcome.channel)}</a></p>`;
	} else if (outcome.queue) {
		html += `<p class="text-muted">${__("Replies leave through the default Outgoing Channel.")}</p>`;
	}
	if (outcome.blocked) {
		html += `<p class="ef-blocked">${email_flow.esc(
			__("{0} is on the blocked senders list (Filter Outgoing Email).", [outcome.address])
		)}</p>`;
	}
	if (outcome.extra && outcome.extra.webhook_url) {
		html += email_flow.forwarding_html(outcome.extra);
	}
	const dialog = new frappe.ui.Dialog({
		title: outcome.ok ? __("Inbox connected") : __("Inbox connected, but the connection test failed"),
		fields: [{ fieldtype: "HTML", fieldname: "result" }],
		primary_action_label: outcome.queue ? __("Open the queue") : __("Close"),
		primary_action() {
			dialog.hide();
			if (outcome.queue) frappe.set_route("Form", "Incoming Email Queue", outcome.queue);
		},
	});
	dialog.fields_dict.result.$wrapper.html(html);
	email_flow.bind_copy(dialog.$wrapper);
	dialog.show();
	if (cur_list && cur_list.doctype === "Incoming Email Queue") cur_list.refresh();
	return dialog;
};

// -- Office 365 ---------------------------------------------------------------

email_flow.connect.o365 = async function () {
	const setup = (await email_flow.call("o365_setup", {}, "GET")).message;
	const dialog = new frappe.ui.Dialog({
		title: __("Office 365 — Sign in"),
		fields: [
			{ fieldtype: "HTML", fieldname: "setup_note" },
			{
				fieldtype: "Select",
				fieldname: "mode",
				label: __("How"),
				options: [
					{ value: "delegated", label: __("Sign in with the support mailbox") },
					{ value: "app", label: __("App only: a shared mailbox (client credentials)") },
				],
				default: "delegated",
				onchange: () =>
					dialog.set_primary_action(
						dialog.get_value("mode") === "app" ? __("Connect") : __("Sign in with Microsoft"),
						submit
					),
			},
			{
				fieldtype: "Data",
				fieldname: "address",
				label: __("Mailbox address"),
				options: "Email",
				mandatory_depends_on: "eval:doc.mode=='app'",
				description: __("For sign-in it only pre-fills Microsoft's form."),
			},
			{
				fieldtype: "Select",
				fieldname: "read_via",
				label: __("Read mail with"),
				options: [
					{ value: "IMAP", label: __("IMAP") },
					{ value: "Microsoft Graph", label: __("Microsoft Graph") },
				],
				default: setup.read_via,
				description: __(
					"Microsoft Graph also works when the tenant turned IMAP off, and (App only) for shared mailboxes without a licence. Replies then go through Graph too."
				),
			},
			{
				fieldtype: "Select",
				fieldname: "send_via",
				label: __("Send replies via"),
				options: ["SMTP (XOAUTH2)", "Microsoft Graph"],
				default: setup.send_via,
				depends_on: "eval:doc.read_via!='Microsoft Graph'",
			},
			{
				fieldtype: "Data",
				fieldname: "queue_name",
				label: __("Queue name"),
				description: __("Defaults to the address."),
			},
			Object.assign(email_flow.colour_field(), {
				depends_on: "eval:doc.mode=='app'",
				description: __("Marks this queue's tickets in lists. After signing in, set it on the queue."),
			}),
		],
		primary_action_label: __("Sign in with Microsoft"),
		primary_action: submit,
	});
	let note = `<p class="text-muted small">${__("Redirect URI (register it in Azure)")}: <code class="ef-redirect-uri">${email_flow.esc(
		setup.redirect_uri
	)}</code></p>`;
	if (!setup.configured) {
		note =
			`<div class="alert alert-warning ef-o365-missing">${__(
				"Enter the Azure app registration (tenant, client ID, client secret) in {0} first.",
				[`<a href="/app/email-flow-settings">${__("Email Flow Settings")}</a>`]
			)}</div>` + note;
	}
	dialog.fields_dict.setup_note.$wrapper.html(note);
	dialog.show();

	async function submit(values) {
		if (values.mode === "app") {
			const r = await email_flow.call("o365_app_only", {
				address: values.address,
				read_via: values.read_via,
				send_via: values.send_via,
				queue_name: values.queue_name,
			});
			await email_flow.apply_colour(r.message, values.colour);
			dialog.hide();
			email_flow.show_result(r.message);
			return;
		}
		const r = await email_flow.call("o365_start", {
			read_via: values.read_via,
			send_via: values.send_via,
			login_hint: values.address,
			queue_name: values.queue_name,
		});
		window.location.href = r.message.auth_url;
	}
	return dialog;
};

email_flow.reconnect_o365 = async function (queue_name) {
	const r = await email_flow.call("o365_start", { reconnect: queue_name });
	window.location.href = r.message.auth_url;
};

// -- Google -------------------------------------------------------------------

email_flow.connect.google = function () {
	const dialog = new frappe.ui.Dialog({
		title: __("Google — App Password"),
		fields: [
			{
				fieldtype: "Data",
				fieldname: "address",
				label: __("Gmail / Google Workspace address"),
				options: "Email",
				reqd: 1,
			},
			{
				fieldtype: "Password",
				fieldname: "app_password",
				label: __("App Password"),
				mandatory_depends_on: "eval:!doc.use_oauth",
				depends_on: "eval:!doc.use_oauth",
			},
			{
				fieldtype: "HTML",
				fieldname: "help",
				options: `<p class="text-muted small ef-google-note">${__(
					"Google needs 2-Step Verification on this account before it lets you create an App Password (16 letters). Your normal password does not work here."
				)} <a href="${email_flow.GOOGLE_APP_PASSWORD_HELP}" target="_blank" rel="noopener">${__(
					"How to create an App Password"
				)}</a></p>`,
			},
			{ fieldtype: "Data", fieldname: "queue_name", label: __("Queue name") },
			email_flow.colour_field(),
			{ fieldtype: "Section Break", label: __("Advanced: OAuth"), collapsible: 1 },
			{ fieldtype: "Check", fieldname: "use_oauth", label: __("Use OAuth (google-auth) instead") },
			{ fieldtype: "Data", fieldname: "client_id", label: __("OAuth client ID"), depends_on: "use_oauth" },
			{
				fieldtype: "Password",
				fieldname: "client_secret",
				label: __("OAuth client secret"),
				depends_on: "use_oauth",
			},
			{
				fieldtype: "Password",
				fieldname: "refresh_token",
				label: __("Refresh token (scope https://mail.google.com/)"),
				depends_on: "use_oauth",
			},
			{ fieldtype: "Section Break" },
			{ fieldtype: "HTML", fieldname: "result" },
		],
		primary_action_label: __("Test and connect"),
		async primary_action(values) {
			const args = { address: values.address, queue_name: values.queue_name };
			if (values.use_oauth) {
				Object.assign(args, {
					client_id: values.client_id,
					client_secret: values.client_secret,
					refresh_token: values.refresh_token,
				});
			} else {
				args.app_password = values.app_password;
			}
			const outcome = (await email_flow.call("connect_google", args)).message;
			if (!outcome.queue) {
				email_flow.show_in_dialog(dialog, `<div class="ef-error">${email_flow.render_outcome(outcome)}</div>`);
				return;
			}
			await email_flow.apply_colour(outcome, values.colour);
			dialog.hide();
			email_flow.show_result(outcome);
		},
	});
	dialog.show();
	return dialog;
};

// -- Custom IMAP / SMTP ----------------------------------------------------------

email_flow.connect.custom = function () {
	const security = ["SSL", "STARTTLS", "Plain"];
	const dialog = new frappe.ui.Dialog({
		title: __("Custom IMAP / SMTP"),
		size: "large",
		fields: [
			{
				fieldtype: "Select",
				fieldname: "preset",
				label: __("Provider"),
				options: ["", ...Object.keys(email_flow.CUSTOM_PRESETS)],
				description: __("Fills in the servers; choose nothing for any other provider."),
				onchange() {
					const p = email_flow.CUSTOM_PRESETS[dialog.get_value("preset")];
					if (!p) return;
					dialog.set_values({
						imap_host: p[0],
						imap_port: p[1],
						imap_security: p[2],
						smtp_host: p[3],
						smtp_port: p[4],
						smtp_security: p[5],
					});
				},
			},
			{ fieldtype: "Data", fieldname: "email_address", label: __("Address"), options: "Email", reqd: 1 },
			{ fieldtype: "Column Break" },
			{ fieldtype: "Data", fieldname: "queue_name", label: __("Queue name") },
			{ fieldtype: "Data", fieldname: "from_name", label: __("Sender name") },
			email_flow.colour_field(),
			{ fieldtype: "Section Break", label: __("Incoming (IMAP)") },
			{ fieldtype: "Data", fieldname: "imap_host", label: __("Host"), reqd: 1 },
			{ fieldtype: "Int", fieldname: "imap_port", label: __("Port"), default: 993, reqd: 1 },
			{ fieldtype: "Select", fieldname: "imap_security", label: __("Security"), options: security, default: "SSL" },
			{ fieldtype: "Column Break" },
			{ fieldtype: "Data", fieldname: "imap_username", label: __("User name"), description: __("Defaults to the address.") },
			{ fieldtype: "Password", fieldname: "imap_password", label: __("Password"), reqd: 1 },
			{ fieldtype: "Section Break", label: __("Outgoing (SMTP)") },
			{
				fieldtype: "Check",
				fieldname: "with_outgoing",
				label: __("Send replies through this provider"),
				default: 1,
				description: __("Otherwise replies leave through the default Outgoing Channel."),
			},
			{ fieldtype: "Data", fieldname: "smtp_host", label: __("Host"), depends_on: "with_outgoing", mandatory_depends_on: "with_outgoing" },
			{ fieldtype: "Int", fieldname: "smtp_port", label: __("Port"), default: 587, depends_on: "with_outgoing" },
			{ fieldtype: "Select", fieldname: "smtp_security", label: __("Security"), options: security, default: "STARTTLS", depends_on: "with_outgoing" },
			{ fieldtype: "Column Break" },
			{ fieldtype: "Data", fieldname: "smtp_username", label: __("User name"), description: __("Empty: same as incoming."), depends_on: "with_outgoing" },
			{ fieldtype: "Password", fieldname: "smtp_password", label: __("Password"), description: __("Empty: same as incoming."), depends_on: "with_outgoing" },
			{ fieldtype: "Section Break" },
			{ fieldtype: "HTML", fieldname: "result" },
		],
		primary_action_label: __("Save"),
		async primary_action(values) {
			const outcome = (await email_flow.call("connect_custom", { values })).message;
			if (!outcome.queue) {
				email_flow.show_in_dialog(dialog, email_flow.render_outcome(outcome));
				return;
			}
			await email_flow.apply_colour(outcome, values.colour);
			dialog.hide();
			email_flow.show_result(outcome);
		},
		secondary_action_label: __("Test connection"),
		async secondary_action() {
			const values = dialog.get_values();
			if (!values) return;
			const outcome = (await email_flow.call("test_custom", { values })).message;
			email_flow.show_in_dialog(dialog, email_flow.render_outcome(outcome));
		},
	});
	dialog.show();
	return dialog;
};

// -- Forwarding -------------------------------------------------------------------

email_flow.forwarding_html = function (details) {
	const copy = (text) =>
		`<button class="btn btn-xs btn-default ef-copy" data-copy="${email_flow.esc(text)}">${__("Copy")}</button>`;
	return `
		<div class="ef-forwarding">
			<p><b>${__("Creation address")}</b>: <code class="ef-creation-address">${email_flow.esc(
				details.creation_address
			)}</code> ${copy(details.creation_address)}</p>
			<p class="small">${__(
				"Gmail: Settings → See all settings → Forwarding and POP/IMAP → Add a forwarding address, confirm it, then choose 'Forward a copy of incoming mail'."
			)}</p>
			<p class="small">${__(
				"Outlook / Microsoft 365: Settings → Mail → Forwarding (or a rule: 'Redirect to'), enter the creation address, keep a copy."
			)}</p>
			<p><b>${__("Webhook for mail servers")}</b> (POST raw MIME, <code>Content-Type: message/rfc822</code>):</p>
			<p><code class="ef-webhook-url">${email_flow.esc(details.webhook_url)}</code> ${copy(details.webhook_url)}</p>
			${
				details.webhook_secret
					? `<p>${__("Header")} <code>${email_flow.esc(details.secret_header)}</code>: <code class="ef-webhook-secret">${email_flow.esc(
							details.webhook_secret
					  )}</code> ${copy(details.webhook_secret)}</p>
					  <p class="small text-muted">${__("Copy it now: the secret is not shown again.")}</p>`
					: `<p>${__("Header")} <code>${email_flow.esc(details.secret_header)}</code>: ${__(
							"the secret is stored encrypted and never shown again."
					  )} <button class="btn btn-xs btn-default ef-new-secret">${__("New secret")}</button></p>`
			}
		</div>`;
};

email_flow.bind_copy = function ($wrapper) {
	$wrapper.on("click", ".ef-copy", function (e) {
		e.preventDefault();
		frappe.utils.copy_to_clipboard($(this).attr("data-copy"));
	});
};

email_flow.connect.forwarding = function () {
	const dialog = new frappe.ui.Dialog({
		title: __("Forwarding"),
		fields: [
			{
				fieldtype: "Data",
				fieldname: "creation_address",
				label: __("Creation address"),
				options: "Email",
				reqd: 1,
				description: __("The address mail is forwarded to, for example support@your-company.com."),
			},
			{ fieldtype: "Data", fieldname: "queue_name", label: __("Queue name") },
			email_flow.colour_field(),
		],
		primary_action_label: __("Create queue"),
		async primary_action(values) {
			const outcome = (
				await email_flow.call("connect_forwarding", {
					creation_address: values.creation_address,
					queue_name: values.queue_name,
				})
			).message;
			await email_flow.apply_colour(outcome, values.colour);
			dialog.hide();
			email_flow.show_result(outcome);
		},
	});
	dialog.show();
	return dialog;
};

email_flow.show_forwarding = async function (queue) {
	const details = (await email_flow.call("forwarding_details", { queue }, "GET")).message;
	const dialog = new frappe.ui.Dialog({
		title: __("Forwarding instructions"),
		fields: [{ fieldtype: "HTML", fieldname: "details" }],
	});
	const render = (d) => dialog.fields_dict.details.$wrapper.html(email_flow.forwarding_html(d));
	render(details);
	email_flow.bind_copy(dialog.$wrapper);
	dialog.$wrapper.on("click", ".ef-new-secret", (e) => {
		e.preventDefault();
		frappe.confirm(__("Replace the webhook secret? The old one stops working at once."), async () => {
			render((await email_flow.call("new_forwarding_secret", { queue })).message);
		});
	});
	dialog.show();
};

// -- Health: last success, last error, Reconnect (queue and channel forms) -----------

email_flow.show_health = function (frm) {
	const doc = frm.doc;
	if (frm.is_new()) return;
	const parts = [];
	parts.push(
		`${__("Last success")}: <b class="ef-last-success">${
			doc.last_success ? frappe.datetime.comment_when(doc.last_success) : __("never")
		}</b>`
	);
	if (doc.last_error) {
		parts.push(`${__("Last error")}: <span class="ef-last-error">${email_flow.esc(doc.last_error)}</span>`);
	}
	const colour = { Active: "green", Failing: "orange", "Reconnect needed": "red" }[doc.status] || "gray";
	frm.dashboard.clear_headline();
	frm.dashboard.set_headline_alert(
		`<div class="ef-health"><span class="indicator-pill ${colour}">${email_flow.esc(
			__(doc.status || "")
		)}</span> ${parts.join(" · ")}</div>`
	);
};

email_flow.reconnect = async function (frm) {
	const doc = frm.doc;
	if (doc.channel_type && doc.channel_type.startsWith("Office 365") && doc.auth_method === "OAuth") {
		if (doc.o365_mode === "App only") {
			return frm.events.email_flow_test ? frm.events.email_flow_test(frm) : null;
		}
		let queue = doc.name;
		if (doc.doctype === "Outgoing Channel") {
			const r = await frappe.db.get_value("Incoming Email Queue", { outgoing_channel: doc.name }, "name");
			queue = r.message && r.message.name;
			if (!queue) {
				frappe.msgprint(__("Reconnect the Incoming Email Queue that sends through this channel."));
				return;
			}
		}
		return email_flow.reconnect_o365(queue);
	}
	if (doc.auth_method === "OAuth") {
		frappe.msgprint(__("Enter a new refresh token in the OAuth section and save."));
		return;
	}
	const label = doc.channel_type === "Google" ? __("New App Password") : __("New password");
	frappe.prompt(
		[{ fieldtype: "Password", fieldname: "password", label, reqd: 1 }],
		async (values) => {
			const outcome = (
				await email_flow.call("replace_password", {
					doctype: doc.doctype,
					name: doc.name,
					password: values.password,
				})
			).message;
			frappe.msgprint({
				title: outcome.ok ? __("Reconnected") : __("Connection failed"),
				message: email_flow.render_outcome(outcome),
				indicator: outcome.ok ? "green" : "red",
			});
			frm.reload_doc();
		},
		__("Reconnect"),
		__("Test and save")
	);
};

// Queue and channel forms: Test Connection, health (last success, last error) and Reconnect.
email_flow.add_connection_buttons = function (frm) {
	frm.add_custom_button(__("Test Connection"), () =>
		frm.call({ method: "test_connection", doc: frm.doc, freeze: true }).then((r) => {
			const result = r.message || {};
			frappe.msgprint({
				title: result.ok ? __("Connection works") : __("Connection failed"),
				message: frappe.utils.escape_html(result.message || ""),
				indicator: result.ok ? "green" : "red",
			});
		})
	);
	email_flow.show_health(frm);
	// Reconnect only where the health says the connection needs it; a healthy one has Test Connection.
	if (!["Reconnect needed", "Failing"].includes(frm.doc.status)) return;
	const reconnect = frm.add_custom_button(__("Reconnect"), () => email_flow.reconnect(frm));
	reconnect.addClass("ef-reconnect");
	if (frm.doc.status === "Reconnect needed") {
		reconnect.removeClass("btn-default").addClass("btn-primary ef-reconnect-needed");
	}
};
