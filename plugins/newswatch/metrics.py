"""Metrics: a Prometheus text exposition of the database's counts, and per-run counts sent to Airflow's Stats.

``/newswatch/metrics`` (``newswatch.web``) serves :func:`prometheus_text`. It is public, like most scrape
targets, so it carries counts only: no title, URL, feed or rule name, no error message. Every number comes
from an index or a small table, so a scrape stays cheap on a large archive (the article and story totals
are the planner's estimates once the tables are big; see ``EXACT_COUNT_LIMIT``).

:func:`emit_run_metrics` is called by the poll DAG's ``summarize`` task with the run's totals (the same
dict it records in ``poll_runs``) and sends them through Airflow's metrics (StatsD or OpenTelemetry,
whichever ``[metrics]`` configures; nothing when metrics are off).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from newswatch import db

log = logging.getLogger(__name__)

# Above this many rows (planner estimate) the article total is the estimate, refreshed by ANALYZE
# (autovacuum, and the maintenance DAG daily): an exact count(*) of millions of rows is a full index scan.
EXACT_COUNT_LIMIT = 200_000
STATS_PREFIX = "newswatch"
_NAME = re.compile(r"[^a-zA-Z0-9_]")
_LAST_RUN_COLUMNS = ("feeds_polled", "feeds_failed", "new_articles", "new_stories", "alerts_sent", "alerts_failed")


def _metric(lines: list[str], name: str, kind: str, help_text: str,
            samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        label_text = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
        lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def collect(cur) -> dict:
    """All the numbers of the exposition, read with one open cursor (dict rows)."""
    out: dict = {}
    out["articles"], out["articles_estimated"] = _count(cur, "articles")
    cur.execute("SELECT count(*) AS n FROM articles WHERE fetched_at >= now() - interval '24 hours'")
    out["articles_24h"] = cur.fetchone()["n"]
    out["stories"], out["stories_estimated"] = _count(cur, "stories")
    cur.execute("SELECT count(*) AS n FROM stories WHERE last_seen_at >= now() - interval '24 hours'")
    out["stories_24h"] = cur.fetchone()["n"]
    cur.execute("SELECT status, count(*) AS n FROM alerts GROUP BY status")
    out["alerts"] = {"pending": 0, "sent": 0, "failed": 0} | {row["status"]: row["n"] for row in cur.fetchall()}
    cur.execute("SELECT * FROM feeds")  # a few hundred rows; columns of later migrations are optional
    feeds = {"ok": 0, "failing": 0, "new": 0, "disabled": 0}
    for feed in cur.fetchall():
        feeds[feed_state(feed)] += 1
    out["feeds"] = feeds
    cur.execute(f"SELECT {', '.join(_LAST_RUN_COLUMNS)}, started_at, finished_at FROM poll_runs "
                "WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1")
    out["last_run"] = cur.fetchone()
    return out


def _count(cur, table: str) -> tuple[int, bool]:
    """Exact row count of a small table; the planner's estimate (kept by ANALYZE) above EXACT_COUNT_LIMIT."""
    cur.execute("SELECT reltuples::bigint AS estimate FROM pg_class WHERE oid = %s::regclass", (table,))
    estimate = cur.fetchone()["estimate"]
    if estimate is None or estimate < EXACT_COUNT_LIMIT:
        cur.execute(f"SELECT count(*) AS n FROM {table}")  # names from this module only
        return cur.fetchone()["n"], False
    return estimate, True


def feed_state(feed: Mapping) -> str:
    """ok, failing, new (never succeeded yet) or disabled (by the config or by newswatch, e.g. HTTP 410)."""
    if not feed.get("enabled", True) or feed.get("disabled_reason"):
        return "disabled"
    if feed.get("consecutive_failures"):
        return "failing"
    if feed.get("last_success_at") is None:
        return "new"
    return "ok"


def entry_failures(cur, feed_ids: Iterable[int] | None = None) -> dict[int, dict]:
    """Per feed: articles given up on (``failed`` entries) and the last article error, for feed health.

    ``None``: every feed. An index on failed entries keeps this cheap; the last error is read per feed.
    """
    cur.execute(
        """
        SELECT f.id AS feed_id,
               (SELECT count(*) FROM feed_entries e WHERE e.feed_id = f.id AND e.status = 'failed') AS failed,
               (SELECT e.last_error_kind || ': ' || e.last_error FROM feed_entries e
                WHERE e.feed_id = f.id AND e.status IN ('pending', 'failed') AND e.last_error IS NOT NULL
                ORDER BY e.id DESC LIMIT 1) AS error
        FROM feeds f WHERE %(all)s OR f.id = ANY(%(ids)s)
        """,
        {"all": feed_ids is None, "ids": list(feed_ids or [])},
    )
    return {row["feed_id"]: row for row in cur.fetchall() if row["failed"] or row["error"]}


