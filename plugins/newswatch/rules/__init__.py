"""Keyword rules for alerts: a tiny boolean query language over news articles.

A rule is written once in the config and matched against every incoming
article, so it is parsed once (`compile_rule`) and syntax errors point at the
character that is wrong. docs/rules.md is the user guide; this is the summary.

Language
--------
``syria``
    A bare word. Matches a token of the title or body that is the same word,
    or has the same Snowball stem in the article's language (English when the
    language is unknown or has no stemmer): ``strike`` matches "strikes",
    ``frappe`` matches "frappes" in a French article.
``"air strike"``
    A phrase: consecutive tokens, each word compared like a bare word, so it
    also matches "air strikes" and "air-strikes". Typographic quotes work too.
``frapp*``, ``"air strike*"``
    ``*`` matches any run of letters/digits inside one token, on the folded
    token (no stemming): ``frapp*`` matches "frappe", "frappées", "frapper".
``/regex/``
    A Python regular expression searched in the *normalised* title and body
    (casefolded, accents folded, whitespace collapsed; see `normalize_text`),
    always case-insensitive (``/…/i`` is accepted and means the same). Vetted
    at compile time so it cannot backtrack catastrophically (`_compile_regex`).
``title:x``, ``body:x``
    The term only in the title / only in the body; ``x`` may be a word,
    wildcard, phrase, regex or a group: ``title:(syria OR syrie)``.
``feed:bbc-world``, ``site:reuters.com``, ``lang:fr`` (``language:fr``)
    The article's feed name (exact, case-insensitive, ``*`` allowed), host
    (the host or any parent domain: ``site:reuters.com`` matches
    "www.reuters.com") and language code (``lang:fr`` also matches "fr-CA").
``A NEAR/5 B``, ``A NEAR B``
    Both within 5 (default 10) token positions of each other, in either order,
    in the same field (title or body). A and B are words, wildcards, phrases
    or OR-groups of them; for phrases the distance is counted from the end of
    one to the start of the other, so ``NEAR/1`` means adjacent.
``A AND B``, ``A B``
    Both; writing terms next to each other means AND.
``A OR B``
    Either.
``NOT A``, ``-A``
    A must not occur. ``-`` must touch its term: ``-strike``, ``-(a OR b)``.
``( ... )``
    Grouping. Precedence is NEAR > NOT > AND > OR, so ``a OR b c`` is
    ``a OR (b AND c)``, ``NOT a b`` is ``(NOT a) AND b`` and ``NOT a NEAR b``
    is ``NOT (a NEAR b)``.

Operators are uppercase. A lowercase ``and``/``or``/``not`` (or ``near/5``) is
rejected because it is almost always a mistyped operator; quote it (``"or"``)
to search for the word. A bare lowercase ``near`` is the English word.

Everything is case- and accent-insensitive on both sides (`normalize_text`):
``Syrie`` = ``syrie``, ``frappe`` matches "frappé", ``Straße`` = ``strasse``.
Apostrophes and hyphens separate tokens, so "l’armée" is ``l`` + ``armee``
and a bare word with a hyphen, like ``iran-backed``, is a two-word phrase.

Rules are multilingual by OR-ing the words of each language::

    (syria OR syrie OR syrien) AND ("air strike" OR "frappe aérienne"
        OR luftangriff) -(peace OR paix OR frieden)

Many rules against one article: `RuleSet` indexes the rules by a word each of
them needs, so an article only evaluates the rules whose words it contains.
"""

from __future__ import annotations

import bisect
import functools
import re
import re._compiler as _sre_compile  # private, stable since 3.11: regexes are vetted on their parse
import re._constants as _sre  # tree (re._parser), then compiled from it
import re._parser as _sre_parse
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import snowballstemmer

from newswatch.text import normalize_text

__all__ = [
    "Document",
    "Rule",
    "RuleSet",
    "RuleSyntaxError",
    "compile_rule",
    "normalize_text",
    "prepare",
]

DEFAULT_NEAR = 10  # distance of a bare NEAR
MAX_NEAR = 1000
REGEX_MAX_LENGTH = 200  # characters between the slashes
MAX_NESTING = 50  # parentheses and NOTs inside one another: parsing and matching recurse once per level
# Backtracking budget of a regex: the product of what each repetition or alternation can try, where
# *, + and {n,} count 1,000, ? counts 2, {m,n} counts n-m+1 and a|b|c counts 3. One `.*` plus one `?`
# or a two-way alternation fits (worst case ~1-2 s on 20,000 hostile characters); two `.*` do not
# (`a.*a.*x` takes ~10 s on 4,000 characters of "a").
REGEX_BUDGET = 2_000
_UNBOUNDED_COST = 1_000


