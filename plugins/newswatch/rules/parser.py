"""The parser: a rule's tokens become its syntax tree, or a RuleSyntaxError that points at the mistake.

Recursive descent over the lexer's tokens, with the checks only the grammar can make (empty groups, what
NEAR may join, a field inside a field, nesting depth); builds the words, terms, fields and vetted regexes
of the tree. Separate from the tree so that matching code never meets a token, and from the lexer so the
grammar reads on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from newswatch.rules.documents import _language, _site
from newswatch.rules.errors import RuleSyntaxError
from newswatch.rules.lexer import _MEANING_SCOPES, _SCOPES, _TEXT_SCOPES, _lex, _Token
from newswatch.rules.regex import _compile_regex
from newswatch.rules.syntax import (
    _And,
    _Field,
    _Meaning,
    _Near,
    _Node,
    _Not,
    _Or,
    _Regex,
    _Term,
    _term_key,
    _Word,
    meaning_key,
)
from newswatch.text import normalize_text

MAX_NESTING = 50  # parentheses and NOTs inside one another: parsing and matching recurse once per level
_QUERY_TOKEN = re.compile(r"[\w*]+")
_TERM_START = ("WORD", "PHRASE", "REGEX", "SCOPE", "NOT", "(")
_HOST = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")
_STORY_ID = re.compile(r"[0-9]{1,18}")
_URL = re.compile(r"https?://[^\s/?#]+\S*", re.IGNORECASE)
MAX_DESCRIPTION = 500  # characters of an about-term: a sentence or two is what the model places well
DEFAULT_MIN_SIMILARITY = 0.40  # a topic watch; bench/watches.py's precision per threshold is in docs/rules.md


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


def _make_meaning(token: _Token, scope: str, threshold: float) -> _Meaning:
    """An about- or like-term; checked here so that its mistakes point at their column like any other."""
    if token.kind not in ("WORD", "PHRASE"):
        example = 'about:"US strikes in Syria"' if scope == "about" else "like:1234 or like:https://…"
        raise RuleSyntaxError(f"'{scope}:' takes a value, e.g. {example}", token.position)
    value = " ".join(token.text.split())
    if scope == "about":
        if not _QUERY_TOKEN.search(normalize_text(value)):
            raise RuleSyntaxError("'about:' needs a description with words, e.g. about:\"US strikes in Syria\"",
                                  token.position)
        if len(value) > MAX_DESCRIPTION:
            raise RuleSyntaxError(f"an about: description is at most {MAX_DESCRIPTION} characters: a sentence "
                                  "or two says what the story is", token.position)
    elif not (_STORY_ID.fullmatch(value) or _URL.fullmatch(value)):
        raise RuleSyntaxError("'like:' takes a story id (like:1234) or an article URL (like:https://…)",
                              token.position)
    return _Meaning(scope, value, meaning_key(scope, value), threshold)


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

    def __init__(self, query: str, min_similarity: float | None = None) -> None:
        self.tokens = _lex(query)
        self.min_similarity = DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity
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
        if _SCOPES[scope.text] in _MEANING_SCOPES:
            self.advance()
            return _make_meaning(value, _SCOPES[scope.text], self.min_similarity)
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
