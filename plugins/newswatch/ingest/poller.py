"""Feed polling: keep the feeds table in step with the config, poll the feeds that are due, queue new entries.

Each feed is fetched with a conditional GET (stored ETag / Last-Modified); a 304 costs no parsing.
Entries are inserted into ``feed_entries`` keyed on (feed, GUID): an entry seen before is never
queued again, so re-running a poll is harmless. A poll queues at most ``polling.max_articles_per_feed``
unseen entries, newest first; the rest stay unseen and are queued by the following polls (which fetch
the document again rather than accept a 304), and feed health carries a warning meanwhile. A failing
feed is recorded (kind and message) and never stops the others.

Scheduling (see ``schedule.py``): after every poll the feed's ``next_poll_at`` is set, from its
publishing rate and the server's hints on success, from Retry-After or exponential backoff with full
jitter on failure. ``sync_feeds`` returns only the feeds that are due. Politeness and robustness:

* at most ``polling.per_host_concurrency`` requests in flight per (host, port), across every process and
  worker (``newswatch.ingest.hostslots``); a feed whose host stays busy for ``polling.host_wait_seconds`` is left
  due, unrecorded, for the next cycle (``busy`` in the counts);
* HTTP 410 disables the feed (``disabled_reason``) until its URL or ``enabled`` changes in the config;
* a permanent redirect (301/308) replaces the polled URL only once it has been seen on two
  consecutive successful polls: a single misconfigured answer (a CMS migration sending everything
  to the home page for an hour, a captive portal, a briefly hijacked host) must not lose the feed
  for good. The configured URL is kept in ``config_url``;
* after ``polling.notify_after_failures`` consecutive failures the operator gets one "failing"
  event, and one "recovered" event when the feed works again. Events are written to the
  ``operator_events`` outbox in the transaction that changes the feed, and sent by
  :func:`newswatch.alerts.operator_events.deliver_operator_events`.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg2.extras import execute_values

from newswatch import db
from newswatch.config import Settings
from newswatch.ingest import schedule
from newswatch.ingest.entries import FeedEntry, FeedError, ParsedFeed
from newswatch.ingest.feeds import parse_job
from newswatch.ingest.fetcher import FetchError, FetchResult, ThreadFetchers
from newswatch.ingest.hostslots import HostBusy, host_slots, in_host_turns
from newswatch.urls import redact
from newswatch.workers import WorkerFailure, WorkerPool, feed_pool

log = logging.getLogger(__name__)

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.9, */*;q=0.5"
)
# A feed document may yield this many times ``polling.max_articles_per_feed`` entries, of which each poll queues
# at most ``max_articles_per_feed`` unseen ones, newest first, leaving the rest to the following polls. Ten polls'
# worth lets a burst, or an archive listed oldest first, drain without loss; the bound keeps a hostile document
# (10 MiB of tiny items is some 100,000 entries) from sending an unbounded list back from its worker process and
# into one transaction's lookup: at most 10,000 entries with the largest cap.
BACKLOG_POLLS = 10
# A permanent redirect must be seen on this many consecutive successful polls before the URL moves.
REDIRECT_CONFIRMATIONS = 2


@dataclass
class PollOutcome:
    feed_id: int
    outcome: str  # ok | not_modified | error | busy (host slots stayed taken: not polled)
    new_entries: int = 0
    error: str | None = None
    disabled: bool = False


@dataclass
class _Attempt:
    """What one poll produced, before it is recorded."""

    url: str
    started: float
    outcome: str = "ok"
    result: FetchResult | None = None
    parsed: ParsedFeed | None = None
    error_kind: str | None = None
    error: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


def sync_feeds(settings: Settings, *, force: bool = False) -> list[int]:
    """Upsert configured feeds (matched by name); return the ids of enabled feeds that are due.

    ``force`` returns every enabled feed, due or not (``newswatch poll --all``). Feeds that newswatch
    disabled itself (HTTP 410, see ``disabled_reason``) are never returned, not even with ``force``.
    Feeds removed from the config are disabled, not deleted, so their articles keep their history.
    A new configured URL replaces the polled URL (which a permanent redirect may have moved), resets
    the conditional-GET validators and the failure state, clears ``disabled_reason`` and makes the
    feed due at once; so does re-enabling a feed in the config. A new feed is due at once.
    """
    rows = [(feed.name, feed.url, feed.url, feed.enabled) for feed in settings.feeds]
    with db.transaction() as cur:
        if rows:
            execute_values(
                cur,
                """
                INSERT INTO feeds (name, url, config_url, enabled) VALUES %s
                ON CONFLICT (name) DO UPDATE SET
                    enabled = EXCLUDED.enabled,
                    url = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                               THEN EXCLUDED.url ELSE feeds.url END,
                    etag = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                                THEN NULL ELSE feeds.etag END,
                    last_modified = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                                         THEN NULL ELSE feeds.last_modified END,
                    consecutive_failures = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                                                THEN 0 ELSE feeds.consecutive_failures END,
                    permanent_redirect_url = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                                                  THEN NULL ELSE feeds.permanent_redirect_url END,
                    redirect_count = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                                          THEN 0 ELSE feeds.redirect_count END,
                    disabled_reason = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                                                OR (EXCLUDED.enabled AND NOT feeds.enabled)
                                           THEN NULL ELSE feeds.disabled_reason END,
                    disabled_at = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                                            OR (EXCLUDED.enabled AND NOT feeds.enabled)
                                       THEN NULL ELSE feeds.disabled_at END,
                    next_poll_at = CASE WHEN feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                                             OR (EXCLUDED.enabled AND NOT feeds.enabled)
                                        THEN now() ELSE feeds.next_poll_at END,
                    config_url = EXCLUDED.config_url,
                    updated_at = now()
                WHERE feeds.enabled IS DISTINCT FROM EXCLUDED.enabled
                   OR feeds.config_url IS DISTINCT FROM EXCLUDED.config_url
                """,
                rows,
            )
        names = [feed.name for feed in settings.feeds]
        cur.execute(
            "UPDATE feeds SET enabled = false, updated_at = now() WHERE enabled AND NOT (name = ANY(%s))",
            (names,),
        )
        cur.execute(
            """
            SELECT id FROM feeds
            WHERE enabled AND disabled_reason IS NULL AND (%s OR next_poll_at <= now())
            ORDER BY next_poll_at, id
            """,
            (force,),
        )
        return [row["id"] for row in cur.fetchall()]


def batched(items: list[int], size: int, max_batches: int | None = None) -> list[list[int]]:
    """``items`` dealt in turn into batches of about ``size`` (at most ``size``, all within one of each other);
    fewer, larger ones when that would make more than ``max_batches`` batches (Airflow fails a mapping longer
    than ``[core] max_map_length``): every item is taken this cycle.

    Dealt, not cut in runs: queued pages come with their hosts taken in turn (``pending_entries``), and a
    site's feeds are spread over every batch, so the batches that run side by side start on different hosts
    and stay apart. Runs of a list that cycles through the
    same hosts put every batch on the same host at the same moment, waiting for each other's slots.
    """
    if not items:
        return []
    count = -(-len(items) // size)
    if max_batches:
        count = min(count, max_batches)
    return [items[start::count] for start in range(count)]


def poll_feeds(feed_ids: list[int], settings: Settings) -> dict[str, int]:
    """Poll the given feeds now, concurrently (at most ``per_host_concurrency`` per host); returns counts.

    Every listed feed that is enabled and not disabled by newswatch is polled, due or not: choosing
    what is due is :func:`sync_feeds`' job.
    """
    with db.transaction() as cur:
        cur.execute(
            """
            SELECT id, name, url, etag, last_modified FROM feeds
            WHERE id = ANY(%s) AND enabled AND disabled_reason IS NULL ORDER BY id
            """,
            (list(feed_ids),),
        )
        rows = in_host_turns(cur.fetchall())
    limiter = host_slots(settings.polling.per_host_concurrency, settings.polling.host_wait_seconds)
    intervals = {feed.name: feed.interval for feed in settings.feeds}
    workers = min(settings.polling.feed_workers, max(len(rows), 1))
    pool = feed_pool(settings)  # parsing a stranger's document runs in a worker process
    with ThreadFetchers(settings.network, limiter) as fetchers, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feed") as threads:
        outcomes = list(threads.map(
            lambda row: _poll_one(row, settings, fetchers, intervals.get(row["name"]), pool), rows))
    counts = {"feeds": len(outcomes), "failed": 0, "not_modified": 0, "new_entries": 0}
    for outcome in outcomes:
        counts["failed"] += outcome.outcome == "error"
        if outcome.outcome == "busy":  # only when it happens: left due for the next cycle
            counts["busy"] = counts.get("busy", 0) + 1
        counts["not_modified"] += outcome.outcome == "not_modified"
        counts["new_entries"] += outcome.new_entries
    return counts


def _poll_one(row: dict, settings: Settings, fetchers: ThreadFetchers, interval: int | None,
              pool: WorkerPool) -> PollOutcome:
    attempt = _Attempt(url=row["url"], started=time.monotonic())
    try:
        attempt.result = fetchers.get().get(
            row["url"],
            accept=FEED_ACCEPT,
            etag=row["etag"],
            last_modified=row["last_modified"],
            max_bytes=settings.network.max_feed_bytes,
        )
        if attempt.result.not_modified:
            attempt.outcome = "not_modified"  # nothing to parse: the document is the one we have
        else:
            job = {"content": attempt.result.content, "url": attempt.result.url,
                   "content_type": attempt.result.content_type,
                   "max_entries": settings.polling.max_articles_per_feed * BACKLOG_POLLS}
            attempt.parsed = pool.submit(parse_job, job).result()
    except HostBusy as exc:  # our own limit, not the feed's fault: still due, polled by the next cycle
        log.info("feed %s: %s; left for the next cycle", row["name"], exc)
        return PollOutcome(row["id"], "busy", error=exc.message)
    except WorkerFailure as exc:
        log.warning("feed %s (%s): parsing lost: %s", row["name"], redact(row["url"]), exc)
        attempt.outcome, attempt.error_kind, attempt.error = "error", f"parser_{exc.kind}", exc.message
        attempt.status = attempt.result.status if attempt.result else None
    except (FetchError, FeedError) as exc:
        log.warning("feed %s (%s) failed: %s", row["name"], redact(row["url"]), exc)
        attempt.outcome, attempt.error_kind, attempt.error = "error", exc.kind, exc.message
        attempt.status = getattr(exc, "status", None)
        attempt.headers = getattr(exc, "headers", None) or {}
        if attempt.status is None and attempt.result is not None:
            attempt.status = attempt.result.status  # a 200 that is not a feed
    except Exception as exc:  # noqa: BLE001 - one broken feed must never stop the batch
        log.exception("feed %s crashed the parser", row["name"])
        attempt.outcome, attempt.error_kind, attempt.error = "error", "internal", f"{type(exc).__name__}: {exc}"
    try:
        new, disabled = _record(row["id"], attempt, settings, interval)
    except Exception as exc:  # noqa: BLE001 - e.g. a value the database refuses: record a failure instead
        if db.connection_lost(exc):
            raise  # the server is gone: the run stops, nothing of this feed's poll was committed
        log.exception("feed %s: storing the poll failed", row["name"])
        failure = _Attempt(url=row["url"], started=attempt.started, outcome="error", error_kind="internal",
                           error=f"storing the poll failed: {type(exc).__name__}: {exc}"[:300],
                           status=attempt.status or (attempt.result.status if attempt.result else None))
        try:
            _record(row["id"], failure, settings, interval)
        except Exception:  # noqa: BLE001 - the database itself is gone; the counts still say "failed"
            log.exception("feed %s: recording the failure failed too", row["name"])
        return PollOutcome(row["id"], "error", error=failure.error)
    if attempt.outcome == "ok":
        log.info("feed %s: %d entries, %d new", row["name"], len(attempt.parsed.entries), new)
    return PollOutcome(row["id"], attempt.outcome, new_entries=new, error=attempt.error, disabled=disabled)


def _record(feed_id: int, attempt: _Attempt, settings: Settings, interval: int | None) -> tuple[int, bool]:
    """Store the poll, the feed's new state, its new entries and any operator event in one transaction.

    Returns (new entries, whether the feed was disabled).
    """
    now = datetime.now(UTC)
    new_entries = 0
    disabled = False
    entries = attempt.parsed.entries if attempt.parsed else []
    cap = settings.polling.max_articles_per_feed
    with db.transaction() as cur:
        cur.execute("SELECT * FROM feeds WHERE id = %s FOR UPDATE", (feed_id,))
        feed = cur.fetchone()
        if feed is None:
            return 0, False  # deleted meanwhile
        unseen = _unseen_newest_first(cur, feed_id, entries)
        if unseen:
            inserted = execute_values(
                cur,
                """
                INSERT INTO feed_entries (feed_id, guid, url, title, summary, published_at)
                VALUES %s ON CONFLICT (feed_id, guid) DO NOTHING RETURNING id
                """,
                [tuple(db.clean_text(value) for value in (feed_id, entry.guid, entry.url, entry.title, entry.summary,
                                                         entry.published_at))
                 for entry in unseen[:cap]],
                fetch=True,
            )
            new_entries = len(inserted)
        held_back = max(len(unseen) - cap, 0)
        if feed["url"] != attempt.url:
            log.info("feed %s changed URL while it was polled; its state is left as is", feed["name"])
        elif attempt.outcome == "error":
            disabled = _failed(cur, feed, attempt, settings, now)
        else:
            warning = attempt.parsed.warning if attempt.parsed else None
            if held_back:
                outran = (f"outran the per-poll cap: {len(unseen)} new entries, the {cap} newest queued, "
                          f"{held_back} left for the next polls (polling.max_articles_per_feed)")
                log.warning("feed %s %s", feed["name"], outran)
                warning = f"{warning}; {outran}" if warning else outran
            _succeeded(cur, feed, attempt, settings, now, new_entries, interval, warning=warning,
                       refetch=held_back > 0)
        result = attempt.result
        cur.execute(
            """
            INSERT INTO feed_polls (feed_id, polled_at, outcome, http_status, error_kind, error, entries,
                                    new_entries, bytes, duration_ms)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (feed_id, now, attempt.outcome, attempt.status or (result.status if result else None),
             attempt.error_kind, attempt.error, len(entries), new_entries,
             result.bytes_received if result else 0, int((time.monotonic() - attempt.started) * 1000)),
        )
    return new_entries, disabled


