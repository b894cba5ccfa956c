"""Group stored articles into stories, cheapest evidence first, recording why.

Layers: an identical normalised body (content hash), then a near-duplicate in the same language found
through the LSH band index and confirmed by MinHash similarity. An article matching nothing opens a
new story. Each decision is stored on the article (``dedup_reason``, ``dedup_score``, ``dedup_of``)
so a reader can see why two articles were grouped. Clustering runs serially under a transaction
lock: two concurrent runs must not open two stories for the same event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from newswatch import db
from newswatch.config import Settings
from newswatch.dedup import signature_from_bytes, similarity

log = logging.getLogger(__name__)

_CLUSTER_LOCK = 0x73746F72  # "stor"
_BATCH = 500


@dataclass(frozen=True)
class Decision:
    story_id: int | None
    reason: str
    score: float | None = None
    duplicate_of: int | None = None


def assign_stories(settings: Settings) -> dict[str, int]:
    """Give every unclustered article a story; returns counts for logs and XCom."""
    counts = {"articles": 0, "new_stories": 0, "joined": 0}
    while True:
        with db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CLUSTER_LOCK,))
            cur.execute(
                """
                SELECT id, title, language, feed, content_hash, minhash, fetched_at,
                       COALESCE(published_at, fetched_at) AS seen_at
                FROM articles WHERE story_id IS NULL ORDER BY id LIMIT %s
                """,
                (_BATCH,),
            )
            articles = cur.fetchall()
            for article in articles:
                decision = _decide(cur, article, settings)
                if decision.story_id is None:
                    story_id = _open_story(cur, article)
                    counts["new_stories"] += 1
                else:
                    story_id = decision.story_id
                    counts["joined"] += 1
                cur.execute(
                    "UPDATE articles SET story_id = %s, dedup_reason = %s, dedup_score = %s, dedup_of = %s "
                    "WHERE id = %s",
                    (story_id, decision.reason, decision.score, decision.duplicate_of, article["id"]),
                )
                _refresh_story(cur, story_id)
            counts["articles"] += len(articles)
        if len(articles) < _BATCH:
            return counts


def _decide(cur, article: dict, settings: Settings) -> Decision:
    window = timedelta(days=settings.dedup.window_days)
    if article["minhash"] is not None:  # only texts long enough to compare carry a signature
        cur.execute(
            """
            SELECT id, story_id FROM articles
            WHERE content_hash = %s AND story_id IS NOT NULL AND id <> %s
            ORDER BY id LIMIT 1
            """,
            (article["content_hash"], article["id"]),
        )
        same = cur.fetchone()
        if same:
            return Decision(same["story_id"], "content_hash", 1.0, same["id"])
        near = _nearest(cur, article, window)
        if near and near[1] >= settings.dedup.near_duplicate_threshold:
            return Decision(near[0]["story_id"], "near_duplicate", round(near[1], 3), near[0]["id"])
    return Decision(None, "new_story")


def _nearest(cur, article: dict, window: timedelta) -> tuple[dict, float] | None:
    """The most similar clustered article sharing an LSH band, same language, within the window."""
    cur.execute(
        """
        SELECT DISTINCT a.id, a.story_id, a.minhash
        FROM article_bands mine
        JOIN article_bands other ON other.band = mine.band AND other.hash = mine.hash
                                 AND other.article_id <> mine.article_id
        JOIN articles a ON a.id = other.article_id
        WHERE mine.article_id = %s
          AND a.story_id IS NOT NULL
          AND a.language IS NOT DISTINCT FROM %s
          AND COALESCE(a.published_at, a.fetched_at) BETWEEN %s AND %s
        LIMIT 200
        """,
        (article["id"], article["language"], article["seen_at"] - window, article["seen_at"] + window),
    )
    mine = signature_from_bytes(bytes(article["minhash"]))
    best: tuple[dict, float] | None = None
    for candidate in cur.fetchall():
        score = similarity(mine, signature_from_bytes(bytes(candidate["minhash"])))
        if best is None or score > best[1]:
            best = (candidate, score)
    return best


def _open_story(cur, article: dict) -> int:
    cur.execute(
        "INSERT INTO stories (title, representative_article, first_seen_at, last_seen_at) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (article["title"], article["id"], article["fetched_at"], article["fetched_at"]),
    )
    return cur.fetchone()["id"]


def _refresh_story(cur, story_id: int) -> None:
    """Recompute a story's summary columns from its members (derived, so it never drifts)."""
    cur.execute(
        """
        UPDATE stories s SET
            article_count = m.n, languages = m.languages, feeds = m.feeds,
            first_seen_at = m.first_seen, last_seen_at = m.last_seen
        FROM (
            SELECT count(*) AS n,
                   COALESCE(array_agg(DISTINCT language) FILTER (WHERE language IS NOT NULL), '{}') AS languages,
                   array_agg(DISTINCT feed) AS feeds,
                   min(fetched_at) AS first_seen, max(fetched_at) AS last_seen
            FROM articles WHERE story_id = %s
        ) m
        WHERE s.id = %s
        """,
        (story_id, story_id),
    )

