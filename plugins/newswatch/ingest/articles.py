"""Article ingestion: claim each queued feed entry, fetch its page, extract it in a worker process, store it once.

Each entry goes through three steps, and no transaction is open across network or CPU work:

1. **claim** (one short transaction): the entry gets a lease (``lease_until``, ``lease_owner``) for as long
   as a fetch and an extraction may take. Another worker, or another task beside a slow one, skips it;
   a lease that ran out (its worker was killed) makes the entry claimable again, and a retry of the same
   Airflow task instance (the same lease owner) takes over its earlier try's leases at once.
2. **fetch** (``polling.article_workers`` requests in flight: they wait on the network; each request holds one
   of its host's ``polling.per_host_concurrency`` slots, shared by every process, ``newswatch.ingest.hostslots``)
   and **extract** (a worker process, ``newswatch.workers``: a page that crashes, hangs or blows up the
   extractor costs that entry only), outside any transaction. A few more threads than requests extract and
   store what was fetched, so a request slot is never held while its page is processed.
3. **store** (one short transaction): the article once per canonical URL (a second feed carrying the same
   link, or a ``utm_`` variant of it, points its entry at the existing article), its LSH bands, the entry
   done; only the lease owner may store.

Every failure advances the entry: attempts + 1, the next attempt after an exponential backoff, and after
``polling.article_max_attempts`` the entry ends ``failed`` with its reason (``last_error_kind``,
``last_error``), counted in feed health. A page that cannot be fetched is retried likewise; after the last
attempt, or at once for errors that will not heal (404, refused address, oversized page), the feed's own
summary is stored, marked partial. A page whose host stayed busy (every slot taken by other fetches for
``polling.host_wait_seconds``) is not an attempt: the entry goes back to the queue as it was (``host_busy``).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from psycopg2.extras import execute_values

from newswatch import db
from newswatch.config import Settings
from newswatch.ingest import boilerplate
from newswatch.ingest.dedup import Fingerprint, fingerprint
from newswatch.ingest.extract import ExtractedArticle, extract_job
from newswatch.ingest.fetcher import FetchError, ThreadFetchers
from newswatch.ingest.hostslots import HostBusy, HostSlots, host_slots, in_host_turns
from newswatch.urls import canonicalize_url, site_of
from newswatch.workers import WorkerFailure, WorkerPool, document_pool

log = logging.getLogger(__name__)

PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
_PERMANENT_KINDS = {"blocked_address", "invalid_url", "too_large", "too_many_redirects", "redirect_loop"}
_LEASE_MARGIN = timedelta(seconds=60)


@dataclasses.dataclass(frozen=True)
class _Failure:
    kind: str
    message: str


def pending_entries(limit: int | None = None, owner: str | None = None) -> list[int]:
    """Ids of queued entries due for a (re)try and not leased (the oldest ``limit``, or all of them), their
    hosts taken in turn (``in_host_turns``): a feed's pages are queued together, on one host. Entries leased
    by ``owner`` count as free: a retried task instance takes back what its killed try held."""
    with db.transaction() as cur:
        cur.execute(
            "SELECT id, url FROM feed_entries WHERE status = 'pending' AND next_attempt_at <= now() "
            "AND (lease_until IS NULL OR lease_until < now() OR lease_owner = %s) ORDER BY id LIMIT %s",
            (owner, limit),
        )
        return [row["id"] for row in in_host_turns(cur.fetchall())]


def fetch_articles(entry_ids: list[int], settings: Settings, owner: str | None = None,
                   on_stored: Callable[[int], None] | None = None, then_queue: bool = False) -> dict[str, int]:
    """Process the given entries; returns counts for logs and XCom.

    Pages are fetched by up to ``polling.article_workers`` threads and extracted in the worker processes.
    ``on_stored`` is called with each new article's id once it is committed (the next stage starts on it
    while this one fetches on); it must not raise.
    ``owner`` names the leases this call takes (a fresh one by default). The DAG passes its task instance
    (run, task, map index): a retry of the same instance, after its worker was killed, takes over the entries
    its earlier try had leased at once, instead of skipping them until their leases run out (the next cycle).

    ``then_queue``: once the given entries are done, go on with the queue's other due entries that nobody holds
    (``pending_entries``) until none is left. The DAG's mapped tasks do: one whose batch ends early (nearer
    servers, an earlier start) takes over what its slower neighbours have not reached yet, and the batches
    that wait for a pool slot, instead of idling while the slowest batch ends the cycle. Each entry is still
    claimed on its own (a lease), so it is processed once whoever reaches it first; the other task skips it.
    Entries taken this way count as ``taken_over`` (those another task claimed first are left out of the
    counts), and none is taken twice by one call (one it re-queued as ``host_busy`` waits for the next cycle).
    """
    owner = owner or uuid.uuid4().hex
    counts = {"entries": len(entry_ids)}
    if not entry_ids:
        return counts
    slots = host_slots(settings.polling.per_host_concurrency, settings.polling.host_wait_seconds)
    run = _Run(owner, settings, document_pool(settings), slots, on_stored)
    # ``article_workers`` threads are on the network at any time; the others extract and store the pages
    # already fetched. A request slot is then busy for the request alone, not also for its page's extraction
    # and storage.
    threads = settings.polling.article_workers + run.pool.size + 1
    if not then_queue:
        threads = min(threads, len(entry_ids))
    work = _WorkList(entry_ids, then_queue, owner)
    lock = threading.Lock()

    def work_through() -> None:
        try:
            while (item := work.next()) is not None:
                entry_id, taken_over = item
                outcome = _process_entry(entry_id, run)
                if taken_over and outcome == "skipped":
                    continue  # its own batch's task, or another one, got there first: not this task's entry
                with lock:
                    counts[outcome] = counts.get(outcome, 0) + 1
                    if taken_over:
                        counts["taken_over"] = counts.get("taken_over", 0) + 1
        except BaseException:
            work.stop()  # the database is gone (the only thing _process_entry raises for): the others stop too
            raise

    with run.fetchers, ThreadPoolExecutor(max_workers=threads, thread_name_prefix="article") as executor:
        for future in [executor.submit(work_through) for _ in range(threads)]:
            future.result()
    return counts


class _WorkList:
    """What one fetch_articles call works through, an entry at a time to each of its threads: the given entries,
    then (``then_queue``) the queue's other due entries that nobody holds, read again whenever those run out."""

    def __init__(self, entry_ids: list[int], then_queue: bool, owner: str) -> None:
        self._owner = owner
        self._own = iter(entry_ids)
        self._taken_over: Iterator[int] = iter(())
        self._then_queue = then_queue
        self._seen = set(entry_ids)
        self._lock = threading.Lock()
        self._stopped = False

    def next(self) -> tuple[int, bool] | None:
        """The next entry id and whether it was taken over from the queue; None when there is nothing left."""
        with self._lock:
            if self._stopped:
                return None
            entry_id = next(self._own, None)
            if entry_id is not None:
                return entry_id, False
            while True:
                entry_id = next(self._taken_over, None)
                if entry_id is not None:
                    return entry_id, True
                if not self._then_queue:
                    return None
                # With the entries leased by this owner: those a killed earlier try of this task instance had
                # taken over from the queue are not in its batch, and would otherwise wait for their leases.
                fresh = [entry_id for entry_id in pending_entries(owner=self._owner) if entry_id not in self._seen]
                if not fresh:
                    self._then_queue = False
                    return None
                self._seen.update(fresh)
                # The queue in host turns, from a random point: tasks taking over at the same moment start on
                # different entries (and hosts) instead of racing each other for the same ones.
                start = random.randrange(len(fresh))
                self._taken_over = iter(fresh[start:] + fresh[:start])

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


