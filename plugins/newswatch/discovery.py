"""Find a feed from a site's address and check it on the spot, before it is saved.

Adding a feed by hand goes wrong in dull ways: the home page instead of its feed, a typo, a feed that moved.
So a URL is fetched once, through the poller's :class:`newswatch.fetcher.Fetcher` (the same address policy,
timeouts, redirect limit and size cap: the person typing the URL is no more trusted than a feed), and:

* if it is a feed, it is parsed with the poller's parser (``feeds.parse_feed``) and its title and first
  entries are shown;
* if it is an HTML page, the feeds it advertises (``<link rel="alternate" type="application/rss+xml">``,
  ``atom+xml`` or ``feed+json``; relative links resolved against the page and its ``<base>``) are listed,
  and the first that parses is checked the same way (at most :data:`MAX_CANDIDATES_TRIED` more fetches).

Every failure is one line (``FeedCheck.error``), never an exception. No transaction is open here, and no host
slot taken: it is one request made by a person, not the poller's traffic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from newswatch.config import Network
from newswatch.entries import FeedError
from newswatch.feeds import parse_feed
from newswatch.fetcher import Fetcher, FetchError
from newswatch.urls import redact

# What a page may advertise as its feed, and the short name shown for each type.
FEED_TYPES = {"application/rss+xml": "rss", "application/atom+xml": "atom", "application/feed+json": "json"}
ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml, "
          "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.9, text/html;q=0.8, */*;q=0.5")
MAX_CANDIDATES_TRIED = 3
MAX_HTML_SCANNED = 2 * 1024 * 1024  # link elements sit in the head: a larger page is read this far
_CHARSET = re.compile(rb"charset=[\"']?([A-Za-z0-9_.:-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Candidate:
    """A feed a page advertises."""

    url: str
    title: str
    type: str  # rss, atom or json


@dataclass(frozen=True)
class EntryPreview:
    title: str
    url: str
    published: datetime | None


@dataclass(frozen=True)
class FeedCheck:
    """What fetching ``requested`` found.

    ``url`` is the feed to save (the URL itself, the page's feed, or where a permanent redirect led), ``ok``
    whether it was fetched and parsed as a feed; then ``title`` and the first ``entries``. ``error`` is one
    line when it was not. ``candidates`` lists what the page advertised, in its order, when it was a page.
    """

    requested: str
    ok: bool
    url: str | None = None
    title: str = ""
    entries: tuple[EntryPreview, ...] = ()
    error: str | None = None
    warning: str | None = None
    candidates: tuple[Candidate, ...] = ()

    def summary(self) -> str:
        """One line: the feed and its entry count, or the error."""
        if not self.ok:
            return f"{redact(self.requested)}: {self.error}"
        found = f" (found on {redact(self.requested)})" if self.url != self.requested else ""
        return f"{redact(self.url or '')}{found}: {self.title or 'untitled feed'}, {len(self.entries)} entries shown"


class _AlternateLinks(HTMLParser):
    """Collects ``<link rel="alternate" type="…feed type…">`` and the first ``<base href>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.links: list[tuple[str, str, str]] = []  # (href, type, title)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key.lower(): (value or "").strip() for key, value in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag == "link":
            rels = values.get("rel", "").lower().split()
            kind = values.get("type", "").lower().split(";")[0].strip()
            if "alternate" in rels and kind in FEED_TYPES and values.get("href"):
                self.links.append((values["href"], FEED_TYPES[kind], values.get("title", "")))

    handle_startendtag = handle_starttag


def _decode(content: bytes, content_type: str | None) -> str:
    match = _CHARSET.search((content_type or "").encode("latin-1", "replace")) or _CHARSET.search(content[:2048])
    charset = match.group(1).decode("ascii") if match else "utf-8"
    try:
        return content.decode(charset, errors="replace")
    except LookupError:
        return content.decode("utf-8", errors="replace")


def advertised_feeds(content: bytes, page_url: str, content_type: str | None = None) -> list[Candidate]:
    """The feeds an HTML page advertises, absolute http(s) URLs, in page order, without repeats."""
    parser = _AlternateLinks()
    try:
        parser.feed(_decode(content[:MAX_HTML_SCANNED], content_type))
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser copes with almost anything; what it read so far counts
        pass
    base = page_url
    if parser.base:
        joined = urljoin(page_url, parser.base)
        if urlsplit(joined).scheme in ("http", "https"):
            base = joined
    found: dict[str, Candidate] = {}
    for href, kind, title in parser.links:
        url = urljoin(base, href)
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname and url not in found:
            found[url] = Candidate(url, title, kind)
    return list(found.values())


def _looks_like_html(content: bytes, content_type: str | None) -> bool:
    if content_type and "html" in content_type.lower():
        return True
    head = content[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<head" in head


@dataclass(frozen=True)
class _Fetched:
    keep: str  # the URL to save: where permanent redirects led, else the one asked for (a 302 is temporary)
    base: str  # the URL the body came from, against which its relative links resolve
    content: bytes
    content_type: str | None


def _fetch(url: str, network: Network) -> _Fetched | str:
    """One GET: what came back, or the error line."""
    try:
        with Fetcher(network) as fetcher:
            result = fetcher.get(url, accept=ACCEPT, max_bytes=network.max_feed_bytes)
    except FetchError as exc:
        return f"{exc.kind}: {exc.message}"
    return _Fetched(result.permanent_url or url, result.url, result.content, result.content_type)


def _parsed(requested: str, fetched: _Fetched, entries: int, candidates: tuple[Candidate, ...] = ()) -> FeedCheck:
    try:
        parsed = parse_feed(fetched.content, url=fetched.base, content_type=fetched.content_type,
                            max_entries=max(entries * 4, 20), now=datetime.now(UTC))
    except FeedError as exc:
        return FeedCheck(requested, False, fetched.keep, error=f"{exc.kind}: {exc.message}", candidates=candidates)
    preview = tuple(EntryPreview(entry.title, entry.url, entry.published_at) for entry in parsed.entries[:entries])
    return FeedCheck(requested, True, fetched.keep, parsed.title, preview, warning=parsed.warning,
                     candidates=candidates)


def check_feed(url: str, network: Network, *, entries: int = 5) -> FeedCheck:
    """Fetch ``url`` and say whether it is, or advertises, a feed that parses; its title and first entries.

    ``network`` is the configuration's (``settings.network``): a private address is refused unless
    ``network.allow_networks`` admits it, as for polling.
    """
    url = url.strip()
    parts = urlsplit(url) if re.match(r"^https?://", url, re.IGNORECASE) else None
    try:
        host = parts.hostname if parts else None
    except ValueError:
        host = None
    if not host:
        return FeedCheck(url, False, error="not an http:// or https:// URL")
    fetched = _fetch(url, network)
    if isinstance(fetched, str):
        return FeedCheck(url, False, error=fetched)
    direct = _parsed(url, fetched, entries)
    if direct.ok or not _looks_like_html(fetched.content, fetched.content_type):
        return direct
    candidates = tuple(advertised_feeds(fetched.content, fetched.base, fetched.content_type))
    if not candidates:
        return FeedCheck(url, False, error='an HTML page that advertises no feed (no <link rel="alternate" '
                                           'type="application/rss+xml">, atom+xml or feed+json): give the feed\'s '
                                           "own URL")
    failures = []
    for candidate in candidates[:MAX_CANDIDATES_TRIED]:
        found = _fetch(candidate.url, network)
        if not isinstance(found, str):
            check = _parsed(url, found, entries, candidates)
            if check.ok:
                return check
            found = check.error or "not a feed"
        failures.append(f"{redact(candidate.url)}: {found}")
    return FeedCheck(url, False, candidates[0].url, error="the feeds the page advertises do not work: "
                     + "; ".join(failures), candidates=candidates)
