"""Ingest drills: no transaction while a page is fetched, and a page that crashes, hangs or blows up its worker
costs that page only (retried, then given up), never the batch; nothing is stored twice."""

from __future__ import annotations

import os
import signal
import threading
import time

import psycopg2
import pytest

from newswatch import metrics, workers
from newswatch.config import Settings
from newswatch.ingest.articles import fetch_articles
from tests.scenario import article_page
from tests.servers import Route

HTML = {"Content-Type": "text/html; charset=utf-8"}


@pytest.fixture(autouse=True)
def _own_pools():
    """Each drill gets fresh worker processes, and none outlive it."""
    yield
    workers.close_shared()


def _settings(**polling) -> Settings:
    return Settings(network={"allow_networks": ["127.0.0.1/32"]},
                    polling={"article_max_attempts": 2, "article_retry_base_seconds": 0, **polling})


def _normal_page(index: int) -> bytes:
    body = "\n\n".join(f"Report {index}, paragraph {n}: the council of Velmora met on Tuesday to discuss the "
                       "harbour budget, the new ferry line and the repairs of the old bridge, officials said."
                       for n in range(6))
    return article_page(f"Velmora council report number {index}", body, "en")


def _slow_page(paragraphs: int) -> bytes:
    """Valid, but seconds of work for the extractor (thousands of nested blocks: 10,000 take about 3 s of a
    fast core, well over the drills' 1 s limit)."""
    block = ("<div><div><section><div class='c'><p>Sentence {i} of a very long article about nothing in particular, "
             "with words.</p></div></section></div></div>")
    body = "".join(block.format(i=i) for i in range(paragraphs))
    return f"<html><head><title>Slow</title></head><body><article>{body}</article></body></html>".encode()


def _huge_page() -> bytes:
    """Valid and under the size cap, but a tree of some 300,000 nodes: tens of MB once parsed."""
    body = "<div><p>a</p></div>" * 100_000
    return f"<html><head><title>Huge</title></head><body><article>{body}</article></body></html>".encode()


def _queue(query, site, pages: dict[str, bytes]) -> dict[str, int]:
    """Serve the pages and queue one feed entry per page; returns entry ids by path."""
    feed = query("INSERT INTO feeds (name, url) VALUES ('drills', %s) RETURNING id", (site.url("/feed"),))[0]["id"]
    ids = {}
    for path, page in pages.items():
        site.routes[path] = page if callable(page) else Route(200, page, HTML)
        ids[path] = query("INSERT INTO feed_entries (feed_id, guid, url, title, summary) VALUES (%s, %s, %s, %s, %s) "
                          "RETURNING id", (feed, path, site.url(path), f"Entry {path}", "Feed summary."))[0]["id"]
    return ids


def _entries(query) -> dict[str, dict]:
    rows = query("SELECT guid, status, attempts, last_error_kind, last_error, article_id, lease_until "
                 "FROM feed_entries")
    return {row["guid"]: row for row in rows}


def test_pages_are_stored_once(site, query):
    ids = _queue(query, site, {f"/a/{i}": _normal_page(i) for i in range(6)})
    counts = fetch_articles(list(ids.values()), _settings())
    assert counts == {"entries": 6, "stored": 6}
    assert fetch_articles(list(ids.values()), _settings()) == {"entries": 6, "skipped": 6}
    assert len(query("SELECT id FROM articles")) == 6
    assert all(e["status"] == "done" and e["lease_until"] is None for e in _entries(query).values())


def test_no_transaction_is_open_while_a_page_is_fetched(site, query, database_url):
    release = threading.Event()
    arrived = threading.Event()

    def held(_request):
        arrived.set()
        release.wait(30)
        return Route(200, _normal_page(1), HTML)

    ids = _queue(query, site, {"/held": held})
    worker = threading.Thread(target=fetch_articles, args=(list(ids.values()), _settings()))
    worker.start()
    try:
        assert arrived.wait(30), "the page was never requested"
        conn = psycopg2.connect(database_url)
        try:
            with conn, conn.cursor() as cur:
                # The entry's row is not locked: another worker (or an operator) could update it now.
                cur.execute("SELECT lease_until IS NOT NULL FROM feed_entries WHERE id = %s FOR UPDATE NOWAIT",
                            (ids["/held"],))
                assert cur.fetchone() == (True,)  # leased, not locked
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND application_name = 'newswatch' AND state LIKE 'idle in transaction%'")
                assert cur.fetchone() == (0,)
        finally:
            conn.close()
    finally:
        release.set()
        worker.join(60)
    assert _entries(query)["/held"]["status"] == "done"