class RuleSyntaxError(ValueError):
    """A rule that cannot be parsed; `position` is the 0-based offending offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"col {position}: {message}")
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Document:
    """What a rule is matched against; frozen so it can key the token cache."""

    title: str
    body: str
    language: str | None = None  # ISO 639-1 ("fr", "en", "de"); None = unknown
    feed: str = ""
    site: str = ""  # host of the article URL ("www.reuters.com"); a whole URL is accepted too


_TOKEN = re.compile(r"\w+")
_QUERY_TOKEN = re.compile(r"[\w*]+")


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

    def sorted_tokens(self) -> list[str]:
        """The distinct tokens in order, for prefix look-ups by bisection (built once, on demand)."""
        found = self.memo.get(_SORTED)
        if found is None:
            found = self.memo[_SORTED] = sorted(self.by_token)
        return found


_SORTED = "\x02sorted"  # memo key, unlike any word, term or regex key
_LAST = chr(0x10FFFF)  # sorts after any character a token can hold


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
    )


# --- syntax tree -------------------------------------------------------------

_SCOPES = {
    "title": "title",
    "body": "body",
    "feed": "feed",
    "site": "site",
    "language": "language",
    "lang": "language",
}
_TEXT_SCOPES = frozenset({"title", "body"})


def _in_field(starts: frozenset[int], scope: str, title_end: int) -> frozenset[int]:
    if scope == "title":
        return frozenset(p for p in starts if p < title_end)
    return frozenset(p for p in starts if p > title_end)


@dataclass(frozen=True, slots=True)
class _Word:
    """One folded query word; `pattern` is set when it has a wildcard."""

    text: str
    pattern: re.Pattern[str] | None

    def positions(self, doc: PreparedDocument) -> frozenset[int]:
        found = doc.memo.get(self.text)
        if found is None:
            found = doc.memo[self.text] = self._find(doc)
        return found

    def _find(self, doc: PreparedDocument) -> frozenset[int]:
        if self.pattern is not None:
            prefix = self.text.split("*", 1)[0]
            if prefix:  # only the tokens that start with the literal prefix, by bisection
                tokens = doc.sorted_tokens()
                candidates = tokens[bisect.bisect_left(tokens, prefix) : bisect.bisect_left(tokens, prefix + _LAST)]
                if self.text != prefix + "*":  # "frapp*" matches every one of them: tokens are \w+
                    candidates = [tok for tok in candidates if self.pattern.fullmatch(tok)]
            else:
                candidates = [tok for tok in doc.by_token if self.pattern.fullmatch(tok)]
            return frozenset().union(*(doc.by_token[tok] for tok in candidates))
        # Both sides go through the same stemmer, so this covers the exact token too.
        return doc.by_stem.get(_stem(doc.algorithm, self.text), frozenset())


@dataclass(frozen=True, slots=True)
class _Term:
    """A bare word or phrase, optionally limited to the title or the body.

    `source` is how the rule author wrote it (phrase without its quotes), `written` the same with
    quotes for a phrase, `label` what explain() shows ("syria", "title:syria", 'body:"air strike"').
    """

    source: str
    words: tuple[_Word, ...]
    scope: str | None = None
    written: str = ""
    label: str = ""
    key: str = ""  # memo key, see _term_key

    def starts(self, doc: PreparedDocument) -> frozenset[int]:
        """Positions where the term starts, in its field."""
        found = doc.memo.get(self.key)
        if found is None:
            if self.scope is None:
                found = self._starts(doc)
            else:
                unscoped = _Term(self.source, self.words, key=_term_key(None, [w.text for w in self.words]))
                found = _in_field(unscoped.starts(doc), self.scope, doc.title_end)
            doc.memo[self.key] = found
        return found

    def _starts(self, doc: PreparedDocument) -> frozenset[int]:
        starts = self.words[0].positions(doc)
        for offset, word in enumerate(self.words[1:], start=1):
            if not starts:
                return starts
            starts = starts & {p - offset for p in word.positions(doc)}
        return starts

    def evaluate(self, doc: PreparedDocument) -> bool:
        return bool(self.starts(doc))

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        if self.evaluate(doc):
            yield self.label


@dataclass(frozen=True, slots=True)
class _Regex:
    """A vetted regex searched in the normalised title and/or body."""

    label: str
    pattern: re.Pattern[str]
    scope: str | None = None
    key: str = ""  # memo key: "\x01scope\x01pattern"

    def evaluate(self, doc: PreparedDocument) -> bool:
        key = self.key
        found = doc.memo.get(key)
        if found is None:
            found = doc.memo[key] = bool(
                (self.scope != "body" and self.pattern.search(doc.title))
                or (self.scope != "title" and self.pattern.search(doc.body))
            )
        return found

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        if self.evaluate(doc):
            yield self.label


@dataclass(frozen=True, slots=True)
class _Field:
    """feed:, site: or language: compared with the document's metadata (no stemming)."""

    label: str
    scope: str  # "feed", "site" or "language"
    value: str  # folded like the document side
    pattern: re.Pattern[str] | None = None  # feed name with a wildcard

    def evaluate(self, doc: PreparedDocument) -> bool:
        if self.scope == "feed":
            return bool(self.pattern.fullmatch(doc.feed)) if self.pattern else doc.feed == self.value
        if self.scope == "site":  # the host or a parent domain: site:reuters.com = www.reuters.com
            return doc.site == self.value or doc.site.endswith("." + self.value)
        return doc.language == self.value or doc.language.startswith(self.value + "-")  # fr = fr-CA

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        if self.evaluate(doc):
            yield self.label


