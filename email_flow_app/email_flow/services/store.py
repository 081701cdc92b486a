"""Rule 1, nothing is lost: the raw message is stored and committed first.

`store_inbound` runs before any parsing and before the server copy is
acknowledged. Its dedupe key makes a second delivery of the same server
message (a worker killed after the commit, a retried webhook) a no-op.
"""

import datetime
import hashlib
import os
from zoneinfo import ZoneInfo

import frappe
from frappe.utils import add_to_date, get_files_path, get_system_timezone, now_datetime

from email_flow_app.channels.graph import GraphMessage, dedupe_key
from email_flow_app.email_flow.services import attachments, settings
from email_flow_app.mail import ParsedMessage, desk_text, normalize_message_id, parse_headers

INBOUND = "Inbound Email"


def local_date(date: datetime.datetime | None) -> datetime.datetime | None:
	"""A Date header's time in the site's time zone, naive (as Frappe stores times).

	None when it is missing, has no zone, or is more than a day in the future
	(a sender's clock cannot reorder the timeline that far).
	"""
	if date is None or date.tzinfo is None:
		return None
	local = date.astimezone(ZoneInfo(get_system_timezone())).replace(tzinfo=None)
	return None if local > add_to_date(now_datetime(), days=1) else local


def header_fields(msg: ParsedMessage) -> dict:
	"""What the Inbound Email list shows of a message, from its headers (a Failed row too)."""
	return {
		"subject": desk_text.stored(" ".join(msg.subject.split()))[:10000] or None,
		"sender": msg.from_address[:140] or None,
		"recipients": ", ".join(address for _name, address in msg.to)[:2000] or None,
		"sent_at": local_date(msg.date),
		"message_id": (normalize_message_id(msg.message_id) if msg.message_id else "")[:255] or None,
	}


def stored_fields(raw: bytes) -> dict:
	"""`header_fields` read when the raw message is stored, before any processing."""
	try:
		return header_fields(parse_headers(raw))
	except Exception:
		return {}  # the raw message is what must be kept; its processing reports the rest


def imap_key(queue: str, folder: str, uidvalidity: int | None, uid: int) -> str:
	return f"imap:{queue}:{folder}:{uidvalidity or 0}:{uid}"


def forwarded_key(queue: str, raw: bytes) -> str:
	return f"fwd:{queue}:{hashlib.sha256(raw).hexdigest()}"


def graph_key(mailbox: str, graph_id: str) -> str:
	"""Per mailbox + immutable Graph id (channels.graph.dedupe_key), hashed: Graph ids run long."""
	return f"graph:{hashlib.sha256(dedupe_key(mailbox, graph_id).encode()).hexdigest()}"


def store_inbound(
	*,
	queue: str,
	raw: bytes,
	key: str,
	folder: str | None = None,
	uidvalidity: int | None = None,
	uid: int | None = None,
	graph_id: str | None = None,
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
			"graph_id": graph_id,
			"dedupe_key": key,
			"raw_size": len(raw),
			"received_at": now_datetime(),
			**stored_fields(raw),
		}
	)
	doc.insert(ignore_permissions=True)
	file_url = save_raw(doc.name, raw)
	frappe.db.set_value(INBOUND, doc.name, "raw_file", file_url, update_modified=False)
	return doc.name, True


def store_batch(
	*, queue: str, folder: str, uidvalidity: int | None, messages: list[tuple[int, bytes]]
) -> list[tuple[str, bool]]:
	"""`store_inbound` for a whole FETCH batch: a handful of queries instead of ~15 per message.

	Same contract: (name, created) per message in order, nothing written for a
	dedupe key stored before; the caller commits. Each raw message is written
	(and fsynced) to its own private file before the rows are inserted.
	"""
	source = {"folder": folder, "uidvalidity": str(uidvalidity) if uidvalidity is not None else None}
	return _store_keyed(
		queue,
		[(imap_key(queue, folder, uidvalidity, uid), raw, {**source, "uid": uid}) for uid, raw in messages],
	)


def store_graph_batch(
	*, queue: str, mailbox: str, folder: str, messages: list[GraphMessage]
) -> list[tuple[str, bool]]:
	"""`store_batch` for a Microsoft Graph delta page: keyed by mailbox + Graph id, the id kept."""
	return _store_keyed(
		queue,
		[
			(graph_key(mailbox, m.id), m.raw, {"folder": folder, "uidvalidity": None, "graph_id": m.id})
			for m in messages
		],
	)