def _unseen_newest_first(cur, feed_id: int, entries: list[FeedEntry]) -> list[FeedEntry]:
    """The entries not stored yet, in the order they are to be queued.

    Dated entries come first, newest first (a feed may list oldest first); undated ones follow in document
    order, since they cannot be placed among the dated ones and feeds mostly list newest first. Whatever
    the per-poll cap leaves out is still unseen on the next poll, and so is taken then.
    """
    if not entries:
        return []
    guids = [db.clean_text(entry.guid) for entry in entries]
    cur.execute("SELECT guid FROM feed_entries WHERE feed_id = %s AND guid = ANY(%s)", (feed_id, guids))
    seen = {row["guid"] for row in cur.fetchall()}
    unseen = [entry for entry, guid in zip(entries, guids, strict=True) if guid not in seen]
    dated = sorted((entry for entry in unseen if entry.published_at), key=lambda entry: entry.published_at,
                   reverse=True)  # stable: entries of the same moment keep their document order
    return dated + [entry for entry in unseen if entry.published_at is None]


def _event(cur, kind: str, feed: dict, message: str) -> None:
    cur.execute(
        "INSERT INTO operator_events (kind, feed_id, message) VALUES (%s, %s, %s)",
        (kind, feed["id"], db.clean_text(message)[:2000]),
    )
    log.warning("operator event %s: %s", kind, message)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _failed(cur, feed: dict, attempt: _Attempt, settings: Settings, now: datetime) -> bool:
    polling = settings.polling
    failures = feed["consecutive_failures"] + 1
    error = attempt.error or ""
    disabled_reason = None
    notified_at = feed["failure_notified_at"]
    retry_after = None
    if attempt.status in (429, 503):
        retry_after = schedule.retry_after_seconds(attempt.headers, now)
    if attempt.status == 410:
        disabled_reason = "HTTP 410 Gone"
        delay = polling.max_backoff
        _event(cur, "disabled", feed,
               f"Feed {feed['name']} ({redact(feed['url'])}) is no longer polled: the server answered "
               f"{disabled_reason}, the feed was removed. To poll it again, change its URL in the config, "
               "or set enabled: false for one run and back to true.")
    elif retry_after is not None:
        delay = retry_after
        error = f"{error}; the server asked to retry after {retry_after} s"
    else:
        delay = schedule.backoff_delay(failures, polling)
    next_poll = now + timedelta(seconds=delay)
    if disabled_reason is None and failures >= polling.notify_after_failures and notified_at is None:
        notified_at = now
        _event(cur, "failing", feed,
               f"Feed {feed['name']} ({redact(feed['url'])}) has failed {failures} polls in a row, the last "
               f"with {attempt.error_kind}: {error}. Next attempt at {_when(next_poll)}; you will hear again "
               "when it recovers.")
    cur.execute(
        """
        UPDATE feeds SET last_polled_at = %s, last_status = %s, consecutive_failures = %s,
            last_error_kind = %s, last_error = %s, next_poll_at = %s, failure_notified_at = %s,
            disabled_reason = %s, disabled_at = %s, updated_at = now()
        WHERE id = %s
        """,
        (now, attempt.status, failures, attempt.error_kind, error[:1000], next_poll, notified_at,
         disabled_reason, now if disabled_reason else None, feed["id"]),
    )
    return disabled_reason is not None