def _spans(terms: Iterable[_Term], doc: PreparedDocument) -> list[tuple[int, int]]:
    """(first, last) token positions of every occurrence of any of `terms`."""
    return [(start, start + len(term.words) - 1) for term in terms for start in term.starts(doc)]


def _near(left: list[tuple[int, int]], right: list[tuple[int, int]], distance: int, title_end: int) -> bool:
    """Whether a left span and a right span lie 1..distance apart in the same field.

    The distance of two spans is from the end of the first to the start of the second, so adjacent
    words are 1 apart and overlapping spans are never "near" (a word is not near itself).
    """
    if not left or not right:
        return False
    if len(left) > len(right):
        left, right = right, left
    right_starts = sorted(start for start, _ in right)
    right_ends = sorted(end for _, end in right)
    for start, end in left:
        in_body = start > title_end
        # The first right span starting after this one ends; if it lies in the other field, so do
        # all later ones.
        k = bisect.bisect_right(right_starts, end)
        if k < len(right_starts) and right_starts[k] - end <= distance and (right_starts[k] > title_end) == in_body:
            return True
        # The last right span ending before this one starts.
        k = bisect.bisect_left(right_ends, start) - 1
        if k >= 0 and start - right_ends[k] <= distance and (right_ends[k] > title_end) == in_body:
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Near:
    """Two OR-groups of terms (one term each, usually) within `distance` tokens."""

    left: tuple[_Term, ...]
    right: tuple[_Term, ...]
    distance: int
    operator: str  # as written: "NEAR" or "NEAR/5"

    def evaluate(self, doc: PreparedDocument) -> bool:
        left = _spans(self.left, doc)
        return bool(left) and _near(left, _spans(self.right, doc), self.distance, doc.title_end)

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        for a in self.left:
            a_spans = _spans((a,), doc)
            if not a_spans:
                continue
            for b in self.right:
                if _near(a_spans, _spans((b,), doc), self.distance, doc.title_end):
                    yield self._pair_label(a, b)

    def _pair_label(self, a: _Term, b: _Term) -> str:
        if a.scope is not None and a.scope == b.scope:
            return f"{a.scope}:({a.written} {self.operator} {b.written})"
        written = [f"{t.scope}:{t.written}" if t.scope else t.written for t in (a, b)]
        return f"{written[0]} {self.operator} {written[1]}"


@dataclass(frozen=True, slots=True)
class _Not:
    child: _Node

    def evaluate(self, doc: PreparedDocument) -> bool:
        return not self.child.evaluate(doc)

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        return iter(())  # absent terms explain nothing


@dataclass(frozen=True, slots=True)
class _And:
    children: tuple[_Node, ...]

    def evaluate(self, doc: PreparedDocument) -> bool:
        return all(child.evaluate(doc) for child in self.children)

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        if self.evaluate(doc):
            for child in self.children:
                yield from child.hits(doc)


@dataclass(frozen=True, slots=True)
class _Or:
    children: tuple[_Node, ...]

    def evaluate(self, doc: PreparedDocument) -> bool:
        return any(child.evaluate(doc) for child in self.children)

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        for child in self.children:  # every matching alternative, not just the first
            yield from child.hits(doc)


