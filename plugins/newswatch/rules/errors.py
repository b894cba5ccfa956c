"""The one error of the rule language: a rule that cannot be parsed, and the column of the mistake.

Its own module because the lexer, the regex vetting and the parser all raise it, and none of them should
import another for it.
"""

from __future__ import annotations


class RuleSyntaxError(ValueError):
    """A rule that cannot be parsed; `position` is the 0-based offending offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"col {position}: {message}")
        self.message = message
        self.position = position
