// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

// The Ticket form, conversation first: one-click Reply, Comment, Assign to me, Resolve and
// Close; keyboard shortcuts; the customer panel; received messages with their quoted history
// and signature folded (Ticket.onload: services/desk.py).

const EF_SHORTCUTS = [
	["shift+r", __("Reply to the customer"), (frm) => email_flow.ticket.reply(frm)],
	["shift+m", __("Add a comment"), (frm) => email_flow.ticket.comment(frm)],
	["shift+a", __("Assign this ticket to me"), (frm) => email_flow.ticket.assign_to_me(frm)],
	["shift+c", __("Close this ticket"), (frm) => email_flow.ticket.set_status(frm, "Closed")],
	["shift+j", __("Next ticket"), (frm) => frm.navigate_records(0)],
	["shift+k", __("Previous ticket"), (frm) => frm.navigate_records(1)],
];

frappe.ui.form.on("Ticket", {
	setup(frm) {
		email_flow.ticket.fold_timeline(frm);
	},

	refresh(frm) {
		// The subject is stored as desk text (mail/desk_text.py): the input shows the text itself;
		// a changed subject is stored safely again by Ticket.validate.
		const control = frm.fields_dict.subject;
		if (control && !control.__email_flow_plain) {
			const format_for_input = control.format_for_input.bind(control);
			control.format_for_input = (value) => format_for_input(email_flow.plain_text(value));
			control.__email_flow_plain = true;
			control.refresh();
		}
		if (frm.is_new()) return;
		email_flow.ticket.add_buttons(frm);
		email_flow.ticket.customer_panel(frm);
		email_flow.ticket.due_indicator(frm);
		for (const [shortcut, description, action] of EF_SHORTCUTS) {
			frappe.ui.keys.add_shortcut({
				shortcut,
				description,
				page: frm.page,
				action: () => action(frm),
				condition: () => !frm.is_new() && !$(".modal.show").length,
			});
		}
	},
});

frappe.provide("email_flow.ticket");

