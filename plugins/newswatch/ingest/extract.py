"""Turn a fetched article page (plus what its feed said) into clean text and metadata.

Everything here treats the page as hostile: bogus charsets, huge documents, broken markup,
canonical links pointing at other sites and dates in the future must not crash the pipeline
or poison what is stored. When the page gives nothing usable the feed entry is used instead.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import unicodedata
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import lxml.html
import trafilatura
from htmldate import find_date
from lxml.etree import ParserError
from lxml.html import HtmlElement
from trafilatura import metadata as trafilatura_metadata
from trafilatura import utils as trafilatura_utils

from newswatch.ingest.language import detect_language
from newswatch.text import normalize_text
from newswatch.urls import canonicalize_url, is_same_site, redact

__all__ = [
    "MAX_HTML_BYTES",
    "MIN_BODY_CHARS",
    "ExtractedArticle",
    "decode_html",
    "extract_article",
    "html_to_text",
    "normalize_for_matching",
]

LOGGER = logging.getLogger(__name__)

# trafilatura's cost grows faster than its input (2.8 MB took 8 s, 11 MB 158 s): parse at most this.
MAX_HTML_BYTES = 2 * 1024 * 1024
# Less main text than this means a paywall teaser, a consent wall or a script-only page.
MIN_BODY_CHARS = 200
# trafilatura's backup extractors (readability, jusText) double its cost and only ever rescue pages whose main
# pass finds little: the fast pass runs first, the full sequence only when it finds less text than this.
FULL_EXTRACTION_BELOW_CHARS = 500
# Clock skew we tolerate before calling a publication date "in the future".
FUTURE_TOLERANCE = timedelta(hours=1)
# How far into the document a <meta charset> is looked for.
META_SCAN_BYTES = 4096


# --------------------------------------------------------------------------------------------------
# Character set


def _canonical_codecs(labels: str) -> frozenset[str]:
    return frozenset(codecs.lookup(label).name for label in labels.split())


# The encodings a browser can decode (WHATWG Encoding Standard), as Python codec names. A label
# outside this set is ignored like an unknown one: Python also knows codecs that no page can
# legitimately use ("base64", "rot13", "unicode_escape", "utf-7", EBCDIC and DOS code pages).
_WEB_ENCODINGS = _canonical_codecs(
    "utf-8 utf-16-le utf-16-be utf-16 cp866 iso8859-2 iso8859-3 iso8859-4 iso8859-5 iso8859-6 "
    "iso8859-7 iso8859-8 iso8859-10 iso8859-13 iso8859-14 iso8859-15 iso8859-16 koi8-r koi8-u "
    "mac-roman mac-cyrillic cp874 cp1250 cp1251 cp1252 cp1253 cp1254 cp1255 cp1256 cp1257 cp1258 "
    "gbk gb18030 big5hkscs euc_jp euc_jis_2004 iso2022_jp cp932 cp949"
)
# WHATWG labels Python does not know.
_LABEL_ALIASES = {
    "unicode-1-1-utf-8": "utf-8",
    "iso-8859-8-i": "iso8859-8",
    "windows-874": "cp874",
    "dos-874": "cp874",
    "x-mac-roman": "mac-roman",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-mac-ukrainian": "mac-cyrillic",
    "x-gbk": "gbk",
    "x-euc-jp": "euc_jp",
    "windows-31j": "cp932",
    "x-sjis": "cp932",
    "windows-949": "cp949",
    **{f"x-cp125{i}": f"cp125{i}" for i in range(9)},
}
# Declarations browsers decode with a superset (WHATWG): pages labelled latin-1 routinely contain
# windows-1252 quotes and dashes, pages labelled shift_jis use Microsoft's extensions, and so on.
_SUPERSETS = {
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gbk",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([^\s;"']+)""", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta\b[^>]*?charset\s*=\s*["']?\s*([-\w.:+]+)""", re.IGNORECASE)


def _resolve_charset(label: str, *, in_document: bool = False) -> str | None:
    """Map a declared charset label to a Python codec a browser would use, or None if unusable."""
    label = label.strip().strip("\"'").lower()
    try:
        name = codecs.lookup(_LABEL_ALIASES.get(label, label)).name
    except LookupError:
        return None
    if in_document and name.startswith("utf-16"):
        return "utf-8"  # a meta tag readable as ASCII cannot be UTF-16 (WHATWG rule)
    name = _SUPERSETS.get(name, name)
    return name if name in _WEB_ENCODINGS else None


