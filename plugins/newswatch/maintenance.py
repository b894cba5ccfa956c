"""Retention and database upkeep, run daily by the ``newswatch_maintenance`` DAG.

What it does, each step idempotent (a re-run, or a run right after another, changes nothing more):

1. ``drop_article_bodies``: empties the ``body`` of articles fetched more than ``article_bodies_days`` ago
   and records ``body_dropped_at``. Title, URLs, summary, language, story, dedup fields and alerts stay, so
   pages, story history and search by title and summary keep working. Only articles already grouped into
   a story and matched against the rules are touched (the pipeline reads bodies only before that).
2. ``prune_feed_polls``: deletes ``feed_polls`` rows older than ``feed_polls_days`` (the feed health
   columns live in ``feeds``; the poller reads at most a week of history, so the minimum is 8 days).
3. ``prune_delivery_attempts``: deletes ``delivery_attempts`` older than ``delivery_attempts_days``,
   except those of alerts and digests still pending (an operator may be looking at why).
4. ``vacuum_analyze``: ``VACUUM (ANALYZE)`` of the tables above and the other large ones, so the space of
   dropped bodies and deleted rows is reused and the planner's statistics stay fresh.

Settings, each a number of days (0 keeps everything of that kind), read in this order (later wins):

- defaults: ``article_bodies_days: 90``, ``feed_polls_days: 30``, ``delivery_attempts_days: 90``, and
  ``vacuum: true``;
- the optional ``retention`` mapping of the newswatch YAML file (``$NEWSWATCH_CONFIG`` or
  ``config/newswatch.yaml``), read by the config's reader (``${VAR}`` expanded as in every other section);
- environment variables ``NEWSWATCH_RETENTION_ARTICLE_BODIES_DAYS``, ``NEWSWATCH_RETENTION_FEED_POLLS_DAYS``,
  ``NEWSWATCH_RETENTION_DELIVERY_ATTEMPTS_DAYS``, ``NEWSWATCH_RETENTION_VACUUM``.

A wrong value raises :class:`RetentionConfigError` listing every problem; nothing is deleted then.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from newswatch import db

log = logging.getLogger(__name__)

BATCH = 5_000
MIN_FEED_POLLS_DAYS = 8  # the poller's publishing-rate estimate reads 7 days of feed_polls
MAX_DAYS = 36_500
ENV_PREFIX = "NEWSWATCH_RETENTION_"
# Tables vacuumed and analysed; those missing (an older schema) are skipped.
VACUUM_TABLES = ("articles", "stories", "alerts", "feed_entries", "feed_polls", "delivery_attempts", "feeds",
                 "article_bands", "article_entities", "poll_runs")


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


def load_retention(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Retention:
    """Read ``retention`` from the YAML config (a missing file means defaults), then apply the environment.

    The file is read by the config's own reader (UTF-8, duplicate keys refused, ``${VAR}`` expanded), so
    the section means the same here as in ``check-config``; the rest of the file is not validated here, so
    a mistake in a feed or rule does not stop the upkeep.
    """
    from newswatch.config import ConfigError, config_path, interpolate, read_config_text, read_document

    file = Path(path) if path else config_path()
    raw = None
    if file.exists():
        try:
            text, name = read_config_text(file)
            raw, problems = interpolate(read_document(text, name).get("retention"), "retention")
        except ConfigError as exc:
            raise RetentionConfigError(exc.path, exc.problems) from None
        if problems:
            raise RetentionConfigError(str(file), problems)
    return parse_retention(raw, env, source=str(file))


def _cutoff(days: int, now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


def drop_article_bodies(days: int, *, now: datetime | None = None, batch: int = BATCH, url: str | None = None) -> int:
    """Empty bodies of articles fetched before now - ``days`` (grouped and matched ones only); returns how many."""
    if days <= 0:
        return 0
    cutoff = _cutoff(days, now)
    total = 0
    while True:
        with db.transaction(url) as cur:
            cur.execute(
                """
                UPDATE articles SET body = '', body_dropped_at = now()
                WHERE id IN (
                    SELECT id FROM articles
                    WHERE fetched_at < %s AND body_dropped_at IS NULL
                      AND story_id IS NOT NULL AND matched_at IS NOT NULL
                    ORDER BY fetched_at LIMIT %s FOR UPDATE SKIP LOCKED)
                """,
                (cutoff, batch),
            )
            changed = cur.rowcount
        total += changed
        if changed < batch:
            return total


def _delete_older(table: str, column: str, days: int, extra: str, now: datetime | None, batch: int,
                  url: str | None) -> int:
    if days <= 0:
        return 0
    cutoff = _cutoff(days, now)
    total = 0
    while True:
        with db.transaction(url) as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (table,))
            if not cur.fetchone()["present"]:
                return 0
            # Table and column names come from this module, never from the configuration.
            cur.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} t WHERE t.{column} < %s {extra} "
                f"ORDER BY t.{column} LIMIT %s FOR UPDATE SKIP LOCKED)",
                (cutoff, batch),
            )
            deleted = cur.rowcount
        total += deleted
        if deleted < batch:
            return total


def prune_feed_polls(days: int, *, now: datetime | None = None, batch: int = BATCH, url: str | None = None) -> int:
    """Delete feed_polls rows older than ``days``; returns how many."""
    return _delete_older("feed_polls", "polled_at", days, "", now, batch, url)


def prune_delivery_attempts(days: int, *, now: datetime | None = None, batch: int = BATCH,
                            url: str | None = None) -> int:
    """Delete delivery attempts older than ``days`` unless their alert or digest is still pending."""
    keep_pending = (
        "AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = t.alert_id AND a.status = 'pending') "
        "AND NOT EXISTS (SELECT 1 FROM digests d WHERE d.id = t.digest_id AND d.status = 'pending')"
    )
    return _delete_older("delivery_attempts", "attempted_at", days, keep_pending, now, batch, url)


def vacuum_analyze(url: str | None = None, tables: tuple[str, ...] = VACUUM_TABLES) -> list[str]:
    """``VACUUM (ANALYZE)`` each existing table (outside a transaction: autocommit); returns those done."""
    conn = db.connect(url)
    done: list[str] = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for table in tables:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
                if not cur.fetchone()[0]:
                    continue
                cur.execute(f"VACUUM (ANALYZE) {table}")  # names from VACUUM_TABLES only
                done.append(table)
    finally:
        conn.close()
    return done


def run_all(retention: Retention | None = None, *, now: datetime | None = None, url: str | None = None) -> dict:
    """Every step in order (what ``newswatch_maintenance`` does in one go); returns counts per step."""
    retention = retention or load_retention()
    db.migrate(url)
    counts = {
        "bodies_dropped": drop_article_bodies(retention.article_bodies_days, now=now, url=url),
        "feed_polls_deleted": prune_feed_polls(retention.feed_polls_days, now=now, url=url),
        "delivery_attempts_deleted": prune_delivery_attempts(retention.delivery_attempts_days, now=now, url=url),
    }
    counts["tables_vacuumed"] = len(vacuum_analyze(url)) if retention.vacuum else 0
    return counts
