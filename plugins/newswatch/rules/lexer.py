"""The tokens of the query language: a rule's text cut into words, phrases, regexes, fields, operators and
parentheses, each with the column where it starts.

Separate from the parser so that what a rule looks like character by character (quotes, `-`, `/…/`,
`NEAR/5`, `title:`, lowercase operators refused) is decided in one place and the grammar sees only tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newswatch.rules.errors import RuleSyntaxError

DEFAULT_NEAR = 10  # distance of a bare NEAR
MAX_NEAR = 1000

# The fields a term can be limited to (`title:x`, `lang:fr`) and the field each name means.
_SCOPES = {
    "title": "title",
    "body": "body",
    "feed": "feed",
    "site": "site",
    "language": "language",
    "lang": "language",
    "about": "about",
    "like": "like",
}
_TEXT_SCOPES = frozenset({"title", "body"})
_MEANING_SCOPES = frozenset({"about", "like"})  # terms matched by meaning (newswatch.alerts.watches), not by words

_QUOTES = '"“”„‟«»'
_KEYWORDS = ("AND", "OR", "NOT")
_SCOPE_PREFIX = re.compile(r"([A-Za-z]+):")
_NEAR_DISTANCE = re.compile(r"[0-9]{1,4}")


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