def prometheus_text(url: str | None = None) -> str:
    """The exposition (text format 0.0.4); ``newswatch_database_up 0`` alone when the database is unreachable."""
    lines: list[str] = []
    try:
        with db.transaction(url) as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute("SET LOCAL statement_timeout = '10s'")
            data = collect(cur)
    except Exception as exc:  # a scrape must answer; the failure is itself the signal
        log.warning("newswatch metrics: database unavailable: %s", exc)
        _metric(lines, "newswatch_database_up", "gauge", "1 when the newswatch database answered this scrape.",
                [({}, 0)])
        return "\n".join(lines) + "\n"
    _metric(lines, "newswatch_database_up", "gauge", "1 when the newswatch database answered this scrape.",
            [({}, 1)])
    _metric(lines, "newswatch_articles", "gauge",
            "Stored articles (the planner's estimate above 200,000 rows, see newswatch_articles_estimated).",
            [({}, data["articles"])])
    _metric(lines, "newswatch_articles_estimated", "gauge", "1 when newswatch_articles is an estimate.",
            [({}, int(data["articles_estimated"]))])
    _metric(lines, "newswatch_articles_last_24h", "gauge", "Articles fetched in the last 24 hours.",
            [({}, data["articles_24h"])])
    _metric(lines, "newswatch_stories", "gauge",
            "Stories, groups of articles about one event (an estimate above 200,000, see newswatch_stories_estimated).",
            [({}, data["stories"])])
    _metric(lines, "newswatch_stories_estimated", "gauge", "1 when newswatch_stories is an estimate.",
            [({}, int(data["stories_estimated"]))])
    _metric(lines, "newswatch_stories_active_24h", "gauge", "Stories that gained an article in the last 24 hours.",
            [({}, data["stories_24h"])])
    _metric(lines, "newswatch_alerts", "gauge", "Alerts in the outbox by delivery status.",
            [({"status": status}, count) for status, count in sorted(data["alerts"].items())])
    _metric(lines, "newswatch_feeds", "gauge", "Configured feeds by state (ok, failing, new, disabled).",
            [({"state": state}, count) for state, count in sorted(data["feeds"].items())])
    _metric(lines, "newswatch_feeds_failing", "gauge", "Enabled feeds whose last poll failed.",
            [({}, data["feeds"]["failing"])])
    run = data["last_run"]
    for column in _LAST_RUN_COLUMNS:
        _metric(lines, f"newswatch_last_run_{column}", "gauge", f"{column.replace('_', ' ')} in the last finished run.",
                [({}, run[column] if run else 0)])
    _metric(lines, "newswatch_last_run_finished_timestamp_seconds", "gauge",
            "When the last run finished (Unix time; 0 before the first run).",
            [({}, _timestamp(run["finished_at"]) if run else 0)])
    _metric(lines, "newswatch_last_run_duration_seconds", "gauge", "Duration of the last finished run.",
            [({}, (run["finished_at"] - run["started_at"]).total_seconds() if run else 0)])
    return "\n".join(lines) + "\n"


def emit_run_metrics(totals: Mapping[str, int]) -> int:
    """Send a run's totals through Airflow's Stats; returns how many values were sent.

    For every key of ``totals`` (``feeds.feeds``, ``articles.stored``, ``alerts.sent``, …) two metrics:
    a counter ``newswatch.<key>`` incremented by the value (sums and rates over runs) and a gauge
    ``newswatch.last_run.<key>`` (the last run's value). Never raises: metrics must not fail a run.
    """
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # pragma: no cover - outside Airflow (the CLI)
        return 0
    sent = 0
    for key, value in sorted(totals.items()):
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        name = ".".join(_NAME.sub("_", part) for part in str(key).split("."))
        try:
            Stats.incr(f"{STATS_PREFIX}.{name}", count=int(value))
            Stats.gauge(f"{STATS_PREFIX}.last_run.{name}", float(value))
            sent += 1
        except Exception as exc:  # a metrics backend problem is logged, never raised
            log.warning("newswatch metrics: could not emit %s: %s", name, exc)
    return sent
