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

A wrong value raises :class:`RetentionConfigError` (``newswatch.retention``) listing every problem; nothing is
deleted then.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from newswatch import db
from newswatch.retention import Retention, RetentionConfigError, parse_retention

log = logging.getLogger(__name__)

BATCH = 5_000
# Tables vacuumed and analysed; those missing (an older schema) are skipped.
VACUUM_TABLES = ("articles", "stories", "alerts", "feed_entries", "feed_polls", "delivery_attempts", "feeds",
                 "article_bands", "article_entities", "poll_runs")


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