_Node = _Term | _Regex | _Field | _Near | _Not | _And | _Or


# --- regex vetting -----------------------------------------------------------

_REPEATS = tuple(
    op for op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)) if op is not None
)
_BACKREFS = (_sre.GROUPREF, _sre.GROUPREF_EXISTS)
_NESTED = "nested repetition like (a+)+ can take exponential time; repeat a single character or class"


def _has_branch(items: _sre_parse.SubPattern | list) -> bool:
    for op, av in items:
        if op is _sre.BRANCH:
            return True
        if op is _sre.SUBPATTERN and _has_branch(av[3]):
            return True
    return False


def _trim_leading_repeats(parsed: _sre_parse.SubPattern) -> None:
    """Drop what a search never needs: a leading X*, X+ or X{n,} becomes nothing, X or X{n}.

    `\\d+ killed` is found wherever `\\d killed` is, but would rescan every run of digits from each of
    its positions (time quadratic in the run's length). Lazy repeats too; not possessive ones, whose
    meaning differs (`a*+a` never matches).
    """
    while len(parsed.data):
        op, av = parsed.data[0]
        if op not in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) or av[1] != _sre.MAXREPEAT:
            break
        low, _, body = av
        if low == 0:
            del parsed.data[0]
        elif low == 1:
            parsed.data[0:1] = list(body)
        else:
            parsed.data[0] = (op, (low, low, body))
            break
    parsed.width = None  # cached by getwidth()


def _leading_repeat(items: _sre_parse.SubPattern | list) -> bool:
    """Whether the pattern starts with an unbounded repetition (tried from every position: O(n²))."""
    if not len(items):
        return False
    op, av = items[0]
    if op in _REPEATS:
        return av[1] == _sre.MAXREPEAT or _leading_repeat(av[2])
    if op is _sre.SUBPATTERN:
        return _leading_repeat(av[3])
    if op is _sre.BRANCH:
        return any(_leading_repeat(branch) for branch in av[1])
    return False


def _regex_cost(items: _sre_parse.SubPattern | list, position: int, repeated: bool = False) -> int:
    """Rough worst-case backtracking per start position; raises on the shapes that explode."""
    total = 1
    for op, av in items:
        if op in _REPEATS:
            low, high, body = av
            if high > 1 and repeated:
                raise RuleSyntaxError(_NESTED, position)
            if high > 1 and _has_branch(body):
                raise RuleSyntaxError(
                    "repeating an alternation like (a|ab)+ can take exponential time; use a character "
                    "class [ab]+ or write the alternatives out",
                    position,
                )
            width = _UNBOUNDED_COST if high == _sre.MAXREPEAT else min(high - low + 1, _UNBOUNDED_COST)
            total *= width * _regex_cost(body, position, repeated or high > 1)
        elif op is _sre.SUBPATTERN:
            total *= _regex_cost(av[3], position, repeated)
        elif op is _sre.BRANCH:
            total *= sum(_regex_cost(branch, position, repeated) for branch in av[1])
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            total *= _regex_cost(av[1], position, repeated)
        elif op is getattr(_sre, "ATOMIC_GROUP", None):
            total *= _regex_cost(av, position, repeated)
        elif op in _BACKREFS:
            raise RuleSyntaxError("backreferences (\\1, (?P=name)) are not supported in rules", position)
        total = min(total, REGEX_BUDGET * _UNBOUNDED_COST)  # keep the numbers small
    return total


