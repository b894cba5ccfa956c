"""Group stored articles into stories, cheapest and surest evidence first, recording why.

Layers, each tried only when the previous ones found nothing (the same link and the same feed GUID
never get this far: ``ingest`` stores one article per canonical URL):

1. ``content_hash``: the same normalised body (texts long enough to compare only).
2. ``near_duplicate``: a lightly edited copy in the same language, found through the LSH band index
   and confirmed by MinHash similarity, unless both texts name things and have none in common (two
   short items drowned in the same cookie banner or paywall teaser).
3. ``same_title``: the same normalised headline (of at least five words) within the window, unless
   both bodies name things and have nothing in common (a recurring column). Tried after the body
   layers, so that copies with comparable bodies record the stronger evidence; it is what links copies
   whose bodies cannot be compared (feed summaries, paywalls).
4. ``entity_overlap``: the same event reported in any language: shared names, places, numbers and
   dates (``newswatch.entities``), weighted by how rare they are in the archive.

An article matching nothing opens a new story. Each decision is stored on the article
(``dedup_reason``, ``dedup_score``, ``dedup_of``). When an article links to several stories (a German
report bridging an English and a French story that did not link to each other), they are merged into
the oldest one (see ``_merge``). Clustering runs serially under a transaction-level lock: two
concurrent runs must not open two stories for the same event, and a re-run finds nothing to do.

Every candidate lookup reads a bounded number of index entries, whatever the archive size: LSH bands
(newest ``_PER_BAND`` articles per band), the title key, and the most distinctive entity items
(newest ``_PER_ITEM`` articles per item within the window).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from newswatch import db, entities
from newswatch.config import Settings
from newswatch.dedup import signature_from_bytes, similarity, title_key

log = logging.getLogger(__name__)

_CLUSTER_LOCK = 0x73746F72  # "stor"
_BATCH = 500
_PER_BAND = 20          # articles read per shared LSH band (newest first)
_PER_ITEM = 50          # articles read per probed entity item (newest first, within the window)
_PROBES = 24            # entity items probed per article (rarest first, among those seen before)
_ENTITY_CANDIDATES = 20  # candidate articles scored per article
_TITLE_CANDIDATES = 20
_TOTAL = ""             # entity_df row counting the fingerprinted articles

# Candidates sharing an LSH band: for each of the article's 32 bands, the newest _PER_BAND articles
# with the same band hash (an index range scan on article_bands' primary key, bounded even for a band
# shared by thousands of boilerplate pages), then filtered by language and window.
NEAR_DUPLICATE_SQL = """
SELECT a.id, a.story_id, a.minhash, a.entities
FROM (SELECT DISTINCT c.article_id
      FROM article_bands mine
      CROSS JOIN LATERAL (
          SELECT other.article_id FROM article_bands other
          WHERE other.band = mine.band AND other.hash = mine.hash AND other.article_id <> mine.article_id
          ORDER BY other.article_id DESC LIMIT %(per_band)s
      ) c
      WHERE mine.article_id = %(id)s) candidates
JOIN articles a ON a.id = candidates.article_id
WHERE a.story_id IS NOT NULL AND a.minhash IS NOT NULL
  AND a.language IS NOT DISTINCT FROM %(language)s
  AND COALESCE(a.published_at, a.fetched_at) BETWEEN %(low)s AND %(high)s
"""

# Candidates sharing an entity item: for each probed item, the newest _PER_ITEM articles within the
# window (an index range scan on article_entities' primary key), the most frequent hits first.
ENTITY_SQL = """
SELECT a.id, a.story_id, a.entities
FROM (SELECT hit.article_id, count(*) AS hits
      FROM unnest(%(probes)s::text[]) AS probe(entity)
      CROSS JOIN LATERAL (
          SELECT e.article_id FROM article_entities e
          WHERE e.entity = probe.entity AND e.seen_at BETWEEN %(low)s AND %(high)s
            AND e.article_id <> %(id)s
          ORDER BY e.seen_at DESC LIMIT %(per_item)s
      ) hit
      GROUP BY hit.article_id
      ORDER BY hits DESC, hit.article_id DESC
      LIMIT %(limit)s) candidates