def _is_utf8(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as err:
        # A document cut at the size cap may end inside a multi-byte character.
        return err.reason == "unexpected end of data" and err.start >= len(content) - 3
    return True


def _detect_charset(content: bytes) -> str | None:
    """Guess an undeclared charset: valid UTF-8 first, then charset-normalizer's best web encoding.

    charset-normalizer ranks DOS and Mac code pages first on short Western texts (French in
    windows-1252 came out as cp775); those are skipped, and on a tie windows-1252 wins, as the
    browsers' default for undeclared Western pages.
    """
    if _is_utf8(content):
        return "utf-8"
    candidates = []
    for match in charset_normalizer.from_bytes(content):
        name = _resolve_charset(match.encoding)
        if name is not None:
            candidates.append((match.chaos, -match.coherence, name))
    if not candidates:
        return None
    best = candidates[0]
    if any(c[:2] == best[:2] and c[2] == "cp1252" for c in candidates):
        return "cp1252"
    return best[2]


def decode_html(content: bytes, content_type: str | None) -> str:
    """Decode a fetched page the way a browser would: BOM, HTTP header, <meta>, then detection.

    The BOM comes first, as in the WHATWG algorithm: it cannot be there by accident, while
    Content-Type headers are often a server default. Unknown or bogus charset names fall through
    to the next step; undecodable bytes become U+FFFD rather than an error.
    """
    if not content:
        return ""
    for bom, encoding in _BOMS:
        if content.startswith(bom):
            return content.decode(encoding, errors="replace")
    encoding = None
    if content_type and (match := _HEADER_CHARSET.search(content_type)):
        encoding = _resolve_charset(match.group(1))
    if encoding is None:
        for match in _META_CHARSET.finditer(content[:META_SCAN_BYTES]):
            encoding = _resolve_charset(match.group(1).decode("ascii"), in_document=True)
            if encoding is not None:
                break
    if encoding is None:
        encoding = _detect_charset(content) or "utf-8"
    return content.decode(encoding, errors="replace")


# --------------------------------------------------------------------------------------------------
# Text helpers

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
        "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
        "pre", "section", "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# "By Jane Doe" / "Par Jean Dupont": only words that cannot start a name ("De Gaulle", "von der Leyen").
_BYLINE_PREFIX = re.compile(r"^(?:by|par|por|door|przez)\s*:?\s+(?=\S)", re.IGNORECASE)
# Byline words trafilatura sometimes returns as the author when the name itself is missing.
_BYLINE_WORDS = frozenset({"by", "par", "por", "von", "de", "di", "da", "door", "av", "af", "przez", "from"})
_MAX_AUTHOR_CHARS = 100


def _squash(text: str | None) -> str:
    """Collapse whitespace runs to single spaces and drop NUL bytes (PostgreSQL rejects them)."""
    return " ".join((text or "").replace("\x00", "").split())


def _same_text(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and _squash(a).casefold() == _squash(b).casefold()


def _join_paragraphs(text: str) -> str:
    """Normalise whitespace inside paragraphs and separate paragraphs with one blank line."""
    paragraphs = (_squash(p) for p in _PARAGRAPH_BREAK.split(text.replace("\x00", "")))
    return "\n\n".join(p for p in paragraphs if p)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (a feed summary), paragraphs separated by blank lines."""
    if not fragment or not fragment.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(fragment.replace("\x00", ""), create_parent="div")
    except (ParserError, ValueError):
        return _join_paragraphs(re.sub(r"<[^>]*>", " ", fragment))
    for junk in root.xpath(".//script | .//style | .//noscript | .//template"):
        junk.drop_tree()
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # comments and processing instructions
        if element.tag in _BLOCK_TAGS:
            element.text = "\n\n" + (element.text or "")
            element.tail = "\n\n" + (element.tail or "")
        elif element.tag == "br":
            element.tail = "\n" + (element.tail or "")
    return _join_paragraphs(root.text_content())


def _block_text(element: HtmlElement) -> str:
    """Text of one block of trafilatura's output.

    Line breaks, list items and table rows become newlines; table cells are separated by a space
    ("1 Kyle Busch 5040"), never glued together ("Kyle Busch5040").
    """
    pieces: list[str] = []

    def walk(node: HtmlElement) -> None:
        if node.tag in ("lb", "item", "row", "head", "p", "list", "quote", "table"):
            pieces.append("\n")
        elif node.tag == "cell":
            pieces.append(" ")
        if node.text:
            pieces.append(node.text)
        for child in node:
            walk(child)
            if child.tail:
                pieces.append(child.tail)

    walk(element)
    lines = (_squash(line) for line in "".join(pieces).split("\n"))
    return "\n".join(line for line in lines if line)


# --------------------------------------------------------------------------------------------------
# Page metadata


@dataclass
class _PageMeta:
    """What the page's <head>, JSON-LD and first <h1> say about itself, before trafilatura runs."""

    title: str = ""
    og_title: str = ""
    h1: str = ""
    site_name: str = ""
    canonical_candidates: list[str] = field(default_factory=list)
    image: str = ""
    published: list[str] = field(default_factory=list)  # raw date strings, most trusted first
    updated: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    article_body: str = ""  # schema.org articleBody: the text of pages that render it with scripts


# <meta> names and properties that carry the publication / last-modification date, most specific
# first (Open Graph article, schema.org microdata, Dublin Core, Parse.ly, Sailthru, plain names).
_PUBLISHED_KEYS = (
    "article:published_time", "og:article:published_time", "datepublished", "dc.date.issued",
    "dcterms.issued", "dcterms.created", "parsely-pub-date", "sailthru.date", "publish-date",
    "publishdate", "pubdate", "date", "dc.date",
)
_UPDATED_KEYS = (
    "article:modified_time", "og:article:modified_time", "og:updated_time", "datemodified",
    "dcterms.modified", "dc.date.modified", "last-modified", "lastmod",
)  # fmt: skip
_AUTHOR_KEYS = ("author", "article:author", "dc.creator", "parsely-author", "sailthru.author", "byl")
_HAS_TAG = re.compile(r"<[a-zA-Z/]")
_LINE_BREAKS = re.compile(r"\s*\n\s*")
_JSONLD_ARTICLE = re.compile(r"article|posting|report|blog|news|webpage", re.IGNORECASE)
_MAX_JSONLD_CHARS = 200_000
_MAX_JSONLD_SCRIPTS = 20


def _jsonld_objects(tree: HtmlElement) -> Iterator[dict]:
    """Every JSON-LD object of the page (top level, lists and @graph), skipping broken scripts."""
    for script in tree.xpath('//script[@type="application/ld+json"]')[:_MAX_JSONLD_SCRIPTS]:
        text = (script.text or "").strip()
        if not text or len(text) > _MAX_JSONLD_CHARS:
            continue
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # broken, or nested deep enough to exhaust the stack
            continue
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, dict):
                yield item
                if isinstance(item.get("@graph"), list):
                    stack.extend(reversed(item["@graph"]))


def _jsonld_names(value: object) -> list[str]:
    """Names of a schema.org Person/Organization value: a string, an object or a list of them."""
    values = value if isinstance(value, list) else [value]
    names = []
    for item in values[:20]:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and _squash(name):
            names.append(_squash(name))
    return names


def _read_page_meta(tree: HtmlElement) -> _PageMeta:
    metas: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").strip().lower()
        content = _squash(meta.get("content"))
        if key and content:
            metas.setdefault(key, content)
    canonical = ""
    for link in tree.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            canonical = link.get("href", "").strip()
            break
    titles = tree.xpath("//head/title") or tree.xpath("//title")
    h1s = tree.xpath("//h1")
    page = _PageMeta(
        title=_squash(titles[0].text_content()) if titles else "",
        og_title=metas.get("og:title") or metas.get("twitter:title", ""),
        h1=_squash(h1s[0].text_content()) if h1s else "",
        site_name=metas.get("og:site_name") or metas.get("application-name", ""),
        canonical_candidates=[c for c in (canonical, metas.get("og:url", "")) if c],
        image=(
            metas.get("og:image:secure_url")
            or metas.get("og:image")
            or metas.get("twitter:image")
            or metas.get("twitter:image:src", "")
        ),
    )
    site_names = []
    for item in _jsonld_objects(tree):
        kind = item.get("@type")
        kinds = " ".join(k for k in (kind if isinstance(kind, list) else [kind]) if isinstance(k, str))
        if not _JSONLD_ARTICLE.search(kinds):
            continue
        for key, target in (("datePublished", page.published), ("dateModified", page.updated)):
            if isinstance(item.get(key), str):
                target.append(item[key])
        if not page.authors:
            page.authors = _jsonld_names(item.get("author"))
        if isinstance(item.get("articleBody"), str) and len(item["articleBody"]) > len(page.article_body):
            page.article_body = item["articleBody"]
        site_names += _jsonld_names(item.get("publisher"))
    page.site_name = page.site_name or (site_names[0] if site_names else "")
    if not page.authors:
        page.authors = [metas[k] for k in _AUTHOR_KEYS if k in metas][:1]
    page.published += [metas[k] for k in _PUBLISHED_KEYS if k in metas]
    page.updated += [metas[k] for k in _UPDATED_KEYS if k in metas]
    for time_tag in tree.xpath("//time[@datetime][@itemprop or @pubdate]")[:10]:
        itemprop = (time_tag.get("itemprop") or "").lower()
        target = page.updated if itemprop == "datemodified" else page.published
        if itemprop in ("datepublished", "datemodified", "datecreated") or time_tag.get("pubdate") is not None:
            target.append(time_tag.get("datetime", ""))
    return page


_TITLE_SEPARATORS = (" | ", " - ", " — ", " – ", " · ", " :: ")


def _split_page_title(meta: _PageMeta) -> tuple[str, str | None]:
    """Return the page title without its site-name part, and that site name when one was cut.

    Only cut when something independent confirms it: the cut-off part equals og:site_name, or
    the remaining part equals og:title or the first <h1>. Headlines containing dashes stay whole.
    """
    title = meta.title
    if not title:
        return meta.og_title or meta.h1, None
    references = (meta.og_title, meta.h1)
    for separator in _TITLE_SEPARATORS:
        head, found, tail = title.rpartition(separator)  # "Headline | Site"
        if found and (_same_text(tail, meta.site_name) or any(_same_text(head, r) for r in references)):
            return head.strip(), tail.strip()
        head, found, tail = title.partition(separator)  # "Site | Headline"
        if found and (_same_text(head, meta.site_name) or any(_same_text(tail, r) for r in references)):
            return tail.strip(), head.strip()
    return title, None


def _pick_canonical(candidates: list[str], url: str) -> str:
    """The page's own canonical URL if it is absolute http(s) on the same site, else the fetched URL.

    Trusting a canonical on another host would let any page impersonate (and deduplicate
    against) another site's article.
    """
    for candidate in candidates:
        try:
            parts = urlsplit(candidate)
        except ValueError:
            continue
        if parts.scheme.lower() in ("http", "https") and parts.netloc and is_same_site(candidate, url):
            return canonicalize_url(candidate)
    return canonicalize_url(url)


def _absolute_http_url(value: str, base: str) -> str | None:
    if not value:
        return None
    try:
        absolute = urljoin(base, value.strip())
        parts = urlsplit(absolute)
    except ValueError:
        return None
    return absolute if parts.scheme.lower() in ("http", "https") and parts.netloc else None


_AUTHOR_SEPARATORS = re.compile(r"\s*(?:[;,|/]|\band\b|&|\bund\b|\bet\b)\s*", re.IGNORECASE)


def _split_authors(author: str | None) -> list[str]:
    """Names from a byline or author field ("Jane Doe, John Smith", "By Jane Doe and John Smith").

    Byline words that come out as a name when the name itself is missing ("Par", "By") are dropped,
    and so are URLs (article:author is often a profile link) and over-long strings.
    """
    authors: list[str] = []
    for raw in _AUTHOR_SEPARATORS.split(author or ""):
        name = _squash(_BYLINE_PREFIX.sub("", _squash(raw)))
        too_long = len(name) > _MAX_AUTHOR_CHARS
        is_url = "://" in name or name.startswith("www.")
        if name and not (too_long or is_url) and name.casefold() not in _BYLINE_WORDS and name not in authors:
            authors.append(name)
    return authors


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (feeds and pages rarely mean local server time)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_LEADING_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d))?)?")
# A date in the article's path: /2022/08/25/, /2022-08-25-title, /20220825/.
_URL_DATE = re.compile(r"/((?:19|20)\d\d)([-/]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])(?=[/._-]|$)")


