"""Parse JSON Feed documents (https://www.jsonfeed.org/version/1.1/, and 1.0) into the entries RSS and Atom give.

``feeds.parse_feed`` hands a document here when it is labelled JSON (``application/feed+json``,
``application/json``) and is not markup, or when its body opens with ``{`` whatever its label. Items map
onto ``FeedEntry`` through the helpers RSS and Atom use (http(s) links only, text reduced from HTML,
lone surrogates replaced, over-long GUIDs hashed, duplicate GUIDs dropped), so a JSON Feed is stored
under the same guarantees. The XML entity guard does not apply: JSON declares no entities, and an
article about DTDs is not a declaration.

JSON from strangers: a document that cannot be decoded (invalid UTF-8, truncated, nested deeper than
the decoder's recursion limit) is ``invalid``; valid JSON that is not a JSON Feed object is
``not_a_feed``. Inside a feed one bad item costs itself only: an item that is not an object is
skipped, a field of the wrong type is read as absent, and both are counted in the feed's warning.
Integers too long for ``int()`` (which refuses more than 4,300 digits and would fail the whole
document) are read as absent too: no field we read is a number.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from newswatch.ingest.entries import (
    SKEW,
    SURROGATES,
    FeedEntry,
    FeedError,
    ParsedFeed,
    entry_guid,
    feed_text,
    http_link,
)

JSON_MEDIA_TYPES = frozenset({"application/feed+json", "application/json"})
VERSION_PREFIX = "https://jsonfeed.org/version/"
# The first byte after an optional UTF-8 byte order mark and whitespace: "{" is JSON, "<" is markup.
_FIRST_BYTE = re.compile(rb"\A(?:\xef\xbb\xbf)?[ \t\r\n]*(.)", re.DOTALL)
# Longer integers are read as absent rather than converted: int() refuses over 4,300 digits, failing the document.
_MAX_INTEGER_DIGITS = 100
# Where an item's text may be, full content first; the longest one is kept, as for RSS and Atom.
_TEXT_FIELDS = ("content_html", "content_text", "summary")


def is_json(content: bytes, content_type: str | None) -> bool:
    """True when the document is to be read as JSON: it opens with "{", or it is labelled JSON and is not markup
    (a server that labels its RSS ``application/json`` still gets it read)."""
    match = _FIRST_BYTE.match(content)
    first = match.group(1) if match else b""
    if first == b"{":
        return True
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type in JSON_MEDIA_TYPES and first != b"<"


def parse_json_feed(content: bytes, *, url: str, max_entries: int, now: datetime) -> ParsedFeed:
    """Entries of a JSON Feed, at most ``max_entries`` items read; raises FeedError when it is not one."""
    try:
        document = json.loads(content, parse_int=_integer)
    except RecursionError:
        raise FeedError("invalid", "the JSON is nested deeper than it can be read") from None
    except (ValueError, UnicodeError) as exc:  # JSONDecodeError, invalid UTF-8
        raise FeedError("invalid", f"the JSON cannot be parsed: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(document, dict):
        raise FeedError("not_a_feed", f"JSON, but {_kind(document)}, not a JSON Feed object")
    version = document.get("version")
    if not isinstance(version, str) or not version.startswith(VERSION_PREFIX):
        raise FeedError("not_a_feed", f"JSON without a JSON Feed version ({VERSION_PREFIX}…)")
    items = document.get("items", [])
    if not isinstance(items, list):
        raise FeedError("invalid", f"the JSON Feed's items are {_kind(items)}, not a list")
    fields = _Fields()
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    not_objects = 0
    for item in items[:max_entries]:
        if not isinstance(item, dict):
            not_objects += 1
            continue
        link = http_link(fields.string(item, "url"), url) or http_link(fields.string(item, "external_url"), url)
        if link is None or SURROGATES.search(link):
            continue
        title = _plain_text(fields.string(item, "title")).replace("\n\n", " ")
        summary = _plain_text(max((fields.string(item, key) or "" for key in _TEXT_FIELDS), key=len))
        guid = entry_guid(fields.identifier(item), link, title, summary)
        if guid in seen:
            continue
        seen.add(guid)
        entries.append(FeedEntry(guid, link, title, summary, _published(item, fields, now)))
    title = _plain_text(fields.string(document, "title"))
    problems = []
    if not_objects:
        problems.append(f"items that are not objects: {not_objects}")
    if fields.wrong_types:
        problems.append(f"fields of the wrong type read as absent: {fields.wrong_types}")
    warning = f"ill-formed JSON Feed read leniently ({'; '.join(problems)})" if problems else None
    return ParsedFeed(title=title, entries=entries, warning=warning)


class _Fields:
    """Reads fields of JSON objects, counting those of the wrong type (which are read as absent)."""

    def __init__(self) -> None:
        self.wrong_types = 0

    def string(self, value: dict, key: str) -> str | None:
        found = value.get(key)
        if found is None or isinstance(found, str):
            return found
        self.wrong_types += 1
        return None

    def identifier(self, item: dict) -> str | None:
        """The item's ``id``: a number is coerced to a string (the spec asks readers to), blank is absent."""
        found = item.get("id")
        if isinstance(found, int) and not isinstance(found, bool):
            return str(found)
        found = self.string(item, "id")
        return found if found and found.strip() else None


def _plain_text(value: str | None) -> str:
    """``entries.feed_text`` of a field whose lone surrogates (a JSON escape such as \\ud800 makes them) are replaced
    first: the HTML reduction would drop the text after one."""
    return feed_text(SURROGATES.sub("\ufffd", value or ""))


def _published(item: dict, fields: _Fields, now: datetime) -> datetime | None:
    """``date_published``, else ``date_modified`` (RFC 3339); a date in the future is not trusted."""
    for key in ("date_published", "date_modified"):
        moment = _rfc3339(fields.string(item, key))
        if moment is not None:
            return moment if moment <= now + SKEW else None
    return None


def _rfc3339(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().upper())  # RFC 3339 allows a lower-case "t" and "z"
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # not a date, or out of range once in UTC
        return None


def _integer(digits: str) -> int | None:
    return int(digits) if len(digits) <= _MAX_INTEGER_DIGITS else None


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