def _store_keyed(queue: str, messages: list[tuple[str, bytes, dict]]) -> list[tuple[str, bool]]:
	"""Store (dedupe key, raw, source fields) items; (name, created) per item, in order.

	Every item names the same source fields (one bulk insert).
	"""
	if not messages:
		return []
	keys = [key for key, _raw, _source in messages]
	existing = dict(
		frappe.get_all(
			INBOUND, filters={"dedupe_key": ("in", keys)}, fields=["dedupe_key", "name"], as_list=True
		)
	)
	new = [
		(key, raw, source)
		for key, raw, source in messages
		if key not in existing and not existing.setdefault(key, "")
	]
	created = {key for key, _raw, _source in new}
	series = _series(len(new)) if new and attachments.direct_writes() else None
	if series is None:
		# No plain naming series, or files stored elsewhere: one record at a time.
		for key, raw, source in new:
			existing[key] = store_inbound(queue=queue, raw=raw, key=key, **_inbound_args(source))[0]
		return [(existing[key], key in created) for key in keys]
	now = now_datetime()
	rows, files = [], []
	for (key, raw, source), name in zip(new, series, strict=True):
		file_name, url = attachments.write_private_file(f"{name}.eml", raw, fsync=True, reclaim_orphan=True)
		files.append(attachments.file_row(file_name, url, raw, INBOUND, name))
		rows.append(
			{
				"name": name,
				"email_queue": queue,
				"status": "Received",
				**source,
				"dedupe_key": key,
				"raw_size": len(raw),
				"received_at": now,
				"raw_file": url,
				"attempts": 0,
				**stored_fields(raw),
			}
		)
		existing[key] = name
	attachments.bulk_insert(INBOUND, rows)
	attachments.insert_file_rows(files)
	return [(existing[key], key in created) for key in keys]


def _inbound_args(source: dict) -> dict:
	"""`store_inbound` keyword arguments from an item's source fields."""
	args = dict(source)
	if args.get("uidvalidity") is not None:
		args["uidvalidity"] = int(args["uidvalidity"])
	return args


def _series(count: int) -> list[str] | None:
	"""Reserve `count` names of the Inbound Email naming series (e.g. INB-.#######) at once."""
	autoname = frappe.get_meta(INBOUND).autoname or ""
	prefix, dot, hashes = autoname.rpartition(".")
	if not dot or not prefix or set(hashes) != {"#"} or any(c in prefix for c in "{}."):
		return None
	current = frappe.db.sql("SELECT `current` FROM `tabSeries` WHERE `name`=%s FOR UPDATE", (prefix,))
	if current:
		start = int(current[0][0] or 0)
		frappe.db.sql("UPDATE `tabSeries` SET `current` = %s WHERE `name`=%s", (start + count, prefix))
	else:
		start = 0
		frappe.db.sql("INSERT INTO `tabSeries` (`name`, `current`) VALUES (%s, %s)", (prefix, count))
	return [f"{prefix}{n:0{len(hashes)}d}" for n in range(start + 1, start + count + 1)]


# -- naming series names reserved per chunk ------------------------------------------------------
#
# Frappe names a document of a "PREFIX.#####" series with two statements
# (frappe.model.naming.getseries: SELECT ... FOR UPDATE, then UPDATE +1). Within
# one filing chunk the `tabSeries` row stays locked from the first SELECT ...
# FOR UPDATE until the chunk commits, so no other transaction can take a number
# in between: the chunk counts in memory and writes the counter once
# (`flush_series`, before the commit). Names are built by Frappe's own
# `parse_naming_series` with this counter instead of `getseries`.


def series_name(doc) -> str | None:
	"""The next name for new `doc` from its DocType's naming series, or None: let Frappe name it.

	None unless Frappe would name `doc` by nothing but its `autoname` series:
	no Document Naming Rule, no `autoname`/`before_naming` method or hook.
	"""
	if getattr(frappe.local, "email_flow_run_cache", None) is None:
		return None  # the counters live in the run cache
	autoname = settings.cached(("series_autoname", doc.doctype), lambda: _plain_series_autoname(doc))
	if not autoname:
		return None
	from frappe.model.naming import parse_naming_series

	return parse_naming_series(autoname.split("."), doc=doc, number_generator=_reserved_number)


