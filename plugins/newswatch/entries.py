"""What a feed yields, whatever its format: entries, the parse result and its error, and the field helpers
(text, links, GUIDs) that RSS/Atom (``newswatch.feeds``) and JSON Feed (``newswatch.jsonfeed``) share."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urljoin, urlsplit

from newswatch.text import without_controls

_TAG_LIKE = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>|<!--")
SURROGATES = re.compile("[\ud800-\udfff]")
_MAX_TEXT_PASSES = 4
MAX_GUID_BYTES = 2000
SKEW = timedelta(hours=1)  # a date further in the future than this is a clock error or a trick: dropped


class FeedError(Exception):
    """The document is not a usable feed; ``kind`` is a short label for the feed health table."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        self.message = without_controls(message)  # it may quote the server: never an escape sequence
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


def feed_text(value: str) -> str:
    """Plain text from a feed field: HTML converted, again while markup survives (escaped markup), and
    whatever still looks like a tag after a few rounds is removed."""
    # Imported here: only parsing (in worker processes, which have it loaded) needs the extraction stack
    # (trafilatura, lxml, numpy), not the task processes that import this module for its types.
    from newswatch.extract import html_to_text

    text = html_to_text(value or "")
    for _ in range(_MAX_TEXT_PASSES):
        if not _TAG_LIKE.search(text):
            break
        text = html_to_text(text)
    while _TAG_LIKE.search(text):  # each round removes characters, so this ends
        text = _TAG_LIKE.sub("", text)
    return SURROGATES.sub("\ufffd", text)


def http_link(candidate: str | None, base: str) -> str | None:
    if not candidate:
        return None
    link = urljoin(base, candidate.strip())
    parts = urlsplit(link)
    if parts.scheme in ("http", "https") and parts.hostname:
        return link
    return None


def entry_guid(raw_id: str | None, link: str, title: str, summary: str) -> str:
    """The entry's key in ``feed_entries``: its id, else its link; hashed when too long for the index, and
    derived from its text when there is nothing else."""
    guid = SURROGATES.sub("\ufffd", (raw_id or link).strip())
    if len(guid.encode("utf-8")) > MAX_GUID_BYTES:
        guid = "sha256:" + hashlib.sha256(guid.encode("utf-8")).hexdigest()
    if not guid:
        guid = hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest()
    return guid
