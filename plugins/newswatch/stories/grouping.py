"""Group stored articles into stories: an article joins a story on evidence against the story as a whole.

Evidence, surest first (the same link and the same feed GUID never get this far: ``ingest`` stores one
article per canonical URL):

1. ``content_hash``: the same normalised body (texts long enough to compare only).
2. ``near_duplicate``: a lightly edited copy in the same language, found through the LSH band index and
   confirmed by MinHash similarity, unless both texts name things and have none in common (two short
   items drowned in the same cookie banner or paywall teaser).
3. ``same_title``: the same normalised headline (of at least five words) within the window, unless both
   bodies name things and have nothing in common (a recurring column).
4. ``meaning``: the article's embedding (``newswatch.stories.meaning``, title and lead, any of 16 languages) is
   close to the story as a whole: the mean cosine similarity to the story's members, plus a small
   allowance for members in another language, reaches ``dedup.meaning_threshold``. ``meaning_entities``:
   it reaches the lower ``dedup.corroborated_threshold`` and the article's names, places, numbers and
   dates (``newswatch.stories.entities``) agree with most of the story's recent members.
   ``follow_up`` (off unless ``dedup.follow_up_days`` is set): the story's members are all more than the
   window away (a deadline, a trial, a verdict weeks later), within ``dedup.follow_up_days`` of its last
   one; meaning alone at the stricter ``dedup.follow_up_threshold``.
5. ``entity_overlap``: where the model cannot read one side (a language it does not cover), names,
   places, numbers and dates linking the article to most of the story's recent members.

A look-alike veto applies to 4, 5 and merges: an article whose days of the month all differ from the
story's, and that shares only a few distinctive names with it, reports another event of the same kind
(the next strike, a week later), however close its meaning.

An article matching nothing opens a new story. Each decision is stored on the article (``dedup_reason``,
``dedup_score``, ``dedup_of``). Stories merge only on evidence of the same strength between the stories
(average link): when an article's evidence points to several stories, a second one is merged into the
first only if the two stories, member against member, pass the same bar and no look-alike veto holds
between them; a round-up that mentions two events joins one of them at most and never merges them
(see ``_merge``). Clustering runs serially under a transaction-level lock: two concurrent runs must not
open two stories for the same event, and a re-run finds nothing to do.

Every candidate lookup reads a bounded number of index entries, whatever the archive size: LSH bands
(newest ``_PER_BAND`` articles per band), the title key, the most distinctive entity items (newest
``_PER_ITEM`` articles per item within the window), the vector index of open stories, which holds only
the stories that gained an article within ``open_days`` (``open_stories``), and the newest
``_RECENT_MEMBERS`` members of each candidate story (``articles_story``, by story and id). Joining a story
updates its summary from the new articles alone (``_join_story``), whatever the story's size. Exact copies met
between two other articles of a batch are joined together (``_Copies``): a few statements per run, not per copy.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import psycopg2.extras

from newswatch import db
from newswatch.config import Settings
from newswatch.ingest.dedup import signature_from_bytes, similarity, title_key
from newswatch.stories import entities, meaning
from newswatch.workers import WorkerFailure, WorkerPool, meaning_pool

log = logging.getLogger(__name__)

_CLUSTER_LOCK = 0x73746F72  # "stor"
_BATCH = 500
_PER_BAND = 20          # articles read per shared LSH band (newest first)
_PER_ITEM = 50          # articles read per probed entity item (newest first, within the window)
_PROBES = 24            # entity items probed per article (rarest first, among those seen before)
_ENTITY_CANDIDATES = 20  # candidate articles scored per article
_TITLE_CANDIDATES = 20
_MEANING_CANDIDATES = 10  # nearest open stories scored per article
_EF_SEARCH = 100         # HNSW candidate list: well above _MEANING_CANDIDATES, so the window filter keeps enough
_RECENT_MEMBERS = 10     # members a story is judged by (the newest): names, places, dates
ANCHOR_DRIFT = 0.03      # cosine distance between a story's meaning and its index anchor before re-filing
_TOTAL = ""             # entity_df row counting the fingerprinted articles
# Corroboration of a meaning match below meaning_threshold: the weighted entity overlap with the story's
# members, on average, and the share of members sharing at least two distinctive items.
_CORROBORATION_SCORE = 0.2
_CORROBORATION_SHARE = 0.5

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

# The earliest grouped article with the same normalised body: read off migration 11's partial index on
# (content_hash, id) of grouped articles, not by walking every grouped article.
COPY_SQL = """
SELECT id, story_id FROM articles
WHERE content_hash = %s AND story_id IS NOT NULL AND id <> %s
ORDER BY id LIMIT 1
"""

# The same for a batch's bodies at once: the earliest grouped article of each (one index probe per body).
FIRST_COPIES_SQL = """
SELECT h.content_hash, c.id, c.story_id
FROM unnest(%s::text[]) AS h(content_hash)
CROSS JOIN LATERAL (
    SELECT id, story_id FROM articles
    WHERE content_hash = h.content_hash AND story_id IS NOT NULL
    ORDER BY id LIMIT 1
) c
"""

TITLE_SQL = """
SELECT id, story_id, entities FROM articles
WHERE title_key = %(key)s AND id <> %(id)s AND story_id IS NOT NULL
  AND COALESCE(published_at, fetched_at) BETWEEN %(low)s AND %(high)s