def _parse_page_date(value: str | None) -> datetime | None:
    """An ISO 8601 or RFC 2822 date string as an aware UTC datetime; None when unreadable."""
    value = _squash(value)
    if not value:
        return None
    try:
        return _as_utc(datetime.fromisoformat(value))
    except ValueError:
        pass
    try:
        return _as_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    if match := _LEADING_DATE.match(value):  # "2019-11-19 08:57:40 +0100", "2019-11-19T08:57"
        try:
            return datetime(*(int(g) for g in match.groups() if g is not None), tzinfo=UTC)
        except ValueError:
            return None
    return None


def _url_date(url: str) -> datetime | None:
    """The date in an article URL's path (midnight UTC), the weakest evidence of publication."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    if match := _URL_DATE.search(path):
        try:
            return datetime.combine(date(int(match[1]), int(match[3]), int(match[4])), time(), tzinfo=UTC)
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------------------------------
# Extraction


@dataclass
class ExtractedArticle:
    """Clean text and metadata of one article; ``method`` tells whether the page or the feed gave it.

    ``title`` and ``body`` keep the page's characters, NFC-normalised (a decomposed "é" and a
    precomposed one are stored alike); ``updated_at`` is set only when the page states a
    modification later than the publication.
    """

    title: str
    body: str
    language: str | None
    canonical_url: str | None
    published_at: datetime | None
    authors: list[str]
    site_name: str | None
    image_url: str | None
    is_partial: bool
    method: str
    updated_at: datetime | None = None


@dataclass
class _Page:
    title: str = ""
    body: str = ""
    method: str = "trafilatura"
    canonical_url: str | None = None
    published: list[datetime] = field(default_factory=list)  # candidates, most trusted first
    updated: list[datetime] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    site_name: str | None = None
    image_url: str | None = None


# Official embed codes of social-media posts. Quoted posts are part of the story (the text reads
# "a whole lot of people on Twitter pointed it out:" and quotes them), but trafilatura drops them
# with their "social"/"embed" wrappers.
_SOCIAL_EMBED = re.compile(
    r"\b(?:twitter-tweet|twitter-video|instagram-media|tiktok-embed|bluesky-embed|mastodon-embed|"
    r"threads-embed|reddit-embed-bq|fb-xfbml-parse-ignore)\b"
)


# Printable characters put around link text before trafilatura runs, so that links can be
# recognised in its output: asking trafilatura to keep links changes what it extracts, and it
# deletes unprintable (private-use) characters. A page is marked with the first pair it does not
# contain, so the stored text never loses a character of its own.
_MARK_PAIRS = (("⟦", "⟧"), ("⦃", "⦄"), ("⟬", "⟭"), ("⦅", "⦆"))


@dataclass(frozen=True)
class _Marks:
    start: str
    end: str

    @classmethod
    def for_page(cls, html: str) -> _Marks | None:
        for start, end in _MARK_PAIRS:
            if start not in html and end not in html:
                return cls(start, end)
        return None  # links are then not recognised, nothing else changes

    def strip(self, text: str) -> str:
        return text.replace(self.start, "").replace(self.end, "")

    def linked(self, text: str) -> list[str]:
        """The marked (link) pieces of ``text``."""
        return re.findall(f"{re.escape(self.start)}([^{re.escape(self.end)}]*){re.escape(self.end)}", text)


def _prepare_tree(tree: HtmlElement, marks: _Marks | None) -> HtmlElement:
    """A copy of the page made ready for trafilatura: link text marked, quoted social posts unwrapped."""
    tree = deepcopy(tree)
    if marks is not None:
        for link in tree.iter("a"):
            if not link.get("href"):
                continue
            # Each piece of text inside the link on its own: blocks inside links (<a><h3>…</h3></a>)
            # come out of trafilatura as blocks of their own.
            for node in link.iter():
                if node.text and node.text.strip():
                    node.text = marks.start + node.text + marks.end
                if node is not link and node.tail and node.tail.strip():
                    node.tail = marks.start + node.tail + marks.end
    for quote in tree.iter("blockquote"):
        if not _SOCIAL_EMBED.search(quote.get("class") or ""):
            continue
        text = _squash(quote.text_content())
        node = quote
        # Neutralise the post and the wrappers that hold nothing else ("social-media-embed").
        while node is not None and node.tag not in ("body", "html", "article", "main"):
            if _squash(node.text_content()) != text:
                break
            for attribute in ("class", "id", "style"):
                node.attrib.pop(attribute, None)
            node = node.getparent()
    return tree


def _parser_ran_out_of_memory() -> bool:
    """Whether libxml2 gave up on the last page for want of memory: trafilatura then reports no tree, as it
    does for markup that is not HTML, and only the parser's error log tells the two apart."""
    parser = getattr(trafilatura_utils, "HTML_PARSER", None)  # an internal of trafilatura: may go away
    return parser is not None and any(error.type_name == "ERR_NO_MEMORY" for error in parser.error_log)


