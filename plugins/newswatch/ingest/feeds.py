"""Parse RSS/Atom bytes into entries with feedparser, defensively (JSON Feed: ``newswatch.ingest.jsonfeed``).

feedparser is only ever given bytes we fetched ourselves (it must never fetch: no timeouts, follows
redirects to loopback, reads local paths). Documents that declare entities are refused before parsing,
because feedparser's lenient fallback expands them (a 112 KB feed used 1.5 GB). Links are kept only
when they are http(s), and summaries are reduced to plain text, so nothing active reaches storage.

The entity guard also looks through encodings that hide ``<!ENTITY`` from a byte search (UTF-16/32,
EBCDIC, UTF-7), text that still looks like markup after conversion (double-escaped tags) is converted
once more, and GUIDs too long for the database index are replaced by their hash.

Innocent feeds are read as meant rather than refused or garbled: declarations are looked for only in the
prolog (an article about DTDs may quote ``<!ENTITY`` in CDATA), a UTF-16/32 byte order mark is honoured
without a declaration, a few stray bytes in a UTF-8 feed are replaced instead of re-decoding it all as
windows-1252, a DOCTYPE on the XML declaration's line no longer costs the HTML entities, character
references expat refuses (surrogate pairs written as two references, code points beyond Unicode) are
repaired, one entry's xml:base no longer leaks into the next (feedparser's end-tag handler is wrapped for
that), plain-text titles keep their text, and a GUID is an article URL only when it is an absolute
http(s) URL.
"""

from __future__ import annotations

import calendar
import codecs
import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import feedparser
from feedparser.mixin import _FeedParserMixin

from newswatch.ingest import jsonfeed
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
from newswatch.workers import Expected

_ENTITY_DECLARATION = re.compile(r"<!ENTITY|<!DOCTYPE[^>]*\[", re.IGNORECASE)
# What may come before the root element, skipped whole so that markup inside a comment, a processing
# instruction or a quoted literal of a declaration does not end the prolog early; the first other "<name"
# is the root element.
_PROLOG_TOKEN = re.compile(
    r"""<!--.*?(?:-->|\Z)|<\?.*?(?:\?>|\Z)|<!(?:[^>"']|"[^"]*"|'[^']*')*|<[A-Za-z0-9_:]""", re.DOTALL)
# Encodings in which "<!ENTITY" is not those ASCII bytes, and which feedparser would decode.
_HIDING_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "cp037", "cp500", "utf-7")
_CHARSET_PARAM = re.compile(r"charset\s*=\s*(\"[^\"]*\"|[^;\s]+)", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]{1,40})[\"']", re.IGNORECASE)
# Other declared charsets (UTF-7, whose "+ADw-" decodes to "<", UTF-16, EBCDIC, ...) get a decoded search.
_ASCII_SUPERSETS = frozenset({"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252", "iso8859-15"})
# Markup left in text after HTML conversion: a double-escaped tag such as &amp;lt;script&amp;gt;.
_CHARACTER_REFERENCE = re.compile(rb"&#(?:[xX]([0-9a-fA-F]+)|([0-9]+));")
# A DOCTYPE that does not start its own line (feedparser only removes one that does).
_INLINE_DOCTYPE = re.compile(rb"(?<=>)[ \t]*(?=<!DOCTYPE)", re.IGNORECASE)
_UTF_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
             (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]+")
_ASCII_BYTES = bytes(range(0x80))
# A document declared UTF-8 is repaired rather than re-decoded as windows-1252 when at least this share of its
# non-ASCII bytes are valid UTF-8: a windows-1252 document has almost none.
_UTF8_REPAIR_SHARE = 0.95
# The Windows code pages of non-Latin scripts that a document mislabelled UTF-8 is re-decoded from when detected:
# Cyrillic, Greek, Arabic. Others (KOI8-R, ISO 8859-x, Hebrew) were guessed wrong on short feeds, turning one
# mojibake into another; Latin-script code pages are left to feedparser's windows-1252.
_NON_LATIN_CODECS = frozenset({"cp1251", "cp1253", "cp1256"})
# Titles declared plain text that carry a closing tag, a tag with attributes or a comment are markup in practice.
_MARKUP_IN_TEXT = re.compile(r"</[A-Za-z][\w:-]*\s*>|<[A-Za-z][\w:-]*\s+[^<>]*=|<!--")
_TTL = re.compile(r"[0-9]{1,7}")
# PostgreSQL's btree entries are limited to ~2.7 kB: longer GUIDs are stored as their hash.


