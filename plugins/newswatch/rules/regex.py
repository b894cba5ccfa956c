"""Regexes in rules (`/…/`): vetted so that none can backtrack catastrophically, then compiled.

A rule's regex is written by a user and searched in every article, so its parse tree (`re._parser`) is
checked for the shapes that take exponential or quadratic time and its worst case weighed against a budget
before it is compiled from that same tree. Separate because it is a self-contained piece of hardening, on
Python's private regex internals, that the parser calls once per regex.
"""

from __future__ import annotations

import re
import re._compiler as _sre_compile  # private, stable since 3.11: regexes are vetted on their parse
import re._constants as _sre  # tree (re._parser), then compiled from it
import re._parser as _sre_parse

from newswatch.rules.errors import RuleSyntaxError
from newswatch.text import normalize_text

REGEX_MAX_LENGTH = 200  # characters between the slashes
# Backtracking budget of a regex: the product of what each repetition or alternation can try, where
# *, + and {n,} count 1,000, ? counts 2, {m,n} counts n-m+1 and a|b|c counts 3. One `.*` plus one `?`
# or a two-way alternation fits (worst case ~1-2 s on 20,000 hostile characters); two `.*` do not
# (`a.*a.*x` takes ~10 s on 4,000 characters of "a").
REGEX_BUDGET = 2_000
_UNBOUNDED_COST = 1_000

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