def _main_text(tree: HtmlElement, marks: _Marks | None, url: str, *, fast: bool, precision: bool = True):
    """trafilatura over a marked copy of the page; ``fast`` skips its backup extractors, ``precision`` False
    is trafilatura's balanced mode."""
    return trafilatura.bare_extraction(
        _prepare_tree(tree, marks),
        url=url,
        fast=fast,
        # Metadata comes from _read_page_meta and htmldate below: trafilatura's own metadata pass
        # (categories, tags, licence, ...) costs a third of its time and we use little of it.
        with_metadata=False,
        # Precision mode prunes teasers, "related" boxes and link lists that balanced mode keeps;
        # it scores higher on the extraction benchmark (docs/benchmarks.md) at no cost in recall.
        favor_precision=precision,
        include_comments=False,
        include_tables=True,  # data tables are article content (results, standings, prices)
        include_images=False,  # captions are not article text
        include_links=False,
        include_formatting=False,
    )


def _byline_authors(tree: HtmlElement) -> list[str]:
    """Authors from the page's byline markup (trafilatura's heuristics), when no metadata names them."""
    try:
        return _split_authors(trafilatura_metadata.extract_author(tree))
    except Exception:  # an internal helper of trafilatura: a change there must not lose the article
        LOGGER.debug("byline extraction failed", exc_info=True)
        return []


