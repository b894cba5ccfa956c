"""Parse RSS/Atom bytes into entries with feedparser, defensively (JSON Feed: ``newswatch.jsonfeed``).

feedparser is only ever given bytes we fetched ourselves (it must never fetch: no timeouts, follows
redirects to loopback, reads local paths). Documents that declare entities are refused before parsing,
because feedparser's lenient fallback expands them (a 112 KB feed used 1.5 GB). Links are kept only
when they are http(s), and summaries are reduced to plain text, so nothing active reaches storage.

The entity guard also looks through encodings that hide ``<!ENTITY`` from a byte search (UTF-16/32,
EBCDIC, UTF-7), text that still looks like markup after conversion (double-escaped tags) is converted
once more, and GUIDs too long for the database index are replaced by their hash.
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import feedparser

from newswatch.extract import html_to_text
from newswatch.workers import Expected

_ENTITY_DECLARATION = re.compile(rb"<!ENTITY|<!DOCTYPE[^>]*\[", re.IGNORECASE)
_ENTITY_DECLARATION_TEXT = re.compile(r"<!ENTITY|<!DOCTYPE[^>]*\[", re.IGNORECASE)
# Encodings in which "<!ENTITY" is not those ASCII bytes, and which feedparser would decode.
_HIDING_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "cp037", "cp500", "utf-7")
_CHARSET_PARAM = re.compile(r"charset\s*=\s*(\"[^\"]*\"|[^;\s]+)", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]{1,40})[\"']", re.IGNORECASE)
# Other declared charsets (UTF-7, whose "+ADw-" decodes to "<", UTF-16, EBCDIC, ...) get a decoded search.
_ASCII_SUPERSETS = frozenset({"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252", "iso8859-15"})
_MAX_TEXT_PASSES = 4
# Markup left in text after HTML conversion: a double-escaped tag such as &amp;lt;script&amp;gt;.
_TAG_LIKE = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>|<!--")
_SURROGATES = re.compile("[\ud800-\udfff]")
_TTL = re.compile(r"[0-9]{1,7}")
# PostgreSQL's btree entries are limited to ~2.7 kB: longer GUIDs are stored as their hash.
MAX_GUID_BYTES = 2000
_SKEW = timedelta(hours=1)


class FeedError(Exception):
    """The document is not a usable feed; ``kind`` is a short label for the feed health table."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")

    def __reduce__(self):  # comes back from a worker process with its kind
        return (FeedError, (self.kind, self.message))


@dataclass(frozen=True)
class FeedEntry:
    guid: str
    url: str
    title: str
    summary: str
    published_at: datetime | None


@dataclass
class ParsedFeed:
    title: str
    entries: list[FeedEntry] = field(default_factory=list)
    ttl_minutes: int | None = None
    warning: str | None = None


def _declared_charsets(content: bytes, content_type: str | None) -> list[str]:
    """Charsets named by the HTTP header and the XML declaration: feedparser may decode with either."""
    found = _CHARSET_PARAM.findall(content_type or "")
    match = _XML_ENCODING.search(content[:1024])
    if match:
        found.append(match.group(1).decode("ascii", "replace"))
    return [name.strip().strip("\"'") for name in found if name.strip()]


def _plainly_ascii(charset: str) -> bool:
    """True for the common charsets in which only the ASCII bytes decode to ASCII markup."""
    try:
        return codecs.lookup(charset).name in _ASCII_SUPERSETS
    except LookupError:
        return True  # unknown to Python, and so to feedparser: it cannot decode with it


