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
			email_flow.canned.attach(this);
			// Ctrl+Enter sends, as in a mail client (Ctrl+S, Frappe's primary action, works too).
			this.dialog.$wrapper.on("keydown.email_flow", (e) => {
				if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
					e.preventDefault();
					$(document.activeElement).blur();
					setTimeout(() => this.dialog.get_primary_btn().trigger("click"), 100);
				}
			});
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

// -- the Support workspace: counts overall and per queue, each opening its Ticket list ----------
// Drawn into the workspace's "Support desk counts" block (a Custom HTML Block, fixtures/); the
// figures come from services/desk.py through the Ticket permissions of the user.
email_flow.render_support_counts = function (root) {
	const wrapper = root.querySelector(".email-flow-counts") || root;
	const esc = frappe.utils.escape_html;
	const style = document.createElement("style");
	style.textContent = `
		.email-flow-counts table { width: 100%; border-collapse: collapse; font-size: var(--text-base); }
		.email-flow-counts th, .email-flow-counts td { padding: 8px 10px; border-bottom: 1px solid var(--border-color); text-align: right; white-space: nowrap; }
		.email-flow-counts th:first-child, .email-flow-counts td:first-child { text-align: left; }
		.email-flow-counts th { color: var(--text-muted); font-weight: 500; font-size: var(--text-sm); }
		.email-flow-counts a.ef-count { font-weight: 600; font-size: var(--text-lg); color: var(--text-color); text-decoration: none; }
		.email-flow-counts a.ef-count.zero { color: var(--text-light); font-weight: 400; }
		.email-flow-counts a.ef-count.hot { color: var(--red-500); }
		.email-flow-counts tr.ef-overall td { border-bottom: 2px solid var(--border-color); }
		.email-flow-counts .ef-pill { border-radius: 9px; padding: 1px 8px; font-size: var(--text-xs); }`;
	root.appendChild(style);
	frappe.xcall("email_flow_app.email_flow.services.desk.support_counts").then((data) => {
		const keys = Object.keys(data.labels);
		const cell = (key, n, queue) =>
			`<td><a href="#" class="ef-count ${n ? (["needs_reply", "overdue"].includes(key) ? "hot" : "") : "zero"}"
				data-key="${key}" data-queue="${esc(queue || "")}">${n}</a></td>`;
		const rows = [
			`<tr class="ef-overall" data-queue=""><td><b>${__("All queues")}</b></td>${keys
				.map((k) => cell(k, data.overall[k]))
				.join("")}</tr>`,
			...data.queues.map((q) => {
				const colour = (q.color || "#8d99a6").replace(/[^#0-9a-zA-Z]/g, "");
				return `<tr data-queue="${esc(q.queue)}"><td><span class="ef-pill" style="background:${colour}22;color:${colour};border:1px solid ${colour}">${esc(q.queue)}</span></td>${keys
					.map((k) => cell(k, q.counts[k], q.queue))
					.join("")}</tr>`;
			}),
		];
		wrapper.innerHTML = `<table><thead><tr><th>${__("Queue")}</th>${keys
			.map((k) => `<th>${esc(data.labels[k])}</th>`)
			.join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
		wrapper.querySelectorAll("a.ef-count").forEach((link) =>
			link.addEventListener("click", (e) => {
				e.preventDefault();
				email_flow.open_ticket_list(data.filters[link.dataset.key], link.dataset.queue);
			})
		);
	});
};

// The Ticket list with exactly these filters (and the queue, if given).
email_flow.open_ticket_list = function (filters, queue) {
	const options = {};
	(filters || []).forEach(([field, op, value]) => {
		options[field] = op === "=" ? value : [op, value];
	});
	if (queue) options.email_queue = queue;
	frappe.route_options = options;
	frappe.set_route("List", "Ticket", "List");
};

// -- canned responses in a reply: type "::" (or click "Canned response") and pick one -------------
// Frappe's Email Templates, rendered with the ticket's fields on the server
// (services/canned.py); the template's body goes in at the cursor, the reply keeps its subject.
email_flow.canned = {
	templates: null,
	load() {
		if (this.templates) return Promise.resolve(this.templates);
		return frappe
			.xcall("email_flow_app.email_flow.services.canned.list_canned_responses")
			.then((names) => (this.templates = names || []));
	},
	attach(composer) {
		const field = composer.dialog && composer.dialog.fields_dict.content;
		const quill = field && field.quill;
		if (!quill || field.__email_flow_canned) return;
		field.__email_flow_canned = true;
		const menu = $('<div class="email-flow-canned-menu dropdown-menu" role="listbox"></div>').appendTo(
			field.$wrapper.css("position", "relative")
		);
		$(`<button type="button" class="btn btn-xs btn-default email-flow-canned-button">${__("Canned response")} <kbd>::</kbd></button>`)
			.insertBefore(field.$wrapper.find(".ql-toolbar, .ql-container").first())
			.on("click", () => {
				this.trigger = null;
				this.show(menu, quill, composer, "");
			});
		quill.on("text-change", (delta, old, source) => {
			if (source !== "user") return;
			const at = quill.getSelection() ? quill.getSelection().index : quill.getLength();
			const before = quill.getText(Math.max(0, at - 40), Math.min(40, at));
			const m = before.match(/::([^\s:]*)$/);
			if (m) {
				this.trigger = { index: at - m[0].length, length: m[0].length };
				this.show(menu, quill, composer, m[1]);
			} else {
				this.hide(menu);
			}
		});
		quill.root.addEventListener(
			"keydown",
			(e) => {
				if (!menu.hasClass("show")) return;
				const items = menu.find(".dropdown-item");
				let active = items.index(items.filter(".active"));
				if (e.key === "ArrowDown" || e.key === "ArrowUp") {
					active = (active + (e.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
					items.removeClass("active").eq(active).addClass("active");
				} else if (e.key === "Enter" || e.key === "Tab") {
					items.eq(Math.max(active, 0)).trigger("click");
				} else if (e.key === "Escape") {
					this.hide(menu);
				} else {
					return;
				}
				e.preventDefault();
				e.stopImmediatePropagation();
			},
			true
		);
	},
	show(menu, quill, composer, query) {
		this.load().then((names) => {
			const q = query.toLowerCase();
			const matches = names.filter((n) => n.toLowerCase().includes(q)).slice(0, 10);
			menu.empty();
			if (!matches.length) {
				menu.append(
					`<span class="dropdown-item disabled text-muted">${__("No canned response matches")}</span>`
				);
			}
			matches.forEach((name, i) =>
				$(`<a href="#" class="dropdown-item ${i ? "" : "active"}" role="option"></a>`)
					.text(name)
					.on("mousedown", (e) => e.preventDefault())
					.on("click", (e) => {
						e.preventDefault();
						this.hide(menu);
						this.insert(quill, composer, name);
					})
					.appendTo(menu)
			);
			// Under the caret (the editor's own coordinates, moved into the field's).
			const selection = quill.getSelection();
			const caret = quill.getBounds(selection ? selection.index : 0);
			const editor = $(quill.container).position();
			menu.addClass("show").css({
				display: "block",
				top: editor.top + caret.top + caret.height + 4,
				left: editor.left + caret.left,
			});
		});
	},
	hide(menu) {
		menu.removeClass("show").css("display", "none");
	},
	insert(quill, composer, name) {
		const trigger = this.trigger;
		this.trigger = null;
		frappe
			.xcall("email_flow_app.email_flow.services.canned.render_canned_response", {
				template: name,
				ticket: composer.doc.name,
			})
			.then((html) => {
				let at = quill.getSelection(true) ? quill.getSelection(true).index : 0;
				if (trigger) {
					quill.deleteText(trigger.index, trigger.length, "user");
					at = trigger.index;
				}
				quill.clipboard.dangerouslyPasteHTML(at, html, "user");
				quill.focus();
			});
	},
};
