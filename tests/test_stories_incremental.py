"""A plain join updates a story's summary and its open-story row from the new article alone
(``grouping._join_story``): the values must be those a full recompute from all the members gives.

The first test runs the same sequence of joins twice, once folding each article in and once recomputing
after each join (``_refresh_story``, what every join did before), and compares the rows after every step,
anchor included; then it recomputes every row from the members. Its embeddings are made of eighths, so that
their sums are exact in float32 whatever the order of addition and the rows can be compared bit for bit.
The second goes through the real path (``assign_stories``, the model, two runs, late and partial articles).
"""

from __future__ import annotations

import functools
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg2.extras
import pytest

from newswatch import db
from newswatch.config import Settings
from newswatch.stories import grouping, meaning
from tests.conftest import _with_database, run_query
from tests.test_stories_crosslang import DAY, _fixture, store

STORY_COLUMNS = ("title", "representative_article", "article_count", "languages", "feeds", "first_seen_at",
                 "last_seen_at")
OPEN_COLUMNS = ("anchor", "meaning_sum", "members", "languages", "seen_from", "seen_to")

# The members' aggregates, as _refresh_story and _refresh_open_story define them.
RECOMPUTED_STORIES_SQL = """
SELECT s.id, r.title, r.id AS representative_article, m.n AS article_count, m.languages, m.feeds,
       m.first_seen AS first_seen_at, m.last_seen AS last_seen_at
FROM stories s,
LATERAL (SELECT count(*) AS n,
                COALESCE(array_agg(DISTINCT language) FILTER (WHERE language IS NOT NULL), '{}') AS languages,
                array_agg(DISTINCT feed) AS feeds, min(fetched_at) AS first_seen, max(fetched_at) AS last_seen
         FROM articles WHERE story_id = s.id) m,
LATERAL (SELECT id, title FROM articles WHERE story_id = s.id
         ORDER BY is_partial, COALESCE(published_at, fetched_at), id LIMIT 1) r
ORDER BY s.id
"""
RECOMPUTED_OPEN_SQL = """
SELECT o.story_id, v.total AS meaning_sum, v.n AS members, COALESCE(l.counts, '{}') AS languages,
       w.seen_from, w.seen_to
FROM open_stories o,
LATERAL (SELECT min(COALESCE(published_at, fetched_at)) AS seen_from,
                max(COALESCE(published_at, fetched_at)) AS seen_to
         FROM articles WHERE story_id = o.story_id) w,
LATERAL (SELECT sum(m.embedding) AS total, count(m.embedding) AS n
         FROM articles a JOIN article_meanings m ON m.article_id = a.id WHERE a.story_id = o.story_id) v,
LATERAL (SELECT jsonb_object_agg(language, n) AS counts FROM (
             SELECT COALESCE(a.language, '') AS language, count(*) AS n
             FROM articles a JOIN article_meanings m ON m.article_id = a.id
             WHERE a.story_id = o.story_id AND m.embedding IS NOT NULL GROUP BY 1) per_language) l
ORDER BY o.story_id
"""


def _rows(cur, sql: str, key: str) -> dict[int, dict]:
    cur.execute(sql)
    return {row[key]: {name: value for name, value in row.items() if name != key} for row in cur.fetchall()}


def _stored(cur) -> tuple[dict[int, dict], dict[int, dict]]:
    stories = _rows(cur, f"SELECT id, {', '.join(STORY_COLUMNS)} FROM stories", "id")
    open_rows = _rows(cur, "SELECT story_id, anchor::text, meaning_sum::text, members, languages, seen_from, seen_to "
                           "FROM open_stories", "story_id")
    return stories, open_rows


def _assert_as_recomputed(cur) -> tuple[dict[int, dict], dict[int, dict]]:
    """Every story and open-story row is what its members give (the anchor: within the drift of the meaning);
    returns the stored rows."""
    stories, open_rows = _stored(cur)
    assert stories == _rows(cur, RECOMPUTED_STORIES_SQL, "id")
    recomputed = _rows(cur, RECOMPUTED_OPEN_SQL.replace("v.total AS", "v.total::text AS"), "story_id")
    assert {i: {k: v for k, v in row.items() if k != "anchor"} for i, row in open_rows.items()} == recomputed
    cur.execute("SELECT bool_and(anchor <=> meaning_sum <= %s) AS near FROM open_stories WHERE anchor IS NOT NULL",
                (grouping.ANCHOR_DRIFT,))
    assert cur.fetchone()["near"]
    return stories, open_rows