def _declares_entities(content: bytes, content_type: str | None = None) -> bool:
    """True when the document declares entities or a DOCTYPE subset, in whatever encoding it is read.

    The byte search covers every ASCII-compatible encoding. Documents that may be read otherwise (NUL
    bytes as in UTF-16/32, no leading "<" as in EBCDIC, or a header or declaration naming a charset
    such as UTF-7 that writes markup differently) are decoded the ways feedparser could decode them,
    and searched again.
    """
    if _ENTITY_DECLARATION.search(content):
        return True
    declared = _declared_charsets(content, content_type)
    head = content[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    suspicious = (not head.startswith(b"<") or b"\x00" in content
                  or not all(_plainly_ascii(charset) for charset in declared))
    if not suspicious:
        return False
    for encoding in dict.fromkeys([*_HIDING_ENCODINGS, *declared]):
        try:
            text = content.decode(encoding, errors="ignore")
        except (LookupError, ValueError):
            continue
        if _ENTITY_DECLARATION_TEXT.search(text):
            return True
    return False


def _text(value: str) -> str:
    """Plain text from a feed field: HTML converted, again while markup survives (escaped markup), and
    whatever still looks like a tag after a few rounds is removed."""
    text = html_to_text(value or "")
    for _ in range(_MAX_TEXT_PASSES):
        if not _TAG_LIKE.search(text):
            break
        text = html_to_text(text)
    while _TAG_LIKE.search(text):  # each round removes characters, so this ends
        text = _TAG_LIKE.sub("", text)
    return _SURROGATES.sub("\ufffd", text)


def _timestamp(entry: feedparser.FeedParserDict, now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                moment = datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError):
                continue
            return moment if moment <= now + _SKEW else None
    return None


def _http_link(candidate: str | None, base: str) -> str | None:
    if not candidate:
        return None
    link = urljoin(base, candidate.strip())
    parts = urlsplit(link)
    if parts.scheme in ("http", "https") and parts.hostname:
        return link
    return None


def _entry_link(entry: feedparser.FeedParserDict, base: str) -> str | None:
    link = _http_link(entry.get("link"), base)
    if link:
        return link
    for candidate in entry.get("links", []):
        if candidate.get("rel", "alternate") == "alternate":
            link = _http_link(candidate.get("href"), base)
            if link:
                return link
    guid = entry.get("id")
    return _http_link(guid, base) if guid and guid.startswith("http") else None


def _entry_guid(raw_id: str | None, link: str, title: str, summary: str) -> str:
    """The entry's key in ``feed_entries``: its id, else its link; hashed when too long for the index, and
    derived from its text when there is nothing else."""
    guid = _SURROGATES.sub("\ufffd", (raw_id or link).strip())
    if len(guid.encode("utf-8")) > MAX_GUID_BYTES:
        guid = "sha256:" + hashlib.sha256(guid.encode("utf-8")).hexdigest()
    if not guid:
        guid = hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()
    return guid


def _entry_summary(entry: feedparser.FeedParserDict) -> str:
    candidates = [entry.get("summary", "")]
    candidates += [content.get("value", "") for content in entry.get("content", [])]
    return _text(max(candidates, key=len))


def parse_job(job: dict) -> ParsedFeed:
    """Runs in a worker process (``newswatch.workers``): ``parse_feed`` of one fetched document; a
    FeedError comes back to the caller as itself."""
    content = job.pop("content")
    try:
        return parse_feed(content, **job)
    except FeedError as exc:
        raise Expected(exc) from None


def parse_feed(
    content: bytes,
    *,
    url: str,
    content_type: str | None = None,
    max_entries: int = 200,
    now: datetime | None = None,
) -> ParsedFeed:
    """Parse fetched bytes; raises FeedError when the document is not a feed or is refused."""
    if not isinstance(content, bytes):
        raise TypeError("parse_feed takes the fetched bytes, never a URL or path")
    now = now or datetime.now(UTC)
    if not content.strip():
        raise FeedError("empty", "the server returned an empty document")
    from newswatch import jsonfeed  # imported here: it builds on this module's helpers

    if jsonfeed.is_json(content, content_type):
        return jsonfeed.parse_json_feed(content, url=url, max_entries=max_entries, now=now)
    if _declares_entities(content, content_type):
        raise FeedError("refused", "the document declares XML entities or a DOCTYPE subset (refused for safety)")
    headers = {"content-type": content_type} if content_type else {}
    try:
        parsed = feedparser.parse(content, response_headers=headers, sanitize_html=True)
    except (ValueError, UnicodeError, OverflowError) as exc:  # e.g. &#xD800; or &#x110000; in the lenient parser
        raise FeedError("invalid", f"the document cannot be parsed: {type(exc).__name__}: {exc}"[:300]) from None
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        if content_type and "html" in content_type.lower():
            raise FeedError("not_a_feed", f"got an HTML page ({content_type}), not RSS or Atom")
        raise FeedError("not_a_feed", f"no RSS or Atom found: {problem or 'unknown format'}"[:300])
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    for entry in parsed.entries[:max_entries]:
        link = _entry_link(entry, url)
        if link is None or _SURROGATES.search(link):
            continue
        title = _text(entry.get("title", "")).replace("\n\n", " ")
        summary = _entry_summary(entry)
        guid = _entry_guid(entry.get("id"), link, title, summary)
        if guid in seen:
            continue
        seen.add(guid)
        entries.append(FeedEntry(guid, link, title, summary, _timestamp(entry, now)))
    ttl = parsed.feed.get("ttl")
    warning = None
    if parsed.get("bozo") and parsed.get("bozo_exception") is not None:
        warning = f"ill-formed feed parsed leniently: {parsed.bozo_exception}"[:300]
    return ParsedFeed(
        title=_text(parsed.feed.get("title", "")),
        entries=entries,
        ttl_minutes=int(ttl.strip()) if isinstance(ttl, str) and _TTL.fullmatch(ttl.strip()) else None,
        warning=warning,
    )
