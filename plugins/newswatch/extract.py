"""Turn a fetched article page (plus what its feed said) into clean text and metadata.

Everything here treats the page as hostile: bogus charsets, huge documents, broken markup,
canonical links pointing at other sites and dates in the future must not crash the pipeline
or poison what is stored. When the page gives nothing usable the feed entry is used instead.
"""

from __future__ import annotations

import codecs
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import charset_normalizer
import lxml.html
import trafilatura
from lxml.etree import ParserError
from lxml.html import HtmlElement

from newswatch.language import detect_language
from newswatch.urls import canonicalize_url, is_same_site

__all__ = [
    "MAX_HTML_BYTES",
    "MIN_BODY_CHARS",
    "ExtractedArticle",
    "decode_html",
    "extract_article",
    "html_to_text",
]

LOGGER = logging.getLogger(__name__)

# trafilatura's cost grows faster than its input (2.8 MB took 8 s, 11 MB 158 s): parse at most this.
MAX_HTML_BYTES = 2 * 1024 * 1024
# Less main text than this means a paywall teaser, a consent wall or a script-only page.
MIN_BODY_CHARS = 200
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
    """Text of one block of trafilatura's output; line breaks and list items become newlines."""
    pieces: list[str] = []

    def walk(node: HtmlElement) -> None:
        if node.tag in ("lb", "item"):
            pieces.append("\n")
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
    """What the page's <head> (and first <h1>) says about itself, before trafilatura runs."""

    title: str = ""
    og_title: str = ""
    h1: str = ""
    site_name: str = ""
    canonical_candidates: list[str] = field(default_factory=list)
    image: str = ""


def _read_page_meta(tree: HtmlElement) -> _PageMeta:
    metas: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = (meta.get("property") or meta.get("name") or "").strip().lower()
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
    return _PageMeta(
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


def _split_authors(author: str | None) -> list[str]:
    """trafilatura joins authors with "; "; drop byline words it sometimes returns ("Par", "By")."""
    authors: list[str] = []
    for raw in (author or "").split(";"):
        name = _squash(_BYLINE_PREFIX.sub("", _squash(raw)))
        too_long = len(name) > _MAX_AUTHOR_CHARS
        if name and not too_long and name.casefold() not in _BYLINE_WORDS and name not in authors:
            authors.append(name)
    return authors


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (feeds and pages rarely mean local server time)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_page_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Extraction


@dataclass
class ExtractedArticle:
    """Clean text and metadata of one article; ``method`` tells whether the page or the feed gave it."""

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


@dataclass
class _Page:
    title: str = ""
    body: str = ""
    canonical_url: str | None = None
    published_at: datetime | None = None
    authors: list[str] = field(default_factory=list)
    site_name: str | None = None
    image_url: str | None = None


def _parse_page(content: bytes, *, url: str, content_type: str | None, now: datetime) -> _Page | None:
    """Run trafilatura on the (capped) page; None when the page cannot be parsed at all."""
    html = decode_html(content[:MAX_HTML_BYTES], content_type).replace("\x00", "")
    tree = trafilatura.load_html(html)
    if tree is None:
        return None
    meta = _read_page_meta(tree)
    title, title_site = _split_page_title(meta)
    document = trafilatura.bare_extraction(
        tree,  # copied by trafilatura, not modified
        url=url,
        with_metadata=True,
        include_comments=False,
        include_tables=False,
        include_images=False,
        include_links=False,
        include_formatting=False,
        date_extraction_params={
            "original_date": True,  # publication, not last modification
            "extensive_search": True,
            # htmldate compares at day granularity and in naive local time: give it a day of slack
            # (pages ahead of UTC) and let _first_date apply the exact limit.
            "max_date": (now + timedelta(days=1)).replace(tzinfo=None, hour=23, minute=59, second=59),
            "outputformat": "%Y-%m-%dT%H:%M:%S%z",  # keep the time and offset, not just the day
        },
    )
    page = _Page(
        title=title,
        canonical_url=_pick_canonical(meta.canonical_candidates, url),
        site_name=meta.site_name or title_site,
        image_url=_absolute_http_url(meta.image, url),
    )
    if document is None:
        return page
    page.title = page.title or _squash(document.title)
    page.published_at = _parse_page_date(document.date)
    page.authors = _split_authors(document.author)
    if document.body is not None:
        paragraphs = [text for block in document.body if (text := _block_text(block))]
        # trafilatura keeps the headline as the first block; the title is stored separately.
        if paragraphs and any(_same_text(paragraphs[0], t) for t in (page.title, meta.og_title, meta.h1)):
            paragraphs.pop(0)
        page.body = "\n\n".join(paragraphs)
    return page


def _redact(url: str) -> str:
    """The URL without query or fragment, for logs: query strings can carry tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


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
    now: datetime | None = None,
) -> ExtractedArticle:
    """Extract an article from its page, falling back to the feed entry; never raises on bad pages.

    The feed summary is used (``is_partial=True``, ``method="feed"``) when there is no page, the
    page cannot be parsed, or its main text is under MIN_BODY_CHARS or shorter than the summary.
    The feed's title and date win over the page's: they are what the publisher syndicated.
    """
    now = _as_utc(now) if now is not None else datetime.now(UTC)
    page: _Page | None = None
    if content:
        try:
            page = _parse_page(content, url=url, content_type=content_type, now=now)
        except Exception:  # lxml/trafilatura on hostile markup: use the feed instead
            LOGGER.warning("article extraction failed, using the feed entry: %s", _redact(url), exc_info=True)
    summary = html_to_text(feed_summary or "")
    page_body = page.body if page is not None else ""
    if len(page_body) < MIN_BODY_CHARS or len(page_body) < len(summary):
        body, is_partial, method = summary, True, "feed"
    else:
        body, is_partial, method = page_body, False, "trafilatura"
    title = _squash(feed_title) or (page.title if page is not None else "")
    return ExtractedArticle(
        title=title,
        body=body,
        language=detect_language(f"{title}\n\n{body}"),
        canonical_url=page.canonical_url if page is not None else canonicalize_url(url),
        published_at=_first_date([feed_published, page.published_at if page else None], now),
        authors=page.authors if page is not None else [],
        site_name=page.site_name if page is not None else None,
        image_url=page.image_url if page is not None else None,
        is_partial=is_partial,
        method=method,
    )
