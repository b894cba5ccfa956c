"""Article ingestion: fetch each queued feed entry's page, extract and normalise it, store it once.

Each entry is claimed with ``FOR UPDATE SKIP LOCKED`` so two workers (or a retried task beside a
slow one) never process the same entry. An article is stored once per canonical URL: a second feed
carrying the same link, or a ``utm_`` variant of it, points its entry at the existing article. A page
that cannot be fetched is retried with backoff; after the last attempt, or at once for errors that
will not heal (404, refused address, oversized page), the feed's own summary is stored, marked partial.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from newswatch import boilerplate, db
from newswatch.config import Settings
from newswatch.dedup import fingerprint
from newswatch.extract import ExtractedArticle, extract_article
from newswatch.fetcher import Fetcher, FetchError
from newswatch.urls import canonicalize_url, site_of

log = logging.getLogger(__name__)

PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
_PERMANENT_KINDS = {"blocked_address", "invalid_url", "too_large", "too_many_redirects", "redirect_loop"}
_MAX_PENDING = 2000


def pending_entries(limit: int = _MAX_PENDING) -> list[int]:
    """Ids of queued entries due for a (re)try, oldest first."""
    with db.transaction() as cur:
        cur.execute(
            "SELECT id FROM feed_entries WHERE status = 'pending' AND next_attempt_at <= now() "
            "ORDER BY id LIMIT %s",
            (limit,),
        )
        return [row["id"] for row in cur.fetchall()]


def fetch_articles(entry_ids: list[int], settings: Settings) -> dict[str, int]:
    """Process the given entries concurrently; returns counts for logs and XCom."""
    workers = min(settings.polling.article_workers, max(len(entry_ids), 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="article") as pool:
        outcomes = list(pool.map(lambda entry_id: _process_entry(entry_id, settings), entry_ids))
    counts = {"entries": len(entry_ids)}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _process_entry(entry_id: int, settings: Settings) -> str:
    """Claim, fetch, extract and store one entry; returns the outcome label."""
    try:
        with db.transaction() as cur:
            cur.execute(
                """
                SELECT e.id, e.url, e.title, e.summary, e.published_at, e.attempts, f.name AS feed, f.id AS feed_id
                FROM feed_entries e JOIN feeds f ON f.id = e.feed_id
                WHERE e.id = %s AND e.status = 'pending'
                FOR UPDATE OF e SKIP LOCKED
                """,
                (entry_id,),
            )
            entry = cur.fetchone()
            if entry is None:
                return "skipped"  # done meanwhile, or another worker holds it
            existing = _article_for_url(cur, canonicalize_url(entry["url"]))
            if existing:
                _finish(cur, entry_id, "duplicate", existing)
                return "duplicate_url"
            article, error = _fetch_and_extract(entry, settings)
            if article is None:
                return _retry_later(cur, entry, error, settings)
            article_id = _store(cur, entry, article, settings)
            if article_id is None:
                _finish(cur, entry_id, "duplicate", _article_for_url(cur, article.canonical_url))
                return "duplicate_url"
            _finish(cur, entry_id, "done", article_id)
            return "partial" if article.is_partial else "stored"
    except Exception:
        log.exception("entry %s could not be processed", entry_id)
        return "error"


def _fetch_and_extract(entry: dict, settings: Settings) -> tuple[ExtractedArticle | None, FetchError | None]:
    feed_fields = {
        "feed_title": entry["title"] or None,
        "feed_summary": entry["summary"] or None,
        "feed_published": entry["published_at"],
    }
    try:
        with Fetcher(settings.network) as fetcher:
            page = fetcher.get(entry["url"], accept=PAGE_ACCEPT, max_bytes=settings.network.max_page_bytes)
    except FetchError as exc:
        last_attempt = entry["attempts"] + 1 >= settings.polling.article_max_attempts
        permanent = exc.kind in _PERMANENT_KINDS or (exc.status is not None and 400 <= exc.status < 500
                                                     and exc.status not in (408, 429))
        if not (last_attempt or permanent):
            return None, exc
        log.info("page %s unavailable (%s): storing the feed summary", entry["url"], exc)
        if not (entry["summary"] or entry["title"]):
            return None, exc
        return extract_article(None, url=entry["url"], **feed_fields), None
    return extract_article(page.content, url=page.url, content_type=page.content_type, **feed_fields), None


def _retry_later(cur, entry: dict, error: FetchError | None, settings: Settings) -> str:
    attempts = entry["attempts"] + 1
    message = str(error) if error else "no content"
    if attempts >= settings.polling.article_max_attempts:
        cur.execute(
            "UPDATE feed_entries SET status = 'failed', attempts = %s, last_error = %s WHERE id = %s",
            (attempts, message, entry["id"]),
        )
        return "failed"
    delay = timedelta(seconds=settings.polling.article_retry_base_seconds * 2 ** (attempts - 1))
    cur.execute(
        "UPDATE feed_entries SET attempts = %s, last_error = %s, next_attempt_at = %s WHERE id = %s",
        (attempts, message, datetime.now(UTC) + delay, entry["id"]),
    )
    return "retry"


def _article_for_url(cur, canonical_url: str | None) -> int | None:
    if not canonical_url:
        return None
    cur.execute("SELECT id FROM articles WHERE canonical_url = %s", (canonical_url,))
    row = cur.fetchone()
    return row["id"] if row else None


def _finish(cur, entry_id: int, status: str, article_id: int | None) -> None:
    cur.execute(
        "UPDATE feed_entries SET status = %s, article_id = %s, attempts = attempts + 1, last_error = NULL "
        "WHERE id = %s",
        (status, article_id, entry_id),
    )


def _store(cur, entry: dict, article: ExtractedArticle, settings: Settings) -> int | None:
    """Insert the article and its LSH bands; None when its canonical URL is already stored."""
    canonical = article.canonical_url or canonicalize_url(entry["url"])
    if not article.is_partial:  # learn and strip page text only, never feed summaries
        site = site_of(canonical)
        article = dataclasses.replace(article, body=boilerplate.strip_and_learn(cur, site, article.body))
    print_ = fingerprint(article.body, settings.dedup.min_tokens)
    clean = db.strip_nul
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
        cur.executemany(
            "INSERT INTO article_bands (band, hash, article_id, language) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(band, value, row["id"], article.language) for band, value in bands],
        )
    return row["id"]