def _restoring_parent_base(unknown_endtag: Callable) -> Callable:
    """feedparser's end-tag handler, followed by restoring the enclosing element's xml:base.

    feedparser restores it only when it is non-empty; the document's own base is empty (it is parsed
    from bytes), so one entry's xml:base stayed in force for the entries after it.
    """
    @functools.wraps(unknown_endtag)
    def end_tag(self, tag: str) -> None:
        unknown_endtag(self, tag)
        if self.basestack:
            self.baseuri = self.basestack[-1]

    end_tag.restores_parent_base = True
    return end_tag


if not getattr(_FeedParserMixin.unknown_endtag, "restores_parent_base", False):
    _FeedParserMixin.unknown_endtag = _restoring_parent_base(_FeedParserMixin.unknown_endtag)


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


def _prolog(text: str) -> str:
    """The text before the root element, the only place where a document can declare entities.

    expat reads declarations only from the DOCTYPE, and feedparser's lenient parser only from before the
    first "<" and letter; this prolog reaches at least as far as both, since comments, processing
    instructions and the quoted literals of declarations are skipped whole (an unterminated one runs on).
    """
    for token in _PROLOG_TOKEN.finditer(text):
        if token.group()[1] not in "!?":
            return text[:token.start()]
    return text


def _declares_entities(content: bytes, content_type: str | None = None) -> bool:
    """True when the prolog declares entities or a DOCTYPE subset, in whatever encoding it is read.

    Text about entities in the body (an article on DTDs, in CDATA or a comment) is not a declaration.
    The byte search covers every ASCII-compatible encoding. Documents that may be read otherwise (NUL
    bytes as in UTF-16/32, no leading "<" as in EBCDIC, or a header or declaration naming a charset
    such as UTF-7 that writes markup differently) are decoded the ways feedparser could decode them,
    and searched again.
    """
    if _ENTITY_DECLARATION.search(_prolog(content.decode("latin-1"))):
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
        if _ENTITY_DECLARATION.search(_prolog(text)):
            return True
    return False


def _transcoded_from_bom(content: bytes, content_type: str | None) -> tuple[bytes, str | None]:
    """A UTF-16/32 document that says so only by its byte order mark, as UTF-8.

    The BOM is authoritative (XML 1.0, appendix F), but feedparser first tries the header's charset or
    UTF-8 and flags the document as ill-formed when it falls back to the BOM.
    """
    if _XML_ENCODING.search(content[:1024].replace(b"\x00", b"")):
        return content, content_type  # a declaration names the encoding: feedparser reads it
    for bom, encoding in _UTF_BOMS:
        if content.startswith(bom):
            try:
                text = content.decode(encoding)  # the codec reads and drops the BOM
            except UnicodeDecodeError:
                return content, content_type
            media_type = (content_type or "application/xml").split(";")[0].strip()
            return text.encode("utf-8"), f"{media_type}; charset=utf-8"
    return content, content_type


def _repaired_utf8(content: bytes) -> tuple[bytes, str | None]:
    """A UTF-8 document with a few stray bytes, with those bytes replaced by U+FFFD, and a note saying so.

    feedparser re-decodes a document that is not entirely UTF-8 as windows-1252, which turns every
    non-ASCII character of a UTF-8 feed into mojibake because of one bad byte. Only documents declared
    UTF-8 (or not declared at all: XML's default) whose non-ASCII bytes are nearly all valid UTF-8 are repaired:
    the caller has found the document mislabelled (``_mislabelled_utf8``).
    """
    text = content.decode("utf-8", errors="surrogateescape")  # each bad byte becomes one lone surrogate
    bad_bytes = sum(len(run) for run in _ESCAPED_BYTE.findall(text))
    non_ascii = len(content.translate(None, _ASCII_BYTES))  # deleting the ASCII bytes leaves the others
    if non_ascii - bad_bytes < _UTF8_REPAIR_SHARE * non_ascii:
        return content, None
    note = f"declared UTF-8 but {bad_bytes} byte(s) are not UTF-8: replaced with U+FFFD"
    return _ESCAPED_BYTE.sub("\ufffd", text).encode("utf-8"), note