Object.assign(email_flow.ticket, {
	add_buttons(frm) {
		const closed = ["Resolved", "Closed"].includes(frm.doc.status);
		frm.add_custom_button(__("Reply"), () => email_flow.ticket.reply(frm)).addClass(
			"btn-primary email-flow-reply"
		);
		frm.add_custom_button(__("Comment"), () => email_flow.ticket.comment(frm)).addClass(
			"email-flow-comment"
		);
		if (!email_flow.ticket.assigned_to_me(frm)) {
			frm.add_custom_button(__("Assign to me"), () =>
				email_flow.ticket.assign_to_me(frm)
			).addClass("email-flow-assign-me");
		}
		if (!closed) {
			frm.add_custom_button(__("Resolve"), () =>
				email_flow.ticket.set_status(frm, "Resolved")
			).addClass("email-flow-resolve");
			frm.add_custom_button(__("Close"), () =>
				email_flow.ticket.set_status(frm, "Closed")
			).addClass("email-flow-close");
		} else {
			frm.add_custom_button(__("Reopen"), () =>
				email_flow.ticket.set_status(frm, "Open")
			).addClass("email-flow-reopen");
		}
		if (frm.doc.needs_reply) {
			frm.add_custom_button(__("Mark as answered"), () =>
				frm.set_value("needs_reply", 0).then(() => frm.save())
			).addClass("email-flow-mark-answered");
		}
	},

	reply(frm) {
		// The composer starts addressed and quoted (email_flow_desk.js, Ticket.onload).
		frm.timeline ? frm.timeline.compose_mail() : frm.email_doc();
	},

	comment(frm) {
		const box = frm.footer && frm.footer.wrapper.find(".comment-box");
		if (!box || !box.length) return;
		frappe.utils.scroll_to(box, true, 150);
		setTimeout(() => box.find(".ql-editor").focus(), 300);
	},

	assigned_to_me(frm) {
		// The form's docinfo has the assignments (the document itself does not carry _assign).
		return (frm.get_docinfo().assignments || []).some((a) => a.owner === frappe.session.user);
	},

	assign_to_me(frm) {
		if (email_flow.ticket.assigned_to_me(frm)) return;
		return frappe
			.xcall("frappe.desk.form.assign_to.add", {
				doctype: frm.doctype,
				name: frm.docname,
				assign_to: [frappe.session.user],
			})
			.then(() => {
				frappe.show_alert({ message: __("Assigned to you"), indicator: "green" });
				frm.reload_doc();
			});
	},

	set_status(frm, status) {
		if (frm.doc.status === status) return;
		return frm.set_value("status", status).then(() => frm.save());
	},

	due_indicator(frm) {
		// "Due by" in the form's headline: overdue in red, paused while waiting on the customer.
		const doc = frm.doc;
		if (doc.due_by) {
			const overdue = frappe.datetime.str_to_obj(doc.due_by) < frappe.datetime.now_datetime(true);
			frm.dashboard.set_headline_alert(
				`<span class="indicator ${overdue ? "red" : "blue"} email-flow-due">${
						overdue
						? __("Overdue, was due") + " " + frappe.datetime.comment_when(doc.due_by)
						: __("Due by {0}", [frappe.datetime.str_to_user(doc.due_by)])
				}</span>`
			);
		} else if (doc.sla_paused_on && doc.status === "Pending") {
			frm.dashboard.set_headline_alert(
				`<span class="indicator orange email-flow-due">${__("SLA paused: waiting on the customer")}</span>`
			);
		} else {
			frm.dashboard.clear_headline();
		}
	},

	customer_panel(frm) {
		// The side panel: who the customer is and their other tickets (as far as the agent may see).
		const info = (frm.doc.__onload || {}).email_flow_customer;
		const sidebar = frm.sidebar && frm.sidebar.sidebar;
		if (!info || !sidebar) return;
		sidebar.find(".email-flow-customer").remove();
		const esc = frappe.utils.escape_html;
		const name = email_flow.plain_text(info.name) || info.email;
		const link = (doctype, docname) => frappe.utils.get_form_link(doctype, docname);
		const contact = info.contact ? `<a href="${link("Contact", info.contact)}">${esc(name)}</a>` : esc(name);
		const rows = (info.tickets || [])
			.map(
				(t) => `<li class="ellipsis"><a href="${link("Ticket", t.name)}"
					title="${esc(email_flow.plain_text(t.subject))}">${esc(t.name)}</a>
					<span class="text-muted">· ${esc(__(t.status))} · ${esc(email_flow.plain_text(t.subject))}</span></li>`
			)
			.join("");
		const all = info.email
			? `<a href="#" class="small email-flow-customer-all">${__("All their tickets")}</a>`
			: "";
		const panel = $(`<div class="sidebar-section email-flow-customer">
				<div class="sidebar-label">${__("Customer")}</div>
				<div class="email-flow-customer-name">${contact}</div>
				<div class="text-muted small ellipsis">${esc(info.email || "")}</div>
				<div class="sidebar-label" style="margin-top:var(--margin-sm)">${__("Other tickets")}</div>
				${rows ? `<ul class="list-unstyled small email-flow-customer-tickets">${rows}</ul>` : `<div class="text-muted small">${__("None")}</div>`}
				${all}
			</div>`).prependTo(sidebar);
		panel.find(".email-flow-customer-all").on("click", (e) => {
			e.preventDefault();
			email_flow.open_ticket_list([["raised_by", "=", info.email]]);
		});
	},

	fold_timeline(frm) {
		// Received messages show their new part; the quoted history and signature are behind
		// "Show quoted text". Sent replies fold the quote the composer put under them.
		const patch = () => {
			const timeline = frm.timeline;
			if (!timeline) return false;
			const proto = Object.getPrototypeOf(timeline);
			if (proto.__email_flow_folds) return true;
			const original = proto.get_communication_timeline_content;
			proto.get_communication_timeline_content = function (doc, allow_reply = true) {
				const box = original.call(this, doc, allow_reply);
				if (this.frm && this.frm.doctype === "Ticket") email_flow.ticket.fold(box, doc, this.frm);
				return box;
			};
			proto.__email_flow_folds = true;
			timeline.refresh();
			return true;
		};
		if (!patch()) frappe.after_ajax(() => setTimeout(patch, 0));
	},

	fold(box, doc, frm) {
		const content = box.find(".content").first();
		if (!content.length || content.find(".email-flow-quote-toggle").length) return;
		const folded = ((frm.doc.__onload || {}).email_flow_folded || {})[doc.name];
		const toggle = $(`<a href="#" class="email-flow-quote-toggle text-muted small">${__("Show quoted text")}</a>`);
		if (folded) {
			const full = $('<div class="email-flow-full" style="display:none"></div>').append(content.contents());
			content.append($(`<div class="email-flow-new">${folded}</div>`), toggle, full);
			toggle.on("click", (e) => {
				e.preventDefault();
				const open = !full.is(":visible");
				full.toggle(open);
				content.find(".email-flow-new").toggle(!open);
				toggle.text(open ? __("Hide quoted text") : __("Show quoted text"));
			});
		} else if (doc.sent_or_received === "Sent" && content.find("blockquote").length) {
			const quotes = content.find("blockquote").filter((i, el) => !$(el).parents("blockquote").length);
			quotes.hide();
			toggle.insertBefore(quotes.first());
			toggle.on("click", (e) => {
				e.preventDefault();
				const open = !quotes.first().is(":visible");
				quotes.toggle(open);
				toggle.text(open ? __("Hide quoted text") : __("Show quoted text"));
			});
		}
	},
});