def _vector(rng: random.Random, base: list[int]) -> str:
    """A story's direction plus a little noise, in eighths (sums exact in float32)."""
    return "[" + ",".join(str((b + rng.randint(-3, 3)) / 8) for b in base) + "]"


def _workload(cur, rng: random.Random) -> list[tuple[int, int]]:
    """Articles of four stories, in grouping order: (story number, article id). Partial ones, published dates
    out of order or missing, several languages and none, embeddings, empty meaning rows and none."""
    bases = [[rng.randint(-8, 8) for _ in range(meaning.DIMENSIONS)] for _ in range(4)]
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    sequence = []
    for number in range(48):
        story = rng.choice([0, 0, 0, 1, 1, 2, 3])  # story 0 grows large: its anchor settles
        fetched = start + timedelta(minutes=10 * number)
        published = None if rng.random() < 0.2 else fetched - timedelta(hours=rng.uniform(-2, 30))
        cur.execute(
            "INSERT INTO articles (url, canonical_url, title, body, language, feed, published_at, fetched_at, "
            "is_partial, extraction, content_hash) VALUES (%(url)s, %(url)s, %(title)s, 'body', %(language)s, "
            "%(feed)s, %(published)s, %(fetched)s, %(partial)s, 'test', md5(%(url)s)) RETURNING id",
            {"url": f"http://127.0.0.1/{number}", "title": f"Story {story}, article {number}",
             "language": rng.choice(["en", "en", "fr", "de", "es", None]), "feed": f"feed-{rng.randint(0, 5)}",
             "published": published, "fetched": fetched, "partial": rng.random() < 0.3},
        )
        article_id = cur.fetchone()["id"]
        kind = rng.random()
        if kind < 0.65:
            cur.execute("INSERT INTO article_meanings (article_id, model, embedding) VALUES (%s, 'test', %s::vector)",
                        (article_id, _vector(rng, bases[story])))
        elif kind < 0.8:  # looked at, too little text
            cur.execute("INSERT INTO article_meanings (article_id, model, embedding) VALUES (%s, 'test', NULL)",
                        (article_id,))
        sequence.append((story, article_id))
    return sequence


def _open_with(cur, article_id: int) -> int:
    """A new story whose first article is ``article_id``, its rows computed from it; returns its id."""
    cur.execute("SELECT id, title, fetched_at FROM articles WHERE id = %s", (article_id,))
    story_id = grouping._open_story(cur, cur.fetchone())
    cur.execute("UPDATE articles SET story_id = %s WHERE id = %s", (story_id, article_id))
    grouping._refresh_story(cur, story_id)
    return story_id


def _group(cur, sequence: list[tuple[int, int]], join) -> list[tuple[dict, dict]]:
    """Put the articles in their stories one by one, ``join`` updating the story after each plain join; returns
    the stories and open-story rows after every step, keyed by story number."""
    ids: dict[int, int] = {}
    steps = []
    for step, (story, article_id) in enumerate(sequence):
        if story not in ids:
            ids[story] = _open_with(cur, article_id)
        else:
            if step == 30:  # the story went quiet: it is closed, and a join reopens it
                cur.execute("DELETE FROM open_stories WHERE story_id = %s", (ids[story],))
            cur.execute("UPDATE articles SET story_id = %s WHERE id = %s", (ids[story], article_id))
            join(cur, ids[story], article_id)
        stories, open_rows = _stored(cur)
        number = {story_id: story for story, story_id in ids.items()}
        steps.append(({number[i]: row for i, row in stories.items()}, {number[i]: row for i, row in open_rows.items()}))
    return steps