def _succeeded(cur, feed: dict, attempt: _Attempt, settings: Settings, now: datetime, new_entries: int,
               configured: int | None, *, warning: str | None = None, refetch: bool = False) -> None:
    """Record a successful poll. ``warning`` goes to feed health; ``refetch`` drops the validators, so that
    entries held back by the per-poll cap are not hidden behind a 304 on the next poll."""
    result, parsed = attempt.result, attempt.parsed
    assert result is not None
    if parsed is not None:
        ttl_seconds = parsed.ttl_minutes * 60 if parsed.ttl_minutes else None
    else:
        ttl_seconds = feed["ttl_seconds"]  # a 304 says the document, and its <ttl>, did not change
    server_floor = schedule.server_min_interval(result.headers, ttl_seconds, now)
    estimate = None if configured else _estimate_interval(cur, feed["id"], now, new_entries)
    interval = schedule.success_interval(
        settings.polling, configured=configured, estimate=estimate,
        previous=feed["interval_seconds"], server_floor=server_floor,
    )
    next_poll = now + timedelta(seconds=schedule.success_delay(interval, server_floor))

    url = feed["url"]
    redirect_url, redirect_count = None, 0
    if result.permanent_url and result.permanent_url != feed["url"]:
        redirect_url = result.permanent_url
        redirect_count = feed["redirect_count"] + 1 if feed["permanent_redirect_url"] == redirect_url else 1
        if redirect_count >= REDIRECT_CONFIRMATIONS:
            url, redirect_url, redirect_count = result.permanent_url, None, 0
            _event(cur, "moved", feed,
                   f"Feed {feed['name']} moved permanently from {redact(feed['url'])} to {redact(url)} "
                   f"(seen on {REDIRECT_CONFIRMATIONS} polls in a row) and is now polled there; "
                   f"update its URL in the config (it still says {redact(feed['config_url'] or feed['url'])}).")

    notified_at = feed["failure_notified_at"]
    if notified_at is not None:
        _event(cur, "recovered", feed,
               f"Feed {feed['name']} ({redact(url)}) works again after {feed['consecutive_failures']} failed "
               f"polls (failing since it was reported at {_when(notified_at)}).")
    cur.execute(
        """
        UPDATE feeds SET last_polled_at = %s, last_success_at = %s, last_status = %s,
            consecutive_failures = 0, last_error_kind = %s, last_error = %s,
            etag = CASE WHEN %s THEN NULL ELSE COALESCE(%s, etag) END,
            last_modified = CASE WHEN %s THEN NULL ELSE COALESCE(%s, last_modified) END,
            url = %s, permanent_redirect_url = %s, redirect_count = %s,
            interval_seconds = %s, ttl_seconds = %s, server_min_interval = %s, next_poll_at = %s,
            failure_notified_at = NULL, updated_at = now()
        WHERE id = %s
        """,
        (now, now, result.status, "warning" if warning else None, warning,
         refetch, result.headers.get("etag"), refetch, result.headers.get("last-modified"),
         url, redirect_url, redirect_count, interval, ttl_seconds, server_floor, next_poll, feed["id"]),
    )


