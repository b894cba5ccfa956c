"""The ``retention`` settings and their reader: defaults, then the YAML mapping, then the environment.

Kept apart from the upkeep itself (``newswatch.maintenance``) so that the configuration can check the section
with the same parser without importing the maintenance jobs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from pydantic import Field

MIN_FEED_POLLS_DAYS = 8  # the poller's publishing-rate estimate reads 7 days of feed_polls
MAX_DAYS = 36_500
ENV_PREFIX = "NEWSWATCH_RETENTION_"
class RetentionConfigError(ValueError):
    """The retention settings are unusable; ``problems`` has one line per mistake."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass(frozen=True)
class Retention:
    """The ``retention`` settings. The ``Field`` annotations only document them (docs/configuration.md is
    generated from them); :func:`parse_retention` does the checking, since it also reads the environment."""

    article_bodies_days: Annotated[int, Field(ge=0, le=MAX_DAYS, description=(
        "Days article bodies are kept (title, URL, summary, story and alerts stay); 0 keeps them forever"))] = 90
    feed_polls_days: Annotated[int, Field(ge=0, le=MAX_DAYS, description=(
        f"Days of poll history kept; 0 keeps it forever, else at least {MIN_FEED_POLLS_DAYS} (the poller reads "
        "the last 7 days to estimate publishing rates)"))] = 30
    delivery_attempts_days: Annotated[int, Field(ge=0, le=MAX_DAYS, description=(
        "Days delivery attempts are kept (never those of alerts still pending); 0 keeps them forever"))] = 90
    vacuum: Annotated[bool, Field(description=(
        "Run VACUUM (ANALYZE) after pruning, so freed space is reused and planner statistics stay fresh"))] = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_DAY_KEYS = ("article_bodies_days", "feed_polls_days", "delivery_attempts_days")
_KEYS = (*_DAY_KEYS, "vacuum")


def _days(key: str, value: Any, where: str, problems: list[str]) -> int | None:
    if isinstance(value, bool) or value is None:
        problems.append(f"{where}: must be a whole number of days (0 keeps everything), not {value!r}")
        return None
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("d").strip()
        if not text.isdigit():
            problems.append(f"{where}: must be a whole number of days (0 keeps everything), not {value!r}")
            return None
        value = int(text)
    if not isinstance(value, int):
        problems.append(f"{where}: must be a whole number of days (0 keeps everything), not {value!r}")
        return None
    if not 0 <= value <= MAX_DAYS:
        problems.append(f"{where}: must be between 0 and {MAX_DAYS} days, not {value}")
        return None
    if key == "feed_polls_days" and 0 < value < MIN_FEED_POLLS_DAYS:
        problems.append(f"{where}: must be 0 or at least {MIN_FEED_POLLS_DAYS} days (the poller reads the last "
                        f"7 days of feed_polls to estimate publishing rates), not {value}")
        return None
    return value


def _flag(value: Any, where: str, problems: list[str]) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    problems.append(f"{where}: must be true or false, not {value!r}")
    return None


def parse_retention(raw: Any, env: Mapping[str, str] | None = None, source: str = "retention") -> Retention:
    """Defaults, then the YAML ``retention`` mapping (``raw``, may be None), then the environment."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, Any] = Retention().as_dict()
    if raw is not None and not isinstance(raw, Mapping):
        problems.append(f"retention: must be a mapping such as {{article_bodies_days: 90}}, not {type(raw).__name__}")
        raw = None
    for key, value in (raw or {}).items():
        where = f"retention.{key}"
        if key not in _KEYS:
            problems.append(f"{where}: unknown key (known: {', '.join(_KEYS)})")
        elif key == "vacuum":
            parsed = _flag(value, where, problems)
            if parsed is not None:
                values[key] = parsed
        else:
            parsed = _days(key, value, where, problems)
            if parsed is not None:
                values[key] = parsed
    for key in _KEYS:
        name = ENV_PREFIX + key.upper()
        if name in env and env[name].strip() != "":
            parsed = _flag(env[name], name, problems) if key == "vacuum" else _days(key, env[name], name, problems)
            if parsed is not None:
                values[key] = parsed
    unknown = sorted(name for name in env if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX):].lower()
                     not in _KEYS)
    problems.extend(f"{name}: unknown setting (known: {', '.join(ENV_PREFIX + k.upper() for k in _KEYS)})"
                    for name in unknown)
    if problems:
        raise RetentionConfigError(source, problems)
    return Retention(**values)
