"""Write the settings reference of docs/configuration.md from the pydantic models of newswatch.config.

The reference (every section and key with its type, default, allowed values and the ``Field`` description)
lives between two markers in docs/configuration.md; the prose around them is written by hand. Generating it
means a setting cannot be added, changed or removed without the reference following: the test suite fails
while the file differs from what this script would write.

    .venv/bin/python scripts/config_reference.py          # rewrite the block in docs/configuration.md
    .venv/bin/python scripts/config_reference.py --check  # exit 1 when the block is out of date
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union

ROOT = Path(__file__).resolve().parents[1]
# This checkout's package, not whichever one the venv has installed in editable mode.
sys.path.insert(0, str(ROOT / "plugins"))

import annotated_types  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402

from newswatch import retention  # noqa: E402
from newswatch.config import Settings  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
COMMAND = "make config-reference"
NOTE = ("<!-- Generated from plugins/newswatch/config.py (and newswatch.retention.Retention) by "
        f"`{COMMAND}`: edit the Field descriptions there, not this block. -->")


class ReferenceError(Exception):
    """The models cannot be rendered as they are (a field without description, an unknown constraint)."""


def _retention_fields() -> Iterator[tuple[str, FieldInfo, str]]:
    """``retention`` is a plain mapping in Settings, checked by retention.parse_retention because the
    environment may override each key; its keys are documented on the Retention dataclass."""
    hints = typing.get_type_hints(retention.Retention, include_extras=True)
    for field in dataclasses.fields(retention.Retention):
        info = FieldInfo.from_annotated_attribute(hints[field.name], field.default)
        yield field.name, info, f"environment: `{retention.ENV_PREFIX}{field.name.upper()}`"


# Sections whose keys are not pydantic fields of their own model.
_SECTION_FIELDS = {"retention": _retention_fields}


def _model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, directly, in a list or as ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model(arg)
        if found is not None:
            return found
    return None


def _type(annotation: Any) -> str:
    """The YAML type of a field, in words."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(_type(arg) for arg in args if arg is not type(None))
    if origin is list:
        return f"list of {_type(args[0])}s"
    if origin is dict or _model(annotation) is not None:
        return "mapping"
    if origin is Literal:
        return _type(type(args[0]))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "string"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation not in names:
        raise ReferenceError(f"no YAML name for the type {annotation!r}: add it to config_reference._type")
    return names[annotation]


def _value(value: Any) -> str:
    """A default as it would be written in the YAML file."""
    if value is None:
        return "not set"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value)}`"


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return _value(info.default_factory())  # type: ignore[call-arg]
    return _value(info.default)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _allowed(where: str, info: FieldInfo) -> str:
    """The constraints pydantic enforces on a field; an unknown one stops the script (it must not vanish)."""
    lower = upper = length_min = length_max = pattern = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            lower = ("≥", item.ge)
        elif isinstance(item, annotated_types.Gt):
            lower = (">", item.gt)
        elif isinstance(item, annotated_types.Le):
            upper = ("≤", item.le)
        elif isinstance(item, annotated_types.Lt):
            upper = ("<", item.lt)
        elif isinstance(item, annotated_types.MinLen):
            length_min = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            length_max = item.max_length
        elif getattr(item, "pattern", None) is not None:
            pattern = item.pattern
        else:
            raise ReferenceError(f"{where}: cannot describe the constraint {item!r}: teach config_reference._allowed")
    parts: list[str] = []
    if lower and upper and lower[0] == "≥" and upper[0] == "≤":
        parts.append(f"{_number(lower[1])} – {_number(upper[1])}")
    else:
        parts.extend(f"{bound[0]} {_number(bound[1])}" for bound in (lower, upper) if bound is not None)
    if length_min is not None or length_max is not None:
        parts.append(f"{length_min or 0} – {length_max} characters" if length_max is not None
                     else f"at least {length_min} characters")
    if pattern is not None:
        parts.append(f"matching `{pattern}`")
    annotation = info.annotation
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is Literal:
            parts.append("one of " + ", ".join(f"`{value}`" for value in typing.get_args(arg)))
        elif isinstance(arg, type) and issubclass(arg, enum.Enum):
            parts.append("one of " + ", ".join(f"`{member.value}`" for member in arg))
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _description(where: str, info: FieldInfo) -> str:
    if not info.description:
        raise ReferenceError(f"{where} has no Field(description=...): say what it is and why")
    return info.description


def _table(prefix: str, fields: list[tuple[str, FieldInfo, str]], nested: list[tuple[str, type[BaseModel]]]) -> str:
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for name, info, note in fields:
        where = f"{prefix}.{name}"
        meaning = _description(where, info) + (f" ({note})" if note else "")
        kind = _type(info.annotation)
        model = _model(info.annotation)
        if model is not None:
            nested.append((where, model))
            kind += f", see `{where}`"
        rows.append("| " + " | ".join(_cell(cell) for cell in (
            f"`{name}`", kind, _default(info), _allowed(where, info), meaning)) + " |")
    return "\n".join(rows)


def _model_fields(model: type[BaseModel]) -> list[tuple[str, FieldInfo, str]]:
    return [(name, info, "") for name, info in model.model_fields.items()]


def _section(title: str, intro: str, fields: list[tuple[str, FieldInfo, str]], prefix: str = "") -> str:
    """One heading and its table, then the tables of the mappings nested in it (keys named ``prefix.key``)."""
    nested: list[tuple[str, type[BaseModel]]] = []
    text = f"### `{title}`\n\n{intro}\n\n{_table(prefix or title, fields, nested)}\n"
    for where, model in nested:
        intro = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        text += "\n" + _section(where, intro or f"The mapping of `{where}`:", _model_fields(model))
    return text


def render(settings: type[BaseModel] = Settings) -> str:
    """The generated block, markers included."""
    sections: list[str] = []
    for name, info in settings.model_fields.items():
        description = _description(name, info).rstrip(".")
        model = _model(info.annotation)
        if name in _SECTION_FIELDS:
            sections.append(_section(name, f"{description}. A mapping, optional:", list(_SECTION_FIELDS[name]())))
        elif model is not None and typing.get_origin(info.annotation) is list:
            sections.append(_section(name, f"{description}. A list; each entry is a mapping:", _model_fields(model),
                                     prefix=f"{name}[]"))
        elif model is not None:
            sections.append(_section(name, f"{description}. A mapping, optional:", _model_fields(model)))
        else:
            sections.append(_section(name, f"{description}.", [(name, info, "")]))
    return "\n".join([START, NOTE, "", "\n".join(sections), END])


def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between the markers (markers included) replaced by ``block``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ReferenceError(f"{DOC.relative_to(ROOT)} lacks the markers {START} ... {END}")
    return text[:start] + block + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the reference is out of date")
    args = parser.parse_args(argv)
    current = DOC.read_text(encoding="utf-8")
    try:
        wanted = replace_block(current, render())
    except ReferenceError as exc:
        print(f"config_reference: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if current != wanted:
            print(f"{DOC.relative_to(ROOT)} is out of date with the config models: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"{DOC.relative_to(ROOT)} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