def _htmldate(tree: HtmlElement, url: str, now: datetime) -> str | None:
    try:
        return find_date(
            tree,
            original_date=True,  # publication, not last modification
            extensive_search=True,
            url=url,
            # htmldate compares at day granularity and in naive local time: give it a day of slack
            # (pages ahead of UTC) and let _first_date apply the exact limit.
            max_date=(now + timedelta(days=1)).replace(tzinfo=None, hour=23, minute=59, second=59),
            outputformat="%Y-%m-%dT%H:%M:%S%z",  # keep the time and offset, not just the day
        )
    except Exception:
        LOGGER.debug("date search failed", exc_info=True)
        return None


def _parse_page(content: bytes, *, url: str, content_type: str | None, now: datetime) -> _Page | None:
    """Run trafilatura on the (capped) page; None when the page cannot be parsed at all."""
    html = decode_html(content[:MAX_HTML_BYTES], content_type).replace("\x00", "")
    tree = trafilatura.load_html(html)
    if tree is None:
        if _parser_ran_out_of_memory():
            raise MemoryError("the page's markup did not fit in memory")  # retried, not taken for a bad page
        return None
    meta = _read_page_meta(tree)
    title, title_site = _split_page_title(meta)
    marks = _Marks.for_page(html)
    document = _main_text(tree, marks, url, fast=True)
    if document is None or len(document.text or "") < FULL_EXTRACTION_BELOW_CHARS:
        document = _main_text(tree, marks, url, fast=False) or document
    balanced = None
    if document is None or len(document.text or "") < MIN_BODY_CHARS:
        # Precision mode can prune a whole article (paragraphs that are each one link, a layout it takes for
        # a link list) and, unlike balanced mode, has no rescue pass: balanced mode is asked before giving up
        # (used below, after the page's own JSON-LD text, which keeps its paragraphs).
        balanced = _main_text(tree, marks, url, fast=False, precision=False)
    page = _Page(
        title=title,
        canonical_url=_pick_canonical(meta.canonical_candidates, url),
        site_name=meta.site_name or title_site,
        image_url=_absolute_http_url(meta.image, url),
        published=[d for v in meta.published if (d := _parse_page_date(v))],
        updated=[d for v in meta.updated if (d := _parse_page_date(v))],
        authors=_split_authors("; ".join(meta.authors)),
    )
    if document is not None and document.body is not None:
        page.body = _assemble_body(document.body, (page.title, meta.og_title, meta.h1), marks)
    if not page.authors:
        page.authors = _byline_authors(tree)
    # Last, as htmldate may clean the tree it is given: the page's date by markup and text patterns.
    if found := _parse_page_date(_htmldate(tree, url, now)):
        page.published.append(found)
    if found := _url_date(page.canonical_url or url) or _url_date(url):
        page.published.append(found)
    # Script-rendered pages (an empty <div id="root">) often carry the text as JSON-LD articleBody.
    text = meta.article_body
    fallback = html_to_text(text) if _HAS_TAG.search(text) else _join_paragraphs(_LINE_BREAKS.sub("\n\n", text))
    if len(page.body) < MIN_BODY_CHARS and len(fallback) > len(page.body):
        page.body, page.method = fallback, "jsonld"
    if len(page.body) < MIN_BODY_CHARS and balanced is not None and balanced.body is not None:
        text = _assemble_body(balanced.body, (page.title, meta.og_title, meta.h1), marks)
        if len(text) > len(page.body):
            page.body, page.method = text, "trafilatura"
    return page


