"""End to end through `newswatch poll`: loopback feeds and pages → Postgres → webhook and SMTP alerts."""

from __future__ import annotations

import json

from newswatch.cli import main
from tests.scenario import seed_config, serve_other_reports, serve_seed_sites


def test_seed_story_is_stored_once_and_alerted_once(tmp_path, site, webhook, smtp, query, monkeypatch, capsys):
    serve_seed_sites(site)
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)))

    assert main(["poll"]) == 0

    articles = query("SELECT * FROM articles ORDER BY id")
    assert len(articles) == 2
    assert {a["feed"] for a in articles} == {"journal-du-monde", "info-express"}
    for article in articles:
        assert article["language"] == "fr"
        assert "Deux responsables américains" in article["body"]
        for chrome in ("Home »", "uses cookies", "Related Articles", "Newsletter", "Les plus lus", "Partager"):
            assert chrome not in article["body"], chrome
    copy = next(a for a in articles if a["feed"] == "info-express")
    assert "utm_" not in copy["canonical_url"]
    # The earlier published page opens the story; the other joins it as a near-duplicate.
    first, second = sorted(articles, key=lambda a: a["published_at"])
    assert first["feed"] == "journal-du-monde"
    assert (first["dedup_reason"], second["dedup_reason"]) == ("new_story", "near_duplicate")
    assert second["dedup_of"] == first["id"] and 0.5 <= second["dedup_score"] < 1

    stories = query("SELECT * FROM stories")
    assert len(stories) == 1
    assert stories[0]["article_count"] == 2 and stories[0]["languages"] == ["fr"]
    assert {a["story_id"] for a in articles} == {stories[0]["id"]}

    alerts = query("SELECT rule, channel, status FROM alerts ORDER BY channel")
    assert alerts == [
        {"rule": "syria-strikes", "channel": "email", "status": "sent"},
        {"rule": "syria-strikes", "channel": "webhook", "status": "sent"},
    ]
    assert len(webhook.received) == 1
    assert "syria-strikes" in webhook.received[0]["title"]
    assert "Syrie" in webhook.received[0]["message"]
    messages = smtp.wait_for(1)
    assert len(messages) == 1 and "syria-strikes" in messages[0]["Subject"]

    feeds = {row["name"]: row for row in query("SELECT * FROM feeds")}
    assert feeds["broken"]["consecutive_failures"] == 1 and feeds["broken"]["last_status"] == 500
    assert feeds["not-a-feed"]["last_error_kind"] == "not_a_feed"
    assert feeds["journal-du-monde"]["etag"] == '"a-1"'

    # A second cycle: feeds answer 304, nothing new is stored or sent.
    capsys.readouterr()
    assert main(["poll", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["feeds.not_modified"] == 2
    assert len(query("SELECT id FROM articles")) == 2
    assert len(query("SELECT id FROM alerts")) == 2
    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    assert feeds["broken"]["consecutive_failures"] + 1 == query(
        "SELECT consecutive_failures FROM feeds WHERE name = 'broken'")[0]["consecutive_failures"]


def test_translations_join_the_seed_story_and_the_next_strike_is_a_story_of_its_own(
        tmp_path, site, webhook, smtp, query, monkeypatch):
    """The seed, its edited copy, English and German reports of the same attack: one story. The next US strike
    in Syria six days later (same country, province, president, Pentagon; another place, people and date):
    another story. The rule matches both: one alert per story and channel."""
    serve_seed_sites(site)
    extra = serve_other_reports(site)
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp, extra)))

    assert main(["poll"]) == 0

    articles = {a["feed"]: a for a in query("SELECT feed, story_id, language, dedup_reason FROM articles")}
    assert set(articles) == {"journal-du-monde", "info-express", "wire-en", "zeitung-de", "defense-daily"}
    seed_story = articles["journal-du-monde"]["story_id"]
    assert {articles[f]["story_id"] for f in ("info-express", "wire-en", "zeitung-de")} == {seed_story}
    assert articles["defense-daily"]["story_id"] != seed_story
    stories = {s["id"]: s for s in query("SELECT id, article_count, languages FROM stories")}
    assert len(stories) == 2
    assert stories[seed_story]["article_count"] == 4 and sorted(stories[seed_story]["languages"]) == ["de", "en", "fr"]

    alerts = query("SELECT rule, story_id, channel, kind, status FROM alerts ORDER BY story_id, channel")
    assert [(a["story_id"] == seed_story, a["channel"], a["kind"], a["status"]) for a in alerts
            if a["rule"] == "syria-strikes"] == [
        (True, "email", "new", "sent"), (True, "webhook", "new", "sent"),
        (False, "email", "new", "sent"), (False, "webhook", "new", "sent"),
    ]
    assert len(webhook.received) == 2 and len(smtp.wait_for(2)) == 2

    # Another cycle: nothing new is stored, grouped or sent.
    assert main(["poll"]) == 0
    assert len(query("SELECT id FROM stories")) == 2 and len(webhook.received) == 2