JOIN articles a ON a.id = candidates.article_id
WHERE a.story_id IS NOT NULL AND a.entities IS NOT NULL
"""

TITLE_SQL = """
SELECT id, story_id, entities FROM articles
WHERE title_key = %(key)s AND id <> %(id)s AND story_id IS NOT NULL
  AND COALESCE(published_at, fetched_at) BETWEEN %(low)s AND %(high)s
ORDER BY id LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Decision:
    story_id: int | None
    reason: str
    score: float | None = None
    duplicate_of: int | None = None
    also: tuple[int, ...] = field(default=())  # other stories the article links to (to merge)


def assign_stories(settings: Settings) -> dict[str, int]:
    """Give every unclustered article a story; returns counts for logs and XCom."""
    counts = {"articles": 0, "new_stories": 0, "joined": 0, "merged": 0}
    while True:
        with db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CLUSTER_LOCK,))
            cur.execute(
                """
                SELECT id, title, body, language, feed, content_hash, minhash, fetched_at, is_partial,
                       COALESCE(published_at, fetched_at) AS seen_at
                FROM articles WHERE story_id IS NULL ORDER BY id LIMIT %s
                """,
                (_BATCH,),
            )
            articles = cur.fetchall()
            for article in articles:
                _cluster_one(cur, article, settings, counts)
            counts["articles"] += len(articles)
        if len(articles) < _BATCH:
            return counts


def _cluster_one(cur, article: dict, settings: Settings, counts: dict[str, int]) -> int:
    print_ = entities.extract(article["title"], article["body"], article["language"])
    article["entities"] = list(print_.items)
    article["title_key"] = title_key(article["title"])
    cur.execute("UPDATE articles SET title_key = %s, entities = %s WHERE id = %s",
                (article["title_key"], article["entities"], article["id"]))
    indexed = print_.indexed()
    if indexed:
        cur.execute(
            "INSERT INTO article_entities (entity, seen_at, article_id) SELECT unnest(%s::text[]), %s, %s "
            "ON CONFLICT DO NOTHING",
            (indexed, article["seen_at"], article["id"]),
        )
    decision = decide(cur, article, settings)
    if decision.story_id is None:
        story_id = _open_story(cur, article)
        counts["new_stories"] += 1
    else:
        story_id = min((decision.story_id, *decision.also))  # the oldest story survives a merge
        for other in sorted({decision.story_id, *decision.also} - {story_id}):
            _merge(cur, into=story_id, merged=other, article_id=article["id"],
                   reason=decision.reason, score=decision.score)
            counts["merged"] += 1
        counts["joined"] += 1
    cur.execute(
        "UPDATE articles SET story_id = %s, dedup_reason = %s, dedup_score = %s, dedup_of = %s WHERE id = %s",
        (story_id, decision.reason, decision.score, decision.duplicate_of, article["id"]),
    )
    # Document frequencies count every fingerprinted article once (its items, plus the total row).
    cur.execute(
        "INSERT INTO entity_df (entity, df) SELECT unnest(%s::text[]), 1 "
        "ON CONFLICT (entity) DO UPDATE SET df = entity_df.df + 1",
        (sorted({_TOTAL, *print_.items}),),
    )
    _refresh_story(cur, story_id)
    return story_id


def decide(cur, article: dict, settings: Settings) -> Decision:
    """Which story an article belongs to, by the first layer with evidence; ``also`` lists bridged stories.

    ``article`` needs id, title_key, entities, language, content_hash, minhash and seen_at; it must
    not be in a story yet.
    """
    window = timedelta(days=settings.dedup.window_days)
    low, high = article["seen_at"] - window, article["seen_at"] + window
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

    found: list[tuple[str, dict, float]] = []  # (reason, best article of a story, score), layer order
    df, total = _frequencies(cur, article["entities"])
    if article["minhash"] is not None:
        for candidate, score in _near_duplicates(cur, article, low, high):
            if score >= settings.dedup.near_duplicate_threshold and not _contradicts(
                    article["entities"], candidate["entities"] or [], df, total):
                found.append(("near_duplicate", candidate, round(score, 3)))
    for candidate in _same_title(cur, article, low, high):
        if not _contradicts(article["entities"], candidate["entities"] or [], df, total):
            found.append(("same_title", candidate, 1.0))
    for candidate, link in _entity_links(cur, article, low, high, df, total):
        found.append(("entity_overlap", candidate, round(link.score, 3)))
    if not found:
        return Decision(None, "new_story")
    stories = {candidate["story_id"] for _, candidate, _ in found}
    reason, candidate, score = found[0]  # the first layer with evidence, its best candidate
    return Decision(candidate["story_id"], reason, score, candidate["id"],
                    tuple(sorted(stories - {candidate["story_id"]})))


