"""Parse RSS/Atom bytes into entries with feedparser, defensively.

feedparser is only ever given bytes we fetched ourselves (it must never fetch: no timeouts, follows
redirects to loopback, reads local paths). Documents that declare entities are refused before parsing,
because feedparser's lenient fallback expands them (a 112 KB feed used 1.5 GB). Links are kept only
when they are http(s), and summaries are reduced to plain text, so nothing active reaches storage.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import feedparser

from newswatch.extract import html_to_text

_ENTITY_DECLARATION = re.compile(rb"<!ENTITY|<!DOCTYPE[^>]*\[", re.IGNORECASE)
_SKEW = timedelta(hours=1)


class FeedError(Exception):
    """The document is not a usable feed; ``kind`` is a short label for the feed health table."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")


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


def _entry_summary(entry: feedparser.FeedParserDict) -> str:
    candidates = [entry.get("summary", "")]
    candidates += [content.get("value", "") for content in entry.get("content", [])]
    return html_to_text(max(candidates, key=len))


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
    if _ENTITY_DECLARATION.search(content):
        raise FeedError("refused", "the document declares XML entities or a DOCTYPE subset (refused for safety)")
    headers = {"content-type": content_type} if content_type else {}
    parsed = feedparser.parse(content, response_headers=headers, sanitize_html=True)
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        if content_type and "html" in content_type.lower():
            raise FeedError("not_a_feed", f"got an HTML page ({content_type}), not RSS or Atom")
        raise FeedError("not_a_feed", f"no RSS or Atom found: {problem or 'unknown format'}"[:300])
    entries: list[FeedEntry] = []
    seen: set[str] = set()
    for entry in parsed.entries[:max_entries]:
        link = _entry_link(entry, url)
        if link is None:
            continue
        title = html_to_text(entry.get("title", "")).replace("\n\n", " ")
        summary = _entry_summary(entry)
        guid = (entry.get("id") or link).strip()[:2000]
        if not guid:
            guid = hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()
        if guid in seen:
            continue
        seen.add(guid)
        entries.append(FeedEntry(guid, link, title, summary, _timestamp(entry, now)))
    ttl = parsed.feed.get("ttl")
    warning = None
    if parsed.get("bozo") and parsed.get("bozo_exception") is not None:
        warning = f"ill-formed feed parsed leniently: {parsed.bozo_exception}"[:300]
    return ParsedFeed(
        title=html_to_text(parsed.feed.get("title", "")),
        entries=entries,
        ttl_minutes=int(ttl) if isinstance(ttl, str) and ttl.strip().isdigit() else None,
        warning=warning,
    )