def test_a_join_updates_the_story_and_its_open_row_as_a_recompute_would(database_url):
    conn = db.connect(database_url)
    try:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        sequence = _workload(cur, random.Random(7))
        conn.commit()

        incremental = _group(cur, sequence, lambda cur, story, article: grouping._join_story(cur, story, [article]))
        _assert_as_recomputed(cur)
        conn.rollback()

        recomputing = _group(cur, sequence, lambda cur, story, _article: grouping._refresh_story(cur, story))
        conn.rollback()
    finally:
        conn.close()
    for step, (ours, theirs) in enumerate(zip(incremental, recomputing, strict=True)):
        assert ours == theirs, f"after step {step} (article {sequence[step][1]})"

    # The sequence covers what the incremental path must get right.
    final_stories, final_open = incremental[-1]
    assert len(final_stories) == 4 and final_stories[0]["article_count"] > 15
    assert any(row["languages"] and set(row["languages"]) >= {"en", "fr"} for row in final_stories.values())
    pairs = list(zip(incremental, incremental[1:], strict=False))  # (before, after) each step
    anchors = [(before[1][0]["anchor"], after[1][0]["anchor"], before[1][0]["meaning_sum"], after[1][0]["meaning_sum"])
               for before, after in pairs if 0 in before[1] and 0 in after[1]]
    assert any(a == b and s != t for a, b, s, t in anchors), "an anchor that stays while the meaning moves"
    assert any(a != b for a, b, _, _ in anchors), "an anchor that moves"
    representatives = [after[0][story]["representative_article"] for before, after in pairs
                       for story in after[0] if story in before[0]
                       and before[0][story]["representative_article"] != after[0][story]["representative_article"]]
    assert representatives, "a later join that becomes the representative (earlier published, or the first full one)"


