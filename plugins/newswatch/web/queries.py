"""What the pages read: one read-only transaction per request and the SQL behind every page and JSON route.

Kept apart from the routes so that the SQL can be read, tested and benchmarked without HTTP (bench/web.py
times these functions behind a real API server), and so that the configuration pages added later read the
same way. Every function takes a cursor from :func:`reading` and returns plain dicts: rendering is the
templates' business, HTTP the app's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from newswatch import db, metrics

SPARK_DAYS = 14
ATTEMPTS_SHOWN = 10
STATEMENT_TIMEOUT = "15s"
FEED_URL_COLUMNS = ("url", "config_url", "permanent_redirect_url")


@contextmanager
def reading() -> Iterator[Any]:
    """One read-only transaction per request, with a statement timeout so a bad query cannot hang a page."""
    with db.transaction() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        cur.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        yield cur


def _today() -> date:
    return datetime.now(UTC).date()


def _day_series(rows: list[dict], key: str, days: int = SPARK_DAYS) -> dict[Any, list[int]]:
    """{key: [count per UTC day, oldest first]} from rows with ``key``, ``day`` (date) and ``n``."""
    today = _today()
    series: dict[Any, list[int]] = {}
    for row in rows:
        index = days - 1 - (today - row["day"]).days
        if 0 <= index < days:
            series.setdefault(row[key], [0] * days)[index] += row["n"]
    return series


def _since_days(days: int = SPARK_DAYS) -> datetime:
    return datetime.combine(_today() - timedelta(days=days - 1), datetime.min.time(), tzinfo=UTC)


def stories_page(cur, *, before: tuple[datetime, int] | None, limit: int) -> tuple[list[dict], bool]:
    """A page of stories, newest first, after the keyset cursor ``before``; and whether more follow."""
    cur.execute(
        """
        SELECT s.id, s.title, s.article_count, s.languages, s.feeds, s.first_seen_at, s.last_seen_at,
               a.canonical_url AS url
        FROM stories s LEFT JOIN articles a ON a.id = s.representative_article
        WHERE (%(ts)s::timestamptz IS NULL OR (s.last_seen_at, s.id) < (%(ts)s::timestamptz, %(id)s::bigint))
        ORDER BY s.last_seen_at DESC, s.id DESC LIMIT %(limit)s
        """,
        {"ts": before[0] if before else None, "id": before[1] if before else None, "limit": limit + 1},
    )
    rows = cur.fetchall()
    return rows[:limit], len(rows) > limit


def story_members(cur, story_ids: list[int], per_story: int) -> dict[int, list[dict]]:
    """The first ``per_story`` articles of each story, in arrival order."""
    if not story_ids:
        return {}
    cur.execute(
        """
        SELECT m.* FROM unnest(%s::bigint[]) AS sid, LATERAL (
            SELECT id, story_id, title, canonical_url AS url, feed, language, dedup_reason, dedup_score, fetched_at
            FROM articles WHERE story_id = sid ORDER BY fetched_at, id LIMIT %s) m
        """,
        (story_ids, per_story),
    )
    members: dict[int, list[dict]] = {}
    for row in cur.fetchall():
        members.setdefault(row["story_id"], []).append(row)
    return members


def alerts_page(cur, *, before: tuple[datetime, int] | None, limit: int, status: str | None = None,
                story_id: int | None = None) -> tuple[list[dict], bool]:
    """A page of alerts, newest first (optionally of one status or story); and whether more follow."""
    cur.execute(
        """
        SELECT al.*, s.title AS story_title
        FROM alerts al LEFT JOIN stories s ON s.id = al.story_id
        WHERE (%(ts)s::timestamptz IS NULL OR (al.created_at, al.id) < (%(ts)s::timestamptz, %(id)s::bigint))
          AND (%(status)s::text IS NULL OR al.status = %(status)s::text)
          AND (%(story)s::bigint IS NULL OR al.story_id = %(story)s::bigint)
        ORDER BY al.created_at DESC, al.id DESC LIMIT %(limit)s
        """,
        {"ts": before[0] if before else None, "id": before[1] if before else None, "status": status,
         "story": story_id, "limit": limit + 1},
    )
    rows = cur.fetchall()
    return rows[:limit], len(rows) > limit


def delivery_attempts(cur, alert_ids: list[int], per_alert: int = ATTEMPTS_SHOWN) -> dict[int, list[dict]]:
    """The latest delivery attempts of each alert (table of migration 0005; empty before it)."""
    if not alert_ids:
        return {}
    cur.execute("SELECT to_regclass('delivery_attempts') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        return {}
    cur.execute(
        """
        SELECT d.* FROM unnest(%s::bigint[]) AS aid, LATERAL (
            SELECT alert_id, channel, attempted_at, outcome, error, duration_ms FROM delivery_attempts
            WHERE alert_id = aid ORDER BY attempted_at DESC, id DESC LIMIT %s) d
        """,
        (alert_ids, per_alert),
    )
    attempts: dict[int, list[dict]] = {}
    for row in cur.fetchall():
        attempts.setdefault(row["alert_id"], []).append(row)
    return attempts


def rule_activity(cur, days: int = SPARK_DAYS) -> dict[str, list[int]]:
    """Alerts per rule and UTC day over the last ``days`` days (the rules' sparklines)."""
    cur.execute(
        """
        SELECT rule, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
        FROM alerts WHERE created_at >= %s GROUP BY 1, 2
        """,
        (_since_days(days),),
    )
    return _day_series(cur.fetchall(), "rule", days)


def all_feeds(cur) -> list[dict]:
    """Every feed, failing first (then new, ok, disabled). ``SELECT *``: later migrations' columns are optional.

    Feed URLs may carry credentials or tokens (``?key=…``), and every logged-in user reads these pages: they
    are shown as operator events show them, without credentials or query string.
    """
    from newswatch.urls import redact

    cur.execute("SELECT * FROM feeds")
    feeds = cur.fetchall()
    order = {"failing": 0, "new": 1, "ok": 2, "disabled": 3}
    for feed in feeds:
        feed["state"] = metrics.feed_state(feed)
        for key in FEED_URL_COLUMNS:
            if feed.get(key):
                feed[key] = redact(feed[key])
    feeds.sort(key=lambda f: (order[f["state"]], -(f.get("consecutive_failures") or 0), f["name"]))
    return feeds


def add_entry_failures(cur, feeds: list[dict]) -> None:
    """Set ``articles_failed`` and ``article_error`` on each feed (articles given up on), for feed health."""
    failures = metrics.entry_failures(cur, [f["id"] for f in feeds])
    for feed in feeds:
        entries = failures.get(feed["id"], {})
        feed["articles_failed"], feed["article_error"] = entries.get("failed", 0), entries.get("error")


def feed_activity(cur, feed_ids: list[int], days: int = SPARK_DAYS) -> tuple[dict, dict]:
    """Articles stored and failed polls per feed and UTC day over the last ``days`` days."""
    if not feed_ids:
        return {}, {}
    since = _since_days(days)
    cur.execute(
        """
        SELECT feed_id, (fetched_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM articles
        WHERE feed_id = ANY(%s) AND fetched_at >= %s GROUP BY 1, 2
        """,
        (feed_ids, since),
    )
    articles = _day_series(cur.fetchall(), "feed_id", days)
    cur.execute(
        """
        SELECT feed_id, (polled_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM feed_polls
        WHERE feed_id = ANY(%s) AND polled_at >= %s AND outcome = 'error' GROUP BY 1, 2
        """,
        (feed_ids, since),
    )
    return articles, _day_series(cur.fetchall(), "feed_id", days)


def week_languages_and_sources(cur) -> tuple[list[dict], list[dict]]:
    """Articles of the last 7 days per language and per feed (one scan of the fetched_at index range)."""
    cur.execute(
        """
        SELECT coalesce(language, '?') AS language, feed, count(*) AS n, GROUPING(language) AS by_feed FROM articles
        WHERE fetched_at >= now() - interval '7 days' GROUP BY GROUPING SETS ((language), (feed))
        """
    )
    rows = cur.fetchall()
    languages = sorted(({"language": r["language"], "n": r["n"]} for r in rows if not r["by_feed"]),
                       key=lambda r: (-r["n"], r["language"]))
    sources = sorted(({"feed": r["feed"], "n": r["n"]} for r in rows if r["by_feed"]),
                     key=lambda r: (-r["n"], r["feed"]))[:30]
    return languages, sources


def story_detail(cur, story_id: int) -> dict | None:
    """The story with its representative article's URL, or None."""
    cur.execute(
        """
        SELECT s.*, a.canonical_url AS url FROM stories s LEFT JOIN articles a ON a.id = s.representative_article
        WHERE s.id = %s
        """,
        (story_id,),
    )
    return cur.fetchone()


def story_articles(cur, story_id: int, *, after: tuple[datetime, int] | None, limit: int) -> tuple[list[dict], bool]:
    """A page of the story's articles in arrival order, after the keyset cursor ``after``; and whether more follow."""
    cur.execute(
        """
        SELECT id, title, canonical_url AS url, feed, language, published_at, fetched_at, is_partial,
               dedup_reason, dedup_score, dedup_of, body_dropped_at
        FROM articles
        WHERE story_id = %(story)s
          AND (%(ts)s::timestamptz IS NULL OR (fetched_at, id) > (%(ts)s::timestamptz, %(id)s::bigint))
        ORDER BY fetched_at, id LIMIT %(limit)s
        """,
        {"story": story_id, "ts": after[0] if after else None, "id": after[1] if after else None,
         "limit": limit + 1},
    )
    rows = cur.fetchall()
    return rows[:limit], len(rows) > limit


def merged_into(cur, story_id: int) -> int | None:
    """The story a merged (deleted) story now lives in (table of migration 0004; None before it)."""
    cur.execute("SELECT to_regclass('story_merges') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        return None
    cur.execute("SELECT into_story FROM story_merges WHERE merged_story = %s ORDER BY merged_at DESC LIMIT 1",
                (story_id,))
    row = cur.fetchone()
    return row["into_story"] if row else None


def merges_into(cur, story_id: int) -> list[dict]:
    """The stories merged into this one (table of migration 0004; empty before it)."""
    cur.execute("SELECT to_regclass('story_merges') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        return []
    cur.execute("SELECT merged_story, reason, score, merged_at FROM story_merges WHERE into_story = %s "
                "ORDER BY merged_at", (story_id,))
    return cur.fetchall()



# --- configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedConfiguration:
    """The configured feeds of both sources, as the configuration pages show them."""

    feeds: list[Any]  # newswatch.configstore.Item: the file's first, then those added from the UI
    states: dict[str, str]  # polling state by feed name (ok, failing, new, disabled: metrics.feed_state)
    path: str  # the config file read
    problems: list[str]  # why that file cannot be used, one line each (``feeds`` is then empty)
    conflicts: list[str]  # UI items the merge left out or changed (a name the file also declares, …)


def configured_feeds(cur) -> FeedConfiguration:
    """Every configured feed, merged from the file and the UI as the pipeline merges them, with its state.

    ``newswatch.configstore`` does the merge and says, per item, its source and what is wrong with it; this
    adds each feed's polling state from the feeds table. A file that cannot be used is reported, not raised:
    the page that shows the configuration is where one looks when it is wrong.
    """
    from newswatch import config, configstore

    path = str(config.config_path())
    try:
        view = configstore.overview()
    except config.ConfigError as exc:
        return FeedConfiguration([], {}, exc.path, exc.problems, [])
    items = view.items["feed"]
    cur.execute("SELECT * FROM feeds WHERE name = ANY(%s)", ([item.name for item in items],))
    stored = {row["name"]: row for row in cur.fetchall()}
    states = {item.name: metrics.feed_state({**stored.get(item.name, {}), "enabled": item.enabled})
              for item in items}
    return FeedConfiguration(items, states, path, [], view.problems)
