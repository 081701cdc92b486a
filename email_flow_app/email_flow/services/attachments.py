"""Mail attachments become private Files on the Ticket; inline cid: images are rewritten.

Files written by the pipeline (the raw message, attachments) are written to
the site's private files folder and recorded as File rows directly, one
INSERT each (or one per batch), instead of through the File controller (about
ten queries, a content-hash lookup, an "attachment added" Comment and, for
JPEGs, EXIF stripping of the customer's bytes). A site with a `write_file`
hook (files stored elsewhere, e.g. S3) gets the File controller path.
"""

import hashlib
import os
import re
from collections.abc import Callable

import frappe
from frappe import _
from frappe.utils import get_files_path, now_datetime

from email_flow_app.email_flow.services import settings
from email_flow_app.mail import ParsedMessage

MAX_FILE_NAME = 140  # File.file_name is a Data field


def direct_writes() -> bool:
	"""False when an app stores files elsewhere (hook `write_file`): use the File controller."""
	return settings.cached("direct_file_writes", lambda: not frappe.get_hooks("write_file"))


def safe_file_name(name: str | None, fallback: str) -> str:
	"""A file name without path parts or control characters, short enough for File.file_name."""
	name = re.sub(r"[\x00-\x1f/\\]+", "_", os.path.basename((name or "").replace("\\", "/"))).strip(" .")
	name = name or fallback
	if len(name) > MAX_FILE_NAME - 8:  # room for a uniqueness suffix
		stem, ext = os.path.splitext(name)
		ext = ext[:16]
		name = stem[: MAX_FILE_NAME - 8 - len(ext)] + ext
	return name