# Cross-links that interrupt a story: "Related: …", "READ MORE: …", "Lire aussi : …", and the same
# labels standing alone above a box of links ("DON'T MISS", "Related Articles").
_LINK_LABELS = (
    r"(?:related(?: articles?| stories| coverage| content| posts)?|see (?:also|more)|read (?:more|also|next)"
    r"|also read|more(?: on this| stories)?|recommended(?: for you)?|don'?t miss|you may also like"
    r"|lire (?:aussi|également)|à lire (?:aussi|également)|voir aussi|lesen sie (?:auch|mehr)|mehr zum thema"
    r"|auch interessant|leer más|lee también|ver también|leia também|veja também|leggi anche|vedi anche"
    r"|czytaj (?:też|także|również)|zobacz (?:też|także)|читайте также|смотрите также|lees ook|zie ook"
    r"|läs även|læs også|les også)"
)
_LINK_LABEL = re.compile(rf"^\W*{_LINK_LABELS}\s*[:»|>–—-]", re.IGNORECASE)
_LABEL_ONLY = re.compile(rf"^\W*{_LINK_LABELS}\W*$", re.IGNORECASE)
_WORD = re.compile(r"\w+")
# A line this short made only of a link is a headline pointing elsewhere when others follow it.
_LINK_LINE_MAX_WORDS = 15
_LINK_SHARE = 0.8


