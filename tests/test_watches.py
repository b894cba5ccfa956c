"""Watches by meaning (issue 16): ``about:"…"`` and ``like:…`` rules through the real path, against PostgreSQL.

Stories are built as grouping builds them (``assign_stories``, the meaning workers), the rule's description is
embedded there, and ``match_rules`` (which never loads the model) records the alerts. The seed story is the
French seed with its English and German versions; a rail strike and Syrian peace talks must not alert.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newswatch.alerts import watches
from newswatch.alerts.alerting import match_rules
from newswatch.config import Settings
from newswatch.ingest.articles import insert_article
from newswatch.ingest.extract import ExtractedArticle
from newswatch.rules import meaning_key
from newswatch.stories import meaning
from newswatch.stories.grouping import assign_stories, embed_rule_meanings

STORIES = Path(__file__).parent / "fixtures" / "stories"
DAY = datetime(2022, 8, 24, 9, 0, tzinfo=UTC)


def _settings(tmp_path, query: str, **rule) -> Settings:
    return Settings.model_validate({
        "channels": [{"name": "file", "url": f"jsonl://{tmp_path / 'alerts.jsonl'}"}],
        "rules": [{"name": "watch", "query": query, "channels": ["file"], **rule}],
    })


def _store(name: str, text: str, language: str, published: datetime) -> int:
    title, _, body = text.strip().partition("\n")
    entry = {"url": f"http://127.0.0.1/{name}", "summary": None, "feed": f"feed-{name}", "feed_id": None}
    article = ExtractedArticle(title=title.strip(), body=body.strip(), language=language,
                               canonical_url=entry["url"], published_at=published, authors=[], site_name=None,
                               image_url=None, is_partial=False, method="trafilatura")
    from newswatch import db

    with db.transaction() as cur:
        article_id = insert_article(cur, entry, article, Settings())
    assert article_id is not None
    return article_id


@pytest.fixture
def archive(seed_text, database_url) -> dict[str, int]:
    """The seed story in three languages, a rail strike (French and English) and Syrian peace talks."""
    return store_archive(seed_text)


def store_archive(seed_text: str) -> dict[str, int]:
    """Stores the articles of ``archive`` (other test modules use it too); their ids by name."""
    lines = [line for line in seed_text.splitlines() if line.strip()]
    fixture = {name: (STORIES / f"{name}.txt").read_text(encoding="utf-8")
               for name in ("syria-strikes-en", "syria-strikes-de", "rail-strike-fr", "rail-strike-en",
                            "syria-peace-talks-en")}
    return {
        "en": _store("reuters-en", fixture["syria-strikes-en"], "en", DAY - timedelta(hours=3)),
        "fr": _store("journal-fr", "\n".join(lines[1:]), "fr", DAY),
        "de": _store("zeitung-de", fixture["syria-strikes-de"], "de", DAY + timedelta(hours=5)),
        "rail-fr": _store("rail-fr", fixture["rail-strike-fr"], "fr", DAY + timedelta(hours=1)),
        "rail-en": _store("rail-en", fixture["rail-strike-en"], "en", DAY + timedelta(hours=2)),
        "peace": _store("peace-en", fixture["syria-peace-talks-en"], "en", DAY + timedelta(hours=4)),
    }


@pytest.mark.parametrize("description", [
    "frappes américaines en Syrie",
    "US military strikes in Syria",
    "amerikanische Luftangriffe in Syrien",
])
def test_a_description_alone_alerts_the_seed_story_in_every_language_and_nothing_else(
        tmp_path, archive, query, description):
    settings = _settings(tmp_path, f'about:"{description}"')
    assign_stories(settings)  # groups the articles and embeds the description, in the meaning workers
    stories = {name: query("SELECT story_id FROM articles WHERE id = %s", (article,))[0]["story_id"]
               for name, article in archive.items()}
    seed = stories["fr"]
    assert stories["en"] == stories["de"] == seed
    assert len({stories["rail-fr"], stories["rail-en"], stories["peace"], seed}) == 4

    counts = match_rules(settings)
    alerts = query("SELECT story_id, article_id, matched_terms FROM alerts WHERE rule = 'watch'")
    assert [alert["story_id"] for alert in alerts] == [seed], alerts
    assert counts["new_alerts"] == 1 and counts["held"] == 0
    (term,) = alerts[0]["matched_terms"]
    assert term.startswith(f'about:"{description}", similarity 0.')
    assert float(term.rsplit(" ", 1)[1]) >= settings.rules[0].compiled().min_similarity


def test_similarities_of_every_article_keep_the_unrelated_stories_far_below(tmp_path, archive, query):
    """Each article of the seed story is nearer to the description than the rail strike or the peace talks."""
    settings = _settings(tmp_path, 'about:"US military strikes in Syria"')
    assign_stories(settings)
    key = meaning_key("about", "US military strikes in Syria")
    rows = query("SELECT m.article_id, 1 - (m.embedding <=> r.embedding) AS s FROM article_meanings m, rule_meanings r "
                 "WHERE r.key = %s", (key,))
    similarity = {row["article_id"]: row["s"] for row in rows}
    by_name = {name: similarity[article] for name, article in archive.items()}
    threshold = settings.rules[0].compiled().min_similarity
    assert min(by_name[name] for name in ("en", "fr", "de")) >= threshold, by_name
    assert max(by_name[name] for name in ("rail-fr", "rail-en", "peace")) < threshold, by_name


def test_the_keyword_part_still_excludes(tmp_path, archive, query):
    settings = _settings(tmp_path, 'about:"US military strikes in Syria" AND NOT (Kahl OR Buccino)')
    assign_stories(settings)
    match_rules(settings)
    assert query("SELECT id FROM alerts") == []  # the seed story names both


def test_a_rule_added_after_grouping_holds_its_articles_until_its_vector_is_there(tmp_path, archive, query):
    assign_stories(Settings())  # grouped before the rule existed: no vector for its description
    settings = _settings(tmp_path, 'about:"frappes américaines en Syrie" OR grève')
    counts = match_rules(settings)
    # The keyword half matched the rail strike now; the articles with a meaning wait for the description.
    alerts = query("SELECT a.story_id, ar.id AS article FROM alerts a JOIN articles ar ON ar.id = a.article_id")
    assert [alert["article"] for alert in alerts] == [archive["rail-fr"]]
    assert counts["held"] == len(archive)
    assert query("SELECT count(*) AS n FROM articles WHERE matched_at IS NULL")[0]["n"] == 0

    assert embed_rule_meanings(settings) == 1  # what the next cluster_stories run does first
    counts = match_rules(settings)
    assert counts["from_backlog"] == len(archive)
    seed = query("SELECT story_id FROM articles WHERE id = %s", (archive["fr"],))[0]["story_id"]
    stories = sorted(row["story_id"] for row in query("SELECT story_id FROM alerts"))
    rail = query("SELECT story_id FROM articles WHERE id = %s", (archive["rail-fr"],))[0]["story_id"]
    assert stories == sorted([seed, rail])
    assert query("SELECT count(*) AS n FROM meaning_backlog")[0]["n"] == 0
    assert match_rules(settings)["new_alerts"] == 0


def test_like_a_story_matches_its_own_articles_and_not_the_others(tmp_path, archive, query):
    assign_stories(Settings())
    seed = query("SELECT story_id FROM articles WHERE id = %s", (archive["fr"],))[0]["story_id"]
    settings = _settings(tmp_path, f"like:{seed}", min_similarity=0.6)
    match_rules(settings)
    alerts = query("SELECT story_id, matched_terms FROM alerts")
    assert [alert["story_id"] for alert in alerts] == [seed]
    assert alerts[0]["matched_terms"][0].startswith(f"like:{seed}, similarity ")


def test_model_name_here_is_the_meaning_layers():
    assert watches.MODEL == meaning.MODEL


def test_rules_test_shows_the_similarity_and_the_near_misses(tmp_path, archive, capsys):
    from newswatch.cli import main

    assign_stories(Settings())
    config = tmp_path / "newswatch.yaml"
    config.write_text("feeds: []\nrules: []\n", encoding="utf-8")
    assert main(["rules", "test", 'about:"US military strikes in Syria"', "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "draft query: 1 stories (3 articles) matched" in out
    assert 'about:"US military strikes in Syria", similarity 0.' in out and "near-misses" not in out

    assert main(["rules", "test", 'about:"US military strikes in Syria"', "--min-similarity", "0.55",
                 "--config", str(config), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["near_miss"] is True and "(below 0.55)" in row["near"]


def test_check_config_validates_meaning_terms(tmp_path, archive, capsys):
    from newswatch.cli import main

    config = tmp_path / "newswatch.yaml"
    config.write_text('rules:\n  - name: example\n    query: "like:999999"\n', encoding="utf-8")
    assert main(["check-config", str(config)]) == 1
    assert "like:999999 names no story" in capsys.readouterr().err

    config.write_text('rules:\n  - name: bad\n    query: \'about:"x" AND like:abc\'\n', encoding="utf-8")
    assert main(["check-config", str(config)]) == 1
    assert "col 19: 'like:' takes a story id" in capsys.readouterr().err
