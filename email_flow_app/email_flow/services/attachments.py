"""Mail attachments become private Files on the Ticket; inline cid: images are rewritten."""

import re

import frappe
from frappe import _

from email_flow_app.email_flow.services import settings
from email_flow_app.mail import ParsedMessage


def save_attachments(ticket: str, msg: ParsedMessage) -> dict[str, str]:
	"""Save each attachment as a private File on the ticket; {content_id or filename: file_url}.

	Attachments over the size limit are left out with a note; the raw message
	(Inbound Email) still holds them, so nothing is lost.
	"""
	limit_mb = settings.get_int("max_attachment_size_mb", 25)
	saved: dict[str, str] = {}
	skipped: list[str] = []
	for index, part in enumerate(msg.attachments):
		if limit_mb and part.size > limit_mb * 1024 * 1024:
			skipped.append(f"{part.filename} ({part.size // (1024 * 1024)} MB)")
			continue
		file = frappe.get_doc(
			{
				"doctype": "File",
				"file_name": part.filename or f"attachment-{index + 1}",
				"attached_to_doctype": "Ticket",
				"attached_to_name": ticket,
				"is_private": 1,
				"content": part.payload,
			}
		)
		file.insert(ignore_permissions=True)
		saved[part.content_id or part.filename or str(index)] = file.file_url
	if skipped:
		frappe.get_doc(
			{
				"doctype": "Comment",
				"comment_type": "Info",
				"reference_doctype": "Ticket",
				"reference_name": ticket,
				"content": _(
					"Attachments over the {0} MB limit were not added (they are kept in the raw message): {1}"
				).format(limit_mb, ", ".join(skipped)),
			}
		).insert(ignore_permissions=True)
	return saved


def rewrite_cid_links(html: str, saved: dict[str, str]) -> str:
	"""<img src="cid:logo@x"> -> <img src="/private/files/logo.png">"""

	def replace(match: re.Match) -> str:
		cid = match.group(2).strip("<>")
		return match.group(1) + saved.get(cid, match.group(0)[len(match.group(1)) :])

	return re.sub(r"""(src=["']?)cid:([^"'\s>]+)""", replace, html, flags=re.IGNORECASE)