def write_private_file(
	file_name: str, content: bytes, fsync: bool = False, reclaim_orphan: bool = False
) -> tuple[str, str]:
	"""Write `content` under private/files with a name not taken yet; (file name, file URL).

	`reclaim_orphan`: the name belongs to a record this transaction holds (an
	Inbound Email name just taken from its naming series, under the series' row
	lock). A file of that name that no File row names was left by an attempt
	that died before its commit: it is replaced, so a crash leaves no orphan.
	"""
	folder = get_files_path(is_private=1)
	os.makedirs(folder, exist_ok=True)
	stem, ext = os.path.splitext(file_name)
	candidate = file_name
	while True:
		try:
			fd = os.open(os.path.join(folder, candidate), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
			break
		except FileExistsError:
			if (
				reclaim_orphan
				and candidate == file_name
				and not _file_row_exists(f"/private/files/{candidate}")
			):
				os.unlink(os.path.join(folder, candidate))
				reclaim_orphan = False
				continue
			candidate = f"{stem}{frappe.generate_hash(length=6)}{ext}"
	with os.fdopen(fd, "wb") as out:
		out.write(content)
		if fsync:
			out.flush()
			os.fsync(out.fileno())
	return candidate, f"/private/files/{candidate}"


def _file_row_exists(file_url: str) -> bool:
	return bool(frappe.db.exists("File", {"file_url": file_url}))


def file_row(file_name: str, file_url: str, content: bytes, doctype: str, name: str) -> dict:
	"""A File row for a private file attached to doctype/name (columns not named keep their defaults)."""
	return {
		"file_name": file_name,
		"file_url": file_url,
		"is_private": 1,
		"file_size": len(content),
		"file_type": os.path.splitext(file_name)[1].lstrip(".").upper()[:140] or None,
		"content_hash": hashlib.md5(content, usedforsecurity=False).hexdigest(),
		"folder": "Home/Attachments",
		"attached_to_doctype": doctype,
		"attached_to_name": name,
	}


def insert_file_rows(rows: list[dict]) -> None:
	bulk_insert("File", rows)


def bulk_insert(doctype: str, rows: list[dict]) -> None:
	"""Insert rows in one statement, adding the standard columns every document has.

	A row without "name" gets a random one. Columns a row does not name keep their
	database defaults. Every row must name the same columns.
	"""
	if not rows:
		return
	now = now_datetime()
	user = frappe.session.user
	standard = {
		"owner": user,
		"creation": now,
		"modified": now,
		"modified_by": user,
		"docstatus": 0,
		"idx": 0,
	}
	full = [{"name": row.get("name") or frappe.generate_hash(length=10), **standard, **row} for row in rows]
	fields = list(full[0])
	frappe.db.bulk_insert(doctype, fields, [tuple(row[field] for field in fields) for row in full])


def save_private_file(
	file_name: str, content: bytes, doctype: str, name: str, fsync: bool = False, reclaim_orphan: bool = False
) -> str:
	"""Save `content` as a private File attached to doctype/name; returns its URL.

	The direct write is not subject to the site's upload size limit (the File
	controller's, used when files are stored elsewhere, is).
	"""
	file_name = safe_file_name(file_name, "attachment")
	if direct_writes():
		stored_name, url = write_private_file(file_name, content, fsync=fsync, reclaim_orphan=reclaim_orphan)
		insert_file_rows([file_row(stored_name, url, content, doctype, name)])
		return url
	file = frappe.get_doc(
		{
			"doctype": "File",
			"file_name": file_name,
			"attached_to_doctype": doctype,
			"attached_to_name": name,
			"is_private": 1,
			"content": content,
		}
	)
	file.insert(ignore_permissions=True)
	return file.file_url


QUARANTINE = "Quarantine the message"


def oversize_to_quarantine(msg: ParsedMessage) -> str | None:
	"""The oversize attachments, when Email Flow Settings says such mail is quarantined; else None."""
	limit_mb = settings.get_int("max_attachment_size_mb", 25)
	if not limit_mb or settings.get_value("oversize_action") != QUARANTINE:
		return None
	over = [
		f"{part.filename} ({part.size // (1024 * 1024)} MB)"
		for part in msg.attachments
		if part.size > limit_mb * 1024 * 1024
	]
	return ", ".join(over) or None


def save_attachments(ticket: str, msg: ParsedMessage) -> dict[str, str]:
	"""Save each attachment as a private File on the ticket; {content_id or filename: file_url}.

	Attachments over the size limit are left out with a note; the raw message
	(Inbound Email) still holds them, so nothing is lost.
	"""
	prepared = prepare_attachments(ticket, msg)
	if prepared is not None:
		saved, finish = prepared
		finish()
		return saved
	limit_mb, parts, skipped = _split_by_size(msg)
	saved: dict[str, str] = {}
	for index, part in parts:
		url = save_private_file(part.filename or f"attachment-{index + 1}", part.payload, "Ticket", ticket)
		saved[part.content_id or part.filename or str(index)] = url
	_note_skipped(ticket, limit_mb, skipped)
	return saved


def prepare_attachments(ticket: str, msg: ParsedMessage) -> tuple[dict[str, str], Callable[[], None]] | None:
	"""`save_attachments` in two steps, for a Ticket that is about to be inserted.

	The files are written now (their URLs go into the body); the returned
	callable records them (one INSERT for all) and the note about left-out
	attachments, once the Ticket exists. None when files go through the File
	controller (it needs the Ticket): use `save_attachments` after the insert.
	"""
	if not direct_writes():
		return None
	limit_mb, parts, skipped = _split_by_size(msg)
	saved: dict[str, str] = {}
	rows: list[tuple] = []
	for index, part in parts:
		file_name = safe_file_name(part.filename or f"attachment-{index + 1}", "attachment")
		stored_name, url = write_private_file(file_name, part.payload)
		rows.append(file_row(stored_name, url, part.payload, "Ticket", ticket))
		saved[part.content_id or part.filename or str(index)] = url

	def finish() -> None:
		insert_file_rows(rows)
		_note_skipped(ticket, limit_mb, skipped)

	return saved, finish


def _split_by_size(msg: ParsedMessage) -> tuple[int, list, list[str]]:
	limit_mb = settings.get_int("max_attachment_size_mb", 25)
	parts, skipped = [], []
	for index, part in enumerate(msg.attachments):
		if limit_mb and part.size > limit_mb * 1024 * 1024:
			skipped.append(f"{part.filename} ({part.size // (1024 * 1024)} MB)")
		else:
			parts.append((index, part))
	return limit_mb, parts, skipped


def _note_skipped(ticket: str, limit_mb: int, skipped: list[str]) -> None:
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


def rewrite_cid_links(html: str, saved: dict[str, str]) -> str:
	"""<img src="cid:logo@x"> -> <img src="/private/files/logo.png">"""

	def replace(match: re.Match) -> str:
		cid = match.group(2).strip("<>")
		return match.group(1) + saved.get(cid, match.group(0)[len(match.group(1)) :])

	return re.sub(r"""(src=["']?)cid:([^"'\s>]+)""", replace, html, flags=re.IGNORECASE)
