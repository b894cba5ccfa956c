"""Command-line output shared by the commands: aligned tables for people, JSON for machines."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

# Control characters (C0, DEL, C1) in stored text - rows older than the cleaning at storage, or a database
# written by something else - would drive the operator's terminal: shown as visible escapes instead.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def print_table(rows: list[dict[str, Any]], columns: list[str], max_width: int = 60) -> None:
    """A plain aligned table: readable at a glance, greppable, no dependency."""
    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M")
        if isinstance(value, list):
            return _visible(",".join(str(item) for item in value))
        return _visible(str(value).replace("\r\n", " ").replace("\n", " ").replace("\t", " "))

    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [min(max([len(column)] + [len(line[i]) for line in cells]), max_width) for i, column in enumerate(columns)]
    print("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(value[:width].ljust(width) for value, width in zip(line, widths, strict=True)))


def print_json(rows: Any) -> None:
    # json escapes C0 controls itself; C1 controls pass through with ensure_ascii=False.
    print(_CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}",
                       json.dumps(rows, default=str, ensure_ascii=False, indent=2)))


def print_rows(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        print_json(rows)
    else:
        print_table(rows, columns)
