"""Rule 1, nothing is lost: the raw message is stored and committed first.

`store_inbound` runs before any parsing and before the server copy is
acknowledged. Its dedupe key makes a second delivery of the same server
message (a worker killed after the commit, a retried webhook) a no-op.
"""

import hashlib

import frappe
from frappe.utils import now_datetime

INBOUND = "Inbound Email"


def imap_key(queue: str, folder: str, uidvalidity: int | None, uid: int) -> str:
	return f"imap:{queue}:{folder}:{uidvalidity or 0}:{uid}"


def forwarded_key(queue: str, raw: bytes) -> str:
	return f"fwd:{queue}:{hashlib.sha256(raw).hexdigest()}"


def store_inbound(
	*,
	queue: str,
	raw: bytes,
	key: str,
	folder: str | None = None,
	uidvalidity: int | None = None,
	uid: int | None = None,
) -> tuple[str, bool]:
	"""Keep `raw` as an Inbound Email with a private .eml File; (name, created).

	The caller commits. When `key` was stored before, nothing is written and
	the existing record is returned with created=False.
	"""
	existing = frappe.db.get_value(INBOUND, {"dedupe_key": key})
	if existing:
		return existing, False
	doc = frappe.get_doc(
		{
			"doctype": INBOUND,
			"email_queue": queue,
			"status": "Received",
			"folder": folder,
			"uidvalidity": str(uidvalidity) if uidvalidity is not None else None,
			"uid": uid,
			"dedupe_key": key,
			"raw_size": len(raw),
			"received_at": now_datetime(),
		}
	)
	doc.insert(ignore_permissions=True)
	file_url = save_raw(doc.name, raw)
	frappe.db.set_value(INBOUND, doc.name, "raw_file", file_url, update_modified=False)
	return doc.name, True


def save_raw(inbound_name: str, raw: bytes) -> str:
	"""Write the raw message as a private File attached to its Inbound Email."""
	file = frappe.get_doc(
		{
			"doctype": "File",
			"file_name": f"{inbound_name}.eml",
			"attached_to_doctype": INBOUND,
			"attached_to_name": inbound_name,
			"is_private": 1,
			"content": raw,
		}
	)
	# The raw message is an archive of what arrived, whatever its size; the
	# attachment size limit applies when its parts become ticket Files.
	file.flags.ignore_file_validate = True
	file.insert(ignore_permissions=True)
	return file.file_url


def load_raw(inbound_name: str) -> bytes:
	file_url = frappe.db.get_value(INBOUND, inbound_name, "raw_file")
	if not file_url:
		raise FileNotFoundError(f"{inbound_name} has no raw message")
	file_name = frappe.db.get_value("File", {"file_url": file_url, "attached_to_name": inbound_name})
	content = frappe.get_doc("File", file_name).get_content()
	return content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")