def test_a_request_slot_waits_on_the_network_only_not_on_the_pages_fetched_before(site, query):
    """With one request in flight per task, the next page is fetched while the first one is still being
    processed (held here at its very end, once stored): a slot that waited for its page's extraction and
    storage too left the network idle for part of every page."""
    requested = threading.Event()

    def second(_request):
        requested.set()
        return Route(200, _normal_page(2), HTML)

    ids = _queue(query, site, {"/a/1": _normal_page(1), "/a/2": second, "/a/3": _normal_page(3)})
    seen: list[bool] = []

    def on_stored(_article_id: int) -> None:  # the storing thread waits here for the second request
        seen.append(requested.wait(30))

    counts = fetch_articles(list(ids.values()), _settings(article_workers=1), on_stored=on_stored)
    assert counts == {"entries": 3, "stored": 3}
    assert seen == [True, True, True]
    assert site.peak_in_flight == 1  # still one request at a time


def test_the_fetch_stage_analyses_what_it_stores_and_grouping_finds_it_done(site, query):
    """Names and meaning are computed in the fetching task's worker processes, batch by batch while it fetches
    on (17 pages: one batch during the fetch, the rest at its end), not all at the end of the cycle."""
    from newswatch.pipeline import fetch_and_analyse
    from newswatch.stories.grouping import assign_stories

    ids = _queue(query, site, {f"/a/{i}": _normal_page(i) for i in range(17)})
    counts = fetch_and_analyse(list(ids.values()), _settings())
    assert counts == {"entries": 17, "stored": 17, "analysed": 17}
    # One set of worker processes did both: the model is not loaded a second time beside the extractors.
    assert workers.meaning_pool(_settings()) is workers.document_pool(_settings())
    rows = query("SELECT a.entities IS NOT NULL AS named, m.embedding IS NOT NULL AS placed "
                 "FROM articles a LEFT JOIN article_meanings m ON m.article_id = a.id")
    assert rows == [{"named": True, "placed": True}] * 17
    assert assign_stories(_settings())["embedded"] == 0  # nothing left to analyse
    assert len(query("SELECT id FROM articles WHERE story_id IS NULL")) == 0


def test_analysis_that_fails_beside_the_fetch_costs_no_page_and_is_left_to_grouping(site, query, caplog):
    """The analysis has no worker to run on (a closed pool): every page is still stored, one line says what
    was left, and grouping analyses those articles before it groups them."""
    from newswatch.stories.grouping import BackgroundAnalysis, assign_stories

    # Texts no other test has: this process would otherwise reuse their recent analyses, without a worker.
    ids = _queue(query, site, {f"/a/{i}": _normal_page(900 + i) for i in range(5)})
    closed = workers.WorkerPool(1, time_limit=5)
    closed.close()
    with BackgroundAnalysis(_settings(), batch=2, pool=closed) as analysis:
        counts = fetch_articles(list(ids.values()), _settings(), on_stored=analysis.add)
    assert counts == {"entries": 5, "stored": 5} and analysis.embedded == 0
    assert [r.message for r in caplog.records if "left to grouping" in r.message] == [
        "analysing 2 stored article(s) failed, left to grouping: the worker pool is closed"] * 2 + [
        "analysing 1 stored article(s) failed, left to grouping: the worker pool is closed"]
    assert query("SELECT count(*) AS n FROM article_meanings") == [{"n": 0}]
    assert assign_stories(_settings())["embedded"] == 5


@pytest.mark.slow  # a fault drill that waits out real deadlines or time limits
def test_a_page_that_always_overruns_the_time_limit_ends_failed_and_shows_in_feed_health(site, query):
    pages = {"/slow": _slow_page(10_000), **{f"/a/{i}": _normal_page(i) for i in range(4)}}
    ids = _queue(query, site, pages)
    settings = _settings(item_time_limit=1)
    first = fetch_articles(list(ids.values()), settings)
    assert first == {"entries": 5, "stored": 4, "retry": 1}
    slow = _entries(query)["/slow"]
    assert (slow["status"], slow["attempts"], slow["last_error_kind"]) == ("pending", 1, "extractor_timeout")
    assert "longer than 1 s" in slow["last_error"] and slow["lease_until"] is None
    assert fetch_articles([ids["/slow"]], settings) == {"entries": 1, "failed": 1}
    slow = _entries(query)["/slow"]
    assert (slow["status"], slow["attempts"], slow["article_id"]) == ("failed", 2, None)
    from newswatch import db

    with db.transaction() as cur:
        health = metrics.entry_failures(cur)
    assert [(h["failed"], h["error"].split(":")[0]) for h in health.values()] == [(1, "extractor_timeout")]
    assert len(query("SELECT id FROM articles")) == 4