def test_grouping_stores_what_the_members_give(database_url, query):
    """Through assign_stories: two runs, the second with late arrivals published earlier than the stories'
    members and a full article after a feed summary; every story and open row matches its members."""
    def late(name: str, fixture: str, language: str, published, *, partial: bool = False) -> int:
        title, body = _fixture(fixture)
        return store(name, title, body[:200] if partial else body, language, published, partial=partial)

    late("fire-summary", "port-fire-en.txt", "en", DAY, partial=True)
    late("fire-fr", "port-fire-fr.txt", "fr", DAY + timedelta(hours=2))
    late("syria-en", "syria-strikes-en.txt", "en", DAY)
    late("syria-de", "syria-strikes-de.txt", "de", DAY + timedelta(hours=1))
    late("flood-en", "river-flood-en.txt", "en", DAY + timedelta(hours=3))
    first = grouping.assign_stories(Settings())
    represents = ("SELECT a.feed FROM stories s JOIN articles a ON a.id = s.representative_article "
                  "WHERE s.id = (SELECT story_id FROM articles WHERE feed = 'feed-fire-summary')")
    assert query(represents) == [{"feed": "feed-fire-fr"}], "a full article, not the earlier feed summary"
    late("fire-en", "port-fire-en.txt", "en", DAY + timedelta(hours=1))  # full, after its feed summary
    late("fire-de", "port-fire-de.txt", "de", DAY - timedelta(hours=5))  # published before the story's first
    late("syria-zh", "syria-strikes-zh.txt", "zh", DAY - timedelta(hours=2))
    late("syria-ar", "syria-strikes-ar.txt", "ar", DAY + timedelta(hours=4))
    late("flood-es", "river-flood-es.txt", "es", DAY - timedelta(days=1))
    second = grouping.assign_stories(Settings())
    assert first["new_stories"] == 3 and second["new_stories"] == 0 and second["joined"] == 5

    stories = {row["id"]: {k: v for k, v in row.items() if k != "id"}
               for row in query(f"SELECT id, {', '.join(STORY_COLUMNS)} FROM stories")}
    assert stories == {row["id"]: {k: v for k, v in row.items() if k != "id"} for row in query(RECOMPUTED_STORIES_SQL)}
    assert query(represents) == [{"feed": "feed-fire-de"}], "the late one, published first"
    stored = {row["story_id"]: row for row in query("SELECT story_id, meaning_sum::text, members, languages, "
                                                    "seen_from, seen_to FROM open_stories")}
    recomputed = {row["story_id"]: row for row in query(RECOMPUTED_OPEN_SQL.replace("v.total AS", "v.total::text AS"))}
    assert stored.keys() == recomputed.keys() and len(stored) == 3
    for story_id, row in stored.items():
        mine, theirs = row.pop("meaning_sum"), recomputed[story_id].pop("meaning_sum")
        assert row == recomputed[story_id]
        # Real embeddings: float32 sums in another order may differ in the last bits.
        assert np.allclose(meaning.parse_vector(mine), meaning.parse_vector(theirs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("missing", ["representative", "open row"])
def test_a_join_recomputes_what_it_cannot_fold_in(database_url, query, missing):
    """A story without its representative, or closed meanwhile, is recomputed from its members on a join."""
    ids = [query("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash) "
                 "VALUES (%s, %s, %s, 'body', 'en', %s, 'test', md5(%s)) RETURNING id",
                 (f"http://127.0.0.1/{n}", f"http://127.0.0.1/{n}", f"Article {n}", f"feed-{n}", str(n)))[0]["id"]
           for n in range(3)]
    with db.transaction() as cur:
        cur.execute("SELECT id, title, fetched_at FROM articles WHERE id = %s", (ids[0],))
        story = grouping._open_story(cur, cur.fetchone())
        cur.execute("UPDATE articles SET story_id = %s WHERE id = ANY(%s)", (story, ids[:2]))
        grouping._refresh_story(cur, story)
        if missing == "representative":
            cur.execute("UPDATE stories SET representative_article = NULL, article_count = 0 WHERE id = %s", (story,))
        else:
            cur.execute("DELETE FROM open_stories WHERE story_id = %s", (story,))
        cur.execute("UPDATE articles SET story_id = %s WHERE id = %s", (story, ids[2]))
        grouping._join_story(cur, story, [ids[2]])
    assert query(f"SELECT id, {', '.join(STORY_COLUMNS)} FROM stories") == query(RECOMPUTED_STORIES_SQL)
    assert query("SELECT story_id, members, seen_from, seen_to FROM open_stories") == query(
        "SELECT story_id, members, seen_from, seen_to FROM (" + RECOMPUTED_OPEN_SQL + ") r")
    assert query("SELECT article_count, feeds FROM stories") == [{"article_count": 3,
                                                                   "feeds": ["feed-0", "feed-1", "feed-2"]}]


def test_a_meaning_placed_beside_a_grouping_transaction_reaches_the_open_row(database_url, query):
    """A member's meaning placed while a grouping transaction holds the lock (a worker lost it when the member
    was grouped; the next run embeds it) is summed in once that transaction has committed its joins: a recompute
    beside it would overwrite the open row with a snapshot missing them, and the joins do not recompute it."""
    store("fire-en", *_fixture("port-fire-en.txt"), "en", DAY)
    lost = store("fire-fr", *_fixture("port-fire-fr.txt"), "fr", DAY + timedelta(hours=1))
    assert grouping.assign_stories(Settings())["new_stories"] == 1
    story = query("SELECT story_id FROM articles WHERE id = %s", (lost,))[0]["story_id"]
    query("DELETE FROM article_meanings WHERE article_id = %s", (lost,))
    with db.transaction() as cur:
        grouping._refresh_open_story(cur, story)
    late = store("fire-de", *_fixture("port-fire-de.txt"), "de", DAY + timedelta(hours=5))

    conn = db.connect(database_url)
    try:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (grouping._CLUSTER_LOCK,))
        cur.execute("UPDATE articles SET story_id = %s WHERE id = %s", (story, late))
        grouping._join_story(cur, story, [late])
        analysed: list[int] = []
        worker = threading.Thread(target=lambda: analysed.append(grouping.analyse_articles([lost], Settings())))
        worker.start()
        deadline = time.monotonic() + 120
        while not query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"):  # the recompute waits for the grouping transaction
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.05)
        conn.commit()
        worker.join(60)
        assert analysed == [1]
    finally:
        conn.close()
    assert query("SELECT members, languages, seen_to FROM open_stories WHERE story_id = %s", (story,)) == [
        {"members": 2, "languages": {"en": 1, "fr": 1}, "seen_to": DAY + timedelta(hours=5)}]


