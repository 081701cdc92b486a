// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Inbound Email", {
	refresh(frm) {
		show_preview(frm);
		if (["Failed", "Filtered"].includes(frm.doc.status)) {
			// A Filtered message offers the ways past its filter in one "Reprocess" menu.
			const group = frm.doc.status === "Filtered" ? __("Reprocess") : undefined;
			frm.add_custom_button(
				__("Reprocess"),
				() =>
					frm.call("reprocess").then((r) => {
						frappe.show_alert({ message: __("Now: {0}", [__(r.message)]), indicator: "green" });
						frm.reload_doc();
					}),
				group
			);
			if (group) {
				frm.add_custom_button(
					__("Create ticket anyway"),
					() =>
						frappe.confirm(
							__(
								"Make this message a new ticket although it was filtered? The ticket notes that you did."
							),
							() => run(frm, "create_ticket_anyway")
						),
					group
				);
			}
			if (group && frm.doc.sender) {
				frm.add_custom_button(
					__("Unblock sender and reprocess"),
					() =>
						frappe.confirm(
							__("Remove {0} from the blocked senders and process this message again?", [
								frappe.utils.escape_html(frm.doc.sender),
							]),
							() => run(frm, "unblock_sender_and_reprocess")
						),
					group
				);
			}
		}
		if (frm.doc.ticket) {
			frm.add_custom_button(__("Open Ticket"), () => frappe.set_route("Form", "Ticket", frm.doc.ticket));
		}
	},
});

// Both reprocess options answer {status, ticket, reason, unblocked?}: say what happened.
function run(frm, method) {
	frm.call({ method, doc: frm.doc, freeze: true }).then((r) => {
		const out = r.message || {};
		const esc = frappe.utils.escape_html;
		const lines = [];
		if (out.unblocked && out.unblocked.length) {
			lines.push(__("Removed from the blocked senders: {0}", [esc(out.unblocked.join(", "))]));
		} else if (out.unblocked) {
			lines.push(__("The sender was not on the blocked senders list."));
		}
		lines.push(__("Now: {0}", [esc(__(out.status || ""))]));
		if (out.ticket) {
			lines.push(
				`<a class="ef-result-ticket" href="/app/ticket/${encodeURIComponent(out.ticket)}">${esc(
					out.ticket
				)}</a>`
			);
		}
		if (out.reason && out.status !== "Ticket Created") lines.push(esc(out.reason));
		const created = ["Ticket Created", "Appended"].includes(out.status);
		frappe.msgprint({
			title: created ? __("Filed") : __("Still not filed"),
			message: `<div class="ef-reprocess-result">${lines.map((l) => `<p>${l}</p>`).join("")}</div>`,
			indicator: created ? "green" : "orange",
		});
		frm.reload_doc();
	});
}

// The text body, escaped on the server; mail HTML is never rendered here.
function show_preview(frm) {
	const field = frm.get_field("preview_html");
	if (!field || frm.is_new() || !frm.doc.raw_file) {
		field && field.$wrapper.empty();
		return;
	}
	field.$wrapper.html(`<p class="text-muted small">${__("Loading the text of the message…")}</p>`);
	frm.call({ method: "body_preview", doc: frm.doc }).then((r) => {
		const out = r.message || {};
		if (!out.ok) {
			field.$wrapper.html(`<p class="text-muted ef-preview-missing">${frappe.utils.escape_html(out.message)}</p>`);
			return;
		}
		const note = out.message ? `<p class="text-muted small">${frappe.utils.escape_html(out.message)}</p>` : "";
		field.$wrapper.html(
			`<pre class="ef-preview" style="white-space: pre-wrap; max-height: 24em; overflow: auto;">${
				out.html || frappe.utils.escape_html(__("(no text)"))
			}</pre>${note}`
		);
	});
}
