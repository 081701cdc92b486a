// Email Flow in the Desk, for every user (app_include_js).

frappe.provide("email_flow");

// The email composer looks up a signature in Email Account, which a plain
// Support Agent may not read ("Not permitted: Email Account" on every Reply).
// For Tickets the reply leaves through an Outgoing Channel, not an Email
// Account: use the user's own signature and skip that lookup.
$(document).on("app_ready", () => {
	const Composer = frappe.views && frappe.views.CommunicationComposer;
	if (!Composer || Composer.prototype.__email_flow_patched) return;
	const get_signature = Composer.prototype.get_signature;
	Composer.prototype.get_signature = async function (sender_email) {
		if (this.doc && this.doc.doctype === "Ticket") {
			let signature = frappe.boot.user.email_signature || "";
			if (!signature) return "";
			if (!frappe.utils.is_html(signature)) signature = signature.replace(/\n/g, "<br>");
			return "<br>" + signature;
		}
		return get_signature.call(this, sender_email);
	};
	Composer.prototype.__email_flow_patched = true;
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