def test_a_join_that_keeps_the_anchor_updates_the_open_row_in_place(database_url):
    """A join that leaves the anchor where it is must not file the story again in the vector index: a heap-only
    (HOT) update, as the recompute made. Otherwise every join adds an index entry, and the dead entries crowd
    out the live ones in the nearest-story search of the same batch."""
    rng = random.Random(3)
    base = [rng.randint(-8, 8) for _ in range(meaning.DIMENSIONS)]
    conn = db.connect(database_url)
    try:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        ids = []
        for number in range(3):
            cur.execute("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, "
                        "content_hash) VALUES (%(url)s, %(url)s, 'title', 'body', 'en', 'feed', 'test', md5(%(url)s)) "
                        "RETURNING id, title, fetched_at", {"url": f"http://127.0.0.1/{number}"})
            article = cur.fetchone()
            ids.append(article["id"])
            cur.execute("INSERT INTO article_meanings (article_id, model, embedding) VALUES (%s, 'test', %s::vector)",
                        (article["id"], _vector(rng, base)))
        story = grouping._open_story(cur, article)
        cur.execute("UPDATE articles SET story_id = %s WHERE id = ANY(%s)", (story, ids[:2]))
        grouping._refresh_story(cur, story)
        conn.commit()

        cur.execute("SELECT anchor::text FROM open_stories")
        anchor = cur.fetchone()["anchor"]
        cur.execute("UPDATE articles SET story_id = %s WHERE id = %s", (story, ids[2]))
        grouping._join_story(cur, story, [ids[2]])
        cur.execute("SELECT anchor::text, members FROM open_stories")
        assert cur.fetchone() == {"anchor": anchor, "members": 3}
        cur.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'open_stories'")
        assert cur.fetchone() == {"n_tup_upd": 1, "n_tup_hot_upd": 1}
        conn.rollback()
    finally:
        conn.close()


def test_a_story_is_judged_by_reading_its_newest_members_only(database_url, query):
    """``MEMBERS_SQL`` reads about ``_RECENT_MEMBERS`` index entries per candidate story (migration 11: the
    members indexed by story and id), not every member of a story of hundreds of copies."""
    insert = ("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash, "
              "story_id, entities) SELECT 'http://127.0.0.1/' || i, 'http://127.0.0.1/' || i, 'copy', 'body', 'en', "
              "'f', 'test', md5(i::text), {story}, '{{n:copy}}' FROM generate_series(%s, %s) i")
    story = query("INSERT INTO stories (title) VALUES ('copies') RETURNING id")[0]["id"]
    query(insert.format(story=story), (1, 400))
    query("INSERT INTO stories (id, title) SELECT i, 'other' FROM generate_series(1000, 4000) i")
    query(insert.format(story="i"), (1000, 4000))  # newer articles, each a story of its own
    query("ANALYZE articles")
    params = {"stories": [story], "vector": None, "limit": grouping._RECENT_MEMBERS}
    plan = "\n".join(row["QUERY PLAN"] for row in query(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + grouping.MEMBERS_SQL, params))
    assert "Index Scan Backward using articles_story on articles" in plan, plan
    assert "Sort" not in plan, plan
    assert len(query(grouping.MEMBERS_SQL, params)) == grouping._RECENT_MEMBERS


def test_an_exact_copy_is_found_by_reading_the_copies_of_its_body_only(database_url, query):
    """``COPY_SQL`` reads the copies of one body off (content_hash, id) (migration 11), not every grouped article
    in id order, even with statistics that say nothing is grouped yet."""
    query("INSERT INTO stories (id, title) SELECT i, 'story' FROM generate_series(1, 3000) i")
    query("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash, story_id) "
          "SELECT 'http://127.0.0.1/' || i, 'http://127.0.0.1/' || i, 't', 'b', 'en', 'f', 'test', "
          "CASE WHEN i > 2990 THEN 'wire' ELSE md5(i::text) END, NULL FROM generate_series(1, 3000) i")
    query("ANALYZE articles")  # taken while nothing is grouped, as at the start of a batch
    query("UPDATE articles SET story_id = id")
    newest = query("SELECT max(id) AS id FROM articles")[0]["id"]
    plan = "\n".join(row["QUERY PLAN"] for row in query(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + grouping.COPY_SQL, ("wire", newest)))
    assert "articles_content_hash" in plan, plan
    assert "articles_pkey" not in plan, plan
    first = query("SELECT min(id) AS id FROM articles WHERE content_hash = 'wire'")[0]["id"]
    assert query(grouping.COPY_SQL, ("wire", newest)) == [{"id": first, "story_id": first}]