ORDER BY id LIMIT %(limit)s
"""

# The open stories nearest to an article's meaning (HNSW index on their anchors, cosine), with the inner
# product of the article's embedding and each story's sum of member embeddings: divided by the members,
# the mean similarity to them. The time filter (the follow-up horizon) applies to the index's candidates.
MEANING_SQL = """
SELECT story_id, members, languages, seen_from, seen_to, -(meaning_sum <#> %(vector)s::vector) AS dot
FROM open_stories
WHERE anchor IS NOT NULL AND seen_to >= %(low)s AND seen_from <= %(high)s
ORDER BY anchor <=> %(vector)s::vector
LIMIT %(limit)s
"""

# The newest members of some stories, with their fingerprints, language and embedding distance to the
# article (NULL without embedding): what a story is judged by, and its member nearest to the article.
MEMBERS_SQL = """
SELECT m.id, m.story_id, m.entities, m.language, m.distance
FROM unnest(%(stories)s::bigint[]) AS s(id)
CROSS JOIN LATERAL (
    SELECT a.id, a.story_id, a.entities, a.language,
           am.embedding <=> %(vector)s::vector AS distance
    FROM articles a LEFT JOIN article_meanings am ON am.article_id = a.id
    WHERE a.story_id = s.id AND a.entities IS NOT NULL
    ORDER BY a.id DESC LIMIT %(limit)s
) m
"""


@dataclass(frozen=True)
class Decision:
    story_id: int | None
    reason: str
    score: float | None = None
    duplicate_of: int | None = None
    also: tuple[int, ...] = field(default=())  # other stories the article links to (to merge)


@dataclass
class _Story:
    """A candidate story as the article sees it."""

    id: int
    similarity: float | None = None  # mean similarity of the article to the members' meaning
    follow_up: bool = False  # every member is further than the window from the article
    members: list[dict] = field(default_factory=list)  # newest members: id, entities, language, distance

    def items(self) -> set[str]:
        return {item for member in self.members for item in member["entities"] or ()}


class Frequencies(dict):
    """Document frequencies of fingerprint items (``entity_df``) as one grouping batch sees them.

    Each item is read once per batch; the batch's own articles are counted in memory and written once, at
    the end. Incrementing the rows article by article inside the batch's transaction would leave one row
    version per article (the total row changes with every article), which every later read walks.
    Read items with ``load`` before looking them up: an item not loaded reads as absent (0).
    """

    def __init__(self, cur) -> None:
        super().__init__()
        self.cur = cur
        self.pending: collections.Counter[str] = collections.Counter()
        self.load([_TOTAL])

    @property
    def total(self) -> int:
        return self[_TOTAL]

    def load(self, items: Iterable[str]) -> None:
        missing = set(items) - self.keys()
        if not missing:
            return
        # "= ANY" lets the planner probe the primary key (a bitmap index scan), whatever the list's length.
        self.cur.execute("SELECT entity, df FROM entity_df WHERE entity = ANY(%s)", (sorted(missing),))
        self.update(dict.fromkeys(missing, 0))
        self.update({row["entity"]: row["df"] for row in self.cur.fetchall()})

    def count(self, items: Iterable[str]) -> None:
        """One more fingerprinted article with these items."""
        counted = {*items, _TOTAL}
        self.load(counted)
        for item in counted:
            self[item] += 1
            self.pending[item] += 1

    def flush(self) -> None:
        if self.pending:
            items = sorted(self.pending)
            self.cur.execute(
                "INSERT INTO entity_df (entity, df) SELECT * FROM unnest(%s::text[], %s::integer[]) "
                "ON CONFLICT (entity) DO UPDATE SET df = entity_df.df + EXCLUDED.df",
                (items, [self.pending[item] for item in items]),
            )
            self.pending.clear()


def assign_stories(settings: Settings) -> dict[str, int]:
    """Give every unclustered article a story; returns counts for logs and XCom."""
    counts = {"articles": 0, "new_stories": 0, "joined": 0, "merged": 0, "embedded": 0}
    # The descriptions of the rules' about-terms, embedded where the model already is, so that match_rules
    # (which never loads it) finds their vectors when it judges the articles grouped here.
    embed_rule_meanings(settings)
    _close_quiet_stories(settings)
    # Members of open stories grouped before the meaning layer existed (an upgraded archive) get their
    # embeddings first, so that new articles can find those stories by meaning.
    counts["embedded"] += analyse_open_story_members(settings)
    while True:
        with db.transaction() as cur:
            cur.execute(
                "SELECT id FROM articles WHERE story_id IS NULL "
                "ORDER BY COALESCE(published_at, fetched_at), id LIMIT %s",
                (_BATCH,),
            )
            batch = [row["id"] for row in cur.fetchall()]
        if not batch:
            return counts
        counts["embedded"] += analyse_articles(batch, settings)  # in the workers, outside any transaction
        with db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CLUSTER_LOCK,))
            cur.execute("SET LOCAL hnsw.ef_search = %s", (_EF_SEARCH,))
            cur.execute(
                """
                SELECT a.id, a.title, a.body, a.language, a.feed, a.content_hash, a.minhash, a.fetched_at,
                       a.is_partial, COALESCE(a.published_at, a.fetched_at) AS seen_at, a.entities, am.embedding
                FROM articles a LEFT JOIN article_meanings am ON am.article_id = a.id
                WHERE a.id = ANY(%s) AND a.story_id IS NULL
                ORDER BY COALESCE(a.published_at, a.fetched_at), a.id
                """,
                (batch,),
            )
            articles = cur.fetchall()  # a concurrent run may have clustered some meanwhile
            frequencies = Frequencies(cur)
            copies = _Copies(cur, articles)
            for article in articles:
                if copies.take(article):
                    continue
                copies.flush(settings, counts, frequencies)  # before anything reads the stories they join
                merged = counts["merged"]
                story_id = _cluster_safely(cur, article, settings, counts, frequencies)
                copies.grouped(article, story_id, reload=counts["merged"] != merged)
            copies.flush(settings, counts, frequencies)
            frequencies.flush()
            counts["articles"] += len(articles)


def embed_rule_meanings(settings: Settings, rules: Iterable | None = None, *, database_url: str | None = None) -> int:
    """Vectors of the about-term descriptions of ``rules`` (``newswatch.rules.Rule``; default: the enabled
    rules of ``settings``) that ``rule_meanings`` lacks, computed in the worker processes outside any
    transaction; returns how many were stored. A failure is logged and retried on the next call: match_rules
    holds the articles of a rule without its vector meanwhile."""
    if rules is None:
        rules = [rule.compiled() for rule in settings.rules if rule.enabled]
    wanted = {term.key: term.value for rule in rules for term in rule.meanings if term.kind == "about"}
    if not wanted:
        return 0
    with db.transaction(database_url) as cur:
        cur.execute("SELECT key FROM rule_meanings WHERE key = ANY(%s) AND model = %s", (list(wanted), meaning.MODEL))
        for row in cur.fetchall():
            wanted.pop(row["key"], None)
    if not wanted:
        return 0
    keys = list(wanted)
    try:
        vectors = meaning_pool(settings).submit(meaning.embed, [wanted[key] for key in keys],
                                                label="rule descriptions").result()
    except WorkerFailure as exc:
        log.warning("embedding %d rule description(s) failed (%s): retried on the next run", len(keys), exc)
        return 0
    with db.transaction(database_url) as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO rule_meanings (key, model, description, embedding) VALUES %s ON CONFLICT (key) DO UPDATE "
            "SET model = EXCLUDED.model, description = EXCLUDED.description, embedding = EXCLUDED.embedding, "
            "created_at = now() WHERE rule_meanings.model <> EXCLUDED.model",
            [(key, meaning.MODEL, wanted[key], meaning.to_vector(vector)) for key, vector in zip(keys, vectors,
                                                                                              strict=True)],
            template="(%s, %s, %s, %s::vector)",
        )
    return len(keys)


def analyse_articles(article_ids: Iterable[int], settings: Settings, pool: WorkerPool | None = None) -> int:
    """Entity fingerprints and meanings of the given articles that lack them; returns how many got a vector.

    The work runs in the worker processes (``pool``, else ``meaning_pool``), batch by batch across them and
    outside any transaction, so that grouping itself only looks things up and decides. A text the model cannot
    place (too short) gets a meaning row without vector: looked at once, never again.
    """
    with db.transaction() as cur:
        cur.execute(
            """
            SELECT a.id, a.title, a.body, a.language, a.entities IS NULL AS needs_entities,
                   a.language = ANY(%(languages)s)
                   AND NOT EXISTS (SELECT 1 FROM article_meanings m WHERE m.article_id = a.id) AS needs_meaning
            FROM articles a WHERE a.id = ANY(%(ids)s) ORDER BY a.id
            """,
            {"ids": list(article_ids), "languages": sorted(meaning.LANGUAGES)},
        )
        rows = [row for row in cur.fetchall() if row["needs_entities"] or row["needs_meaning"]]
    if not rows:
        return 0
    results = _analyse(pool or meaning_pool(settings), rows)
    fingerprints = [(row["id"], results[row["id"]][0]) for row in rows
                    if row["needs_entities"] and row["id"] in results]
    meanings = [(row["id"], results[row["id"]][1] if row["id"] in results else None)
                for row in rows if row["needs_meaning"]]
    with db.transaction() as cur:
        if fingerprints:
            psycopg2.extras.execute_values(
                cur,
                "UPDATE articles SET entities = v.items FROM (VALUES %s) AS v(id, items) "
                "WHERE articles.id = v.id AND articles.entities IS NULL",
                fingerprints, template="(%s, %s::text[])",
            )
        stored = 0
        if meanings:
            inserted = psycopg2.extras.execute_values(
                cur,
                "INSERT INTO article_meanings (article_id, model, embedding) VALUES %s ON CONFLICT DO NOTHING "
                "RETURNING article_id, embedding IS NOT NULL AS placed",
                [(article_id, meaning.MODEL, None if vector is None else meaning.to_vector(vector))
                 for article_id, vector in meanings],
                template="(%s, %s, %s::vector)", fetch=True,
            )
            placed = [row["article_id"] for row in inserted if row["placed"]]
            stored = len(placed)
    if stored:
        _add_meanings_to_open_stories(placed)
    return stored


class BackgroundAnalysis:
    """Analyses articles (``analyse_articles``) as the ingest stage stores them, in batches, in the background.

    Extraction and the meaning model share the worker processes (``newswatch.workers.document_pool``): a task
    that fetches pages analyses them on the same cores while its requests are on their way, and grouping
    finds the work done instead of doing it all at the end of the cycle, on one task. Batches of
    ``batch`` articles keep most of the model's batching gain. A batch that fails (a lost worker, the
    database) is logged and left to grouping, which analyses what still lacks a meaning.

    Use: ``with BackgroundAnalysis(settings) as analysis: fetch_articles(ids, settings, on_stored=analysis.add)``.
    """

    def __init__(self, settings: Settings, batch: int = 16, pool: WorkerPool | None = None) -> None:
        self.settings, self.batch, self.pool = settings, batch, pool
        self._pending: list[int] = []
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis")
        self.embedded = 0

    def add(self, article_id: int) -> None:
        """Queue a stored article; a full batch goes to the workers at once."""
        with self._lock:
            self._pending.append(article_id)
            if len(self._pending) >= self.batch:
                self._submit()

    def _submit(self) -> None:
        batch, self._pending = self._pending, []
        self._thread.submit(self._run, batch)

    def _run(self, article_ids: list[int]) -> None:
        try:
            self.embedded += analyse_articles(article_ids, self.settings, self.pool)
        except Exception as exc:  # noqa: BLE001 - grouping analyses what is left; the fetches go on
            log.warning("analysing %d stored article(s) failed, left to grouping: %s", len(article_ids), exc)

    def __enter__(self) -> BackgroundAnalysis:
        return self

    def __exit__(self, *exc: object) -> None:
        """Analyse what is left and wait for every batch."""
        with self._lock:
            if self._pending:
                self._submit()
        self._thread.shutdown(wait=True)


def _add_meanings_to_open_stories(article_ids: list[int]) -> None:
    """Open stories whose members just gained a meaning take it into their sum (recomputed from the members).

    Under the grouping lock, once the meanings are committed: a grouping transaction folds its joins into
    these rows (``_join_story``) rather than recomputing them, so a recompute must neither run beside it
    (it would overwrite the row with a snapshot missing its joins) nor miss an article it is grouping.
    """
    with db.transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CLUSTER_LOCK,))
        cur.execute("SELECT DISTINCT story_id FROM articles WHERE id = ANY(%s) AND story_id IS NOT NULL "
                    "AND story_id IN (SELECT story_id FROM open_stories) ORDER BY story_id", (article_ids,))
        for row in cur.fetchall():
            _refresh_open_story(cur, row["story_id"])


def analyse_open_story_members(settings: Settings) -> int:
    """Meanings of the members of open stories never looked at by the model (grouped before the layer
    existed); returns how many got a vector."""
    embedded = 0
    while True:
        with db.transaction() as cur:
            cur.execute(
                "SELECT a.id FROM open_stories o JOIN articles a ON a.story_id = o.story_id "
                "WHERE a.language = ANY(%s) "
                "AND NOT EXISTS (SELECT 1 FROM article_meanings m WHERE m.article_id = a.id) LIMIT %s",
                (sorted(meaning.LANGUAGES), _BATCH),
            )
            ids = [row["id"] for row in cur.fetchall()]
        if not ids:
            return embedded
        embedded += analyse_articles(ids, settings)


TextAnalysis = tuple[list[str], np.ndarray | None]  # entity fingerprint, meaning


class _RecentAnalyses:
    """The analyses of the last ``size`` distinct texts this process saw, by a digest of the text: the copies
    of a wire story reach a task in several of its batches (and several cycles), and are analysed once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: collections.OrderedDict[bytes, TextAnalysis] = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(row: dict) -> bytes:
        text = "\x00".join(part or "" for part in (row["title"], row["body"], row["language"]))
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, key: bytes) -> TextAnalysis | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: bytes, analysis: TextAnalysis) -> None:
        with self._lock:
            self._items[key] = analysis
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_recent = _RecentAnalyses(4096)


