"""What rules are matched against: `Document`, and `prepare`, which tokenises and stems it once for all rules.

The other side of matching from the query language: an article's text folded (`normalize_text`), cut into
tokens and stemmed in the article's language, with the caches that make this cost once per article
(`prepare`) and once per word (stems). Separate so that the stemming machinery and its state (Snowball
stemmers, their lock, the stem caches) live in one place, used by the syntax tree and by `RuleSet`.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import snowballstemmer

from newswatch.text import normalize_text


@dataclass(frozen=True)
class Document:
    """What a rule is matched against; frozen so it can key the token cache."""

    title: str
    body: str
    language: str | None = None  # ISO 639-1 ("fr", "en", "de"); None = unknown
    feed: str = ""
    site: str = ""  # host of the article URL ("www.reuters.com"); a whole URL is accepted too
    # Similarity of the article's meaning to the vectors of meaning terms (about:, like:), by term key
    # (`meaning_key`): computed in PostgreSQL by the caller (newswatch.alerts.watches), which may leave out
    # similarities far below any threshold; a term whose key is absent does not match.
    meanings: tuple[tuple[str, float], ...] = ()


_TOKEN = re.compile(r"\w+")


def _tokens(text: str) -> list[str]:
    """Words of already-normalised text; apostrophes and dashes separate."""
    return _TOKEN.findall(text)


def _site(value: str) -> str:
    """Host of a host name or URL: lowercase, no port, no trailing dot, IDNA (punycode) form."""
    value = value.strip()
    if "://" in value:
        try:
            value = urlsplit(value).hostname or ""
        except ValueError:
            return ""
    else:
        value = value.split("/", 1)[0].rsplit("@", 1)[-1]
        if value.count(":") == 1:
            value = value.split(":", 1)[0]
    value = value.casefold().rstrip(".")
    try:
        return value.encode("idna").decode("ascii")
    except UnicodeError:
        return value


def _language(value: str | None) -> str:
    return (value or "").strip().lower().replace("_", "-")


# --- stemming ----------------------------------------------------------------

_ISO_TO_SNOWBALL = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish",
    "de": "german", "el": "greek", "en": "english", "es": "spanish",
    "et": "estonian", "eu": "basque", "fa": "persian", "fi": "finnish",
    "fr": "french", "ga": "irish", "hi": "hindi", "hu": "hungarian",
    "hy": "armenian", "id": "indonesian", "it": "italian", "lt": "lithuanian",
    "nb": "norwegian", "ne": "nepali", "nl": "dutch", "nn": "norwegian",
    "no": "norwegian", "pl": "polish", "pt": "portuguese", "ro": "romanian",
    "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil",
    "tr": "turkish", "yi": "yiddish",
}  # fmt: skip
_FALLBACK_ALGORITHM = "english"

# Snowball stemmer objects keep state between calls, so share them under a lock.
_STEM_LOCK = threading.Lock()


@functools.cache
def _algorithm(language: str | None) -> str:
    """Snowball algorithm for an ISO code like "fr" or "fr-CA"; English if unknown."""
    if not language:
        return _FALLBACK_ALGORITHM
    code = language.strip().lower().replace("_", "-").split("-")[0]
    name = _ISO_TO_SNOWBALL.get(code, code)
    return name if name in snowballstemmer.algorithms() else _FALLBACK_ALGORITHM


@functools.cache
def _stemmer(algorithm: str) -> snowballstemmer.stemmer:
    # With PyStemmer installed (a requirement) snowballstemmer hands out its C stemmers: the same Snowball
    # algorithms, 15-50 times faster than the pure-Python port.
    return snowballstemmer.stemmer(algorithm)


def _stem_words(algorithm: str, words: list[str]) -> list[str]:
    with _STEM_LOCK:
        return _stemmer(algorithm).stemWords(words)


# Stems of document words, per algorithm. News vocabulary repeats a lot from one article to the next, so
# this cuts the cost of preparing an article several times; cleared when full (it is only a memo).
_DOCUMENT_STEMS: dict[str, dict[str, str]] = {}
_DOCUMENT_STEMS_MAX = 200_000


def _stems_of(algorithm: str, words: list[str]) -> dict[str, str]:
    cache = _DOCUMENT_STEMS.setdefault(algorithm, {})
    found: dict[str, str] = {}
    missing: list[str] = []
    for word in words:
        stem = cache.get(word)
        if stem is None:
            missing.append(word)
        else:
            found[word] = stem
    if missing:
        new = dict(zip(missing, _stem_words(algorithm, missing), strict=True))
        if len(cache) + len(new) > _DOCUMENT_STEMS_MAX:
            cache.clear()
        cache.update(new)
        found.update(new)
    return found


@functools.lru_cache(maxsize=65536)
def _stem(algorithm: str, word: str) -> str:
    """Stem of one query word; cached because every document re-asks it."""
    return _stem_words(algorithm, [word])[0]


# --- prepared documents ------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PreparedDocument:
    """A document tokenised and stemmed once, shared by every rule.

    Token positions: the title's tokens are 0 .. title_end-1, position title_end is an empty gap
    (so phrases and NEAR never span title and body) and the body's tokens follow it.
    """

    algorithm: str
    by_token: dict[str, frozenset[int]]
    by_stem: dict[str, frozenset[int]]
    # Results per query word/term/regex, so what many rules share is computed once per document.
    memo: dict[object, object] = field(default_factory=dict)
    title_end: int = 0
    title: str = ""  # normalised text, for regexes
    body: str = ""
    feed: str = ""  # casefolded
    site: str = ""  # see _site
    language: str = ""  # see _language; "" when unknown
    meanings: dict[str, float] = field(default_factory=dict)  # see Document.meanings

    def sorted_tokens(self) -> list[str]:
        """The distinct tokens in order, for prefix look-ups by bisection (built once, on demand)."""
        found = self.memo.get(_SORTED)
        if found is None:
            found = self.memo[_SORTED] = sorted(self.by_token)
        return found


_SORTED = "\x02sorted"  # memo key, unlike any word, term or regex key


def _index(items: list[str]) -> dict[str, frozenset[int]]:
    positions: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        found = positions.get(item)
        if found is None:
            positions[item] = [i]
        else:
            found.append(i)
    return {item: frozenset(where) for item, where in positions.items()}


@functools.lru_cache(maxsize=256)
def prepare(doc: Document) -> PreparedDocument:
    """Tokenise and stem `doc` once; cached so N rules cost one tokenisation."""
    algorithm = _algorithm(doc.language)
    title, body = normalize_text(doc.title), normalize_text(doc.body)
    title_tokens = _tokens(title)
    # A position gap between title and body keeps phrases from spanning both.
    tokens = [*title_tokens, "", *_tokens(body)]
    by_token = _index(tokens)
    by_token.pop("", None)
    by_stem: dict[str, frozenset[int]] = {}
    for token, stem in _stems_of(algorithm, list(by_token)).items():
        found = by_stem.get(stem)
        by_stem[stem] = by_token[token] if found is None else found | by_token[token]
    return PreparedDocument(
        algorithm,
        by_token,
        by_stem,
        title_end=len(title_tokens),
        title=title,
        body=body,
        feed=(doc.feed or "").strip().casefold(),
        site=_site(doc.site or ""),
        language=_language(doc.language),
        meanings=dict(doc.meanings),
    )
