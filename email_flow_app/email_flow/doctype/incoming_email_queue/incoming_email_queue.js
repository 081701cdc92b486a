// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

const POLL_OUTCOME_EVERY_MS = 1500;
const POLL_OUTCOME_WAIT_MS = 120000;

frappe.ui.form.on("Incoming Email Queue", {
	refresh(frm) {
		if (frm.is_new()) return;
		if (frm.doc.channel_type === "Forwarding") {
			email_flow.show_health(frm);
			frm.add_custom_button(__("Forwarding instructions"), () =>
				email_flow.show_forwarding(frm.doc.name)
			);
			return;
		}
		email_flow.add_connection_buttons(frm);
		frm.add_custom_button(__("Poll Now"), () => poll_now(frm));
	},
});

// Queue the poll job, then ask for its outcome until a run newer than the click is recorded.
async function poll_now(frm) {
	const requested = await call_saved(frm, "poll_now");
	frappe.show_alert({ message: __("Polling {0}…", [frm.doc.name]), indicator: "blue" });
	const started = Date.now();
	while (Date.now() - started < POLL_OUTCOME_WAIT_MS) {
		await new Promise((resolve) => setTimeout(resolve, POLL_OUTCOME_EVERY_MS));
		const outcome = await call_saved(frm, "poll_outcome", { since: requested.requested_at });
		if (outcome && outcome.done) {
			frappe.msgprint({
				title: outcome.ok ? __("Poll finished") : __("Poll failed"),
				message: `<p class="ef-poll-outcome">${frappe.utils.escape_html(outcome.message)}</p>`,
				indicator: outcome.ok ? "green" : "red",
			});
			frm.reload_doc();
			return;
		}
	}
	frappe.msgprint({
		title: __("No answer yet"),
		message: `<p class="ef-poll-outcome">${__(
			"The poll is queued but has not finished within two minutes. Is a background worker running (bench worker)? The queue's health shows the result of the next poll."
		)}</p>`,
		indicator: "orange",
	});
}

// A method of the saved queue (by name): a poll changes the queue's health, and the form's copy may be older.
async function call_saved(frm, method, args) {
	const r = await frappe.call({
		method: "run_doc_method",
		args: { dt: frm.doctype, dn: frm.doc.name, method, args: args || {} },
	});
	return r.message;
}
