// Copyright (c) 2026, Email Flow developers and contributors
// For license information, please see license.txt

// frappe.ui.form.on("Ticket", {
// 	refresh(frm) {

// 	},
// });