def test_articles_joined_in_runs_give_what_a_recompute_gives(database_url):
    """Several articles folded into a story at once (a run of copies, ``grouping._Copies``) give the members'
    aggregates, as one at a time does; a story closed meanwhile is reopened from its members."""
    conn = db.connect(database_url)
    try:
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        rng = random.Random(11)
        sequence = _workload(cur, rng)
        ids: dict[int, int] = {}
        waiting: dict[int, list[int]] = {}
        for step, (story, article_id) in enumerate(sequence):
            if story not in ids:
                ids[story] = _open_with(cur, article_id)
                continue
            waiting.setdefault(story, []).append(article_id)
            if step == 30:
                cur.execute("DELETE FROM open_stories WHERE story_id = %s", (ids[0],))
            if len(waiting[story]) >= rng.randint(1, 6) or step == len(sequence) - 1:
                for number, run in list(waiting.items()):
                    cur.execute("UPDATE articles SET story_id = %s WHERE id = ANY(%s)", (ids[number], run))
                    grouping._join_story(cur, ids[number], run)
                waiting.clear()
        stories, open_rows = _assert_as_recomputed(cur)
        assert stories[ids[0]]["article_count"] > 15 and len(open_rows) == 4
        conn.rollback()
    finally:
        conn.close()


def _grouped_state(query) -> dict:
    """Everything grouping writes, for comparing two databases that stored the same articles in the same order."""
    articles = query("SELECT id, story_id, dedup_reason, dedup_score, dedup_of, title_key, entities FROM articles "
                     "ORDER BY id")
    # (first_seen_at and last_seen_at are fetch times: checked against the members, not across databases)
    stories = query("SELECT id, title, representative_article, article_count, languages, feeds FROM stories "
                    "ORDER BY id")
    open_rows = query("SELECT story_id, meaning_sum::text, members, languages, seen_from, seen_to FROM open_stories "
                      "ORDER BY story_id")
    sums = [meaning.parse_vector(row.pop("meaning_sum")) for row in open_rows]
    index = query("SELECT entity, seen_at, article_id FROM article_entities ORDER BY 1, 2, 3")
    frequencies = query("SELECT entity, df FROM entity_df ORDER BY entity")
    return {"articles": articles, "stories": stories, "open": open_rows, "sums": sums, "index": index,
            "df": frequencies}


def test_copies_joined_in_runs_are_grouped_as_one_by_one(database_url, pg_admin_url, template_database, query,
                                                         monkeypatch):
    """The same articles grouped twice, in two databases: with the copies of a batch joined in runs, and with every
    article through the full path. Copies of a story grouped in an earlier run, copies of a story opened in the
    same batch, a copy published before its original, and other articles between them: the same rows."""
    texts = {name: _fixture(f"{name}.txt") for name in ("port-fire-en", "port-fire-fr", "syria-strikes-en",
                                                        "syria-strikes-de", "river-flood-en", "river-flood-es")}
    earlier = [("fire-en", "port-fire-en", "en", DAY), ("syria-en", "syria-strikes-en", "en", DAY)]
    later = [("fire-en-copy1", "port-fire-en", "en", DAY + timedelta(hours=1)),
             ("flood-en", "river-flood-en", "en", DAY + timedelta(hours=1, minutes=30)),
             ("fire-en-copy2", "port-fire-en", "en", DAY + timedelta(hours=2)),
             ("flood-en-copy1", "river-flood-en", "en", DAY + timedelta(hours=1, minutes=10)),  # before the original
             ("syria-en-copy1", "syria-strikes-en", "en", DAY + timedelta(hours=2)),
             ("fire-en-copy4", "port-fire-en", "en", DAY + timedelta(hours=2, minutes=30)),
             ("syria-de", "syria-strikes-de", "de", DAY + timedelta(hours=3)),
             ("fire-fr", "port-fire-fr", "fr", DAY + timedelta(hours=3)),
             ("flood-en-copy2", "river-flood-en", "en", DAY + timedelta(hours=4)),
             ("syria-en-copy2", "syria-strikes-en", "en", DAY + timedelta(hours=4)),
             ("syria-en-copy3", "syria-strikes-en", "en", DAY + timedelta(hours=4, minutes=30)),
             ("flood-es", "river-flood-es", "es", DAY + timedelta(hours=5)),
             ("fire-en-copy3", "port-fire-en", "en", DAY + timedelta(hours=6))]

    def scenario() -> None:
        for name, text, language, published in earlier:
            store(name, *texts[text], language, published)
        grouping.assign_stories(Settings())
        for name, text, language, published in later:
            store(name, *texts[text], language, published)
        grouping.assign_stories(Settings())

    in_runs, one_by_one, runs = _grouped_both_ways(scenario, pg_admin_url, template_database, query, monkeypatch)
    assert any(len(run) > 1 for run in runs), "copies were joined in runs"
    reasons = {row["dedup_reason"] for row in in_runs["articles"]}
    assert {"content_hash", "meaning", "new_story"} <= reasons, reasons
    sums = in_runs.pop("sums"), one_by_one.pop("sums")
    assert in_runs == one_by_one
    assert query(f"SELECT id, {', '.join(STORY_COLUMNS)} FROM stories ORDER BY id") == query(RECOMPUTED_STORIES_SQL)
    assert all(np.allclose(a, b, rtol=0, atol=1e-5) for a, b in zip(*sums, strict=True))