def test_a_page_over_the_memory_limit_costs_that_page_only(site, query):
    ids = _queue(query, site, {"/big": _huge_page(), **{f"/a/{i}": _normal_page(i) for i in range(3)}})
    counts = fetch_articles(list(ids.values()), _settings(item_memory_mb=4))
    entries = _entries(query)
    assert entries["/big"]["last_error_kind"] == "extractor_memory" and entries["/big"]["status"] == "pending"
    # The small pages fit (a worker that ran out is replaced); each is stored once.
    assert counts.get("stored", 0) + counts.get("retry", 0) == 4
    stored = [path for path, e in entries.items() if e["status"] == "done"]
    assert len(query("SELECT id FROM articles")) == len(stored) >= 1


@pytest.mark.slow  # a fault drill that waits out real deadlines or time limits
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGABRT])
def test_a_worker_killed_mid_page_loses_that_page_only_until_its_retry(site, query, how):
    pages = {"/slow": _slow_page(2500), **{f"/a/{i}": _normal_page(i) for i in range(5)}}
    ids = _queue(query, site, pages)
    settings = _settings(item_time_limit=120)
    pool = workers.document_pool(settings)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(fetch_articles(list(ids.values()), settings)))
    worker.start()
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        victim = next((pid for pid, label in pool.running() if label.endswith("/slow")), None)
        time.sleep(0.02)
    assert victim is not None, "the slow page never reached a worker"
    time.sleep(0.3)
    os.kill(victim, how)
    worker.join(120)
    assert result == {"entries": 6, "stored": 5, "retry": 1}
    slow = _entries(query)["/slow"]
    assert (slow["status"], slow["attempts"], slow["last_error_kind"]) == ("pending", 1, "extractor_crashed")
    assert signal.Signals(how).name in slow["last_error"]

    assert fetch_articles(list(ids.values()), settings) == {"entries": 6, "skipped": 5, "stored": 1}
    assert len(query("SELECT id FROM articles")) == 6  # each page once
    assert {e["status"] for e in _entries(query).values()} == {"done"}


def test_a_lease_blocks_other_workers_until_it_runs_out(site, query):
    """A task killed mid-page leaves its lease: the entry waits for it to run out, then is taken over."""
    ids = _queue(query, site, {"/a/1": _normal_page(1), "/a/2": _normal_page(2)})
    query("UPDATE feed_entries SET lease_until = now() + interval '10 minutes', lease_owner = 'killed-task' "
          "WHERE id = %s", (ids["/a/1"],))
    query("UPDATE feed_entries SET lease_until = now() - interval '1 second', lease_owner = 'killed-task' "
          "WHERE id = %s", (ids["/a/2"],))
    assert fetch_articles(list(ids.values()), _settings()) == {"entries": 2, "skipped": 1, "stored": 1}
    entries = _entries(query)
    assert entries["/a/1"]["status"] == "pending" and entries["/a/2"]["status"] == "done"


def test_a_retry_of_the_same_task_takes_over_its_own_leases_at_once(site, query):
    """A task instance whose worker was killed mid-page is retried under the same lease owner: it takes its
    entries back at once; any other owner still waits for the lease to run out."""
    ids = _queue(query, site, {"/a/1": _normal_page(1), "/a/2": _normal_page(2)})
    query("UPDATE feed_entries SET lease_until = now() + interval '10 minutes', lease_owner = 'run/fetch/3'")
    assert fetch_articles(list(ids.values()), _settings(), owner="run/fetch/4") == {"entries": 2, "skipped": 2}
    assert fetch_articles(list(ids.values()), _settings(), owner="run/fetch/3") == {"entries": 2, "stored": 2}
    assert {e["status"] for e in _entries(query).values()} == {"done"}
    assert len(query("SELECT id FROM articles")) == 2