def _estimate_interval(cur, feed_id: int, now: datetime, new_entries: int) -> float | None:
    """The feed's mean gap between entries: from entry dates, else from what our own polls found."""
    cur.execute(
        """
        SELECT published_at FROM feed_entries WHERE feed_id = %s AND published_at IS NOT NULL
        ORDER BY published_at DESC LIMIT 200
        """,
        (feed_id,),
    )
    estimate = schedule.publishing_interval([row["published_at"] for row in cur.fetchall()], now)
    if estimate is not None:
        return estimate
    # No dates: count the entries our polls found new, after the first successful poll (its entries
    # are the feed's backlog, not its rate), over the last week.
    cur.execute(
        """
        WITH first AS (SELECT min(polled_at) AS at FROM feed_polls WHERE feed_id = %(id)s AND outcome = 'ok')
        SELECT first.at AS first_ok,
               (SELECT coalesce(sum(new_entries), 0) FROM feed_polls
                WHERE feed_id = %(id)s AND polled_at > first.at AND polled_at > %(since)s) AS found
        FROM first
        """,
        {"id": feed_id, "since": now - schedule.RATE_WINDOW},
    )
    row = cur.fetchone()
    if row is None or row["first_ok"] is None:
        return None
    observed_since = max(row["first_ok"], now - schedule.RATE_WINDOW)
    return schedule.history_interval(int(row["found"]) + new_entries, (now - observed_since).total_seconds())