def pair_decision(a: dict, b: dict, df: dict[str, int], total: int, settings: Settings) -> tuple[str, float] | None:
    """The layers applied to one pair of articles: (reason, score) when they are the same story, else None.

    The database path finds candidates through indexes and then applies exactly these tests; this form
    is for benchmarks and tests. Each article is a dict with content_hash, signature (MinHash values or
    None), title_key, entities (fingerprint items) and language.
    """
    if a["signature"] is not None and b["signature"] is not None:
        if a["content_hash"] == b["content_hash"]:
            return "content_hash", 1.0
        if a["language"] == b["language"]:
            score = similarity(a["signature"], b["signature"])
            if score >= settings.dedup.near_duplicate_threshold and not _contradicts(a["entities"], b["entities"],
                                                                                      df, total):
                return "near_duplicate", round(score, 3)
    if a["title_key"] and a["title_key"] == b["title_key"] and not _contradicts(a["entities"], b["entities"], df,
                                                                                total):
        return "same_title", 1.0
    link = entities.overlap(a["entities"], b["entities"], df, total)
    if link.linked:
        return "entity_overlap", round(link.score, 3)
    return None


def _near_duplicates(cur, article: dict, low, high) -> list[tuple[dict, float]]:
    """Clustered articles sharing an LSH band, same language, within the window, most similar first."""
    cur.execute(NEAR_DUPLICATE_SQL, {"per_band": _PER_BAND, "id": article["id"], "language": article["language"],
                                     "low": low, "high": high})
    mine = signature_from_bytes(bytes(article["minhash"]))
    scored = [(c, similarity(mine, signature_from_bytes(bytes(c["minhash"])))) for c in cur.fetchall()]
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]["id"]))


def _same_title(cur, article: dict, low, high) -> list[dict]:
    if not article["title_key"]:
        return []
    cur.execute(TITLE_SQL, {"key": article["title_key"], "id": article["id"], "low": low, "high": high,
                            "limit": _TITLE_CANDIDATES})
    return cur.fetchall()


def _contradicts(mine: list[str], theirs: list[str], df: dict[str, int], total: int) -> bool:
    """Both texts name at least MIN_SHARED distinctive things and share none: not one story, whatever else
    they share (a recurring headline, a boilerplate banner)."""
    def telling(items: list[str]) -> set[str]:
        return {i for i in items if i[0] in "ncd" and entities.is_distinctive(i, df.get(i, 0), total)}
    a, b = telling(mine), telling(theirs)
    return len(a) >= entities.MIN_SHARED and len(b) >= entities.MIN_SHARED and not a & b


def _frequencies(cur, items: list[str]) -> tuple[dict[str, int], int]:
    cur.execute("SELECT entity, df FROM entity_df WHERE entity = ANY(%s)", ([_TOTAL, *items],))
    df = {row["entity"]: row["df"] for row in cur.fetchall()}
    return df, df.pop(_TOTAL, 0)


def _entity_links(cur, article: dict, low, high, df: dict[str, int], total: int) -> list[tuple[dict, entities.Overlap]]:
    """Clustered articles whose entity fingerprint links to this one's, best first."""
    mine = article["entities"]
    # Only items some other article already has can find a candidate (df counts grouped articles), and
    # the rarest of those are the most telling; topical ones would read many rows and prove nothing.
    probes = [item for item in mine if item not in entities.GENERIC and item[0] in "ncd#"
              and df.get(item, 0) > 0 and entities.is_distinctive(item, df[item], total)]
    if len(probes) < entities.MIN_SHARED_NAMES:
        return []
    probes.sort(key=lambda item: (df[item], item[0] == "#"))  # rarest first, numbers last
    cur.execute(ENTITY_SQL, {"probes": probes[:_PROBES], "low": low, "high": high, "id": article["id"],
                             "per_item": _PER_ITEM, "limit": _ENTITY_CANDIDATES})
    candidates = cur.fetchall()
    if not candidates:
        return []
    missing = {item for c in candidates for item in c["entities"]} - df.keys()
    if missing:
        extra, _ = _frequencies(cur, sorted(missing))
        df = {**df, **extra}
    links = []
    for candidate in candidates:
        link = entities.overlap(mine, candidate["entities"], df, total)
        if link.linked:
            links.append((candidate, link))
    return sorted(links, key=lambda pair: (-pair[1].score, pair[0]["id"]))