def _analyse(pool: WorkerPool, rows: list[dict]) -> dict[int, TextAnalysis]:
    """``meaning.analyse_job`` over the rows, in the worker processes, once per distinct text: copies of one
    text (a wire story carried by many sites) get the same result, and a text analysed lately is not sent again.

    A batch lost to its worker (crash, time or memory limit) is retried article by article; an article that
    still fails is left out (logged): grouping computes its fingerprint itself, and it gets no meaning.
    """
    copies: dict[bytes, list[dict]] = {}
    for row in rows:
        copies.setdefault(_recent.key(row), []).append(row)
    results: dict[int, TextAnalysis] = {}
    missing: dict[bytes, list[dict]] = {}
    for key, group in copies.items():
        known = _recent.get(key)
        if known is None:
            missing[key] = group
        else:
            results.update((row["id"], known) for row in group)
    analysed = _analyse_distinct(pool, [group[0] for group in missing.values()])
    for key, group in missing.items():
        if group[0]["id"] in analysed:
            _recent.put(key, analysed[group[0]["id"]])
            results.update((row["id"], analysed[group[0]["id"]]) for row in group)
    return results


def _analyse_distinct(pool: WorkerPool, rows: list[dict]) -> dict[int, TextAnalysis]:
    """``_analyse`` for distinct texts: spread over the workers in batches, retried one by one when lost."""
    if not rows:
        return {}
    size = min(meaning.BATCH, -(-len(rows) // pool.size))  # every worker gets a share, none above BATCH
    batches = [rows[start:start + size] for start in range(0, len(rows), size)]

    def job(batch: list[dict]):
        return pool.submit(meaning.analyse_job, [(row["title"], row["body"], row["language"]) for row in batch])

    futures = [(batch, job(batch)) for batch in batches]
    results: dict[int, TextAnalysis] = {}
    for batch, future in futures:
        try:
            results.update(zip((row["id"] for row in batch), future.result(), strict=True))
            continue
        except WorkerFailure as exc:
            log.warning("analysing a batch of %d articles failed (%s): retrying one by one", len(batch), exc)
        for row in batch:
            try:
                results[row["id"]] = job([row]).result()[0]
            except WorkerFailure as exc:
                log.warning("article %s could not be analysed: %s", row["id"], exc)
    return results


def open_days(settings: Settings) -> int:
    """How long a story stays open (in the vector index) after its last article: the window, or the
    follow-up horizon when longer."""
    return max(settings.dedup.window_days, settings.dedup.follow_up_days)


def _close_quiet_stories(settings: Settings) -> int:
    """Drop stories that gained no article for ``open_days`` from the open set (and its vector index)."""
    with db.transaction() as cur:
        cur.execute("DELETE FROM open_stories WHERE touched_at < now() - %s", (timedelta(days=open_days(settings)),))
        return cur.rowcount


def _cluster_safely(cur, article: dict, settings: Settings, counts: dict[str, int], df: Frequencies) -> int:
    """Cluster one article; if that fails, it opens a story of its own and the batch goes on. Returns its story."""
    cur.execute("SAVEPOINT cluster_one")
    try:
        story_id = _cluster_one(cur, article, settings, counts, df)
    except Exception:
        cur.execute("ROLLBACK TO SAVEPOINT cluster_one")
        log.exception("article %s could not be grouped: it gets a story of its own", article["id"])
        story_id = _open_story(cur, article)
        cur.execute("UPDATE articles SET story_id = %s, dedup_reason = 'error' WHERE id = %s",
                    (story_id, article["id"]))
        _refresh_story(cur, story_id)
        counts["new_stories"] += 1
    cur.execute("RELEASE SAVEPOINT cluster_one")
    return story_id


def _cluster_one(cur, article: dict, settings: Settings, counts: dict[str, int], df: Frequencies | None = None
                 ) -> int:
    """Group one article (fingerprint, index writes, decision, story writes); ``df`` is the batch's frequencies,
    else the article's own, written at the end."""
    own_frequencies = df is None
    df = Frequencies(cur) if df is None else df
    _fingerprint(article)
    _index_entities(cur, [article])
    decision = decide(cur, article, settings, df)
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
    _record(cur, [(article, story_id, decision)])
    if decision.story_id is not None and not decision.also:
        _join_story(cur, story_id, [article["id"]])  # one more member: no need to read the others
    else:
        _refresh_story(cur, story_id)
    # Document frequencies count every fingerprinted article once (its items, plus the total row).
    df.count(article["entities"])
    if own_frequencies:
        df.flush()
    return story_id


def _fingerprint(article: dict) -> None:
    """What the decision is stored with: the entity fingerprint (when the fetch stage did not analyse the article:
    a worker lost it, or a caller of its own) and the title key, written with the decision in one row update."""
    if article.get("entities") is None:
        article["entities"] = list(entities.extract(article["title"], article["body"], article["language"]).items)
    article["title_key"] = title_key(article["title"])


def _index_entities(cur, articles: list[dict]) -> None:
    """The articles' distinctive items in the entity index (``article_entities``), one statement for them all."""
    rows = [(item, article["seen_at"], article["id"]) for article in articles
            for item in entities.indexed(article["entities"])]
    if rows:
        items, seen, ids = zip(*rows, strict=True)
        cur.execute(
            "INSERT INTO article_entities (entity, seen_at, article_id) "
            "SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::bigint[]) ON CONFLICT DO NOTHING",
            (list(items), list(seen), list(ids)),
        )


def _record(cur, decisions: list[tuple[dict, int, Decision]]) -> None:
    """Each article's story and the decision's reason, score and article, with its title key and fingerprint."""
    psycopg2.extras.execute_values(
        cur,
        "UPDATE articles a SET story_id = v.story, dedup_reason = v.reason, dedup_score = v.score, "
        "dedup_of = v.duplicate_of, title_key = v.title_key, entities = v.entities "
        "FROM (VALUES %s) AS v(id, story, reason, score, duplicate_of, title_key, entities) WHERE a.id = v.id",
        [(article["id"], story_id, decision.reason, decision.score, decision.duplicate_of, article["title_key"],
          article["entities"]) for article, story_id, decision in decisions],
        template="(%s::bigint, %s::bigint, %s::text, %s::real, %s::bigint, %s::text, %s::text[])",
        page_size=max(len(decisions), 1),
    )


class _Copies:
    """The exact copies in a grouping batch (the same normalised body as an article already grouped), joined in runs.

    A copy's decision reads nothing but the earliest grouped article with its body, so the copies met between two
    other articles are written together: one statement for their rows, one for their entity index entries and
    one pair per story for the summaries, instead of a round of statements each (a hot story's row updated once
    per run, not once per copy). The run is written before the next other article is judged, which reads the
    stories, so the result is the one of grouping one by one (up to the float rounding of the meaning sums,
    added in another order). Wire stories copied by many sites are where the volume of a news stream is.
    """

    def __init__(self, cur, articles: list[dict]) -> None:
        self.cur = cur
        self.hashes = sorted({article["content_hash"] for article in articles if article["minhash"] is not None})
        self.first: dict[str, tuple[int, int]] = {}  # content hash -> (earliest grouped article, its story)
        self.run: list[tuple[dict, int, Decision]] = []
        self._load()

    def _load(self) -> None:
        self.cur.execute(FIRST_COPIES_SQL, (self.hashes,))
        self.first = {row["content_hash"]: (row["id"], row["story_id"]) for row in self.cur.fetchall()}

    def take(self, article: dict) -> bool:
        """Whether the article is a copy (it then joins the run)."""
        first = self.first.get(article["content_hash"]) if article["minhash"] is not None else None
        if first is None:
            return False
        self.run.append((article, first[1], Decision(first[1], "content_hash", 1.0, first[0])))
        self._seen(article, first[1])
        return True

    def grouped(self, article: dict, story_id: int, *, reload: bool) -> None:
        """An article was grouped by the full path; ``reload`` after a merge (stories moved)."""
        if reload:
            self._load()
        else:
            self._seen(article, story_id)

    def _seen(self, article: dict, story_id: int) -> None:
        first = self.first.get(article["content_hash"])
        if first is None or article["id"] < first[0]:
            self.first[article["content_hash"]] = (article["id"], story_id)

    def flush(self, settings: Settings, counts: dict[str, int], df: Frequencies) -> None:
        """Write the run; if that fails, its articles go through the full path one by one."""
        run, self.run = self.run, []
        if not run:
            return
        self.cur.execute("SAVEPOINT copies")
        try:
            for article, _, _ in run:
                _fingerprint(article)
            _index_entities(self.cur, [article for article, _, _ in run])
            _record(self.cur, run)
            members: dict[int, list[int]] = {}
            for article, story_id, _ in run:
                members.setdefault(story_id, []).append(article["id"])
            for story_id, article_ids in members.items():
                _join_story(self.cur, story_id, article_ids)
        except Exception:
            self.cur.execute("ROLLBACK TO SAVEPOINT copies")
            self.cur.execute("RELEASE SAVEPOINT copies")
            log.exception("%d copies could not be joined together: grouping them one by one", len(run))
            for article, _, _ in run:
                _cluster_safely(self.cur, article, settings, counts, df)
            self._load()  # a copy that failed alone has a story of its own: the next copies name the stored one
            return
        self.cur.execute("RELEASE SAVEPOINT copies")
        counts["joined"] += len(run)
        for article, _, _ in run:
            df.count(article["entities"])


def decide(cur, article: dict, settings: Settings, df: Frequencies) -> Decision:
    """Which story an article belongs to, by the surest evidence; ``also`` lists stories to merge into it.

    ``article`` needs id, title_key, entities, language, content_hash, minhash, seen_at and embedding
    (pgvector text or None); it must not be in a story yet.
    """
    window = timedelta(days=settings.dedup.window_days)
    low, high = article["seen_at"] - window, article["seen_at"] + window
    if article["minhash"] is not None:  # only texts long enough to compare carry a signature
        cur.execute(COPY_SQL, (article["content_hash"], article["id"]))
        same = cur.fetchone()
        if same:
            return Decision(same["story_id"], "content_hash", 1.0, same["id"])

    df.load(article["entities"])
    total = df.total
    copies: list[tuple[str, dict, float]] = []  # (reason, matching article, score), surest first
    if article["minhash"] is not None:
        for candidate, score in _near_duplicates(cur, article, low, high):
            if score >= settings.dedup.near_duplicate_threshold and not entities.contradicts(
                    article["entities"], candidate["entities"] or [], df, total):
                copies.append(("near_duplicate", candidate, round(score, 3)))
    for candidate in _same_title(cur, article, low, high):
        if not entities.contradicts(article["entities"], candidate["entities"] or [], df, total):
            copies.append(("same_title", candidate, 1.0))

    vector = article.get("embedding")
    judged = _judge(cur, article, vector, low, high, df, total, settings)
    if copies:
        reason, candidate, score = copies[0]
        chosen, duplicate_of = candidate["story_id"], candidate["id"]
    elif judged:
        reason, story, score = judged[0]
        chosen, duplicate_of = story.id, _nearest_member(story)
    else:
        return Decision(None, "new_story")
    follow_ups = {story.id for _, story, _ in judged if story.follow_up}
    others = {candidate["story_id"] for _, candidate, _ in copies} | {story.id for _, story, _ in judged}
    also = tuple(sorted(other for other in others - {chosen} if _stories_agree(
        cur, chosen, other, df, total, settings, follow_up=other in follow_ups or chosen in follow_ups)))
    return Decision(chosen, reason, score, duplicate_of, also)


def _judge(cur, article: dict, vector: str | None, low, high, df: Frequencies, total: int,
           settings: Settings) -> list[tuple[str, _Story, float]]:
    """Stories the article belongs to by meaning, or by names where meaning cannot tell; best first."""
    found: list[tuple[str, _Story, float]] = []
    candidates: dict[int, _Story] = {}
    if vector is not None:
        for story in _meaning_candidates(cur, vector, article, low, high, settings):
            bar = settings.dedup.follow_up_threshold if story.follow_up else settings.dedup.corroborated_threshold
            if story.similarity >= bar:
                candidates[story.id] = story
    entity_links = _entity_links(cur, article, low, high, df, total)
    for candidate, _ in entity_links:
        candidates.setdefault(candidate["story_id"], _Story(candidate["story_id"]))
    if not candidates:
        return found
    _load_members(cur, candidates, vector)
    df.load(item for story in candidates.values() for item in story.items())
    mine = article["entities"]
    for story in candidates.values():
        if entities.lookalike(mine, story.items(), df, total):
            continue
        if story.follow_up:
            found.append(("follow_up", story, round(story.similarity, 3)))
        elif story.similarity is not None:
            if story.similarity >= settings.dedup.meaning_threshold:
                found.append(("meaning", story, round(story.similarity, 3)))
            elif _corroborated(mine, story, df, total):
                found.append(("meaning_entities", story, round(story.similarity, 3)))
        elif vector is None or not any(member["distance"] is not None for member in story.members):
            # Meaning cannot compare the two sides (a language the model does not read): names must link
            # the article to most of the story's recent members, not to one of them.
            links = [entities.overlap(mine, member["entities"], df, total) for member in story.members]
            if links and sum(link.linked for link in links) * 2 >= len(links):
                found.append(("entity_overlap", story, round(max(link.score for link in links), 3)))
    order = {"meaning": 0, "meaning_entities": 1, "follow_up": 2, "entity_overlap": 3}
    return sorted(found, key=lambda hit: (order[hit[0]], -hit[2], hit[1].id))


def _meaning_candidates(cur, vector: str, article: dict, low, high, settings: Settings) -> list[_Story]:
    """The open stories nearest in meaning within the follow-up horizon; ``follow_up`` marks those outside
    the window (``low``..``high``)."""
    horizon = timedelta(days=open_days(settings))
    cur.execute(MEANING_SQL, {"vector": vector, "low": article["seen_at"] - horizon,
                              "high": article["seen_at"] + horizon, "limit": _MEANING_CANDIDATES})
    stories = []
    for row in cur.fetchall():
        stories.append(_Story(
            row["story_id"],
            story_similarity(row["dot"], row["members"], row["languages"], article["language"],
                             settings.dedup.cross_language_allowance),
            follow_up=row["seen_to"] < low or row["seen_from"] > high,
        ))
    return stories


def story_similarity(dot: float, members: int, languages: dict[str, int], language: str | None,
                     allowance: float) -> float:
    """Mean similarity of an article to a story's members, with the allowance for other languages.

    ``dot`` is the inner product of the article's embedding with the sum of the members' embeddings.
    """
    other_language = members - languages.get(language or "", 0)
    return (dot + allowance * other_language) / members


def _load_members(cur, stories: dict[int, _Story], vector: str | None) -> None:
    cur.execute(MEMBERS_SQL, {"stories": sorted(stories), "vector": vector, "limit": _RECENT_MEMBERS})
    for row in cur.fetchall():
        stories[row["story_id"]].members.append(row)


def _nearest_member(story: _Story) -> int | None:
    """The member closest in meaning (else the newest): the article a decision names in ``dedup_of``."""
    if not story.members:
        return None
    return min(story.members, key=lambda m: (m["distance"] is None, m["distance"] or 0.0, -m["id"]))["id"]


def _corroborated(mine: list[str], story: _Story, df: dict[str, int], total: int) -> bool:
    """Names, places, numbers and dates agree with most of the story's recent members."""
    if not story.members:
        return False
    links = [entities.overlap(mine, member["entities"], df, total) for member in story.members]
    mean_score = sum(link.score for link in links) / len(links)
    sharing = sum(link.distinctive >= 2 for link in links) / len(links)
    return mean_score >= _CORROBORATION_SCORE and sharing >= _CORROBORATION_SHARE


def _stories_agree(cur, a: int, b: int, df: Frequencies, total: int, settings: Settings, *,
                   follow_up: bool = False) -> bool:
    """Two stories are one event: evidence between the stories as strong as an article needs to join one.

    With meaning on both sides, the mean similarity of every member of one to every member of the other
    (with the allowance for member pairs in different languages) reaches ``meaning_threshold`` (the
    ``follow_up_threshold`` when the link is a follow-up); without, the names of their recent members link
    (never for a follow-up). Never when the look-alike veto holds between them.
    """
    views = {a: _Story(a), b: _Story(b)}
    _load_members(cur, views, None)
    items_a, items_b = views[a].items(), views[b].items()
    df.load(items_a | items_b)
    if entities.lookalike(items_a, items_b, df, total):
        return False
    meaning_a, meaning_b = _story_meaning(cur, a), _story_meaning(cur, b)
    if meaning_a is None or meaning_b is None:
        return not follow_up and entities.overlap(items_a, items_b, df, total).linked
    (sum_a, members_a, languages_a), (sum_b, members_b, languages_b) = meaning_a, meaning_b
    pairs = members_a * members_b
    same_language = sum(count * languages_b.get(language, 0) for language, count in languages_a.items())
    mean = (float(sum_a @ sum_b) + settings.dedup.cross_language_allowance * (pairs - same_language)) / pairs
    bar = settings.dedup.follow_up_threshold if follow_up else settings.dedup.meaning_threshold
    return mean >= bar


def _story_meaning(cur, story_id: int) -> tuple[np.ndarray, int, dict[str, int]] | None:
    """A story's sum of member embeddings, members with one and their languages; None without any."""
    cur.execute(
        "SELECT COALESCE(a.language, '') AS language, sum(m.embedding)::text AS total, count(*) AS n "
        "FROM articles a JOIN article_meanings m ON m.article_id = a.id "
        "WHERE a.story_id = %s AND m.embedding IS NOT NULL GROUP BY 1",
        (story_id,),
    )
    rows = cur.fetchall()
    if not rows:
        return None
    total = sum(meaning.parse_vector(row["total"]) for row in rows)
    return total, sum(row["n"] for row in rows), {row["language"]: row["n"] for row in rows}


def pair_decision(a: dict, b: dict, df: dict[str, int], total: int, settings: Settings) -> tuple[str, float] | None:
    """The layers applied to one pair of articles: (reason, score) when they are the same story, else None.

    The database path finds candidates through indexes and judges an article against whole stories; for
    a story of one article that is exactly these tests. This form is for benchmarks and tests. Each
    article is a dict with content_hash, signature (MinHash values or None), title_key, entities
    (fingerprint items), language and embedding (a unit numpy vector or None).
    """
    if a["signature"] is not None and b["signature"] is not None:
        if a["content_hash"] == b["content_hash"]:
            return "content_hash", 1.0
        if a["language"] == b["language"]:
            score = similarity(a["signature"], b["signature"])
            if score >= settings.dedup.near_duplicate_threshold and not entities.contradicts(
                    a["entities"], b["entities"], df, total):
                return "near_duplicate", round(score, 3)
    if a["title_key"] and a["title_key"] == b["title_key"] and not entities.contradicts(
            a["entities"], b["entities"], df, total):
        return "same_title", 1.0
    if entities.lookalike(a["entities"], b["entities"], df, total):
        return None
    if a.get("embedding") is not None and b.get("embedding") is not None:
        score = story_similarity(float(a["embedding"] @ b["embedding"]), 1, {b["language"] or "": 1}, a["language"],
                                 settings.dedup.cross_language_allowance)
        if score >= settings.dedup.meaning_threshold:
            return "meaning", round(score, 3)
        if score >= settings.dedup.corroborated_threshold and _corroborated(
                a["entities"], _Story(0, members=[{"entities": b["entities"]}]), df, total):
            return "meaning_entities", round(score, 3)
        return None
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


def _entity_links(cur, article: dict, low, high, df: Frequencies, total: int) -> list[tuple[dict, entities.Overlap]]:
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
    df.load(item for c in candidates for item in c["entities"])
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

    Alerts are unique on (rule, story, channel, kind): where both stories have an alert of the same rule,
    channel and kind, one is kept (the one sent, or being sent, if only one is; else the surviving
    story's) and the other deleted, so a merge never makes a rule fire twice for one story; the other
    alerts of the merged story are re-pointed. Articles are moved first: that waits for any
    ``match_rules`` transaction holding them, after which no new alert can name the merged story. A send
    in flight holds a lease, not a lock (``newswatch.alerts.outbox``): if its alert is the one deleted, the
    sender finds it gone when it records the outcome.
    """
    cur.execute("UPDATE articles SET story_id = %s WHERE story_id = %s", (into, merged))
    cur.execute(
        "SELECT id, rule, channel, kind, story_id, status = 'sent' OR lease_until > now() AS sent_or_sending "
        "FROM alerts WHERE story_id = ANY(%s) ORDER BY id FOR UPDATE",
        ([into, merged],),
    )
    by_key: dict[tuple[str, str, str], dict[int, dict]] = {}
    for alert in cur.fetchall():
        by_key.setdefault((alert["rule"], alert["channel"], alert["kind"]), {})[alert["story_id"]] = alert
    delete: list[int] = []
    move: list[int] = []
    for alerts in by_key.values():
        ours, theirs = alerts.get(into), alerts.get(merged)
        if theirs is None:
            continue
        if ours is None:
            move.append(theirs["id"])
        elif theirs["sent_or_sending"] and not ours["sent_or_sending"]:
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
    """Recompute a story's summary columns and its open-story row from its members (derived: never drifts).

    The representative article is the earliest published full article (feed-summary fallbacks only when
    the story has nothing else): a stable choice that does not flip as copies arrive, and usually the
    original report that later copies and translations derive from. The story takes its title.
    A plain join folds its one article into the stored values instead (``_join_story``): the same result.
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
    _refresh_open_story(cur, story_id)


# Articles joined a story: its summary columns and open-story row updated from those articles alone, to the
# values _refresh_story would recompute from all the members (the same aggregates, folded in one step).
# A story without a representative row joins nothing here (the caller recomputes it).
JOIN_STORY_SQL = """
UPDATE stories s SET
    article_count = s.article_count + n.count,
    languages = ARRAY(SELECT DISTINCT l FROM unnest(s.languages || n.languages) AS l WHERE l IS NOT NULL ORDER BY l),
    feeds = CASE WHEN n.feeds <@ s.feeds THEN s.feeds
                 ELSE ARRAY(SELECT DISTINCT f FROM unnest(s.feeds || n.feeds) AS f ORDER BY f) END,
    first_seen_at = LEAST(s.first_seen_at, n.first_seen), last_seen_at = GREATEST(s.last_seen_at, n.last_seen),
    representative_article = CASE WHEN c.new_is_first THEN a.id ELSE r.id END,
    title = CASE WHEN c.new_is_first THEN a.title ELSE r.title END
FROM (SELECT count(*) AS count, array_agg(language) AS languages, array_agg(feed) AS feeds,
             min(fetched_at) AS first_seen, max(fetched_at) AS last_seen,
             (array_agg(id ORDER BY is_partial, COALESCE(published_at, fetched_at), id))[1] AS first
      FROM articles WHERE id = ANY(%(articles)s)) n
     JOIN articles a ON a.id = n.first,
     articles r,
     LATERAL (SELECT (a.is_partial, COALESCE(a.published_at, a.fetched_at), a.id)
                     < (r.is_partial, COALESCE(r.published_at, r.fetched_at), r.id) AS new_is_first) c
WHERE s.id = %(story)s AND r.id = s.representative_article
"""

# The open-story row after a join: the new articles' embeddings (of those that have one) added to the meaning
# sum, their languages counted, the seen window widened; the anchor moves by the rule of _refresh_open_story. No
# row (the story had closed): nothing is updated, and the caller recomputes it. The new sum is cast to the
# column's type: a sum is an untyped-length vector, and a CASE mixing it with the anchor would coerce (and so
# copy) the kept anchor, which makes every update a new entry in the vector index instead of an in-place (HOT)
# update.
_NEW_SUM = f"COALESCE(o.meaning_sum + v.embedding, o.meaning_sum, v.embedding)::vector({meaning.DIMENSIONS})"
JOIN_OPEN_STORY_SQL = f"""
WITH joined AS (
    SELECT m.embedding, COALESCE(a.language, '') AS language, COALESCE(a.published_at, a.fetched_at) AS seen_at
    FROM articles a LEFT JOIN article_meanings m ON m.article_id = a.id
    WHERE a.id = ANY(%(articles)s)
), v AS (
    SELECT sum(embedding) AS embedding, count(embedding) AS n, min(seen_at) AS seen_from, max(seen_at) AS seen_to,
           (SELECT jsonb_object_agg(language, n) FROM (
                SELECT language, count(*) AS n FROM joined WHERE embedding IS NOT NULL GROUP BY 1) l) AS languages
    FROM joined
)
UPDATE open_stories o SET
    anchor = CASE WHEN o.anchor IS NULL OR (v.embedding IS NULL AND o.meaning_sum IS NULL)
                       OR (o.anchor <=> {_NEW_SUM}) > %(drift)s
                  THEN {_NEW_SUM} ELSE o.anchor END,
    meaning_sum = {_NEW_SUM},
    members = o.members + v.n,
    languages = CASE WHEN v.n = 0 THEN o.languages ELSE (
                    SELECT jsonb_object_agg(language, total) FROM (
                        SELECT language, sum(n)::bigint AS total FROM (
                            SELECT key AS language, value::bigint AS n FROM jsonb_each_text(o.languages)
                            UNION ALL
                            SELECT key, value::bigint FROM jsonb_each_text(v.languages)) counts
                        GROUP BY language) merged) END,
    seen_from = LEAST(o.seen_from, v.seen_from), seen_to = GREATEST(o.seen_to, v.seen_to), touched_at = now()
FROM v
WHERE o.story_id = %(story)s
"""


def _join_story(cur, story_id: int, article_ids: Sequence[int]) -> None:
    """``_refresh_story`` after a plain join (articles added to one story), at a cost independent of the story's
    size: the same values, from the stored ones and the new articles.

    Every member change goes through grouping (articles are never removed from a story but by a merge,
    which recomputes), so the stored values are the members' aggregates and folding in the new articles gives
    what a recompute would. Where a row is missing (a story without a representative, a closed story),
    the full recompute runs instead.
    """
    values = {"story": story_id, "articles": list(article_ids), "drift": ANCHOR_DRIFT}
    cur.execute(JOIN_STORY_SQL, values)
    if cur.rowcount == 0:
        _refresh_story(cur, story_id)
        return
    cur.execute(JOIN_OPEN_STORY_SQL, values)
    if cur.rowcount == 0:
        _refresh_open_story(cur, story_id)


def _refresh_open_story(cur, story_id: int) -> None:
    """(Re)open a story that just gained an article: its meaning sum, languages and window, from its members.

    The anchor follows the meaning only once they have drifted apart by ANCHOR_DRIFT (cosine distance),
    so that most updates leave the vector index alone.
    """
    cur.execute(
        """
        INSERT INTO open_stories (story_id, anchor, meaning_sum, members, languages, seen_from, seen_to, touched_at)
        SELECT %(story)s, v.total, v.total, v.n, COALESCE(l.counts, '{}'), w.seen_from, w.seen_to, now()
        FROM (SELECT min(COALESCE(published_at, fetched_at)) AS seen_from,
                     max(COALESCE(published_at, fetched_at)) AS seen_to
              FROM articles WHERE story_id = %(story)s) w,
             (SELECT sum(m.embedding) AS total, count(m.embedding) AS n
              FROM articles a JOIN article_meanings m ON m.article_id = a.id WHERE a.story_id = %(story)s) v,
             (SELECT jsonb_object_agg(language, n) AS counts FROM (
                  SELECT COALESCE(a.language, '') AS language, count(*) AS n
                  FROM articles a JOIN article_meanings m ON m.article_id = a.id
                  WHERE a.story_id = %(story)s AND m.embedding IS NOT NULL
                  GROUP BY 1) per_language) l
        ON CONFLICT (story_id) DO UPDATE SET
            anchor = CASE WHEN open_stories.anchor IS NULL OR EXCLUDED.meaning_sum IS NULL
                               OR (open_stories.anchor <=> EXCLUDED.meaning_sum) > %(drift)s
                          THEN EXCLUDED.meaning_sum ELSE open_stories.anchor END,
            meaning_sum = EXCLUDED.meaning_sum, members = EXCLUDED.members, languages = EXCLUDED.languages,
            seen_from = EXCLUDED.seen_from, seen_to = EXCLUDED.seen_to, touched_at = EXCLUDED.touched_at
        """,
        {"story": story_id, "drift": ANCHOR_DRIFT},
    )
