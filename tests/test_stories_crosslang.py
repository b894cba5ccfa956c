"""Story grouping across languages, headlines and merges, against the real database.

The French seed is a translation of a Reuters story (US strikes in Deir ez-Zor, Colin Kahl, Joe Buccino,
the Aug. 15 attack on al-Tanf); the English and German reports of the same event and a report of
another US strike in Syria a week later are fixtures written for these tests.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newswatch import db
from newswatch.config import Settings
from newswatch.ingest.articles import insert_article
from newswatch.ingest.extract import ExtractedArticle
from newswatch.stories.entities import extract, overlap
from newswatch.stories.grouping import assign_stories

STORIES = Path(__file__).parent / "fixtures" / "stories"
DAY = datetime(2022, 8, 24, 9, 0, tzinfo=UTC)
SETTINGS = Settings()


def _split(text: str) -> tuple[str, str]:
    title, _, body = text.strip().partition("\n")
    return title.strip(), body.strip()


def store(name: str, title: str, body: str, language: str, published: datetime, *, partial: bool = False) -> int:
    """Store an article the way ingestion does (``ingest.insert_article``), with its LSH bands."""
    entry = {"url": f"http://127.0.0.1/{name}", "summary": None, "feed": f"feed-{name}", "feed_id": None}
    article = ExtractedArticle(title=title, body=body, language=language, canonical_url=entry["url"],
                               published_at=published, authors=[], site_name=None, image_url=None,
                               is_partial=partial, method="feed" if partial else "trafilatura")
    with db.transaction() as cur:
        article_id = insert_article(cur, entry, article, SETTINGS)
    assert article_id is not None
    return article_id


def _fixture(name: str) -> tuple[str, str]:
    return _split((STORIES / name).read_text(encoding="utf-8"))


@pytest.fixture
def seed_articles(seed_text, database_url) -> dict[str, int]:
    lines = [line for line in seed_text.splitlines() if line.strip()]
    fr_title, fr_body = lines[1], "\n\n".join(lines[2:])
    return {
        "en": store("reuters-en", *_fixture("syria-strikes-en.txt"), "en", DAY - timedelta(hours=3)),
        "fr": store("journal-fr", fr_title, fr_body, "fr", DAY),
        "de": store("zeitung-de", *_fixture("syria-strikes-de.txt"), "de", DAY + timedelta(hours=5)),
    }


def test_one_event_in_three_languages_is_one_story_and_another_event_is_not(seed_articles, query):
    other = store("other-event", *_fixture("syria-strike-other-event-en.txt"), "en", DAY + timedelta(days=6))

    counts = assign_stories(SETTINGS)
    assert counts == {"articles": 4, "new_stories": 2, "joined": 2, "merged": 0, "embedded": 4}
    rows = {row["id"]: row for row in query("SELECT id, story_id, dedup_reason, dedup_score, dedup_of FROM articles")}
    story = rows[seed_articles["en"]]["story_id"]
    assert {rows[i]["story_id"] for i in seed_articles.values()} == {story}
    for language in ("fr", "de"):
        row = rows[seed_articles[language]]
        assert row["dedup_reason"] == "meaning" and row["dedup_score"] >= SETTINGS.dedup.meaning_threshold
        assert row["dedup_of"] in seed_articles.values()
    # As close in meaning as the members are to each other, but another day's attack: the look-alike veto.
    assert rows[other]["story_id"] != story and rows[other]["dedup_reason"] == "new_story"

    summary = query("SELECT * FROM stories WHERE id = %s", (story,))[0]
    assert summary["article_count"] == 3 and sorted(summary["languages"]) == ["de", "en", "fr"]
    assert summary["representative_article"] == seed_articles["en"]  # the earliest published
    assert summary["title"].startswith("U.S. forces come under rocket attack")
    assert len(query("SELECT id FROM stories")) == 2

    assert assign_stories(SETTINGS) == {"articles": 0, "new_stories": 0, "joined": 0, "merged": 0, "embedded": 0}
    assert len(query("SELECT id FROM stories")) == 2
    assert query("SELECT df FROM entity_df WHERE entity = ''")[0]["df"] == 4  # each article counted once


def test_the_other_event_shares_context_but_not_the_event(seed_text):
    """Biden, the Pentagon and Deir ez-Zor are shared; people, places and the date are not."""
    en = extract(*_fixture("syria-strikes-en.txt")).items
    other = extract(*_fixture("syria-strike-other-event-en.txt")).items
    fr = extract("", seed_text).items
    for items in (en, fr):
        link = overlap(items, other, {}, 0)
        assert {"n:biden", "n:pentagon", "c:deir-ez-zor"} <= set(link.shared)
        assert not link.linked and link.date_conflict
    assert overlap(en, fr, {}, 0).linked


def test_chinese_and_arabic_versions_join_the_story_by_meaning(seed_articles, query):
    """Scripts without capitals give the entity layer nothing to link; the meaning layer reads them."""
    zh = store("xinwen-zh", *_fixture("syria-strikes-zh.txt"), "zh", DAY + timedelta(hours=2))
    ar = store("akhbar-ar", *_fixture("syria-strikes-ar.txt"), "ar", DAY + timedelta(hours=4))
    assign_stories(SETTINGS)
    rows = {row["id"]: row for row in query("SELECT id, story_id, dedup_reason FROM articles")}
    assert len({row["story_id"] for row in rows.values()}) == 1
    assert rows[zh]["dedup_reason"] == rows[ar]["dedup_reason"] == "meaning"
    languages = query("SELECT languages FROM stories")[0]["languages"]
    assert sorted(languages) == ["ar", "de", "en", "fr", "zh"]


def _alert(query, rule: str, story: int, channel: str, status: str, kind: str = "new") -> None:
    query("INSERT INTO alerts (rule, story_id, channel, status, kind, idempotency_key) VALUES (%s, %s, %s, %s, %s, %s)",
          (rule, story, channel, status, kind, f"{rule}-{story}-{channel}-{kind}"))


def test_a_later_report_of_the_same_event_joins_as_a_follow_up_only_above_its_bar(database_url, query):
    """The same fire reported ten days later, outside the window: it joins on meaning at the follow-up bar;
    with a bar it does not reach, or beyond the follow-up horizon, it opens a story of its own."""
    p = store("port-en", *_fixture("port-fire-en.txt"), "en", DAY)
    q = store("port-fr", *_fixture("port-fire-fr.txt"), "fr", DAY + timedelta(days=10))
    follow_ups = Settings(dedup={"follow_up_days": 45})

    def regroup(settings: Settings) -> dict[str, int]:
        query("UPDATE articles SET story_id = NULL, dedup_reason = NULL, dedup_score = NULL, dedup_of = NULL")
        query("DELETE FROM open_stories; DELETE FROM stories")
        return assign_stories(settings)

    assert assign_stories(SETTINGS)["new_stories"] == 2  # off by default
    assert regroup(Settings(dedup={"follow_up_days": 45, "follow_up_threshold": 0.99}))["new_stories"] == 2
    assert regroup(follow_ups) == {"articles": 2, "new_stories": 1, "joined": 1, "merged": 0, "embedded": 0}
    rows = {row["id"]: row for row in query("SELECT id, story_id, dedup_reason, dedup_score FROM articles")}
    assert rows[p]["story_id"] == rows[q]["story_id"]
    assert rows[q]["dedup_reason"] == "follow_up" and rows[q]["dedup_score"] >= follow_ups.dedup.follow_up_threshold

    far = store("port-de", *_fixture("port-fire-de.txt"), "de", DAY + timedelta(days=10 + 45 + 1))
    assert assign_stories(follow_ups)["new_stories"] == 1
    assert query("SELECT dedup_reason FROM articles WHERE id = %s", (far,)) == [{"dedup_reason": "new_story"}]


def test_a_report_between_two_stories_merges_them_without_duplicate_alerts(database_url, query):
    """The same fire reported ten days apart (two stories: outside each other's window, follow-ups off),
    then a report in between: close to both, and the stories are close to each other member for member,
    so they merge."""
    settings = Settings(dedup={"follow_up_days": 0})
    p = store("port-en", *_fixture("port-fire-en.txt"), "en", DAY)
    q = store("port-fr", *_fixture("port-fire-fr.txt"), "fr", DAY + timedelta(days=10))
    assert assign_stories(settings)["new_stories"] == 2
    stories = {row["id"]: row["story_id"] for row in query("SELECT id, story_id FROM articles")}
    story_p, story_q = stories[p], stories[q]
    assert story_p < story_q

    _alert(query, "fires", story_p, "webhook", "pending")           # duplicate of the sent one below: dropped
    _alert(query, "fires", story_q, "webhook", "sent")              # kept, moved to the surviving story
    _alert(query, "fires", story_q, "webhook", "pending", "update")  # an update on one side only: moved
    _alert(query, "fires", story_p, "email", "sent")                # kept, its pending duplicate dropped
    _alert(query, "fires", story_q, "email", "pending")
    _alert(query, "fires", story_p, "email", "sent", "update")      # updates on both sides: one kept
    _alert(query, "fires", story_q, "email", "pending", "update")
    _alert(query, "inquiries", story_q, "webhook", "pending")       # no counterpart: moved

    bridge = store("port-de", *_fixture("port-fire-de.txt"), "de", DAY + timedelta(days=5))
    assert assign_stories(settings) == {"articles": 1, "new_stories": 0, "joined": 1, "merged": 1, "embedded": 1}

    rows = {row["id"]: row for row in query("SELECT id, story_id, dedup_reason FROM articles")}
    assert {rows[i]["story_id"] for i in (p, q, bridge)} == {story_p}
    assert rows[bridge]["dedup_reason"] == "meaning"
    assert query("SELECT id FROM stories") == [{"id": story_p}]
    story = query("SELECT article_count, languages FROM stories")[0]
    assert story["article_count"] == 3 and sorted(story["languages"]) == ["de", "en", "fr"]
    merges = query("SELECT merged_story, into_story, article_id, reason FROM story_merges")
    assert merges == [{"merged_story": story_q, "into_story": story_p, "article_id": bridge, "reason": "meaning"}]
    alerts = query("SELECT rule, story_id, channel, kind, status, idempotency_key FROM alerts "
                   "ORDER BY rule, channel, kind")
    assert [(a["rule"], a["story_id"], a["channel"], a["kind"], a["status"]) for a in alerts] == [
        ("fires", story_p, "email", "new", "sent"),
        ("fires", story_p, "email", "update", "sent"),
        ("fires", story_p, "webhook", "new", "sent"),
        ("fires", story_p, "webhook", "update", "pending"),
        ("inquiries", story_p, "webhook", "new", "pending"),
    ]
    assert alerts[2]["idempotency_key"] == f"fires-{story_q}-webhook-new"  # the sent message keeps its key
    open_rows = query("SELECT story_id, members, languages FROM open_stories")
    assert open_rows == [{"story_id": story_p, "members": 3, "languages": {"de": 1, "en": 1, "fr": 1}}]

    # Clustering goes on after the merge.
    later = store("port-en-2", *_fixture("port-fire-en.txt"), "en", DAY + timedelta(days=6))
    assert assign_stories(settings)["joined"] == 1
    assert query("SELECT story_id FROM articles WHERE id = %s", (later,))[0]["story_id"] == story_p


def test_a_round_up_of_two_events_merges_neither(database_url, query):
    """A digest that reports the port fire and the floods is close to both stories: it may join one, but the
    two stories are far apart member for member and stay two."""
    fire = [store("fire-en", *_fixture("port-fire-en.txt"), "en", DAY),
            store("fire-fr", *_fixture("port-fire-fr.txt"), "fr", DAY + timedelta(hours=1))]
    flood = [store("flood-en", *_fixture("river-flood-en.txt"), "en", DAY),
             store("flood-es", *_fixture("river-flood-es.txt"), "es", DAY + timedelta(hours=2))]
    assign_stories(SETTINGS)
    roundup = store("roundup", *_fixture("roundup-en.txt"), "en", DAY + timedelta(hours=6))
    assert assign_stories(SETTINGS)["merged"] == 0

    rows = {row["id"]: row["story_id"] for row in query("SELECT id, story_id FROM articles")}
    assert rows[fire[0]] == rows[fire[1]] and rows[flood[0]] == rows[flood[1]]
    assert rows[fire[0]] != rows[flood[0]]
    # The round-up joined one of them, or stands alone.
    assert rows[roundup] in (rows[fire[0]], rows[flood[0]]) or list(rows.values()).count(rows[roundup]) == 1
    assert query("SELECT count(*) AS n FROM story_merges")[0]["n"] == 0


def test_same_headline_links_feed_summaries_but_not_a_recurring_column(database_url, query):
    title = "Les pompiers maîtrisent l'incendie du port après deux jours de lutte"
    a = store("a", title, "Le feu est éteint, annonce la préfecture.", "fr", DAY, partial=True)
    b = store("b", title.upper() + " ", "Incendie : fin de l'intervention.", "fr", DAY + timedelta(hours=2),
              partial=True)
    column = "La météo de la semaine prochaine dans votre région"
    c = store("c", column, "Du soleil attendu à Lyon, Grenoble et Chambéry, des orages vers Annecy et Valence.",
              "fr", DAY)
    d = store("d", column, "De la pluie attendue à Brest, Quimper et Lorient, du vent vers Vannes et Morlaix.",
              "fr", DAY + timedelta(days=1))
    short = store("e", "Direct", "Suivez notre direct.", "fr", DAY)
    short_too = store("f", "Direct", "Suivez notre direct.", "fr", DAY)

    assign_stories(SETTINGS)
    rows = {row["id"]: row for row in query("SELECT id, story_id, dedup_reason, dedup_of, title_key FROM articles")}
    assert rows[b]["story_id"] == rows[a]["story_id"]
    assert (rows[b]["dedup_reason"], rows[b]["dedup_of"]) == ("same_title", a)
    key = "les pompiers maitrisent l incendie du port apres deux jours de lutte"
    assert rows[a]["title_key"] == rows[b]["title_key"] == key
    assert rows[c]["story_id"] != rows[d]["story_id"] and rows[d]["dedup_reason"] == "new_story"
    # Tiny texts never merge, whatever their headline: "Direct" is too short to be a title key.
    assert rows[short]["title_key"] is None and rows[short]["story_id"] != rows[short_too]["story_id"]


def test_concurrent_runs_open_each_story_once(seed_articles, query):
    """Two workers clustering at once (a retried task beside a slow one): the lock serialises them."""
    results: list[dict[str, int]] = []
    threads = [threading.Thread(target=lambda: results.append(assign_stories(SETTINGS))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["articles"] for r in results) == [0, 3]
    assert len(query("SELECT id FROM stories")) == 1
    assert query("SELECT count(*) AS n FROM article_entities")[0]["n"] > 0
