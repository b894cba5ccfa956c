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
    at compile time so it cannot backtrack catastrophically (`regex._compile_regex`).
``title:x``, ``body:x``
    The term only in the title / only in the body; ``x`` may be a word,
    wildcard, phrase, regex or a group: ``title:(syria OR syrie)``.
``feed:bbc-world``, ``site:reuters.com``, ``lang:fr`` (``language:fr``)
    The article's feed name (exact, case-insensitive, ``*`` allowed), host
    (the host or any parent domain: ``site:reuters.com`` matches
    "www.reuters.com") and language code (``lang:fr`` also matches "fr-CA").
``about:"US strikes in Syria"``, ``like:1234``, ``like:https://…``
    Meaning terms: the article's meaning (a multilingual sentence embedding of its title and lead) is close
    to the description's, in any language the model reads, or to the story's / the article's given as an
    example: cosine similarity at least the rule's ``min_similarity`` (``DEFAULT_MIN_SIMILARITY`` unless
    set). The similarities come with the `Document` (``meanings``, computed in PostgreSQL by
    ``newswatch.alerts.watches``): matching itself never loads the model.
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

The package, in the order its modules import one another:

- ``errors``: `RuleSyntaxError`, raised by the three below;
- ``documents``: `Document`, `prepare` (folding, tokens, stems) and the stem caches;
- ``regex``: vetting and compiling the regexes of rules;
- ``lexer``: a query's text into tokens;
- ``syntax``: the tree's nodes and how each matches a prepared document;
- ``parser``: tokens into a tree;
- this module: the API, `compile_rule`, `Rule` and `RuleSet`; import from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from newswatch.rules.documents import Document, PreparedDocument, _stem, prepare
from newswatch.rules.errors import RuleSyntaxError
from newswatch.rules.parser import DEFAULT_MIN_SIMILARITY, _Parser
from newswatch.rules.syntax import _And, _Meaning, _Near, _Node, _Not, _Or, _Term, meaning_key
from newswatch.text import normalize_text

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "Document",
    "MeaningTerm",
    "Rule",
    "RuleSet",
    "RuleSyntaxError",
    "compile_rule",
    "meaning_key",
    "normalize_text",
    "prepare",
]


# --- public API --------------------------------------------------------------


MeaningTerm = _Meaning  # kind ("about"/"like"), value, key, threshold: what newswatch.alerts.watches needs


def _meanings(node: _Node) -> list[_Meaning]:
    if isinstance(node, _Meaning):
        return [node]
    if isinstance(node, (_And, _Or)):
        return [term for child in node.children for term in _meanings(child)]
    if isinstance(node, _Not):
        return _meanings(node.child)
    return []


class Rule:
    """A compiled query; immutable, so one instance can serve every worker."""

    __slots__ = ("query", "min_similarity", "_root", "meanings")

    def __init__(self, query: str, min_similarity: float | None = None) -> None:
        self.query = query
        self.min_similarity = DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity
        self._root = _Parser(query, self.min_similarity).parse()
        # The meaning terms (about:, like:) in the order written, each once: the vectors matching needs.
        self.meanings: tuple[_Meaning, ...] = tuple({t.key: t for t in _meanings(self._root)}.values())

    def near_misses(self, doc: Document, margin: float) -> list[str]:
        """Meaning terms whose similarity fell short of the threshold by less than ``margin``, as
        'about:"…", similarity 0.37 (below 0.40)': what a user tunes a threshold by."""
        prepared = prepare(doc)
        return [f"{term.label}, similarity {found:.2f} (below {term.threshold:.2f})" for term in self.meanings
                if (found := term.similarity(prepared)) is not None and term.threshold - margin <= found
                < term.threshold]

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
        return f"compile_rule({self.query!r}, {self.min_similarity!r})"

    def __reduce__(self) -> tuple[object, tuple[str, float]]:
        # recompiled on unpickling: regexes are built from parse trees
        return compile_rule, (self.query, self.min_similarity)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Rule) and other.query == self.query
                and other.min_similarity == self.min_similarity)

    def __hash__(self) -> int:
        return hash((self.query, self.min_similarity))


def compile_rule(query: str, min_similarity: float | None = None) -> Rule:
    """Parse `query` once; raises RuleSyntaxError pointing at the mistake. ``min_similarity`` is the
    threshold of its meaning terms (default ``DEFAULT_MIN_SIMILARITY``)."""
    return Rule(query, min_similarity)


# --- many rules at once ------------------------------------------------------

# ("word", folded word), ("prefix", literal start of a wildcard) or ("meaning", key of a meaning term)
_Trigger = frozenset[tuple[str, str]]


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
    if isinstance(node, _Meaning):  # the document carries a similarity for it (else the term cannot match)
        return frozenset({("meaning", node.key)})
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
        self._meanings: dict[str, list[int]] = {}
        for number, rule in enumerate(self.rules):
            trigger = _trigger(rule._root)
            if trigger is None:
                self._always.append(number)
                continue
            for kind, text in trigger:
                index = {"word": self._words, "prefix": self._prefixes, "meaning": self._meanings}[kind]
                index.setdefault(text, []).append(number)
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
        for key in doc.meanings.keys() & self._meanings.keys():
            found.update(self._meanings[key])
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
