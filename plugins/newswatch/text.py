"""Text folding shared by every stage: one normaliser, so that rules, near-duplicate shingles, boilerplate
lines and extraction compare text the same way (case, accents, typography, whitespace); and one filter of
control characters for whatever a stranger's document or server says."""

from __future__ import annotations

import functools
import unicodedata

__all__ = ["normalize_text", "without_controls"]

# C0 controls but tab and line breaks, DEL and the C1 controls.
_CONTROL_CHARACTERS = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)])


def without_controls(text: str) -> str:
    """``text`` without control characters (tab and line breaks stay).

    PostgreSQL text cannot hold NUL; ESC, BEL and the other controls carry no meaning in news text or in an
    error quoting a server's answer, and would reach operators' terminals as escape sequences.
    """
    return text.translate(_CONTROL_CHARACTERS)

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
    Idempotent: compatibility characters are decomposed before the typography
    table and casefolding apply ("‴" -> "'''", "ℌ" -> "h"), so folding the
    result again changes nothing.
    """
    if text.isascii():  # the steps below reduce to this for ASCII, and most text is mostly ASCII
        return " ".join(text.lower().split())
    text = unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHY))
    text = unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHY).casefold())
    text = text.translate(_combining_marks())
    # Recompose what NFKD split without accents (e.g. Hangul syllables).
    return " ".join(unicodedata.normalize("NFC", text).split())


# Above this code point Unicode has no combining mark (tests check it against the running Python's tables):
# scanning only this far builds the table nine times faster, which every new process pays once.
_LAST_COMBINING_MARK = 0x1E94A


@functools.cache
def _combining_marks() -> dict[int, None]:
    """Translation table deleting every combining mark (built on first use)."""
    return {cp: None for cp in range(_LAST_COMBINING_MARK + 1) if unicodedata.combining(chr(cp))}
