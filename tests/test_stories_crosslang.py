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
from newswatch.entities import extract, overlap
from newswatch.extract import ExtractedArticle
from newswatch.ingest import _store
from newswatch.stories import assign_stories

STORIES = Path(__file__).parent / "fixtures" / "stories"
DAY = datetime(2022, 8, 24, 9, 0, tzinfo=UTC)
SETTINGS = Settings()


def _split(text: str) -> tuple[str, str]:
    title, _, body = text.strip().partition("\n")
    return title.strip(), body.strip()


def store(name: str, title: str, body: str, language: str, published: datetime, *, partial: bool = False) -> int:
    """Store an article the way ingestion does (``ingest._store``), with its LSH bands."""
    entry = {"url": f"http://127.0.0.1/{name}", "summary": None, "feed": f"feed-{name}", "feed_id": None}
    article = ExtractedArticle(title=title, body=body, language=language, canonical_url=entry["url"],
                               published_at=published, authors=[], site_name=None, image_url=None,
                               is_partial=partial, method="feed" if partial else "trafilatura")
    with db.transaction() as cur:
        article_id = _store(cur, entry, article, SETTINGS)
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
    assert counts == {"articles": 4, "new_stories": 2, "joined": 2, "merged": 0}
    rows = {row["id"]: row for row in query("SELECT id, story_id, dedup_reason, dedup_score, dedup_of FROM articles")}
    story = rows[seed_articles["en"]]["story_id"]
    assert {rows[i]["story_id"] for i in seed_articles.values()} == {story}
    for language in ("fr", "de"):
        row = rows[seed_articles[language]]
        assert row["dedup_reason"] == "entity_overlap" and row["dedup_score"] >= 0.2
        assert row["dedup_of"] in seed_articles.values()
    assert rows[other]["story_id"] != story and rows[other]["dedup_reason"] == "new_story"

    summary = query("SELECT * FROM stories WHERE id = %s", (story,))[0]
    assert summary["article_count"] == 3 and sorted(summary["languages"]) == ["de", "en", "fr"]
    assert summary["representative_article"] == seed_articles["en"]  # the earliest published
    assert summary["title"].startswith("U.S. forces come under rocket attack")
    assert len(query("SELECT id FROM stories")) == 2

    assert assign_stories(SETTINGS) == {"articles": 0, "new_stories": 0, "joined": 0, "merged": 0}
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


def test_a_bridging_article_merges_two_stories_without_duplicate_alerts(database_url, query):
    p = store("port-en", "Fire at Velmora port terminal burns dozens of containers",
              "A fire broke out at the Kestrel terminal in the port of Velmora on March 3, destroying 42 containers. "
              "Governor Alina Marchetti said the blaze was under control by the evening. "
              "Firefighters from Sardell and Ombrio helped the local crews, the port authority said.",
              "en", DAY)
    q = store("enquete-fr", "Enquête ouverte après l'incendie du port",
              "Le parquet a confié l'enquête aux inspecteurs Tomasz Wierzbicki et Hélène Ducasse, de l'agence "
              "Orvane. Selon eux, 17 témoins ont déjà été entendus et la piste criminelle n'est pas écartée. "
              "Les assureurs de la compagnie Brennhaus suivent le dossier.",
              "fr", DAY + timedelta(hours=4))
    assert assign_stories(SETTINGS)["new_stories"] == 2
    stories = {row["id"]: row["story_id"] for row in query("SELECT id, story_id FROM articles")}
    story_p, story_q = stories[p], stories[q]
    assert story_p < story_q

    def alert(rule: str, story: int, channel: str, status: str) -> None:
        query("INSERT INTO alerts (rule, story_id, channel, status, idempotency_key) VALUES (%s, %s, %s, %s, %s)",
              (rule, story, channel, status, f"{rule}-{story}-{channel}"))

    alert("fires", story_p, "webhook", "pending")   # duplicate of the sent one below: dropped
    alert("fires", story_q, "webhook", "sent")      # kept, moved to the surviving story
    alert("fires", story_p, "email", "sent")        # kept, its pending duplicate dropped
    alert("fires", story_q, "email", "pending")
    alert("inquiries", story_q, "webhook", "pending")  # no counterpart: moved

    bridge = store("hafen-de", "Brand im Hafen von Velmora: Ermittler befragen Zeugen",
                   "Nach dem Brand am Kestrel-Terminal im Hafen von Velmora am 3. März, bei dem 42 Container "
                   "zerstört wurden, ermitteln Tomasz Wierzbicki und Hélène Ducasse von der Agentur Orvane. "
                   "Gouverneurin Alina Marchetti sprach von einem schweren Schlag für die Stadt. "
                   "Bisher wurden 17 Zeugen befragt; auch die Versicherung Brennhaus prüft den Fall.",
                   "de", DAY + timedelta(hours=8))
    assert assign_stories(SETTINGS) == {"articles": 1, "new_stories": 0, "joined": 1, "merged": 1}

    rows = {row["id"]: row for row in query("SELECT id, story_id, dedup_reason FROM articles")}
    assert {rows[i]["story_id"] for i in (p, q, bridge)} == {story_p}
    assert rows[bridge]["dedup_reason"] == "entity_overlap"
    assert query("SELECT id FROM stories") == [{"id": story_p}]
    story = query("SELECT article_count, languages FROM stories")[0]
    assert story["article_count"] == 3 and sorted(story["languages"]) == ["de", "en", "fr"]
    merges = query("SELECT merged_story, into_story, article_id, reason FROM story_merges")
    assert merges == [{"merged_story": story_q, "into_story": story_p, "article_id": bridge,
                       "reason": "entity_overlap"}]
    alerts = query("SELECT rule, story_id, channel, status, idempotency_key FROM alerts ORDER BY rule, channel")
    assert [(a["rule"], a["story_id"], a["channel"], a["status"]) for a in alerts] == [
        ("fires", story_p, "email", "sent"),
        ("fires", story_p, "webhook", "sent"),
        ("inquiries", story_p, "webhook", "pending"),
    ]
    assert alerts[1]["idempotency_key"] == f"fires-{story_q}-webhook"  # the sent message keeps its key


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
