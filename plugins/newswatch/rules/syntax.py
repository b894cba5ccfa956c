"""The syntax tree of a rule and how each node matches a prepared document.

Words, terms (a word or phrase, maybe limited to the title or the body), regexes, fields (feed, site,
language), NEAR, NOT, AND and OR: each node answers `evaluate(doc)` (does it match) and `hits(doc)` (the
terms, as written, that made it match), memoising in the prepared document what many rules share.
Separate from the parser because this is the code that runs on every article, and a node never meets the
text of a query.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from newswatch.rules.documents import PreparedDocument, _stem

_LAST = chr(0x10FFFF)  # sorts after any character a token can hold


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


def _term_key(scope: str | None, words: list[str]) -> str:
    """Memo key of a term: a string (its hash is cached), unlike any word or regex key."""
    return f"\x00{scope or ''}\x00{' '.join(words)}"


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


def meaning_key(kind: str, value: str) -> str:
    """The key under which a meaning term's vector and similarities are stored and looked up: an about-term
    by a hash of its description (whitespace folded: the same words in another rule share one vector), a
    like-term by what it names."""
    value = " ".join(value.split())
    if kind == "about":
        return "about:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
    return f"like:{value}"


@dataclass(frozen=True, slots=True)
class _Meaning:
    """``about:"description"`` or ``like:STORY_ID`` / ``like:URL``: the article's meaning is at least
    `threshold` close (cosine similarity) to the term's vector, whose similarity the document carries under
    `key` (computed in PostgreSQL, never here: matching loads no model)."""

    kind: str  # "about" or "like"
    value: str  # the description, the story id or the URL, as written
    key: str  # see newswatch.rules.meaning_key
    threshold: float

    @property
    def label(self) -> str:
        return f'{self.kind}:"{self.value}"' if self.kind == "about" else f"{self.kind}:{self.value}"

    def similarity(self, doc: PreparedDocument) -> float | None:
        return doc.meanings.get(self.key)

    def evaluate(self, doc: PreparedDocument) -> bool:
        found = doc.meanings.get(self.key)
        return found is not None and found >= self.threshold

    def hits(self, doc: PreparedDocument) -> Iterator[str]:
        if self.evaluate(doc):
            yield f"{self.label}, similarity {doc.meanings[self.key]:.2f}"


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


_Node = _Term | _Regex | _Field | _Meaning | _Near | _Not | _And | _Or
