// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

frappe.ui.form.on("Ticket", {
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
	},
});
