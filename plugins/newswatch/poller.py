"""Feed polling: keep the feeds table in step with the config, fetch feeds, queue their new entries.

Each feed is fetched with a conditional GET (stored ETag / Last-Modified), parsed, and its entries
inserted into ``feed_entries`` keyed on (feed, GUID): an entry seen before is never queued again, so
re-running a poll is harmless. A failing feed is recorded (kind and message) and never stops the
others.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg2.extras import execute_values

from newswatch import db
from newswatch.config import Settings
from newswatch.feeds import FeedError, parse_feed
from newswatch.fetcher import Fetcher, FetchError, FetchResult, redact

log = logging.getLogger(__name__)

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


@dataclass
class PollOutcome:
    feed_id: int
    outcome: str  # ok | not_modified | error
    new_entries: int = 0
    error: str | None = None


def sync_feeds(settings: Settings) -> list[int]:
    """Upsert configured feeds (matched by name) and return the ids of the enabled ones.

    Feeds removed from the config are disabled, not deleted, so their articles keep their history.
    A changed URL resets the conditional-GET validators, which belong to the old URL.
    """
    with db.transaction() as cur:
        for feed in settings.feeds:
            cur.execute(
                """
                INSERT INTO feeds (name, url, enabled) VALUES (%s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET
                    enabled = EXCLUDED.enabled,
                    url = EXCLUDED.url,
                    etag = CASE WHEN feeds.url = EXCLUDED.url THEN feeds.etag END,
                    last_modified = CASE WHEN feeds.url = EXCLUDED.url THEN feeds.last_modified END,
                    updated_at = now()
                WHERE feeds.enabled IS DISTINCT FROM EXCLUDED.enabled OR feeds.url IS DISTINCT FROM EXCLUDED.url
                """,
                (feed.name, feed.url, feed.enabled),
            )
        names = [feed.name for feed in settings.feeds]
        cur.execute(
            "UPDATE feeds SET enabled = false, updated_at = now() WHERE enabled AND NOT (name = ANY(%s))",
            (names,),
        )
        cur.execute("SELECT id FROM feeds WHERE enabled ORDER BY id")
        return [row["id"] for row in cur.fetchall()]


def batched(items: list[int], size: int) -> list[list[int]]:
    return [items[index:index + size] for index in range(0, len(items), size)]


def poll_feeds(feed_ids: list[int], settings: Settings) -> dict[str, int]:
    """Poll the given feeds concurrently; returns counts for logs and XCom."""
    with db.transaction() as cur:
        cur.execute("SELECT id, name, url, etag, last_modified FROM feeds WHERE id = ANY(%s) AND enabled",
                    (list(feed_ids),))
        rows = cur.fetchall()
    workers = min(settings.polling.feed_workers, max(len(rows), 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feed") as pool:
        outcomes = list(pool.map(lambda row: _poll_one(row, settings), rows))
    counts = {"feeds": len(outcomes), "failed": 0, "not_modified": 0, "new_entries": 0}
    for outcome in outcomes:
        counts["failed"] += outcome.outcome == "error"
        counts["not_modified"] += outcome.outcome == "not_modified"
        counts["new_entries"] += outcome.new_entries
    return counts


def _poll_one(row: dict, settings: Settings) -> PollOutcome:
    started = time.monotonic()
    feed_id = row["id"]
    try:
        with Fetcher(settings.network) as fetcher:
            result = fetcher.get(
                row["url"],
                accept=FEED_ACCEPT,
                etag=row["etag"],
                last_modified=row["last_modified"],
                max_bytes=settings.network.max_feed_bytes,
            )
        if result.not_modified:
            _record(feed_id, "not_modified", result, started)
            return PollOutcome(feed_id, "not_modified")
        parsed = parse_feed(
            result.content,
            url=result.url,
            content_type=result.content_type,
            max_entries=settings.polling.max_articles_per_feed,
        )
    except (FetchError, FeedError) as exc:
        status = getattr(exc, "status", None)
        log.warning("feed %s (%s) failed: %s", row["name"], redact(row["url"]), exc)
        _record(feed_id, "error", None, started, error_kind=exc.kind, error=exc.message, status=status)
        return PollOutcome(feed_id, "error", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken feed must never stop the batch
        log.exception("feed %s crashed the parser", row["name"])
        _record(feed_id, "error", None, started, error_kind="internal", error=f"{type(exc).__name__}: {exc}")
        return PollOutcome(feed_id, "error", error=str(exc))
    entries = [
        (feed_id, entry.guid, entry.url, entry.title, entry.summary, entry.published_at)
        for entry in parsed.entries
    ]
    new = _record(feed_id, "ok", result, started, entries=entries, warning=parsed.warning)
    log.info("feed %s: %d entries, %d new", row["name"], len(entries), new)
    return PollOutcome(feed_id, "ok", new_entries=new)


def _record(
    feed_id: int,
    outcome: str,
    result: FetchResult | None,
    started: float,
    *,
    entries: list[tuple] | None = None,
    error_kind: str | None = None,
    error: str | None = None,
    status: int | None = None,
    warning: str | None = None,
) -> int:
    """Store the poll's outcome, the feed's new state and its new entries in one transaction."""
    now = datetime.now(UTC)
    new_entries = 0
    with db.transaction() as cur:
        if entries:
            inserted = execute_values(
                cur,
                """
                INSERT INTO feed_entries (feed_id, guid, url, title, summary, published_at)
                VALUES %s ON CONFLICT (feed_id, guid) DO NOTHING RETURNING id
                """,
                [tuple(db.strip_nul(value) for value in entry) for entry in entries],
                fetch=True,
            )
            new_entries = len(inserted)
        if outcome == "error":
            cur.execute(
                """
                UPDATE feeds SET last_polled_at = %s, last_status = %s,
                    consecutive_failures = consecutive_failures + 1,
                    last_error_kind = %s, last_error = %s, updated_at = now()
                WHERE id = %s
                """,
                (now, status, error_kind, error, feed_id),
            )
        else:
            assert result is not None
            cur.execute(
                """
                UPDATE feeds SET last_polled_at = %s, last_success_at = %s, last_status = %s,
                    consecutive_failures = 0, last_error_kind = %s, last_error = %s,
                    etag = COALESCE(%s, etag), last_modified = COALESCE(%s, last_modified), updated_at = now()
                WHERE id = %s
                """,
                (now, now, result.status, "warning" if warning else None, warning,
                 result.headers.get("etag"), result.headers.get("last-modified"), feed_id),
            )
        cur.execute(
            """
            INSERT INTO feed_polls (feed_id, polled_at, outcome, http_status, error_kind, error, entries,
                                    new_entries, bytes, duration_ms)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (feed_id, now, outcome, result.status if result else status, error_kind, error,
             len(entries or []), new_entries, result.bytes_received if result else 0,
             int((time.monotonic() - started) * 1000)),
        )
    return new_entries