def _plain_series_autoname(doc) -> str | None:
	from frappe.cache_manager import get_doctype_map
	from frappe.model.naming import NamingSeries, is_autoincremented

	meta = frappe.get_meta(doc.doctype)
	autoname = meta.autoname or ""
	lowered = autoname.lower()
	if (
		"#" not in autoname
		or lowered.startswith(("field:", "naming_series:", "prompt", "format:"))
		or is_autoincremented(doc.doctype, meta)
		or meta.issingle
		or any(callable(getattr(type(doc), method, None)) for method in ("autoname", "before_naming"))
	):
		return None
	hooks = frappe.get_doc_hooks()
	for key in (doc.doctype, "*"):
		if any(hooks.get(key, {}).get(method) for method in ("autoname", "before_naming")):
			return None
	# frappe.model.naming.set_naming_from_document_naming_rule, same lookup
	if get_doctype_map(
		"Document Naming Rule",
		doc.doctype,
		filters={"document_type": doc.doctype, "disabled": 0},
		order_by="priority desc",
	):
		return None
	NamingSeries(autoname).validate()  # what make_autoname checks before naming
	return autoname


def _reserved_number(key: str, digits: int) -> str:
	"""`frappe.model.naming.getseries` counting in memory (see `flush_series`)."""
	state = settings.run_state("series")
	if key not in state:
		row = frappe.db.sql("SELECT `current` FROM `tabSeries` WHERE `name`=%s FOR UPDATE", (key,))
		stored = int(row[0][0]) if row and row[0][0] is not None else None
		state[key] = {"row": bool(row), "stored": stored or 0, "used": stored or 0}
	state[key]["used"] += 1
	return ("%0" + str(digits) + "d") % state[key]["used"]


def series_snapshot() -> dict:
	return {key: dict(value) for key, value in settings.run_state("series").items()}


def restore_series(snapshot: dict) -> None:
	"""After a rollback to a savepoint: numbers taken since `snapshot` are free again.

	A series first locked after the savepoint is forgotten (read again when
	next needed: the rollback may have let its lock go).
	"""
	state = settings.run_state("series")
	state.clear()
	state.update(snapshot)


def flush_series() -> None:
	"""Write the counters of the series used since the last flush; the caller commits."""
	state = settings.run_state("series")
	for key, value in state.items():
		if value["used"] == value["stored"]:
			continue
		if value["row"]:
			frappe.db.sql("UPDATE `tabSeries` SET `current` = %s WHERE `name`=%s", (value["used"], key))
		else:
			frappe.db.sql("INSERT INTO `tabSeries` (`name`, `current`) VALUES (%s, %s)", (key, value["used"]))
	state.clear()


def save_raw(inbound_name: str, raw: bytes) -> str:
	"""Write the raw message (fsynced) as a private File attached to its Inbound Email.

	An archive of what arrived, whatever its size: the attachment size limit
	applies only when its parts become ticket Files.
	"""
	return attachments.save_private_file(
		f"{inbound_name}.eml", raw, INBOUND, inbound_name, fsync=True, reclaim_orphan=True
	)


def load_raw(inbound_name: str, file_url: str | None = None) -> bytes:
	file_url = file_url or frappe.db.get_value(INBOUND, inbound_name, "raw_file")
	if not file_url:
		raise FileNotFoundError(f"{inbound_name} has no raw message")
	if file_url.startswith("/private/files/") and "/" not in file_url[len("/private/files/") :]:
		path = get_files_path(file_url[len("/private/files/") :], is_private=1)
		if os.path.exists(path):
			with open(path, "rb") as raw:
				return raw.read()
	file_name = frappe.db.get_value("File", {"file_url": file_url, "attached_to_name": inbound_name})
	content = frappe.get_doc("File", file_name).get_content()
	return content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")


ORPHAN_MIN_AGE_HOURS = 24


def sweep_orphan_raw_files(min_age_hours: float = ORPHAN_MIN_AGE_HOURS) -> list[str]:
	"""Remove raw .eml files that no File row names (daily; a safety net behind reclaim_orphan).

	A store that died before its commit leaves its raw files with no row; the
	next store of the same names replaces them, but if the names went elsewhere
	they would stay. Only files of the Inbound Email series, older than
	`min_age_hours` (never one a running store may still commit).
	"""
	import time

	prefix = (frappe.get_meta(INBOUND).autoname or "").rpartition(".")[0]
	folder = get_files_path(is_private=1)
	if not prefix or not os.path.isdir(folder):
		return []
	cutoff = time.time() - min_age_hours * 3600
	candidates = [
		entry.name
		for entry in os.scandir(folder)
		if entry.is_file()
		and entry.name.startswith(prefix)
		and entry.name.endswith(".eml")
		and entry.stat().st_mtime < cutoff
	]
	removed = []
	for start in range(0, len(candidates), 500):
		part = candidates[start : start + 500]
		urls = [f"/private/files/{name}" for name in part]
		known = set(frappe.get_all("File", filters={"file_url": ("in", urls)}, pluck="file_url"))
		for name, url in zip(part, urls, strict=True):
			if url not in known:
				os.unlink(os.path.join(folder, name))
				removed.append(name)
	return removed
