"""OPML 2.0 import and export of the feed list, the format every feed reader exchanges subscriptions in.

Import reads what Miniflux, FreshRSS, Feedly, Inoreader and others export: outlines nested in categories
(folders), ``text`` and/or ``title``, ``htmlUrl`` or not, the same feed listed under two categories, notes and
links that are not feeds, and readers' own namespaced attributes (FreshRSS's ``frss:ttl``; its web-scraping
sources are refused, not guessed at). Each outline gets one line in the report: ``added`` (under which name),
``skipped`` (why: already configured, a repeat, not a feed) or ``refused`` (why: the same check as a feed of
the file). Feeds are added through ``newswatch.configstore`` (audited, one short transaction each); nothing is
fetched: check a feed with ``newswatch.discovery`` or let the poller report it.

The file is parsed with lxml without entity expansion, network access or DTD loading, and a document with a
DOCTYPE is refused outright (OPML needs none; entity declarations are how XML bombs and external-entity reads
start). Size, outline count and nesting are capped.

Export writes OPML 2.0 that re-imports to the same feeds: ``text`` and ``title`` the name, ``language``, and
``newswatch:name``, ``newswatch:interval``, ``newswatch:enabled`` in newswatch's namespace for what OPML has
no attribute for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

from lxml import etree

from newswatch import configstore
from newswatch.config import Feed, Settings, load_settings, read_ui_rows
from newswatch.entries import feed_text
from newswatch.urls import canonicalize_url, redact

NAMESPACE = "https://github.com/newswatch/newswatch/opml"
FRESHRSS_NAMESPACE = "https://freshrss.org/opml"
MAX_BYTES = 5 * 1024 * 1024
MAX_OUTLINES = 10_000
# FreshRSS sources that are web pages scraped with XPath or JSON paths, not feeds (its docs/en/developers/OPML.md).
_SCRAPED_TYPES = {"html+xpath", "xml+xpath", "json+dotnotation", "html+xpath+json+dotnotation"}
_FEED_TYPES = {"", "rss", "atom", "rdf", "jsonfeed", "json", "feed"}
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")
_PROLOG_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class OpmlError(Exception):
    """The file cannot be read as OPML; ``str()`` is one line."""


@dataclass(frozen=True)
class Outline:
    """One ``<outline>`` of the body, in document order (``index`` from 1), with the categories above it."""

    index: int
    line: int | None
    categories: tuple[str, ...]
    text: str
    type: str
    xml_url: str | None
    html_url: str | None
    language: str | None
    children: int
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.text or (redact(self.xml_url) if self.xml_url else f"outline {self.index}")


@dataclass(frozen=True)
class OpmlDocument:
    title: str
    outlines: list[Outline]


@dataclass(frozen=True)
class ImportLine:
    """What became of one outline: ``status`` added / skipped / refused, and ``reason`` in a few words."""

    outline: int
    line: int | None
    label: str
    category: str
    status: Literal["added", "skipped", "refused"]
    reason: str
    name: str | None = None

    def __str__(self) -> str:
        where = f" [{self.category}]" if self.category else ""
        return f"#{self.outline} {self.label}{where}: {self.status}: {self.reason}"


@dataclass
class ImportReport:
    title: str
    lines: list[ImportLine] = field(default_factory=list)
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(1 for line in self.lines if line.status == status)

    @property
    def added(self) -> list[ImportLine]:
        return [line for line in self.lines if line.status == "added"]

    def summary(self) -> str:
        verb = "would be added" if self.dry_run else "added"
        return (f"{self.count('added')} {verb}, {self.count('skipped')} skipped, {self.count('refused')} refused "
                f"(of {len(self.lines)} outlines)")


# --- reading ----------------------------------------------------------------------------------------------------


def parse_opml(data: bytes) -> OpmlDocument:
    """The outlines of an OPML document (1.0 and 2.0 alike); OpmlError for anything else."""
    if len(data) > MAX_BYTES:
        raise OpmlError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    if not data.strip():
        raise OpmlError("the file is empty")
    if _PROLOG_DECLARATION.search(data[:64 * 1024]) or _PROLOG_DECLARATION.search(
            data[:64 * 1024].replace(b"\x00", b"")):
        raise OpmlError("the file declares a DOCTYPE or entities (refused for safety: OPML needs neither)")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                             huge_tree=False, remove_comments=True, remove_pis=True, recover=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"not well-formed XML: {str(exc).splitlines()[0][:200]}") from None
    if root.getroottree().docinfo.internalDTD is not None or root.getroottree().docinfo.doctype:
        raise OpmlError("the file declares a DOCTYPE (refused for safety: OPML needs none)")
    if etree.QName(root).localname != "opml":
        raise OpmlError(f"not OPML: the root element is <{etree.QName(root).localname}>, not <opml>")
    body = next((child for child in root if _local(child) == "body"), None)
    if body is None:
        raise OpmlError("not OPML: no <body>")
    head = next((child for child in root if _local(child) == "head"), None)
    title_element = next((child for child in head if _local(child) == "title"), None) if head is not None else None
    title = (title_element.text or "").strip() if title_element is not None else ""
    outlines: list[Outline] = []
    _walk(body, (), outlines)
    return OpmlDocument(title, outlines)


def _local(element: Any) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _walk(parent: Any, categories: tuple[str, ...], outlines: list[Outline]) -> None:
    for element in parent:
        if _local(element) != "outline":
            continue
        if len(outlines) >= MAX_OUTLINES:
            raise OpmlError(f"more than {MAX_OUTLINES} outlines")
        plain: dict[str, str] = {}
        extra: dict[str, str] = {}
        for key, value in element.attrib.items():
            qualified = etree.QName(key)
            if qualified.namespace is None:
                plain[qualified.localname] = value
            else:
                prefix = {FRESHRSS_NAMESPACE: "frss", NAMESPACE: "newswatch"}.get(qualified.namespace)
                extra[f"{prefix}:{qualified.localname}" if prefix else key] = value
        text = _plain(plain.get("text") or plain.get("title") or "")
        children = [child for child in element if _local(child) == "outline"]
        lower = {key.lower(): value.strip() for key, value in plain.items()}  # some readers write xmlurl
        outlines.append(Outline(
            index=len(outlines) + 1, line=element.sourceline, categories=categories, text=text,
            type=lower.get("type", ""), xml_url=lower.get("xmlurl") or None, html_url=lower.get("htmlurl") or None,
            language=lower.get("language") or None, children=len(children), attributes=extra))
        if children:
            _walk(element, (*categories, text or "untitled"), outlines)


def _plain(value: str) -> str:
    """An attribute as plain text: OPML allows encoded HTML markup in ``text``."""
    value = value.strip()
    return feed_text(value) if "<" in value or "&" in value else " ".join(value.split())


# --- importing --------------------------------------------------------------------------------------------------


def _feed_fields(outline: Outline, name: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": name, "url": outline.xml_url, "enabled": True}
    if outline.language and _LANGUAGE.match(outline.language):
        fields["language"] = outline.language.lower().replace("_", "-")
    ttl = outline.attributes.get("frss:ttl", "").strip()
    if re.fullmatch(r"-?\d+", ttl):  # FreshRSS: seconds between refreshes, negative when muted
        seconds = int(ttl)
        if seconds < 0:
            fields["enabled"] = False
        elif 60 <= seconds <= 7 * 86400:
            fields["interval"] = seconds
    interval = outline.attributes.get("newswatch:interval", "").strip()
    if interval.isdigit():
        fields["interval"] = int(interval)
    if outline.attributes.get("newswatch:enabled", "").strip().lower() == "false":
        fields["enabled"] = False
    return fields


def import_opml(data: bytes, *, actor: str, source: str = "OPML", dry_run: bool = False,
                config: str | os.PathLike[str] | None = None, database_url: str | None = None) -> ImportReport:
    """Add the feeds of an OPML file to the UI-managed part; one report line per outline.

    ``source`` names the file in the audit (``OPML import (subscriptions.opml)``). ``dry_run`` checks
    everything and writes nothing. OpmlError when the file is not OPML; ConfigError when the config file
    cannot be used.
    """
    document = parse_opml(data)
    report = ImportReport(document.title, dry_run=dry_run)
    settings = load_settings(config)
    rows = read_ui_rows(database_url)["feeds"]
    known: dict[str, tuple[str, str]] = {}  # canonical URL -> (name, source)
    for feed in settings.feeds:
        known.setdefault(_key(feed.url), (feed.name, "the file"))
    for row in rows:
        known.setdefault(_key(row["url"]), (row["name"], "the UI"))
    taken = {feed.name for feed in settings.feeds} | {row["name"] for row in rows}
    seen: dict[str, Outline] = {}
    detail = f"OPML import ({source})"[:200]
    for outline in document.outlines:
        line = _import_one(outline, known, taken, seen, actor=actor, detail=detail, dry_run=dry_run, config=config,
                           database_url=database_url)
        if line is not None:
            report.lines.append(line)
    return report


def _key(url: str) -> str:
    try:
        return canonicalize_url(url)
    except ValueError:
        return url.strip()


def _import_one(outline: Outline, known: dict[str, tuple[str, str]], taken: set[str], seen: dict[str, Outline], *,
                actor: str, detail: str, dry_run: bool, config: Any, database_url: str | None) -> ImportLine | None:
    def result(status: Literal["added", "skipped", "refused"], reason: str, name: str | None = None) -> ImportLine:
        return ImportLine(outline.index, outline.line, outline.label, "/".join(outline.categories), status, reason,
                          name)

    kind = outline.type.lower()
    if not outline.xml_url:
        if outline.children:
            return None  # a category: its outlines have lines of their own
        if kind == "include":
            return result("skipped", "an OPML include (another file, not followed)")
        if kind == "link":
            return result("skipped", "a link to a page, not a feed")
        return result("skipped", "not a feed (no xmlUrl)")
    if kind in _SCRAPED_TYPES:
        return result("refused", f"a FreshRSS {outline.type} source (a scraped page, not a feed): newswatch polls "
                                 "RSS, Atom, RDF and JSON Feed only")
    if kind not in _FEED_TYPES:
        return result("refused", f"type {outline.type!r} is not a feed type (rss, atom, JSON Feed)")
    key = _key(outline.xml_url)
    if key in seen:
        first = seen[key]
        return result("skipped", f"same feed as outline #{first.index} ({first.label})")
    seen[key] = outline
    if key in known:
        name, where = known[key]
        return result("skipped", f"already configured as feed {name!r} (in {where})")
    wanted = outline.attributes.get("newswatch:name") or outline.text
    name = configstore.suggest_name(wanted, outline.xml_url, taken)
    fields = _feed_fields(outline, name)
    try:
        if dry_run:
            configstore.validate("feed", fields)
        else:
            configstore.add_feed(fields["name"], fields["url"], language=fields.get("language"),
                                 interval=fields.get("interval"), enabled=fields["enabled"], actor=actor,
                                 detail=detail, config=config, database_url=database_url)
    except configstore.InvalidItem as exc:
        return result("refused", "; ".join(exc.problems) or str(exc))
    except configstore.NameTaken:  # taken since the import began (another import, a page): the next number
        taken.add(name)
        return _import_one(outline, known, taken, {k: v for k, v in seen.items() if k != key}, actor=actor,
                           detail=detail, dry_run=dry_run, config=config, database_url=database_url)
    taken.add(name)
    known[key] = (name, "this file")
    suffix = "" if fields["enabled"] else ", disabled (muted in the exporting reader)"
    return result("added", f"as {name!r}{suffix}", name)


# --- exporting --------------------------------------------------------------------------------------------------


def export_opml(feeds: Iterable[Feed], *, title: str = "newswatch feeds", now: datetime | None = None) -> bytes:
    """OPML 2.0 of ``feeds``, which :func:`import_opml` reads back to the same names, URLs, languages,
    intervals and enabled flags."""
    nsmap = {"newswatch": NAMESPACE}
    root = etree.Element("opml", version="2.0", nsmap=nsmap)
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = format_datetime(now or datetime.now(UTC), usegmt=True)
    body = etree.SubElement(root, "body")
    for feed in feeds:
        outline = etree.SubElement(body, "outline", type="rss", text=feed.name, title=feed.name, xmlUrl=feed.url)
        if feed.language:
            outline.set("language", feed.language)
        outline.set(f"{{{NAMESPACE}}}name", feed.name)
        if feed.interval is not None:
            outline.set(f"{{{NAMESPACE}}}interval", str(feed.interval))
        if not feed.enabled:
            outline.set(f"{{{NAMESPACE}}}enabled", "false")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def configured_feeds(settings: Settings, source: Literal["all", "file", "ui"] = "all") -> list[Feed]:
    """The feeds of merged settings (``load_settings(ui=True)``) from one source or both, for export."""
    return [feed for feed in settings.feeds if source == "all" or settings.source("feeds", feed.name) == source]
