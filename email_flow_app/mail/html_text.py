"""Plain text from HTML, for mail that has only an HTML body.

Invariants: never raises; script/style/head content never reaches the text;
``<blockquote>`` content is prefixed with ``> `` so quote stripping works on it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = frozenset(
	"address article aside blockquote center dd div dl dt figcaption figure footer form h1 h2 h3 h4 h5 h6 "
	"header hr li main nav ol p pre section table tbody tfoot thead tr ul".split()
)
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "xml"})


class _TextExtractor(HTMLParser):
	def __init__(self) -> None:
		super().__init__(convert_charrefs=True)
		self.parts: list[str] = []
		self.skip_depth = 0
		self.quote_depth = 0
		self.pre_depth = 0

	def _newline(self) -> None:
		self.parts.append("\n")

	def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
		if tag in _SKIP:
			self.skip_depth += 1
			return
		if tag == "br":
			self._newline()
		elif tag in _BLOCK:
			self._newline()
			if tag == "blockquote":
				self.quote_depth += 1
			elif tag == "li":
				self.parts.append("- ")
			elif tag == "pre":
				self.pre_depth += 1
		elif tag in ("td", "th"):
			self.parts.append("\t")
		elif tag == "img":
			alt = dict(attrs).get("alt")
			if alt:
				self.parts.append(f"[{alt}]")

	def handle_endtag(self, tag: str) -> None:
		if tag in _SKIP:
			self.skip_depth = max(0, self.skip_depth - 1)
			return
		if tag in _BLOCK:
			self._newline()
			if tag == "blockquote":
				self.quote_depth = max(0, self.quote_depth - 1)
			elif tag == "pre":
				self.pre_depth = max(0, self.pre_depth - 1)

	def handle_data(self, data: str) -> None:
		if self.skip_depth:
			return
		if not self.pre_depth:
			data = re.sub(r"\s+", " ", data)
		if self.quote_depth:
			self.parts.append(f"\x00Q{self.quote_depth}\x00{data}")
		else:
			self.parts.append(data)


def html_to_text(html: str) -> str:
	"""Readable plain text for ``html``; "" for empty input. Never raises."""
	if not html:
		return ""
	parser = _TextExtractor()
	try:
		parser.feed(html)
		parser.close()
	except Exception:
		return re.sub(r"<[^>]*>", " ", html).strip()
	raw = "".join(parser.parts)
	lines: list[str] = []
	for line in raw.split("\n"):
		depth = 0
		match = re.search(r"\x00Q(\d+)\x00", line)
		if match:
			depth = int(match.group(1))
		line = re.sub(r"\x00Q\d+\x00", "", line).strip(" ")
		if depth and line:
			line = "> " * depth + line
		lines.append(line.rstrip())
	text = "\n".join(lines)
	return re.sub(r"\n{3,}", "\n\n", text).strip()
