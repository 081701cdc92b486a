// Email Flow in the Desk, for every user (app_include_js).

frappe.provide("email_flow");

// The email composer on a Ticket (frappe.views.CommunicationComposer):
// - it starts addressed to the customer plus the ticket's Cc, with "Re: <subject>"
//   and the customer's latest message quoted below the reply (collapsed until
//   "Show quoted text"): Ticket.onload's `email_flow_reply` (services/replies.py);
// - its signature is the Outgoing Channel's (else the agent's own): the composer's
//   lookup in Email Account, which a plain Support Agent may not read, is skipped
//   ("Not permitted: Email Account" on every Reply otherwise).
$(document).on("app_ready", () => {
	const Composer = frappe.views && frappe.views.CommunicationComposer;
	if (!Composer || Composer.prototype.__email_flow_patched) return;
	const on_ticket = (composer) => composer.doc && composer.doc.doctype === "Ticket";
	const defaults = (composer) =>
		(composer.frm && composer.frm.doc.__onload && composer.frm.doc.__onload.email_flow_reply) ||
		{};

	const setup_subject_and_recipients = Composer.prototype.setup_subject_and_recipients;
	Composer.prototype.setup_subject_and_recipients = function () {
		if (on_ticket(this) && !this.forward) {
			const d = defaults(this);
			if (!this.last_email && d.last_email && this.frm) {
				const communications = this.frm.get_docinfo().communications || [];
				const last = communications.find((c) => c.name === d.last_email);
				if (last) {
					this.last_email = last;
					this.is_a_reply = true;
				}
			}
			if (d.recipients) this.recipients = d.recipients;
			if (!this.cc && d.cc) this.cc = d.cc;
			if (d.subject) this.subject = d.subject;
		}
		return setup_subject_and_recipients.call(this);
	};

	const make = Composer.prototype.make;
	Composer.prototype.make = function () {
		const out = make.call(this);
		if (on_ticket(this) && this.dialog) {
			const wrapper = this.dialog.$wrapper.addClass("email-flow-composer");
			const field = this.dialog.fields_dict.content;
			if (field && !wrapper.find(".email-flow-quote-toggle").length) {
				$(`<a href="#" class="email-flow-quote-toggle text-muted small">${__("Show quoted text")}</a>`)
					.appendTo(field.$wrapper)
					.on("click", (e) => {
						e.preventDefault();
						const open = wrapper.toggleClass("email-flow-quote-open").hasClass("email-flow-quote-open");
						$(e.currentTarget).text(open ? __("Hide quoted text") : __("Show quoted text"));
					});
			}
		}
		return out;
	};

	const get_signature = Composer.prototype.get_signature;
	Composer.prototype.get_signature = async function (sender_email) {
		if (on_ticket(this)) {
			let signature = defaults(this).signature || frappe.boot.user.email_signature || "";
			if (!signature) return "";
			if (!frappe.utils.is_html(signature)) signature = signature.replace(/\n/g, "<br>");
			return "<br>" + signature;
		}
		return get_signature.call(this, sender_email);
	};
	Composer.prototype.__email_flow_patched = true;

	$("<style>")
		.text(
			// The editor keeps one blockquote per quoted line: collapsed, only the first one shows.
			".email-flow-composer:not(.email-flow-quote-open) .ql-editor blockquote{opacity:.65}" +
				".email-flow-composer:not(.email-flow-quote-open) .ql-editor blockquote + blockquote{display:none}" +
				".email-flow-quote-toggle{display:inline-block;margin-top:4px}"
		)
		.appendTo(document.head);
});

// Text from mail is stored HTML-escaped when it holds < or > (mail/desk_text.py): the Desk's
// HTML views show it as written. Where a value is shown as plain text (an input, a list link),
// it is turned back. DOMParser builds an inert document: nothing in the value loads or runs.
email_flow.plain_text = function (value) {
	if (value == null) return "";
	value = String(value);
	if (value.indexOf("&") === -1) return value;
	return new DOMParser().parseFromString(value, "text/html").documentElement.textContent || "";
};
