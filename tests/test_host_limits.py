"""The per-host limit holds across processes: feeds and pages alike, keyed on (host, port), shared through
PostgreSQL advisory locks; a busy host re-queues work instead of failing it; a killed process frees its slots.

Every test fetches from real loopback servers that count the requests they are answering, from real OS
processes where the limit must hold across them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from newswatch import workers
from newswatch.config import Settings
from newswatch.ingest.articles import fetch_articles, pending_entries
from newswatch.ingest.fetcher import Fetcher
from newswatch.ingest.hostslots import HostBusy, HostSlots, host_key
from newswatch.ingest.poller import poll_feeds, sync_feeds
from tests.scenario import article_page, rss
from tests.servers import LoopbackServer, Request, Route

HTML = {"Content-Type": "text/html; charset=utf-8"}
XML = {"Content-Type": "application/rss+xml"}


@pytest.fixture(autouse=True)
def _own_pools():
    yield
    workers.close_shared()


def _settings(feeds: list[dict] | None = None, **polling) -> Settings:
    return Settings.model_validate({
        "feeds": feeds or [],
        "network": {"allow_networks": ["127.0.0.1/32"], "total_timeout": 20},
        "polling": {"worker_processes": 1, "article_retry_base_seconds": 0, **polling},
    })


def _page(index: int) -> bytes:
    body = "\n\n".join(f"Dispatch {index}, part {n}: the harbour authority of Velmora reported on Tuesday that "
                       f"ferry line {index} will reopen after the repairs of the northern quay, officials said."
                       for n in range(5))
    return article_page(f"Velmora harbour dispatch number {index}", body, "en")


def _serve_feeds(site: LoopbackServer, feeds: int, pages_per_feed: int) -> list[dict]:
    """``feeds`` feeds on ``site``, each linking ``pages_per_feed`` article pages on the same host."""
    config = []
    for feed in range(feeds):
        items = []
        for item in range(pages_per_feed):
            index = feed * pages_per_feed + item
            path = f"/news/{index}"
            site.routes[path] = Route(200, _page(index), HTML)
            items.append({"title": f"Velmora harbour dispatch number {index}", "link": site.url(path),
                          "summary": "Harbour news."})
        site.routes[f"/feed/{feed}"] = Route(200, rss(f"Feed {feed}", items), XML)
        config.append({"name": f"feed-{feed}", "url": site.url(f"/feed/{feed}")})
    return config


def _cycle_worker(database_url: str, feeds: list[dict], start, results) -> None:
    """One OS process doing what a poll_feeds and a fetch_articles task do, after every process is ready."""
    os.environ["NEWSWATCH_DATABASE_URL"] = database_url
    settings = _settings(feeds, per_host_concurrency=2, article_workers=6, feed_workers=4)
    feed_ids = sync_feeds(settings, force=True)
    start.wait(timeout=120)
    polled = poll_feeds(feed_ids, settings)
    fetched = fetch_articles(pending_entries(), settings)
    workers.close_shared()
    results.put({"polled": polled, "fetched": fetched})


def test_processes_share_the_per_host_limit_for_feeds_and_pages(site, database_url, query):
    """Three processes, each with several threads, poll six feeds and fetch 30 pages of one host: never more
    than per_host_concurrency requests in flight at that host, and every page is stored once."""
    feeds = _serve_feeds(site, feeds=6, pages_per_feed=5)
    site.delay = 0.15
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(3), context.Queue()
    processes = [context.Process(target=_cycle_worker, args=(database_url, feeds, start, results))
                 for _ in range(3)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(60)

    assert 1 <= site.peak_in_flight <= 2, site.peak_in_flight
    assert sum(outcome["polled"]["failed"] for outcome in outcomes) == 0
    assert len(query("SELECT id FROM articles")) == 30
    assert {row["status"] for row in query("SELECT status FROM feed_entries")} == {"done"}
    assert len(site.hits("/news/7")) == 1  # leases: each page fetched by one process only


def test_two_ports_on_one_address_are_two_hosts(database_url):
    """With one slot per host, a request to 127.0.0.1:A and one to 127.0.0.1:B are in flight together."""
    first, second = LoopbackServer().start(), LoopbackServer().start()
    both = threading.Barrier(2, timeout=10)
    met: list[bool] = []

    def meet(request: Request) -> Route:
        # Both requests must be answered at once: the second can only come while the first holds its slot.
        try:
            both.wait()
            met.append(True)
        except threading.BrokenBarrierError:
            met.append(False)
        return Route(200, b"ok", {"Content-Type": "text/plain"})

    first.routes["/p"] = second.routes["/p"] = meet
    settings = _settings(per_host_concurrency=1)
    slots = HostSlots(database_url, limit=1, wait_seconds=30)
    assert host_key(first.url("/p")) != host_key(second.url("/p"))
    try:
        def get(url: str) -> int:
            with Fetcher(settings.network, slots) as fetcher:
                return fetcher.get(url).status

        with ThreadPoolExecutor(2) as threads:
            assert list(threads.map(get, [first.url("/p"), second.url("/p")])) == [200, 200]
        assert met == [True, True]
        assert first.peak_in_flight == 1 and second.peak_in_flight == 1
    finally:
        slots.close()
        first.stop()
        second.stop()


def test_busy_host_requeues_pages_and_feeds_without_counting_a_failure(site, database_url, query):
    """Every slot taken elsewhere for longer than host_wait_seconds: the pages go back to the queue as they were
    and the feed stays due, unrecorded; once the slots are free, the next cycle stores everything."""
    feeds = _serve_feeds(site, feeds=1, pages_per_feed=3)
    settings = _settings(feeds, per_host_concurrency=2, host_wait_seconds=0.3)
    feed_ids = sync_feeds(settings, force=True)
    assert poll_feeds(feed_ids, settings)["new_entries"] == 3

    other = HostSlots(database_url, limit=2, wait_seconds=5)  # another process's connection: its own session
    key = host_key(site.url("/"))
    held = [other.acquire(key), other.acquire(key)]
    try:
        assert fetch_articles(pending_entries(), settings) == {"entries": 3, "host_busy": 3}
        entries = query("SELECT status, attempts, last_error_kind, lease_until FROM feed_entries")
        assert [(e["status"], e["attempts"], e["last_error_kind"], e["lease_until"]) for e in entries] == \
            [("pending", 0, "host_busy", None)] * 3
        assert len(pending_entries()) == 3  # due again at once

        polls_before = len(query("SELECT id FROM feed_polls"))
        assert poll_feeds(feed_ids, settings)["busy"] == 1
        assert len(query("SELECT id FROM feed_polls")) == polls_before
        assert query("SELECT consecutive_failures FROM feeds")[0]["consecutive_failures"] == 0
    finally:
        for number in held:
            other.release(key, number)
        other.close()

    assert fetch_articles(pending_entries(), settings) == {"entries": 3, "stored": 3}


def _hold_slots(database_url: str, key: str, ready) -> None:
    slots = HostSlots(database_url, limit=2, wait_seconds=5)
    slots.acquire(key)
    slots.acquire(key)
    ready.set()
    threading.Event().wait(600)  # until killed


def test_a_killed_process_frees_its_slots(database_url):
    key = "news.example:443"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_slots, args=(database_url, key, ready), daemon=True)
    holder.start()
    mine = HostSlots(database_url, limit=2, wait_seconds=0.2)
    try:
        assert ready.wait(60)
        with pytest.raises(HostBusy, match="every request slot stayed busy"):
            mine.acquire(key)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
        mine.wait_seconds = 30  # PostgreSQL notices the closed connection and drops its locks
        assert mine.acquire(key) in (0, 1)
    finally:
        mine.close()
        if holder.is_alive():
            holder.kill()