class _Run:
    """One fetch_articles call: its lease owner, settings, workers, host slots and the sites' templates it has
    read."""

    def __init__(self, owner: str, settings: Settings, pool: WorkerPool, slots: HostSlots,
                 on_stored: Callable[[int], None] | None = None) -> None:
        self.owner, self.settings, self.pool, self.slots = owner, settings, pool, slots
        self.on_stored = on_stored
        self.fetching = threading.BoundedSemaphore(settings.polling.article_workers)  # requests in flight
        self.fetchers = ThreadFetchers(settings.network, slots)
        self._templates: dict[str, boilerplate.Template] = {}
        self._lock = threading.Lock()

    def template(self, site: str) -> boilerplate.Template:
        """The site's boilerplate template, read once per run (what stripping needs, without the database)."""
        with self._lock:
            known = self._templates.get(site)
        if known is None:
            with db.transaction() as cur:
                known = boilerplate.template(cur, site)
            with self._lock:
                self._templates[site] = known
        return known


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What a worker makes of a page: the article (body stripped of the site's template), its fingerprint,
    and the page's paragraph keys for boilerplate learning (None for feed text)."""

    article: ExtractedArticle
    fingerprint: Fingerprint
    site: str
    lines: boilerplate.Lines | None


def prepare_job(job: dict) -> Prepared:
    """Runs in a worker process: extract the page, strip the site's template, fingerprint the text."""
    template, min_tokens = job.pop("template"), job.pop("min_tokens")
    site = site_of(job["url"])  # the site that served the page: its template is on it
    article = extract_job(job)
    lines = None
    if not article.is_partial:  # learn and strip page text only, never feed summaries
        lines = boilerplate.lines(article.body)
        article = dataclasses.replace(article, body=boilerplate.strip_with(template, article.body))
    return Prepared(article, fingerprint(article.body, min_tokens), site, lines)


def warm_up() -> None:
    """Run a page's CPU work once when a worker starts (``newswatch.workers``): what it loads on first use
    (date parsers, the accent table, numpy's random module for the MinHash permutations) is then in memory
    before the worker's memory cap, not counted against a stranger's page."""
    body = "Le président a annoncé mardi à Paris une réforme des retraites très attendue. " * 4
    prepare_job({"content": None, "url": "http://127.0.0.1/warm-up", "content_type": None, "feed_title": "Warm up",
                 "feed_summary": f"<p>{body}</p>", "feed_published": None, "template": boilerplate.Template(),
                 "min_tokens": 5})


def _process_entry(entry_id: int, run: _Run) -> str:
    """Claim, fetch, extract and store one entry; returns the outcome label. Never raises."""
    owner, settings = run.owner, run.settings
    entry = None
    try:
        entry = _claim(entry_id, owner, settings)
        if entry is None:
            return "skipped"  # done meanwhile, or another worker holds it
        if entry["existing_article"]:
            return _finish(entry, owner, "duplicate", entry["existing_article"])
        prepared, failure = _fetch_and_prepare(entry, run)
        if failure is not None and failure.kind == "host_busy":
            return _requeue(entry, owner, failure)
        if prepared is None:
            return _retry_later(entry, owner, failure, settings)
        return _store(entry, owner, prepared, run)
    except _LeaseLost:
        return "skipped"  # the lease ran out and another worker took the entry over
    except Exception as exc:  # noqa: BLE001 - a bug or a refused value costs this entry a retry, not the batch
        if db.connection_lost(exc):
            raise  # the server is gone: the run stops; the entry's lease runs out and the next run takes it
        log.exception("entry %s could not be processed", entry_id)
        if entry is None:
            return "error"
        try:
            return _retry_later(entry, owner, _Failure("internal", f"{type(exc).__name__}: {exc}"), settings)
        except Exception as again:  # noqa: BLE001 - the lease runs out, the entry returns
            if db.connection_lost(again):
                raise
            log.exception("entry %s: recording the failure failed too", entry_id)
            return "error"


def _claim(entry_id: int, owner: str, settings: Settings) -> dict | None:
    """Lease a due entry for this run; None when it is not claimable (done, leased by another owner, not due)."""
    lease = timedelta(seconds=settings.network.total_timeout + settings.polling.item_time_limit) + _LEASE_MARGIN
    with db.transaction() as cur:
        cur.execute(
            """
            UPDATE feed_entries e SET lease_until = now() + %(lease)s, lease_owner = %(owner)s
            FROM feeds f
            WHERE e.id = %(id)s AND f.id = e.feed_id AND e.status = 'pending' AND e.next_attempt_at <= now()
              AND (e.lease_until IS NULL OR e.lease_until < now() OR e.lease_owner = %(owner)s)
            RETURNING e.id, e.url, e.title, e.summary, e.published_at, e.attempts, f.name AS feed, f.id AS feed_id
            """,
            {"lease": lease, "owner": owner, "id": entry_id},
        )
        entry = cur.fetchone()
        if entry is not None:
            entry["existing_article"] = _article_for_url(cur, canonicalize_url(entry["url"]))
        return entry


def _fetch_and_prepare(entry: dict, run: _Run) -> tuple[Prepared | None, _Failure | None]:
    settings = run.settings
    job = {"content": None, "url": entry["url"], "content_type": None, "feed_title": entry["title"] or None,
           "feed_summary": entry["summary"] or None, "feed_published": entry["published_at"],
           "template": boilerplate.Template(), "min_tokens": settings.dedup.min_tokens}
    try:
        with run.fetching:
            page = run.fetchers.get().get(entry["url"], accept=PAGE_ACCEPT, max_bytes=settings.network.max_page_bytes)
    except HostBusy as exc:
        return None, _Failure(exc.kind, exc.message)
    except FetchError as exc:
        last_attempt = entry["attempts"] + 1 >= settings.polling.article_max_attempts
        permanent = exc.kind in _PERMANENT_KINDS or (exc.status is not None and 400 <= exc.status < 500
                                                     and exc.status not in (408, 429))
        if not (last_attempt or permanent) or not (entry["summary"] or entry["title"]):
            return None, _Failure(exc.kind, str(exc))
        log.info("page %s unavailable (%s): storing the feed summary", entry["url"], exc)
    else:
        job.update(content=page.content, url=page.url, content_type=page.content_type,
                   template=run.template(site_of(page.url)))
    try:
        return run.pool.submit(prepare_job, job, label=job["url"]).result(), None
    except WorkerFailure as failure:
        log.warning("entry %s (%s): extraction lost: %s", entry["id"], entry["url"], failure)
        return None, _Failure(f"extractor_{failure.kind}", failure.message)


def _retry_later(entry: dict, owner: str, failure: _Failure | None, settings: Settings) -> str:
    """Count the failed attempt: retry after a backoff, or give up after the last attempt."""
    failure = failure or _Failure("internal", "no content")
    attempts = entry["attempts"] + 1
    gave_up = attempts >= settings.polling.article_max_attempts
    delay = timedelta(seconds=settings.polling.article_retry_base_seconds * 2 ** (attempts - 1))
    with db.transaction() as cur:
        cur.execute(
            """
            UPDATE feed_entries SET status = %s, attempts = %s, last_error_kind = %s, last_error = %s,
                next_attempt_at = %s, lease_until = NULL, lease_owner = NULL
            WHERE id = %s AND status = 'pending' AND lease_owner = %s
            """,
            ("failed" if gave_up else "pending", attempts, failure.kind, db.clean_text(failure.message)[:1000],
             datetime.now(UTC) + delay, entry["id"], owner),
        )
        if cur.rowcount == 0:
            return "skipped"  # the lease ran out and another worker took the entry over
    return "failed" if gave_up else "retry"


def _requeue(entry: dict, owner: str, failure: _Failure) -> str:
    """Give the entry back to the queue as it was (no attempt counted): its host was busy with other fetches."""
    with db.transaction() as cur:
        cur.execute(
            """
            UPDATE feed_entries SET last_error_kind = %s, last_error = %s, lease_until = NULL, lease_owner = NULL
            WHERE id = %s AND status = 'pending' AND lease_owner = %s
            """,
            (failure.kind, db.clean_text(failure.message)[:1000], entry["id"], owner),
        )
        if cur.rowcount == 0:
            return "skipped"
    return "host_busy"


def _article_for_url(cur, canonical_url: str | None) -> int | None:
    if not canonical_url:
        return None
    cur.execute("SELECT id FROM articles WHERE canonical_url = %s", (canonical_url,))
    row = cur.fetchone()
    return row["id"] if row else None


def _finish(entry: dict, owner: str, status: str, article_id: int | None, cur=None) -> str:
    """Mark the entry done (or a duplicate of a stored article); returns the outcome label."""
    if cur is None:
        with db.transaction() as own:
            return _finish(entry, owner, status, article_id, own)
    cur.execute(
        "UPDATE feed_entries SET status = %s, article_id = %s, attempts = attempts + 1, last_error = NULL, "
        "last_error_kind = NULL, lease_until = NULL, lease_owner = NULL "
        "WHERE id = %s AND status = 'pending' AND lease_owner = %s",
        (status, article_id, entry["id"], owner),
    )
    if cur.rowcount == 0:
        raise _LeaseLost
    return "duplicate_url" if status == "duplicate" else "stored"


class _LeaseLost(Exception):
    """The entry's lease ran out and another worker took it over: this run stores nothing."""


def _store(entry: dict, owner: str, prepared: Prepared, run: _Run) -> str:
    """Insert the article and its LSH bands, learn the site's paragraphs, finish the entry: one transaction."""
    article = prepared.article
    try:
        with db.transaction() as cur:
            article_id = insert_article(cur, entry, article, run.settings, prepared.fingerprint)
            if article_id is not None and prepared.lines is not None:
                boilerplate.learn(cur, prepared.site, prepared.lines)
            if article_id is None:
                _finish(entry, owner, "duplicate", _article_for_url(cur, article.canonical_url), cur)
                return "duplicate_url"
            _finish(entry, owner, "done", article_id, cur)
    except _LeaseLost:
        return "skipped"
    if run.on_stored is not None:
        run.on_stored(article_id)
    return "partial" if article.is_partial else "stored"


def insert_article(cur, entry: dict, article: ExtractedArticle, settings: Settings,
                   print_: Fingerprint | None = None) -> int | None:
    """Insert the article and its LSH bands; None when its canonical URL is already stored.

    Without ``print_`` (an article prepared elsewhere, a test) the body is stripped of the site's
    template and learned from here, and fingerprinted.
    """
    canonical = article.canonical_url or canonicalize_url(entry["url"])
    if print_ is None:
        if not article.is_partial:  # learn and strip page text only, never feed summaries
            article = dataclasses.replace(article, body=boilerplate.strip_and_learn(cur, site_of(canonical),
                                                                                     article.body))
        print_ = fingerprint(article.body, settings.dedup.min_tokens)
    clean = db.clean_text
    cur.execute(
        """
        INSERT INTO articles (url, canonical_url, title, body, summary, language, authors, site_name,
                              image_url, published_at, updated_at, feed, feed_id, is_partial, extraction,
                              content_hash, minhash)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (canonical_url) DO NOTHING
        RETURNING id
        """,
        (clean(entry["url"]), clean(canonical), clean(article.title), clean(article.body),
         clean(entry["summary"]), article.language, [clean(a) for a in article.authors],
         clean(article.site_name), clean(article.image_url), article.published_at, article.updated_at, entry["feed"],
         entry["feed_id"], article.is_partial, article.method, print_.content_hash,
         print_.signature_bytes),
    )
    row = cur.fetchone()
    if row is None:
        return None
    bands = print_.bands()
    if bands:
        execute_values(
            cur,
            "INSERT INTO article_bands (band, hash, article_id, language) VALUES %s ON CONFLICT DO NOTHING",
            [(band, value, row["id"], article.language) for band, value in bands],
        )
    return row["id"]
