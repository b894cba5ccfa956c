"""One polling cycle, stage by stage: the same functions back the Airflow DAG and ``newswatch poll``.

Every stage reads its work from the database and returns only counts, so stages can run in separate
Airflow tasks (and be retried) without passing article data around.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from newswatch import db
from newswatch.config import Settings, load_settings

# The stage modules are imported in the functions that use them: each DAG task imports this module for
# one helper, and its process should not load every stage's libraries (extraction, the meaning stack).

log = logging.getLogger(__name__)


def task_batches(items: list[int], settings: Settings, max_batches: int | None = None) -> list[list[int]]:
    """``items`` split for the mapped tasks: into about one batch per slot of the Airflow pool
    (``polling.max_parallel_tasks``), each of at least ``polling.batch_size`` items, and at most ``max_batches``.

    A task pays its start-up (the task runner, its imports, its worker processes) once, and then keeps
    ``feed_workers`` or ``article_workers`` requests in flight until its batch is done: more batches than slots
    would only pay more start-ups for the same work, fewer would leave slots idle.
    """
    from newswatch.ingest.poller import batched

    size = max(settings.polling.batch_size, -(-len(items) // settings.polling.max_parallel_tasks))
    return batched(items, size, max_batches)


def prepare(settings: Settings, force: bool = False, max_batches: int | None = None) -> list[list[int]]:
    """Apply migrations, sync feeds from the config; returns the due (or, forced, all enabled) feed ids in at
    most ``max_batches`` batches (see :func:`task_batches`)."""
    from newswatch.ingest.poller import sync_feeds

    db.migrate()
    return task_batches(sync_feeds(settings, force=force), settings, max_batches)


def article_batches(settings: Settings, max_batches: int | None = None) -> list[list[int]]:
    """Every queued entry that is due, in at most ``max_batches`` batches (see :func:`task_batches`): no cap per
    cycle, the backlog drains as fast as the Airflow pool lets the mapped tasks run."""
    from newswatch.ingest.articles import pending_entries

    return task_batches(pending_entries(), settings, max_batches)


def fetch_and_analyse(entry_ids: list[int], settings: Settings, owner: str | None = None,
                      then_queue: bool = False) -> dict[str, int]:
    """The ingest stage, with the articles it stores analysed for grouping (entities, meaning) while it fetches
    on, in the same worker processes (``newswatch.stories.grouping.BackgroundAnalysis``); returns its counts.
    ``then_queue``: go on with the queue's other due entries once these are done (see ``fetch_articles``)."""
    from newswatch.ingest.articles import fetch_articles
    from newswatch.stories.grouping import BackgroundAnalysis

    with BackgroundAnalysis(settings) as analysis:
        counts = fetch_articles(entry_ids, settings, owner=owner, on_stored=analysis.add, then_queue=then_queue)
    counts["analysed"] = analysis.embedded
    return counts


def add_counts(total: dict[str, int], part: dict[str, int], prefix: str) -> None:
    for key, value in part.items():
        total[f"{prefix}.{key}"] = total.get(f"{prefix}.{key}", 0) + value


def run_cycle(
    settings: Settings | None = None,
    progress: Callable[[str], None] = log.info,
    run_key: str | None = None,
    force: bool = False,
) -> dict[str, int]:
    """Run every stage once, in order, and record the run; returns the merged counts.

    ``force`` polls every enabled feed instead of only those due (410-disabled feeds stay off).
    """
    from newswatch.alerts.alerting import deliver_alerts, match_rules
    from newswatch.alerts.operator_events import deliver_operator_events
    from newswatch.ingest.articles import pending_entries
    from newswatch.ingest.poller import poll_feeds
    from newswatch.stories.grouping import assign_stories

    settings = settings or load_settings(ui=True)
    totals: dict[str, int] = {}
    started = time.monotonic()

    def timed(stage: str) -> None:  # wall time of each stage, in ms, beside its counts
        nonlocal started
        now = time.monotonic()
        totals[f"{stage}.ms"] = totals.get(f"{stage}.ms", 0) + int((now - started) * 1000)
        started = now

    # One process runs the whole cycle: each stage takes all its work at once, its threads and worker
    # processes kept busy to the end, instead of batch after batch each waiting on its slowest item (the
    # batches are for the DAG's mapped tasks).
    feed_ids = [feed_id for batch in prepare(settings, force=force) for feed_id in batch]
    if feed_ids:
        add_counts(totals, poll_feeds(feed_ids, settings), "feeds")
    timed("feeds")
    progress(f"feeds: {totals.get('feeds.feeds', 0)} polled, {totals.get('feeds.failed', 0)} failed, "
             f"{totals.get('feeds.new_entries', 0)} new entries")
    add_counts(totals, fetch_and_analyse(pending_entries(), settings), "articles")
    timed("articles")
    progress(f"articles: {totals.get('articles.stored', 0)} stored, "
             f"{totals.get('articles.partial', 0)} from feed summaries, "
             f"{totals.get('articles.duplicate_url', 0)} duplicate URLs, {totals.get('articles.retry', 0)} to retry")
    add_counts(totals, assign_stories(settings), "stories")
    timed("stories")
    progress(f"stories: {totals['stories.new_stories']} new, {totals['stories.joined']} articles joined a story")
    add_counts(totals, match_rules(settings), "rules")
    timed("rules")
    add_counts(totals, deliver_alerts(settings), "alerts")
    add_counts(totals, deliver_operator_events(settings), "operator")
    timed("alerts")
    progress(f"alerts: {totals['rules.new_alerts']} new, {totals['alerts.sent']} sent, "
             f"{totals['alerts.failed'] + totals['alerts.gave_up']} failed")
    record_run(run_key or f"cli:{uuid.uuid4()}", totals)
    return totals


def record_run(run_key: str, totals: dict[str, int]) -> None:
    """Store a cycle's counts in ``poll_runs`` (upsert: a re-run of the same DAG run overwrites)."""
    with db.transaction() as cur:
        cur.execute(
            """
            INSERT INTO poll_runs (run_key, finished_at, feeds_polled, feeds_failed, new_articles, new_stories,
                                   alerts_sent, alerts_failed)
            VALUES (%(key)s, now(), %(feeds)s, %(failed)s, %(articles)s, %(stories)s, %(sent)s, %(alerts_failed)s)
            ON CONFLICT (run_key) DO UPDATE SET finished_at = now(),
                feeds_polled = EXCLUDED.feeds_polled, feeds_failed = EXCLUDED.feeds_failed,
                new_articles = EXCLUDED.new_articles, new_stories = EXCLUDED.new_stories,
                alerts_sent = EXCLUDED.alerts_sent, alerts_failed = EXCLUDED.alerts_failed
            """,
            {
                "key": run_key,
                "feeds": totals.get("feeds.feeds", 0),
                "failed": totals.get("feeds.failed", 0),
                "articles": totals.get("articles.stored", 0) + totals.get("articles.partial", 0),
                "stories": totals.get("stories.new_stories", 0),
                "sent": totals.get("alerts.sent", 0),
                "alerts_failed": totals.get("alerts.failed", 0) + totals.get("alerts.gave_up", 0),
            },
        )