def _open_story(cur, article: dict) -> int:
    cur.execute(
        "INSERT INTO stories (title, representative_article, first_seen_at, last_seen_at) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        (article["title"], article["id"], article["fetched_at"], article["fetched_at"]),
    )
    return cur.fetchone()["id"]


def _merge(cur, *, into: int, merged: int, article_id: int, reason: str, score: float | None) -> None:
    """Move every article and alert of story ``merged`` into story ``into``, then delete ``merged``.

    Alerts are unique on (rule, story, channel): where both stories have an alert for the same rule
    and channel, one is kept (the sent one if only one was sent, else the surviving story's) and the
    other deleted, so a merge never makes a rule fire twice for one story; the other alerts of the
    merged story are re-pointed. Articles are moved first: that waits for any ``match_rules``
    transaction holding them, after which no new alert can name the merged story. Alert rows are then
    locked, which waits for a delivery in flight, so the statuses compared are final.
    """
    cur.execute("UPDATE articles SET story_id = %s WHERE story_id = %s", (into, merged))
    cur.execute(
        "SELECT id, rule, channel, status, story_id FROM alerts WHERE story_id = ANY(%s) ORDER BY id FOR UPDATE",
        ([into, merged],),
    )
    by_key: dict[tuple[str, str], list[dict]] = {}
    for alert in cur.fetchall():
        by_key.setdefault((alert["rule"], alert["channel"]), []).append(alert)
    delete: list[int] = []
    move: list[int] = []
    for alerts in by_key.values():
        ours = next((a for a in alerts if a["story_id"] == into), None)
        theirs = next((a for a in alerts if a["story_id"] == merged), None)
        if theirs is None:
            continue
        if ours is None:
            move.append(theirs["id"])
        elif theirs["status"] == "sent" and ours["status"] != "sent":
            delete.append(ours["id"])
            move.append(theirs["id"])
        else:
            delete.append(theirs["id"])
    if delete:
        cur.execute("DELETE FROM alerts WHERE id = ANY(%s)", (delete,))
    if move:
        cur.execute("UPDATE alerts SET story_id = %s WHERE id = ANY(%s)", (into, move))
    cur.execute("UPDATE story_merges SET into_story = %s WHERE into_story = %s", (into, merged))
    cur.execute(
        "INSERT INTO story_merges (merged_story, into_story, article_id, reason, score) VALUES (%s, %s, %s, %s, %s)",
        (merged, into, article_id, reason, score),
    )
    cur.execute("DELETE FROM stories WHERE id = %s", (merged,))
    log.info("story %s merged into %s (article %s, %s); %d alerts moved, %d duplicates dropped",
             merged, into, article_id, reason, len(move), len(delete))


def _refresh_story(cur, story_id: int) -> None:
    """Recompute a story's summary columns from its members (derived, so it never drifts).

    The representative article is the earliest published full article (feed-summary fallbacks only when
    the story has nothing else): a stable choice that does not flip as copies arrive, and usually the
    original report that later copies and translations derive from. The story takes its title.
    """
    cur.execute(
        """
        UPDATE stories s SET
            article_count = m.n, languages = m.languages, feeds = m.feeds,
            first_seen_at = m.first_seen, last_seen_at = m.last_seen,
            representative_article = r.id, title = r.title
        FROM (
            SELECT count(*) AS n,
                   COALESCE(array_agg(DISTINCT language) FILTER (WHERE language IS NOT NULL), '{}') AS languages,
                   array_agg(DISTINCT feed) AS feeds,
                   min(fetched_at) AS first_seen, max(fetched_at) AS last_seen
            FROM articles WHERE story_id = %(story)s
        ) m,
        (
            SELECT id, title FROM articles WHERE story_id = %(story)s
            ORDER BY is_partial, COALESCE(published_at, fetched_at), id LIMIT 1
        ) r
        WHERE s.id = %(story)s
        """,
        {"story": story_id},
    )