def _compile_regex(pattern: str, position: int) -> re.Pattern[str]:
    """Compile `pattern` (the text between the slashes, which starts at position+1) or say why not."""
    if not pattern:
        raise RuleSyntaxError("empty regex", position)
    if len(pattern) > REGEX_MAX_LENGTH:
        raise RuleSyntaxError(f"regex longer than {REGEX_MAX_LENGTH} characters", position)
    for offset, char in enumerate(pattern):
        if ord(char) > 127 and normalize_text(char) != char:
            raise RuleSyntaxError(
                f"regexes match folded text (lowercase, no accents): write {normalize_text(char)!r} "
                f"instead of {char!r}",
                position + 1 + offset,
            )
    # The text is casefolded, so only a pattern with capitals needs IGNORECASE (2-8x slower in `re`).
    flags = re.IGNORECASE if any(c.isupper() for c in re.sub(r"\\.", "", pattern)) else 0
    try:
        parsed = _sre_parse.parse(pattern, flags)
    except re.error as error:
        raise RuleSyntaxError(f"invalid regex: {error.msg}", position + 1 + (error.pos or 0)) from None
    except RecursionError:
        raise RuleSyntaxError("regex nested too deeply", position) from None
    _regex_cost(parsed, position)  # nested repetitions, repeated alternations, backreferences: anywhere
    _trim_leading_repeats(parsed)
    if _leading_repeat(parsed):  # inside a group or an alternative, or possessive: not trimmed
        raise RuleSyntaxError(
            "a regex is searched anywhere in the text, so an open-ended repetition (*, +, {n,}) at its "
            "start only slows it down: drop it, or write \\w for \\w+",
            position,
        )
    if _regex_cost(parsed, position) > REGEX_BUDGET:
        raise RuleSyntaxError(
            "regex could take too long on long articles: use at most one *, + or {n,} and few ?, "
            "{m,n} or | (see docs/rules.md)",
            position,
        )
    compiled = _sre_compile.compile(parsed, flags)
    if any((m := compiled.search(probe)) is not None and m.group() == "" for probe in ("", "a", " ", "a a")):
        raise RuleSyntaxError("regex can match empty text, so it would match every article", position)
    return compiled


# --- lexer and parser --------------------------------------------------------

_QUOTES = '"“”„‟«»'
_KEYWORDS = ("AND", "OR", "NOT")
_TERM_START = ("WORD", "PHRASE", "REGEX", "SCOPE", "NOT", "(")
_SCOPE_PREFIX = re.compile(r"([A-Za-z]+):")
_NEAR_DISTANCE = re.compile(r"[0-9]{1,4}")
_HOST = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")


@dataclass(frozen=True)
class _Token:
    kind: str  # WORD, PHRASE, REGEX, SCOPE, NEAR, AND, OR, NOT, (, ), END
    text: str  # source text (phrase: without its quotes; scope: field name, lowercase)
    position: int
    arg: object = None  # NEAR: distance; REGEX: pattern between the slashes


def _near_token(word: str, position: int) -> _Token:
    if word == "NEAR":
        return _Token("NEAR", word, position, DEFAULT_NEAR)
    digits = word[len("NEAR/") :]
    if not _NEAR_DISTANCE.fullmatch(digits) or not 1 <= int(digits) <= MAX_NEAR:
        raise RuleSyntaxError(f"NEAR/ takes a distance from 1 to {MAX_NEAR} words, e.g. NEAR/5", position)
    return _Token("NEAR", word, position, int(digits))


def _lex_regex(query: str, start: int) -> tuple[_Token, int]:
    n, j = len(query), start + 1
    while j < n and query[j] != "/":
        j += 2 if query[j] == "\\" else 1
    if j >= n:
        raise RuleSyntaxError("unclosed regex: end it with '/' (write \\/ for a slash inside)", start)
    k = j + 1
    while k < n and query[k].isalpha():
        k += 1
    if query[j + 1 : k] not in ("", "i"):
        raise RuleSyntaxError(
            f"unknown regex flag '{query[j + 1 : k]}': regexes are always case-insensitive, and /…/i is "
            "the only flag accepted",
            j + 1,
        )
    return _Token("REGEX", query[start:k], start, query[start + 1 : j]), k