def _link_share(element: HtmlElement, marks: _Marks | None) -> tuple[float, int]:
    """Share of the element's visible characters inside links, and its number of words."""
    raw = "".join(element.itertext())
    text = _squash(marks.strip(raw) if marks is not None else raw)
    if not text or marks is None:
        return 0.0, len(_WORD.findall(text))
    linked = sum(len("".join(segment.split())) for segment in marks.linked(raw))
    visible = len(text) - text.count(" ")
    return min(linked / visible, 1.0), len(_WORD.findall(text))


def _is_link_line(element: HtmlElement, marks: _Marks | None) -> bool:
    share, words = _link_share(element, marks)
    return share >= _LINK_SHARE and 0 < words <= _LINK_LINE_MAX_WORDS


def _cross_links(blocks: list[HtmlElement], marks: _Marks | None) -> set[int]:
    """Indexes of blocks that are links to other pages rather than text of this one.

    Two signals, both general: a line introduced by a "Related:" / "Read more:" label and made
    mostly of a link, and a run of two or more consecutive short lines (or a list of them) made
    only of links: the "related stories" boxes that sit inside article bodies. A single linked
    sentence inside the text ("Clip the coupon on the product page") is kept. A short heading
    right before such a run ("DON'T MISS", "More on this") goes with it.
    """
    if marks is None:
        return set()
    drop: set[int] = set()
    link_lines = []
    for block in blocks:
        if block.tag == "list":
            items = [item for item in block if item.tag == "item"]
            link_lines.append(len(items) >= 2 and all(_is_link_line(item, marks) for item in items))
        else:
            link_lines.append(block.tag in ("p", "head", "quote") and _is_link_line(block, marks))
    for index, block in enumerate(blocks):
        text = _squash(marks.strip("".join(block.itertext())))
        labelled = (_LINK_LABEL.match(text) is not None and _link_share(block, marks)[0] >= 0.5) or (
            block.tag in ("p", "head") and _LABEL_ONLY.match(text) is not None
        )
        in_run = link_lines[index] and (
            block.tag == "list"
            or (index > 0 and link_lines[index - 1])
            or (index + 1 < len(blocks) and link_lines[index + 1])
        )
        if labelled or in_run:
            drop.add(index)
    for index in sorted(drop):
        previous = blocks[index - 1] if index > 0 and index - 1 not in drop else None
        if previous is not None and previous.tag in ("head", "p"):
            text = _squash(marks.strip("".join(previous.itertext())))
            if len(_WORD.findall(text)) <= 4 and not text.endswith((".", "!", "?", ":", "»", '"', "”")):
                drop.add(index - 1)
    return drop