def _grouped_both_ways(scenario, pg_admin_url: str, template_database: str, query, monkeypatch):
    """``scenario`` (storing and grouping articles) in the test's database with copies joined in runs, then in a
    second database with every article through the full path: both states and the runs joined."""
    runs: list[list[int]] = []
    join = grouping._join_story
    monkeypatch.setattr(grouping, "_join_story",
                        lambda cur, story, ids: (runs.append(list(ids)), join(cur, story, ids)))
    scenario()
    in_runs, joined = _grouped_state(query), list(runs)

    name = f"{query('SELECT current_database() AS name')[0]['name']}_one_by_one"
    one_url = _with_database(pg_admin_url, name)
    conn = psycopg2.connect(pg_admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
        monkeypatch.setenv("NEWSWATCH_DATABASE_URL", one_url)
        monkeypatch.setattr(grouping._Copies, "take", lambda self, article: False)
        scenario()
        one_by_one = _grouped_state(functools.partial(run_query, one_url))
    finally:
        db.close_pools(one_url)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.close()
    return in_runs, one_by_one, joined


def test_a_run_of_copies_that_fails_is_grouped_one_by_one_and_the_next_copies_follow(
        database_url, pg_admin_url, template_database, query, monkeypatch):
    """A copy that breaks the run it is in (its fingerprint raises) sends the run through the full path, where it
    gets a story of its own ('error'); a later copy of the same text, in a later run, joins that story as one by
    one it would (the earliest grouped copy is the broken one: it was stored first)."""
    title, body = _fixture("port-fire-en.txt")
    other = _fixture("river-flood-en.txt")
    broken: set[int] = set()

    def scenario() -> None:
        broken.clear()
        broken.add(store("fire-copy-stored-first", title, body, "en", DAY + timedelta(hours=2)))
        store("fire-original", title, body, "en", DAY + timedelta(hours=1))
        store("flood", *other, "en", DAY + timedelta(hours=3))
        store("fire-copy-later", title, body, "en", DAY + timedelta(hours=4))
        store("fire-copy-last", title, body, "en", DAY + timedelta(hours=5))
        grouping.assign_stories(Settings())

    fingerprint = grouping._fingerprint

    def breaking(article: dict) -> None:
        if article["id"] in broken:
            raise RuntimeError("a broken fingerprint")
        fingerprint(article)

    monkeypatch.setattr(grouping, "_fingerprint", breaking)
    in_runs, one_by_one, runs = _grouped_both_ways(scenario, pg_admin_url, template_database, query, monkeypatch)
    sums = in_runs.pop("sums"), one_by_one.pop("sums")
    assert in_runs == one_by_one
    assert all(np.allclose(a, b, rtol=0, atol=1e-5) for a, b in zip(*sums, strict=True))
    assert [len(run) for run in runs] == [2], runs  # the two later copies, together
    by_id = {row["id"]: row for row in in_runs["articles"]}
    first = min(broken)
    assert by_id[first]["dedup_reason"] == "error"
    later = [row for row in in_runs["articles"] if row["dedup_reason"] == "content_hash"]
    assert len(later) == 2 and {row["story_id"] for row in later} == {by_id[first]["story_id"]}
    assert {row["dedup_of"] for row in later} == {first}