def test_a_batch_done_early_takes_over_the_queue_but_not_what_others_hold(site, query):
    """``then_queue``: after its own entries, a call goes on with the other due entries nobody holds, and those
    its own task instance's killed try had taken over (leased under its name); an entry another owner leases,
    or one not yet due, is left alone."""
    ids = _queue(query, site, {f"/a/{i}": _normal_page(i) for i in range(7)})
    lease = "UPDATE feed_entries SET lease_until = now() + interval '10 minutes', lease_owner = %s WHERE id = %s"
    query(lease, ("run/fetch/2", ids["/a/4"]))
    query(lease, ("run/fetch/3", ids["/a/6"]))
    query("UPDATE feed_entries SET next_attempt_at = now() + interval '1 hour' WHERE id = %s", (ids["/a/5"],))
    own = [ids["/a/0"], ids["/a/1"]]
    assert fetch_articles(own, _settings(), owner="run/fetch/3", then_queue=True) == {
        "entries": 2, "stored": 5, "taken_over": 3}
    entries = _entries(query)
    assert {path for path, e in entries.items() if e["status"] == "done"} == {"/a/0", "/a/1", "/a/2", "/a/3", "/a/6"}
    assert entries["/a/4"]["status"] == entries["/a/5"]["status"] == "pending"
    # Without it, a call keeps to its entries.
    query("UPDATE feed_entries SET lease_until = NULL, lease_owner = NULL, next_attempt_at = now()")
    assert fetch_articles([ids["/a/4"]], _settings()) == {"entries": 1, "stored": 1}
    assert _entries(query)["/a/5"]["status"] == "pending"


def test_tasks_taking_over_each_others_batches_store_every_page_once(site, query):
    """A fast batch beside a slow one (each page 0.4 s, one request at a time): the fast call takes over
    pages of the slow batch that its own call has not claimed yet; every page is stored once, by one of them,
    and the counts of the two calls add up to the pages."""

    def slow(page: bytes):
        def answer(_request) -> Route:
            time.sleep(0.4)
            return Route(200, page, HTML)
        return answer

    slow_pages = {f"/slow/{i}": slow(_normal_page(i)) for i in range(10)}
    ids = _queue(query, site, {**slow_pages, "/fast": _normal_page(99)})
    settings = _settings(article_workers=1)
    slow_ids = [ids[path] for path in slow_pages]
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(
        fetch_articles(slow_ids, settings, owner="run/fetch/0", then_queue=True)))
    worker.start()
    deadline = time.monotonic() + 30
    while not query("SELECT id FROM feed_entries WHERE lease_owner = 'run/fetch/0'") and time.monotonic() < deadline:
        time.sleep(0.02)
    fast = fetch_articles([ids["/fast"]], settings, owner="run/fetch/1", then_queue=True)
    worker.join(60)
    assert fast["taken_over"] >= 1 and fast["stored"] == 1 + fast["taken_over"]
    assert result["stored"] == 10 - fast["taken_over"] and result["skipped"] == fast["taken_over"]
    assert "taken_over" not in result  # nothing was left for the slow batch's call to take over
    assert {e["status"] for e in _entries(query).values()} == {"done"}
    assert len(query("SELECT id FROM articles")) == 11
    assert sorted(r.path for r in site.requests) == sorted(ids)  # each page fetched once


def test_control_characters_never_reach_storage_or_the_operators_terminal(site, query, capsys):
    """ESC, BEL and C1 controls in a page and its feed entry are dropped at storage (tab and line breaks
    stay); a row stored before that, or by another writer, is printed with visible escapes."""
    from newswatch.cli import main
    from newswatch.stories.grouping import assign_stories

    title = "Velmora\x1b[2J council\x07 votes\x9b31m on the harbour budget"
    body = "\n\n".join(f"Paragraph {n}:\x1b]0;owned\x07 the council of Velmora met on Tuesday to discuss the harbour "
                       "budget, the ferry line and the repairs of the old bridge, officials said." for n in range(6))
    ids = _queue(query, site, {"/ctl": article_page(title, body, "en")})
    query("UPDATE feed_entries SET title = %s WHERE id = %s", ("Entry\x1b[31m red", ids["/ctl"]))
    assert fetch_articles(list(ids.values()), _settings()) == {"entries": 1, "stored": 1}
    article = query("SELECT title, body, summary FROM articles")[0]
    control = [chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), *range(0x7F, 0xA0)]]
    for field in ("title", "body", "summary"):
        assert not any(ch in article[field] for ch in control), field
    assert article["title"] == "Entry[31m red"  # the feed's title, as stored
    assert "\n" in article["body"] and "]0;owned the council" in article["body"]

    assign_stories(_settings())
    query("UPDATE stories SET title = %s", ("Older row \x1b[2J\x9b with\x07 controls",))
    capsys.readouterr()
    assert main(["stories"]) == 0
    out = capsys.readouterr().out
    assert "Older row \\x1b[2J\\x9b with\\x07 controls" in out
    assert not any(ch in out for ch in control if ch != "\n")
    assert main(["stories", "--json"]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in control if ch != "\n")
    assert '"Older row \\u001b[2J\\u009b with\\u0007 controls"' in out
