"""Keyword rules for alerts: a tiny boolean query language over news articles.

A rule is written once in the config and matched against every incoming
article, so it is parsed once (`compile_rule`) and syntax errors point at the
character that is wrong.

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
``A AND B``, ``A B``
    Both; writing terms next to each other means AND.
``A OR B``
    Either.
``NOT A``, ``-A``
    A must not occur. ``-`` must touch its term: ``-strike``, ``-(a OR b)``.
``( ... )``
    Grouping. Precedence is NOT > AND > OR, so ``a OR b c`` is
    ``a OR (b AND c)`` and ``NOT a b`` is ``(NOT a) AND b``.

Operators are uppercase. A lowercase ``and``/``or``/``not`` is rejected
because it is almost always a mistyped operator; quote it (``"or"``) to
search for the word.

Everything is case- and accent-insensitive on both sides (`normalize_text`):
``Syrie`` = ``syrie``, ``frappe`` matches "frappé", ``Straße`` = ``strasse``.
Apostrophes and hyphens separate tokens, so "l’armée" is ``l`` + ``armee``
and a bare word with a hyphen, like ``iran-backed``, is a two-word phrase.

Rules are multilingual by OR-ing the words of each language::

    (syria OR syrie OR syrien) AND ("air strike" OR "frappe aérienne"
        OR luftangriff) -(peace OR paix OR frieden)
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

import snowballstemmer

__all__ = [
    "Document",
    "Rule",
    "RuleSyntaxError",
    "compile_rule",
    "normalize_text",
    "prepare",
]


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


# --- normalisation -----------------------------------------------------------

_TYPOGRAPHY = str.maketrans(
    {
        **dict.fromkeys("‘’‚‛′ʼ´＇", "'"),
        **dict.fromkeys("“”„‟″«»＂", '"'),
        **dict.fromkeys("‐‑‒–—―−﹘﹣－", "-"),
        "\u00ad": None,  # soft hyphen: invisible, must not split words
        "œ": "oe",
        "Œ": "oe",
        "æ": "ae",
        "Æ": "ae",
    }
)


def normalize_text(text: str) -> str:
    """Fold text so that spelling variants compare equal across stages.

    Casefold (ß -> ss), strip accents (NFKD, drop combining marks), turn
    typographic quotes/apostrophes/dashes into ASCII and collapse whitespace.
    """
    text = text.translate(_TYPOGRAPHY).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    # Recompose what NFKD split without accents (e.g. Hangul syllables).
    return " ".join(unicodedata.normalize("NFC", text).split())


_TOKEN = re.compile(r"\w+")
_QUERY_TOKEN = re.compile(r"[\w*]+")


def _tokens(text: str) -> list[str]:
    """Words of already-normalised text; apostrophes and dashes separate."""
    return _TOKEN.findall(text)


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
    return snowballstemmer.stemmer(algorithm)


def _stem_words(algorithm: str, words: list[str]) -> list[str]:
    with _STEM_LOCK:
        return _stemmer(algorithm).stemWords(words)


@functools.lru_cache(maxsize=65536)
def _stem(algorithm: str, word: str) -> str:
    """Stem of one query word; cached because every document re-asks it."""
    return _stem_words(algorithm, [word])[0]


# --- prepared documents ------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PreparedDocument:
    """A document tokenised and stemmed once, shared by every rule."""

    algorithm: str
    by_token: dict[str, frozenset[int]]
    by_stem: dict[str, frozenset[int]]
    # Positions per query word, so words shared by many rules are looked up once.
    memo: dict[str, frozenset[int]] = field(default_factory=dict)


def _index(items: list[str]) -> dict[str, frozenset[int]]:
    positions: dict[str, set[int]] = {}
    for i, item in enumerate(items):
        positions.setdefault(item, set()).add(i)
    return {item: frozenset(where) for item, where in positions.items()}


@functools.lru_cache(maxsize=256)
def prepare(doc: Document) -> PreparedDocument:
    """Tokenise and stem `doc` once; cached so N rules cost one tokenisation."""
    algorithm = _algorithm(doc.language)
    # A position gap between title and body keeps phrases from spanning both.
    tokens = [*_tokens(normalize_text(doc.title)), "", *_tokens(normalize_text(doc.body))]
    unique = sorted(set(tokens) - {""})
    stem_of = dict(zip(unique, _stem_words(algorithm, unique), strict=True))
    stems = [stem_of.get(token, "") for token in tokens]
    by_token, by_stem = _index(tokens), _index(stems)
    by_token.pop("", None)
    by_stem.pop("", None)
    return PreparedDocument(algorithm, by_token, by_stem)


# --- syntax tree -------------------------------------------------------------


@dataclass(frozen=True)
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
            hits = [p for tok, p in doc.by_token.items() if self.pattern.fullmatch(tok)]
            return frozenset().union(*hits)
        # Both sides go through the same stemmer, so this covers the exact token too.
        return doc.by_stem.get(_stem(doc.algorithm, self.text), frozenset())


@dataclass(frozen=True)
class _Term:
    """A bare word or phrase; `source` is how the rule author wrote it."""

    source: str
    words: tuple[_Word, ...]

    def evaluate(self, doc: PreparedDocument) -> bool:
        starts = self.words[0].positions(doc)
        for offset, word in enumerate(self.words[1:], start=1):
            if not starts:
                return False
            starts = starts & {p - offset for p in word.positions(doc)}
        return bool(starts)

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        if self.evaluate(doc):
            yield self.source


@dataclass(frozen=True)
class _Not:
    child: _Node

    def evaluate(self, doc: PreparedDocument) -> bool:
        return not self.child.evaluate(doc)

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        return iter(())  # absent terms explain nothing


@dataclass(frozen=True)
class _And:
    children: tuple[_Node, ...]

    def evaluate(self, doc: PreparedDocument) -> bool:
        return all(child.evaluate(doc) for child in self.children)

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        if self.evaluate(doc):
            for child in self.children:
                yield from child.hits(doc)


@dataclass(frozen=True)
class _Or:
    children: tuple[_Node, ...]

    def evaluate(self, doc: PreparedDocument) -> bool:
        return any(child.evaluate(doc) for child in self.children)

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        for child in self.children:  # every matching alternative, not just the first
            yield from child.hits(doc)


_Node = _Term | _Not | _And | _Or


# --- lexer and parser --------------------------------------------------------

_QUOTES = '"“”„‟«»'
_KEYWORDS = ("AND", "OR", "NOT")
_TERM_START = ("WORD", "PHRASE", "NOT", "(")


@dataclass(frozen=True)
class _Token:
    kind: str  # WORD, PHRASE, AND, OR, NOT, (, ), END
    text: str  # source text (phrase: without its quotes)
    position: int


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
        else:
            j = i
            while j < n and not query[j].isspace() and query[j] not in "()" + _QUOTES:
                j += 1
            word = query[i:j]
            if word in _KEYWORDS:
                tokens.append(_Token(word, word, i))
            elif word.upper() in _KEYWORDS:
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


def _make_term(token: _Token) -> _Term:
    words = _QUERY_TOKEN.findall(normalize_text(token.text))
    if not words:
        if token.kind == "PHRASE":
            raise RuleSyntaxError("empty phrase", token.position)
        if token.text == "-":
            raise RuleSyntaxError("'-' must touch the term it excludes, e.g. -strike", token.position)
        raise RuleSyntaxError(f"'{token.text}' has no letters or digits", token.position)
    return _Term(token.text.strip(), tuple(_compile_word(w, token.position) for w in words))


class _Parser:
    """Recursive descent: or := and (OR and)*; and := not (AND? not)*; not := NOT not | atom."""

    def __init__(self, query: str) -> None:
        self.tokens = _lex(query)
        self.index = 0

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
            self.advance()
            return _Not(self.parse_not())
        return self.parse_atom()

    def parse_atom(self) -> _Node:
        token = self.current
        if token.kind in ("WORD", "PHRASE"):
            self.advance()
            return _make_term(token)
        if token.kind == "(":
            self.advance()
            if self.current.kind == ")":
                raise RuleSyntaxError("empty parentheses", token.position)
            node = self.parse_or()
            if self.current.kind != ")":
                raise RuleSyntaxError(
                    f"expected ')' to close '(' at col {token.position}", self.current.position
                )
            self.advance()
            return node
        previous = self.tokens[self.index - 1] if self.index else None
        if token.kind == "END" and previous is not None:
            raise RuleSyntaxError(f"expected a term after '{previous.text}'", token.position)
        raise RuleSyntaxError(f"expected a term, found '{token.text}'", token.position)


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
        """Terms/phrases of the rule, as written, that made it match, for alert messages.

        [] when the rule does not match (or matches only through NOT).
        """
        prepared = prepare(doc)
        if not self._root.evaluate(prepared):
            return []
        return list(dict.fromkeys(self._root.hits(prepared)))

    def __repr__(self) -> str:
        return f"compile_rule({self.query!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and other.query == self.query

    def __hash__(self) -> int:
        return hash(self.query)


def compile_rule(query: str) -> Rule:
    """Parse `query` once; raises RuleSyntaxError pointing at the mistake."""
    return Rule(query)