def _mislabelled_utf8(content: bytes, content_type: str | None) -> bool:
    """True for a document declared UTF-8 (or not declared at all: XML's default) that is not valid UTF-8."""
    if not all(_normalised_charset(charset) == "utf-8" for charset in _declared_charsets(content, content_type)):
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _redecoded_non_latin(content: bytes) -> tuple[bytes, str | None]:
    """A Cyrillic, Greek or Arabic single-byte document mislabelled UTF-8, re-decoded, with a note.

    feedparser reads a document declared UTF-8 (or undeclared) that is not UTF-8 as windows-1252, which is
    right for Western European feeds and turns every letter of, say, a windows-1251 feed into mojibake
    ("Íîâîñòè"). Only when charset_normalizer reads the bytes as one of those scripts' codecs is the document
    re-decoded: a Latin-script guess (windows-1250 for German, say) changes nothing, since windows-1252 is
    at least as likely and feedparser already uses it. The caller has found the document mislabelled.
    """
    import charset_normalizer  # only here: the rare mislabelled feed pays its import

    best = charset_normalizer.from_bytes(content, cp_isolation=[*_NON_LATIN_CODECS, "cp1252", "cp1250"]).best()
    if best is None or _normalised_charset(best.encoding) not in _NON_LATIN_CODECS:
        return content, None
    return str(best).encode("utf-8"), f"declared UTF-8 but reads as {best.encoding}: re-decoded"


def _normalised_charset(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None


def _code_point(reference: re.Match[bytes]) -> int:
    hexadecimal, decimal = reference.groups()
    digits = (hexadecimal or decimal).lstrip(b"0") or b"0"
    if len(digits) > 8:  # beyond Unicode whatever the digits (and int() refuses very long decimal strings)
        return 0x110000
    return int(digits, 16 if hexadecimal else 10)


def _without_invalid_references(content: bytes) -> bytes:
    """The document with the character references expat refuses replaced (they made feedparser's lenient
    parser raise, refusing the whole feed): a surrogate pair written as two adjacent references becomes the
    one character it encodes (PHP writes emoji so), a lone surrogate or a code point beyond Unicode U+FFFD."""
    parts: list[bytes] = []
    copied_to = 0
    for reference in _CHARACTER_REFERENCE.finditer(content):
        if reference.start() < copied_to:
            continue  # the low half of a pair, already written
        code_point = _code_point(reference)
        if 0xD800 <= code_point <= 0xDBFF:
            low = _CHARACTER_REFERENCE.match(content, reference.end())
            if low and 0xDC00 <= _code_point(low) <= 0xDFFF:
                combined = 0x10000 + ((code_point - 0xD800) << 10) + (_code_point(low) - 0xDC00)
                parts += [content[copied_to:reference.start()], b"&#%d;" % combined]
                copied_to = low.end()
                continue
        if code_point > 0x10FFFF or 0xD800 <= code_point <= 0xDFFF:
            parts += [content[copied_to:reference.start()], b"&#65533;"]
            copied_to = reference.end()
    parts.append(content[copied_to:])
    return b"".join(parts)


def _readable(content: bytes, content_type: str | None) -> tuple[bytes, str | None, str | None]:
    """The document as feedparser reads it best, its content type, and a note on what was repaired.

    Each step fixes a way in which an innocent feed was refused or garbled: a UTF-16/32 byte order mark
    without a declaration, stray bytes in UTF-8, a Cyrillic, Greek or Arabic code page mislabelled UTF-8, a
    DOCTYPE on the XML declaration's line (feedparser leaves it in place and expat then drops every HTML entity
    as belonging to the external DTD), and character references that expat refuses (surrogates written as
    references, code points beyond Unicode).
    """
    content, content_type = _transcoded_from_bom(content, content_type)
    note = None
    if _mislabelled_utf8(content, content_type):  # looked at once: most feeds are valid UTF-8 and skip both steps
        content, note = _repaired_utf8(content)
        if note is None:
            content, note = _redecoded_non_latin(content)
    head_end = len(_prolog(content.decode("latin-1")))
    content = _INLINE_DOCTYPE.sub(b"\n", content[:head_end]) + content[head_end:]
    content = _without_invalid_references(content)
    return content, content_type, note


def _title(value: str, detail: dict | None) -> str:
    """One line of text from a title: markup is removed only from titles that are HTML.

    A plain-text title ("Use <canvas> now", or CDATA "the <script> tag") is kept as written: titles are
    stored as plain text and escaped wherever they are shown. One that carries a closing tag, a tag with
    attributes or a comment is markup whatever its declared type, and is converted like HTML.
    """
    value = value or ""
    if (detail or {}).get("type", "text/plain") == "text/plain" and not _MARKUP_IN_TEXT.search(value):
        return SURROGATES.sub("\ufffd", " ".join(value.replace("\x00", "").split()))
    return feed_text(value).replace("\n\n", " ")


def _timestamp(entry: feedparser.FeedParserDict, now: datetime) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                moment = datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError):
                continue
            return moment if moment <= now + SKEW else None
    return None


