"""HTML sanitizing for mail bodies, with bleach.

Invariants of :func:`sanitize_html` output, for any input:
- no element outside :data:`ALLOWED_TAGS` (so no script, style, base, form,
  iframe, object, embed, svg, math, meta, link);
- no ``on*`` attribute and no attribute outside the allow list;
- every ``href`` has an explicit http/https/mailto/tel scheme (or is a
  ``#fragment``), every ``src`` is ``cid:``, ``https:`` or a
  ``data:image/(png|gif|jpeg|webp)`` URL: nothing relative, so no
  ``javascript:`` spelled so that a URL parser takes it for a relative path;
- ``style`` values hold only allow-listed properties and never ``url(``,
  ``expression(``, ``behavior``, ``-moz-binding``, ``@import`` or CSS escapes.
"""

from __future__ import annotations

import html as html_lib
import re

import bleach
from bleach.css_sanitizer import CSSSanitizer

ALLOWED_TAGS = frozenset(
	"a abbr acronym address article aside b bdi bdo big blockquote br caption center cite code col colgroup "
	"dd del details dfn div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6 header hr i img ins kbd "
	"li mark ol p pre q s samp section small span strike strong sub summary sup table tbody td tfoot th thead "
	"time tr tt u ul var wbr".split()
)
_COMMON_ATTRS = frozenset(
	"align valign width height bgcolor color border cellpadding cellspacing colspan rowspan dir lang title "
	"alt class style nowrap face size span start type summary abbr scope headers cite datetime".split()
)
_TAG_ATTRS = {"a": frozenset({"href", "name", "target"}), "img": frozenset({"src"})}
ALLOWED_CSS_PROPERTIES = frozenset(
	"background-color border border-bottom border-bottom-color border-bottom-style border-bottom-width "
	"border-collapse border-color border-left border-left-color border-left-style border-left-width "
	"border-right border-right-color border-right-style border-right-width border-spacing border-style "
	"border-top border-top-color border-top-style border-top-width border-width border-radius clear color "
	"direction display float font font-family font-size font-style font-variant font-weight height "
	"letter-spacing line-height list-style-type margin margin-bottom margin-left margin-right margin-top "
	"max-width min-width max-height min-height padding padding-bottom padding-left padding-right "
	"padding-top table-layout text-align text-decoration text-indent text-transform vertical-align "
	"white-space width word-break word-spacing word-wrap overflow-wrap".split()
)
_HREF_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
_DATA_IMAGE = re.compile(r"^data:image/(png|gif|jpe?g|webp);base64,[a-z0-9+/=\s]*$", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_STRIP_CHARS = re.compile(
	r"[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]+"
)
_BAD_CSS = re.compile(
	r"url\s*\(|expression|behavior|-moz-binding|@import|javascript|vbscript|\\|/\*|<|>", re.IGNORECASE
)
_DROP_WITH_CONTENT = re.compile(
	r"<(script|style|head|title|xml|template|noscript|object|applet|iframe|frameset|svg|math)\b.*?</\1\s*>",
	re.IGNORECASE | re.DOTALL,
)


def _normalized_url(value: str) -> str:
	"""The URL as a browser would read its scheme: unescaped, no whitespace/controls, lower-case."""
	value = html_lib.unescape(html_lib.unescape(value))
	return _STRIP_CHARS.sub("", value).lower()


def safe_href(value: str) -> bool:
	"""True when ``value`` is a link target a mail reader may follow."""
	url = _normalized_url(value)
	if url.startswith("#") and _SCHEME.match(url[1:]) is None and ":" not in url:
		return True
	match = _SCHEME.match(url)
	return bool(match) and match.group(1) in _HREF_SCHEMES


def safe_src(value: str) -> bool:
	"""True when ``value`` is an image source we allow: cid:, https: or a data: image."""
	url = _normalized_url(value)
	if url.startswith("cid:") or url.startswith("https:"):
		return True
	return bool(_DATA_IMAGE.match(value.strip()))


def _allow_attribute(tag: str, name: str, value: str) -> bool:
	name = name.lower()
	if name.startswith("on") or ":" in name:
		return False
	if name == "href":
		return tag == "a" and safe_href(value)
	if name == "src":
		return tag == "img" and safe_src(value)
	if name == "style":
		return not _BAD_CSS.search(value)
	if name in _TAG_ATTRS.get(tag, ()):
		return True
	if name in _COMMON_ATTRS:
		return not _BAD_CSS.search(value) if name in ("background", "type") else True
	return False


_CLEANER = bleach.sanitizer.Cleaner(
	tags=ALLOWED_TAGS,
	attributes=_allow_attribute,
	protocols=frozenset({"http", "https", "mailto", "tel", "cid", "data"}),
	strip=True,
	strip_comments=True,
	css_sanitizer=CSSSanitizer(allowed_css_properties=ALLOWED_CSS_PROPERTIES),
)


def sanitize_html(html: str) -> str:
	"""Mail HTML made safe to store and show. See the module docstring for the guarantees."""
	if not html:
		return ""
	html = html.replace("\x00", "\ufffd")
	html = _DROP_WITH_CONTENT.sub("", html)
	return _CLEANER.clean(html)