def _assemble_body(body: HtmlElement, titles: tuple[str, ...], marks: _Marks | None = None) -> str:
    """Paragraphs of trafilatura's output without cross-links or a leading copy of the headline."""
    blocks = list(body)
    drop = _cross_links(blocks, marks)
    # Text can also sit between blocks (in the body's text and the blocks' tails): its own paragraph.
    pieces = [body.text]
    for index, block in enumerate(blocks):
        pieces += [None if index in drop else _block_text(block), block.tail]
    if marks is not None:
        pieces = [marks.strip(piece) if piece else piece for piece in pieces]
    paragraphs = [text for piece in pieces if piece and (text := _squash(piece) if "\n" not in piece else piece)]
    # trafilatura keeps the headline as the first block; the title is stored separately.
    if paragraphs and any(_same_text(paragraphs[0], t) for t in titles):
        paragraphs.pop(0)
    return "\n\n".join(paragraphs)


def _first_date(candidates: list[datetime | None], now: datetime) -> datetime | None:
    """First candidate that is not in the future: a future date is a bug or a trick to stay on top."""
    for candidate in candidates:
        if candidate is not None:
            value = _as_utc(candidate)
            if value <= now + FUTURE_TOLERANCE:
                return value
    return None


def extract_article(
    content: bytes | None,
    *,
    url: str,
    content_type: str | None = None,
    feed_title: str | None = None,
    feed_summary: str | None = None,
    feed_published: datetime | None = None,
    feed_updated: datetime | None = None,
    now: datetime | None = None,
) -> ExtractedArticle:
    """Extract an article from its page, falling back to the feed entry; never raises on bad pages.

    The feed summary is used (``is_partial=True``, ``method="feed"``) when there is no page, the
    page cannot be parsed, or its main text is under MIN_BODY_CHARS or shorter than the summary
    (paywall teasers, consent walls, script-only pages). The feed's title and date win over the
    page's: they are what the publisher syndicated. Publication dates come from the feed, then the
    page's structured metadata (JSON-LD, Open Graph, microdata), then htmldate's search of the page,
    then a date in the URL; no date in the future is kept.
    """
    now = _as_utc(now) if now is not None else datetime.now(UTC)
    page: _Page | None = None
    if content:
        try:
            page = _parse_page(content, url=url, content_type=content_type, now=now)
        except MemoryError:
            raise  # not bad markup: the worker's memory limit, the page is retried (newswatch.workers)
        except Exception:  # lxml/trafilatura on hostile markup: use the feed instead
            LOGGER.warning("article extraction failed, using the feed entry: %s", redact(url), exc_info=True)
    page = page or _Page(canonical_url=canonicalize_url(url))
    summary = html_to_text(feed_summary or "")
    if len(page.body) < MIN_BODY_CHARS or len(page.body) < len(summary):
        body, is_partial, method = summary, True, "feed"
    else:
        body, is_partial, method = page.body, False, page.method
    title = _nfc(_squash(feed_title) or page.title)
    body = _nfc(body)
    published = _first_date([feed_published, *page.published], now)
    updated = _first_date([feed_updated, *page.updated], now)
    if updated is not None and (published is None or updated <= published):
        updated = None
    return ExtractedArticle(
        title=title,
        body=body,
        language=detect_language(f"{title}\n\n{body}"),
        canonical_url=page.canonical_url,
        published_at=published,
        updated_at=updated,
        authors=[_nfc(a) for a in page.authors],
        site_name=_nfc(page.site_name) if page.site_name else None,
        image_url=page.image_url,
        is_partial=is_partial,
        method=method,
    )


def extract_job(job: dict) -> ExtractedArticle:
    """Runs in a worker process (``newswatch.workers``): ``extract_article`` over a fetched page, or over
    none (the feed's text only); ``job`` holds its arguments and ``content``."""
    content = job.pop("content")
    return extract_article(content, **job)


def warm_up() -> None:
    """Load what the first extractions would (language model, date parsers' locale data, lazy imports), so
    that a worker process does it once at start, not within its first items' time limits."""
    extract_article(b"<html><head><title>Warm up</title></head><body><article><h1>Warm up</h1><p>"
                    + b"Published on 3 March 2024. The extractor of newswatch warms up before its first page. " * 8
                    + b"</p><p>Mis \xc3\xa0 jour le 4 mars 2024.</p></article></body></html>",
                    url="http://127.0.0.1/warm-up")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def normalize_for_matching(text: str) -> str:
    """Fold stored text for comparisons (case, accents, typography): text.normalize_text."""
    return normalize_text(text)