def _is_absolute_http(candidate: str | None) -> bool:
    """True for an http(s) URL that stands by itself, without a base to resolve it against."""
    parts = urlsplit((candidate or "").strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _entry_link(entry: feedparser.FeedParserDict, base: str) -> str | None:
    """The entry's article URL: its link, else an alternate link, else a GUID that is an absolute http(s) URL.

    feedparser also copies a permalink GUID (RSS: no isPermaLink="false"; any Atom id) into ``link``, and
    "article-123" resolved against the feed's address is an article URL that never existed. So ``link``
    counts only when a link element gave it, and a GUID only when it is absolute.
    """
    links = entry.get("links", [])
    link = entry.get("link")
    if link not in {candidate.get("href") for candidate in links}:
        link = None  # feedparser's copy of the GUID
    link = http_link(link, base)
    if link:
        return link
    for candidate in links:
        if candidate.get("rel", "alternate") == "alternate":
            link = http_link(candidate.get("href"), base)
            if link:
                return link
    guid = entry.get("id")
    return http_link(guid, base) if _is_absolute_http(guid) else None


def _entry_summary(entry: feedparser.FeedParserDict) -> str:
    candidates = [entry.get("summary", "")]
    candidates += [content.get("value", "") for content in entry.get("content", [])]
    return feed_text(max(candidates, key=len))


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
    if jsonfeed.is_json(content, content_type):
        return jsonfeed.parse_json_feed(content, url=url, max_entries=max_entries, now=now)
    if _declares_entities(content, content_type):
        raise FeedError("refused", "the document declares XML entities or a DOCTYPE subset (refused for safety)")
    content, content_type, repair = _readable(content, content_type)
    if _declares_entities(content, content_type):  # the repairs only rewrite text: a second look costs little
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
        if link is None or SURROGATES.search(link):
            continue
        title = _title(entry.get("title", ""), entry.get("title_detail"))
        summary = _entry_summary(entry)
        guid = entry_guid(entry.get("id"), link, title, summary)
        if guid in seen:
            continue
        seen.add(guid)
        entries.append(FeedEntry(guid, link, title, summary, _timestamp(entry, now)))
    ttl = parsed.feed.get("ttl")
    notes = [f"ill-formed feed parsed leniently: {parsed.bozo_exception}"] if (
        parsed.get("bozo") and parsed.get("bozo_exception") is not None) else []
    warning = "; ".join([*notes, *([repair] if repair else [])])[:300] or None
    return ParsedFeed(
        title=_title(parsed.feed.get("title", ""), parsed.feed.get("title_detail")),
        entries=entries,
        ttl_minutes=int(ttl.strip()) if isinstance(ttl, str) and _TTL.fullmatch(ttl.strip()) else None,
        warning=warning,
    )
