"""End to end through `newswatch poll`: loopback feeds and pages → Postgres → webhook and SMTP alerts."""

from __future__ import annotations

import json

from newswatch.cli import main
from tests.scenario import seed_config, serve_seed_sites


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
    # Whichever page was stored first opens the story; the other joins it as a near-duplicate.
    first, second = articles
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