def _lex(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(_Token(c, c, i))
            i += 1
        elif c in _QUOTES:
            end = next((j for j in range(i + 1, n) if query[j] in _QUOTES), -1)
            if end < 0:
                raise RuleSyntaxError("unclosed quote", i)
            tokens.append(_Token("PHRASE", query[i + 1 : end], i))
            i = end + 1
        elif c == "-" and i + 1 < n and not query[i + 1].isspace() and query[i + 1] != ")":
            tokens.append(_Token("NOT", c, i))
            i += 1
        elif c == "/":
            token, i = _lex_regex(query, i)
            tokens.append(token)
        elif (scope := _SCOPE_PREFIX.match(query, i)) and scope.group(1).lower() in _SCOPES:
            name, end = scope.group(1).lower(), scope.end()
            if end >= n or query[end].isspace() or query[end] == ")":
                raise RuleSyntaxError(f"'{name}:' needs a value right after the colon, e.g. {name}:x", end)
            tokens.append(_Token("SCOPE", name, i))
            i = end
        else:
            j = i
            while j < n and not query[j].isspace() and query[j] not in "()" + _QUOTES:
                j += 1
            word = query[i:j]
            if word in _KEYWORDS:
                tokens.append(_Token(word, word, i))
            elif word == "NEAR" or word.startswith("NEAR/"):
                tokens.append(_near_token(word, i))
            elif word.upper() in _KEYWORDS or (word.upper().startswith("NEAR/") and word[:4] != "NEAR"):
                raise RuleSyntaxError(f'write {word.upper()} for the operator or "{word}" for the word', i)
            else:
                tokens.append(_Token("WORD", word, i))
            i = j
    tokens.append(_Token("END", "", n))
    return tokens


def _compile_word(text: str, position: int) -> _Word:
    if "*" not in text:
        return _Word(text, None)
    if text.strip("*") == "":
        raise RuleSyntaxError("a wildcard needs at least one letter", position)
    parts = (re.escape(part) for part in text.split("*"))
    return _Word(text, re.compile(r"\w*".join(parts)))


def _make_term(token: _Token, scope: str | None = None) -> _Term:
    words = _QUERY_TOKEN.findall(normalize_text(token.text))
    if not words:
        if token.kind == "PHRASE":
            raise RuleSyntaxError("empty phrase", token.position)
        if token.text == "-":
            raise RuleSyntaxError("'-' must touch the term it excludes, e.g. -strike", token.position)
        raise RuleSyntaxError(f"'{token.text}' has no letters or digits", token.position)
    source = token.text.strip()
    written = f'"{source}"' if token.kind == "PHRASE" else source
    return _Term(
        source,
        tuple(_compile_word(w, token.position) for w in words),
        scope,
        written,
        f"{scope}:{written}" if scope else source,
        _term_key(scope, words),
    )


def _term_key(scope: str | None, words: list[str]) -> str:
    """Memo key of a term: a string (its hash is cached), unlike any word or regex key."""
    return f"\x00{scope or ''}\x00{' '.join(words)}"


def _make_field(token: _Token, name: str, scope: str) -> _Field:
    if token.kind == "REGEX":
        raise RuleSyntaxError(f"'{name}:' takes a plain value, not a regex", token.position)
    value = token.text.strip()
    label = f'{name}:"{value}"' if token.kind == "PHRASE" else f"{name}:{value}"
    if scope == "feed":
        folded = value.casefold()
        if not folded.strip("*"):
            raise RuleSyntaxError("'feed:' needs a feed name, e.g. feed:bbc-world", token.position)
        pattern = re.compile(".*".join(map(re.escape, folded.split("*")))) if "*" in folded else None
        return _Field(label, scope, folded, pattern)
    if scope == "site":
        host = _site(value)
        if not _HOST.fullmatch(host):
            raise RuleSyntaxError(f"'{name}:' takes a host name, e.g. {name}:reuters.com", token.position)
        return _Field(label, scope, host)
    code = _language(value)
    if not _LANGUAGE.fullmatch(code):
        raise RuleSyntaxError(f"'{name}:' takes a language code, e.g. {name}:fr or {name}:pt-br", token.position)
    return _Field(label, scope, code)


def _near_operand(node: _Node) -> tuple[_Term, ...] | None:
    """The terms of a NEAR operand (a term or an OR of terms), or None if it is anything else."""
    if isinstance(node, _Term):
        return (node,)
    if isinstance(node, _Or):
        terms: list[_Term] = []
        for child in node.children:
            found = _near_operand(child)
            if found is None:
                return None
            terms.extend(found)
        return tuple(terms)
    return None


class _Parser:
    """Recursive descent, loosest first.

    or := and (OR and)*;  and := not (AND? not)*;  not := NOT not | near;  near := atom (NEAR atom)?;
    atom := WORD | PHRASE | REGEX | SCOPE atom | '(' or ')'.
    """

    def __init__(self, query: str) -> None:
        self.tokens = _lex(query)
        self.index = 0
        self.scope: _Token | None = None  # the field of the scoped group being parsed
        self.depth = 0  # groups and NOTs open around the current token

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.current
        self.index += 1
        return token

    def parse(self) -> _Node:
        if self.current.kind == "END":
            raise RuleSyntaxError("empty query", 0)
        node = self.parse_or()
        if self.current.kind == ")":
            raise RuleSyntaxError("unmatched ')'", self.current.position)
        if self.current.kind != "END":
            raise RuleSyntaxError(f"unexpected '{self.current.text}'", self.current.position)
        return node

    def parse_or(self) -> _Node:
        children = [self.parse_and()]
        while self.current.kind == "OR":
            self.advance()
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else _Or(tuple(children))

    def parse_and(self) -> _Node:
        children = [self.parse_not()]
        while self.current.kind == "AND" or self.current.kind in _TERM_START:
            if self.current.kind == "AND":
                self.advance()
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else _And(tuple(children))

    def parse_not(self) -> _Node:
        if self.current.kind == "NOT":
            with self.nested(self.advance()):
                return _Not(self.parse_not())
        return self.parse_near()

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        """One level deeper; a rule nested beyond MAX_NESTING is refused instead of exhausting the stack."""
        if self.depth >= MAX_NESTING:
            raise RuleSyntaxError(f"nested more than {MAX_NESTING} levels deep (parentheses and NOT)",
                                  token.position)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def parse_near(self) -> _Node:
        left_token = self.current
        node = self.parse_atom()
        if self.current.kind != "NEAR":
            return node
        operator = self.advance()
        right_token = self.current
        right = self.parse_atom()
        if self.current.kind == "NEAR":
            raise RuleSyntaxError(
                "NEAR joins two terms; to chain, combine pairs with AND: a NEAR b AND b NEAR c",
                self.current.position,
            )
        sides = []
        for side, token in ((node, left_token), (right, right_token)):
            terms = _near_operand(side)
            if terms is None:
                raise RuleSyntaxError(
                    "NEAR takes a word, wildcard or phrase (or an OR-group of them) on each side",
                    token.position,
                )
            sides.append(terms)
        return _Near(sides[0], sides[1], int(operator.arg), operator.text)

    def parse_atom(self) -> _Node:
        token = self.current
        if token.kind in ("WORD", "PHRASE", "REGEX"):
            self.advance()
            return self.make_term(token)
        if token.kind == "SCOPE":
            return self.parse_scoped()
        if token.kind == "(":
            self.advance()
            if self.current.kind == ")":
                raise RuleSyntaxError("empty parentheses", token.position)
            with self.nested(token):
                node = self.parse_or()
            if self.current.kind != ")":
                raise RuleSyntaxError(
                    f"expected ')' to close '(' at col {token.position}", self.current.position
                )
            self.advance()
            return node
        previous = self.tokens[self.index - 1] if self.index else None
        if token.kind == "END" and previous is not None:
            after = f"{previous.text}:" if previous.kind == "SCOPE" else previous.text
            raise RuleSyntaxError(f"expected a term after '{after}'", token.position)
        raise RuleSyntaxError(f"expected a term, found '{token.text}'", token.position)

    def parse_scoped(self) -> _Node:
        scope = self.advance()
        if self.scope is not None:
            raise RuleSyntaxError(f"'{scope.text}:' cannot be used inside '{self.scope.text}:( … )'", scope.position)
        value = self.current
        if value.kind == "NOT":
            raise RuleSyntaxError(
                f"to exclude, put '-' or NOT before the field: -{scope.text}:…", value.position
            )
        if value.kind not in ("WORD", "PHRASE", "REGEX", "("):
            raise RuleSyntaxError(f"expected a value after '{scope.text}:', found '{value.text}'", value.position)
        self.scope = scope
        try:
            return self.parse_atom()
        finally:
            self.scope = None

    def make_term(self, token: _Token) -> _Node:
        if self.scope is None:
            scope = None
        else:
            scope = _SCOPES[self.scope.text]
            if scope not in _TEXT_SCOPES:
                return _make_field(token, self.scope.text, scope)
        if token.kind == "REGEX":
            compiled = _compile_regex(str(token.arg), token.position)
            key = f"\x01{scope or ''}\x01{token.arg}"
            return _Regex(f"{scope}:{token.text}" if scope else token.text, compiled, scope, key)
        return _make_term(token, scope)


# --- public API --------------------------------------------------------------


class Rule:
    """A compiled query; immutable, so one instance can serve every worker."""

    __slots__ = ("query", "_root")

    def __init__(self, query: str) -> None:
        self.query = query
        self._root = _Parser(query).parse()

    def matches(self, doc: Document) -> bool:
        return self._root.evaluate(prepare(doc))

    def explain(self, doc: Document) -> list[str]:
        """Terms of the rule, as written, that made it match, for alert messages.

        Words and phrases as written ("syria", "air strike"), scoped ones with their field
        ("title:syria", 'body:"air strike"', "site:reuters.com"), regexes with their slashes and
        NEAR as the pair that matched ("syria NEAR/5 strike"). [] when the rule does not match
        (or matches only through NOT).
        """
        prepared = prepare(doc)
        if not self._root.evaluate(prepared):
            return []
        return list(dict.fromkeys(self._root.hits(prepared)))

    def __repr__(self) -> str:
        return f"compile_rule({self.query!r})"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return compile_rule, (self.query,)  # recompiled on unpickling: regexes are built from parse trees

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and other.query == self.query

    def __hash__(self) -> int:
        return hash(self.query)


def compile_rule(query: str) -> Rule:
    """Parse `query` once; raises RuleSyntaxError pointing at the mistake."""
    return Rule(query)


# --- many rules at once ------------------------------------------------------

_Trigger = frozenset[tuple[str, str]]  # ("word", folded word) or ("prefix", literal start of a wildcard)


def _union(triggers: Iterable[_Trigger | None]) -> _Trigger | None:
    found: set[tuple[str, str]] = set()
    for trigger in triggers:
        if trigger is None:
            return None
        found |= trigger
    return frozenset(found)


def _narrowest(triggers: Iterable[_Trigger | None]) -> _Trigger | None:
    known = [trigger for trigger in triggers if trigger is not None]
    if not known:
        return None
    return min(known, key=lambda t: (len(t), sum(kind == "prefix" for kind, _ in t)))


def _trigger(node: _Node) -> _Trigger | None:
    """Keys of which a matching document must contain at least one; None = cannot tell.

    A word is present when its stem is among the document's stems, a wildcard only when some token
    starts with its literal prefix; NOT, regexes and feed/site/language can match without any word.
    """
    if isinstance(node, _Term):
        prefix = None
        for word in node.words:
            if word.pattern is None:
                return frozenset({("word", word.text)})
            literal = word.text.split("*", 1)[0]
            if literal and prefix is None:
                prefix = frozenset({("prefix", literal)})
        return prefix
    if isinstance(node, _Near):
        return _narrowest([_union(map(_trigger, node.left)), _union(map(_trigger, node.right))])
    if isinstance(node, _And):
        return _narrowest(map(_trigger, node.children))
    if isinstance(node, _Or):
        return _union(map(_trigger, node.children))
    return None


class RuleSet:
    """Rules matched together: each article evaluates only the rules it could match.

    Every rule is indexed under the words one of its required parts needs (for ``a AND (b OR c)``
    either {a} or {b, c}); an article looks its stems and token prefixes up in that index and
    evaluates only the rules found, plus the few that need no word (``NOT x``, ``/regex/``,
    ``feed:x``). Same results as calling `Rule.matches` on each rule, in the same order.
    """

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        self._always: list[int] = []
        self._words: dict[str, list[int]] = {}
        self._prefixes: dict[str, list[int]] = {}
        for number, rule in enumerate(self.rules):
            trigger = _trigger(rule._root)
            if trigger is None:
                self._always.append(number)
                continue
            for kind, text in trigger:
                (self._words if kind == "word" else self._prefixes).setdefault(text, []).append(number)
        self._prefix_lengths = sorted({len(prefix) for prefix in self._prefixes})
        self._by_stem: dict[str, dict[str, list[int]]] = {}  # algorithm -> stem -> rule numbers

    def __len__(self) -> int:
        return len(self.rules)

    def _stem_index(self, algorithm: str) -> dict[str, list[int]]:
        index = self._by_stem.get(algorithm)
        if index is None:  # built once per language; a race only builds it twice
            index = {}
            for word, numbers in self._words.items():
                index.setdefault(_stem(algorithm, word), []).extend(numbers)
            self._by_stem[algorithm] = index
        return index

    def _candidates(self, doc: PreparedDocument) -> list[int]:
        found = set(self._always)
        index = self._stem_index(doc.algorithm)
        for stem in index.keys() & doc.by_stem.keys():
            found.update(index[stem])
        if self._prefixes:
            prefixes, lengths = self._prefixes, self._prefix_lengths
            for token in doc.by_token:
                for length in lengths:
                    if length > len(token):
                        break
                    numbers = prefixes.get(token[:length])
                    if numbers:
                        found.update(numbers)
        return sorted(found)

    def matching_indices(self, doc: Document) -> list[int]:
        """Positions in `rules` of the rules that match `doc`, ascending."""
        prepared = prepare(doc)
        return [n for n in self._candidates(prepared) if self.rules[n]._root.evaluate(prepared)]

    def matching(self, doc: Document) -> list[Rule]:
        """The rules that match `doc`, in the order they were given."""
        return [self.rules[n] for n in self.matching_indices(doc)]
