"""The UI-managed part of the configuration: the file in charge of what it declares, the database adding the
rest, every change checked like the file and audited, conflicts reported and never resolved silently."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from newswatch import configstore
from newswatch.config import ConfigError, load_settings, parse_settings
from newswatch.configstore import FileManaged, InUse, InvalidItem, NameTaken, NotFound

ACTOR = "alice"


def write_config(path: Path, **sections) -> Path:
    document = {
        "feeds": [{"name": "wire", "url": "https://example.org/wire.xml"}],
        "rules": [{"name": "syria-strikes", "query": "syria AND strike*", "channels": ["desk"]}],
        "channels": [{"name": "desk", "url": "jsonl:///tmp/newswatch-test-desk.jsonl"}],
        "network": {"allow_networks": ["127.0.0.1/32"]},
        **sections,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path, database_url, monkeypatch) -> Path:
    path = write_config(tmp_path / "newswatch.yaml")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(path))
    return path


def test_a_feed_added_from_the_ui_joins_the_files_with_its_source_and_an_audit_row(config, query):
    item = configstore.add_feed("lemonde", "https://www.lemonde.fr/rss/une.xml", language="fr", interval=900,
                                actor=ACTOR)
    assert (item.source, item.editable, item.created_by) == ("ui", True, ACTOR)
    assert item.fields == {"name": "lemonde", "url": "https://www.lemonde.fr/rss/une.xml", "enabled": True,
                           "language": "fr", "interval": 900}

    settings = load_settings(ui=True)
    assert [feed.name for feed in settings.feeds] == ["wire", "lemonde"]
    assert settings.source("feeds", "wire") == "file" and settings.source("feeds", "lemonde") == "ui"
    assert settings.ui_problems == []
    assert [feed.name for feed in load_settings().feeds] == ["wire"]  # the file alone, as before

    listed = configstore.list_items("feed")
    assert [(i.name, i.source, i.editable) for i in listed] == [("wire", "file", False), ("lemonde", "ui", True)]

    [entry] = configstore.audit_log()
    assert (entry.actor, entry.action, entry.kind, entry.name, entry.before) == (ACTOR, "add", "feed", "lemonde",
                                                                                 None)
    assert entry.after["url"] == "https://www.lemonde.fr/rss/une.xml" and entry.after["interval"] == 900


def test_changes_enable_disable_and_removal_are_audited_with_before_and_after(config):
    configstore.add_feed("lemonde", "https://www.lemonde.fr/rss/une.xml", actor=ACTOR)
    configstore.update_feed("lemonde", interval=3600, actor="bob")
    configstore.set_enabled("feed", "lemonde", False, actor="bob")
    assert not next(f for f in load_settings(ui=True).feeds if f.name == "lemonde").enabled
    configstore.set_enabled("feed", "lemonde", True, actor="bob")
    configstore.update_feed("lemonde", interval=None, language="fr", actor="bob")
    configstore.remove("feed", "lemonde", actor="carol")

    entries = configstore.audit_log()
    assert [(e.action, e.actor) for e in entries] == [
        ("remove", "carol"), ("update", "bob"), ("enable", "bob"), ("disable", "bob"), ("update", "bob"),
        ("add", ACTOR)]
    assert sorted(entries[1].changes()) == ["interval: 3600 -> null", "language: null -> fr"]
    assert entries[4].changes() == ["interval: null -> 3600"]
    assert entries[0].after is None and entries[0].before["name"] == "lemonde"
    assert [f.name for f in load_settings(ui=True).feeds] == ["wire"]
    assert [e.name for e in configstore.audit_log(kind="feed", name="lemonde", limit=2)] == ["lemonde"] * 2
    # An update that changes nothing is not a change.
    configstore.add_feed("x", "https://example.org/x", actor=ACTOR)
    configstore.update_feed("x", url="https://example.org/x", actor=ACTOR)
    assert configstore.audit_log(limit=1)[0].action == "add"


def test_items_of_the_file_are_read_only_and_their_names_taken(config, query):
    for change in (lambda: configstore.update_feed("wire", interval=600, actor=ACTOR),
                   lambda: configstore.set_enabled("feed", "wire", False, actor=ACTOR),
                   lambda: configstore.remove("feed", "wire", actor=ACTOR),
                   lambda: configstore.update_rule("syria-strikes", query="syria", actor=ACTOR),
                   lambda: configstore.remove("channel", "desk", actor=ACTOR)):
        with pytest.raises(FileManaged, match="declared in the config file: change it there"):
            change()
    with pytest.raises(NameTaken, match="'wire' is taken by the config file"):
        configstore.add_feed("wire", "https://example.org/other.xml", actor=ACTOR)
    configstore.add_feed("extra", "https://example.org/extra.xml", actor=ACTOR)
    with pytest.raises(NameTaken, match="added from the UI by alice"):
        configstore.add_feed("extra", "https://example.org/again.xml", actor="bob")
    with pytest.raises(NotFound, match="no feed named 'nothing'"):
        configstore.remove("feed", "nothing", actor=ACTOR)
    assert query("SELECT count(*) AS n FROM config_audit")[0]["n"] == 1  # refusals change nothing


def test_refusals_say_what_is_wrong_in_one_line(config):
    with pytest.raises(InvalidItem) as error:
        configstore.add_feed("bad", "ftp://example.org/feed", actor=ACTOR)
    assert str(error.value) == "feed 'bad': url: must be an http:// or https:// URL"
    assert error.value.field == "url" and error.value.reason == "invalid"

    with pytest.raises(InvalidItem) as error:
        configstore.add_feed("bad name!", "https://example.org/feed", interval=5, actor=ACTOR)
    assert str(error.value) == ("feed 'bad name!': name: a name holds letters, digits, spaces and _ . : - only, "
                                "and starts with a letter or digit (and 1 more)")
    assert error.value.problems[1] == "interval: Input should be greater than or equal to 60"

    with pytest.raises(InvalidItem) as error:
        configstore.add_rule("draft", "syria AND (strike", actor=ACTOR)
    assert error.value.field == "query" and error.value.position == 17
    assert str(error.value) == "rule 'draft': invalid query: col 17: expected ')' to close '(' at col 10"
    assert "\n" not in str(error.value)

    with pytest.raises(InvalidItem, match="unknown channel\\(s\\) 'nowhere'"):
        configstore.add_rule("r", "syria", channels=["nowhere"], actor=ACTOR)
    with pytest.raises(InvalidItem, match="channel 'c': url: no Apprise plugin can use foo://"):
        configstore.add_channel("c", url="foo://bar", actor=ACTOR)
    with pytest.raises(InvalidItem, match="give exactly one of url or connection"):
        configstore.add_channel("c", actor=ACTOR)
    with pytest.raises(InvalidItem, match="digest: give exactly one of every"):
        configstore.add_rule("r", "syria", digest={}, actor=ACTOR)
    with pytest.raises(configstore.ConfigRefused, match="needs an actor"):
        configstore.add_feed("ok", "https://example.org/ok", actor=" ")
    assert configstore.check_rule_query("a AND (b").position == 8
    assert configstore.check_rule_query("a AND b").ok


def test_rules_may_name_channels_of_both_sources(config):
    configstore.add_channel("ops", url="jsonl:///tmp/newswatch-test-ops.jsonl", actor=ACTOR)
    configstore.add_rule("quakes", "earthquake OR séisme", channels=["desk", "ops"],
                         digest={"every": "1h"}, actor=ACTOR)
    settings = load_settings(ui=True)
    rule = next(r for r in settings.rules if r.name == "quakes")
    assert rule.channels == ["desk", "ops"] and rule.digest.every == "1h"
    assert settings.source("rules", "quakes") == "ui" and settings.channel("ops").url.endswith("ops.jsonl")

    with pytest.raises(InUse, match="channel 'ops' is still used by rule 'quakes'"):
        configstore.remove("channel", "ops", actor=ACTOR)
    configstore.update_rule("quakes", channels=["desk"], digest=None, actor=ACTOR)
    configstore.remove("channel", "ops", actor=ACTOR)
    assert next(r for r in load_settings(ui=True).rules if r.name == "quakes").digest is None
    configstore.set_enabled("rule", "quakes", False, actor=ACTOR)
    assert not next(r for r in load_settings(ui=True).rules if r.name == "quakes").enabled


def test_a_name_the_file_declares_later_is_reported_and_the_file_wins(config, tmp_path, capsys):
    from newswatch.cli import main

    configstore.add_feed("lemonde", "https://www.lemonde.fr/rss/une.xml", actor=ACTOR)
    write_config(config, feeds=[{"name": "wire", "url": "https://example.org/wire.xml"},
                                {"name": "lemonde", "url": "https://example.org/le-monde-from-the-file.xml"}])
    settings = load_settings(ui=True)
    assert [(f.name, f.url) for f in settings.feeds] == [
        ("wire", "https://example.org/wire.xml"), ("lemonde", "https://example.org/le-monde-from-the-file.xml")]
    assert settings.source("feeds", "lemonde") == "file"
    [problem] = settings.ui_problems
    assert problem.startswith("feed 'lemonde' (added by alice on ")
    assert problem.endswith("has the name of a feed declared in the file: the file's is used and the UI one "
                            "ignored; remove or rename one of them")
    item = [i for i in configstore.list_items("feed") if i.name == "lemonde" and i.source == "ui"][0]
    assert item.problem == problem  # for the page

    assert main(["check-config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert "UI-managed part (database): 1 problem(s)" in err and problem in err
    configstore.remove("feed", "lemonde", actor=ACTOR)  # the UI copy of a conflict can still be removed
    assert main(["check-config", str(config)]) == 0


def test_a_ui_rule_whose_file_channel_is_gone_runs_with_the_others_and_is_reported(config):
    configstore.add_channel("ops", url="jsonl:///tmp/newswatch-test-ops.jsonl", actor=ACTOR)
    configstore.add_rule("quakes", "earthquake", channels=["desk", "ops"], actor=ACTOR)
    write_config(config, rules=[], channels=[])
    settings = load_settings(ui=True)
    assert next(r for r in settings.rules if r.name == "quakes").channels == ["ops"]
    assert settings.ui_problems == ["rule 'quakes' names channel(s) that do not exist: 'desk'; it alerts the "
                                    "others only"]


def test_rows_that_no_longer_pass_are_left_out_not_fatal(config, query):
    configstore.add_feed("lemonde", "https://www.lemonde.fr/rss/une.xml", actor=ACTOR)
    query("UPDATE ui_feeds SET url = 'gopher://nowhere'")  # by hand, behind the service's back
    settings = load_settings(ui=True)
    assert [f.name for f in settings.feeds] == ["wire"]
    assert settings.ui_problems[0].endswith("is left out: url: must be an http:// or https:// URL")


def test_channel_urls_and_secrets_never_leave_the_database_in_clear(config, query, capsys):
    token_url = "tgram://123456789:AAbbCCddEEffs3cr3t/987654"
    item = configstore.add_channel("telegram", url=token_url, actor=ACTOR)
    hook = configstore.add_channel("hook", url="webhook+https://hooks.example.org/in?token=s3cr3t",
                                   secret="hmac-s3cr3t", actor=ACTOR)
    assert "s3cr3t" not in repr(item) + repr(hook) + repr(item.public()) + repr(hook.public())
    assert hook.fields["secret"] == "…" and hook.fields["url"] == "webhook+https://hooks.example.org/in?…"
    stored = {row["name"]: row for row in query("SELECT name, url, secret FROM ui_channels")}
    assert stored["telegram"]["url"] == token_url and stored["hook"]["secret"] == "hmac-s3cr3t"  # needed to send
    assert "s3cr3t" not in repr(query("SELECT before, after FROM config_audit"))
    assert "s3cr3t" not in repr([i.public() for i in configstore.list_items("channel")])
    configstore.update_channel("hook", secret="new-s3cr3t", actor=ACTOR)
    assert configstore.audit_log(limit=1)[0].changes() == ["secret: … -> … (changed)"]  # said, never shown
    assert query("SELECT secret FROM ui_channels WHERE name = 'hook'")[0]["secret"] == "new-s3cr3t"

    exported = configstore.export_yaml()
    assert "s3cr3t" not in exported
    assert "${NEWSWATCH_CHANNEL_TELEGRAM_URL}" in exported and "NEWSWATCH_CHANNEL_HOOK_SECRET" in exported


def test_export_is_yaml_the_file_accepts(config, monkeypatch):
    configstore.add_feed("lemonde", "https://www.lemonde.fr/rss/une.xml", language="fr", actor=ACTOR)
    configstore.add_feed("paused", "https://example.org/paused.xml", enabled=False, actor=ACTOR)
    configstore.add_channel("ops", url="jsonl:///tmp/newswatch-test-ops.jsonl", actor=ACTOR)
    configstore.add_channel("hook", url="webhook+https://hooks.example.org/in", secret="s3", actor=ACTOR)
    configstore.add_rule("quakes", "earthquake", channels=["ops", "desk"], digest={"at": "08:00"},
                         updates=False, actor=ACTOR)
    exported = configstore.export_yaml()
    document = yaml.safe_load(exported)
    assert document["feeds"] == [{"name": "lemonde", "url": "https://www.lemonde.fr/rss/une.xml", "language": "fr"},
                                 {"name": "paused", "url": "https://example.org/paused.xml", "enabled": False}]
    assert document["rules"] == [{"name": "quakes", "query": "earthquake", "channels": ["ops", "desk"],
                                  "digest": {"at": "08:00", "timezone": "UTC"}, "updates": False}]
    assert document["channels"][0] == {"name": "ops", "url": "jsonl:///tmp/newswatch-test-ops.jsonl"}
    # Pasted into the file (with the file's own channel), it validates as the file would.
    monkeypatch.setenv("NEWSWATCH_CHANNEL_HOOK_SECRET", "s3")
    base = yaml.safe_load(config.read_text())
    merged = {**base, **{key: base.get(key, []) + value for key, value in document.items()}}
    settings = parse_settings(yaml.safe_dump(merged))
    assert {f.name for f in settings.feeds} == {"wire", "lemonde", "paused"}
    assert settings.channel("hook").secret == "s3"


def test_a_broken_file_is_reported_not_guessed_around(config):
    config.write_text("feeds: [{name: a, url: 'gopher://x'}]\n")
    with pytest.raises(ConfigError):
        configstore.add_feed("b", "https://example.org/b", actor=ACTOR)
    with pytest.raises(ConfigError):
        load_settings(ui=True)


def test_the_poller_polls_feeds_added_from_the_ui(config, site, query):
    from newswatch.pipeline import prepare
    from tests.scenario import rss

    site.routes["/ui.xml"] = rss("UI feed", [{"title": "Hello", "link": site.url("/a")}])
    configstore.add_feed("from-ui", site.url("/ui.xml"), actor=ACTOR)
    configstore.add_feed("paused", site.url("/paused.xml"), enabled=False, actor=ACTOR)
    prepare(load_settings(ui=True))
    rows = {row["name"]: row["enabled"] for row in query("SELECT name, enabled FROM feeds")}
    assert rows == {"wire": True, "from-ui": True, "paused": False}
    configstore.remove("feed", "from-ui", actor=ACTOR)
    prepare(load_settings(ui=True))
    assert query("SELECT enabled FROM feeds WHERE name = 'from-ui'")[0]["enabled"] is False  # history kept


def test_test_channel_sends_through_the_delivery_code(config, webhook):
    configstore.add_channel("hook", url=f"webhook+http://127.0.0.1:{webhook.server_address[1]}/in",
                            secret="s3", actor=ACTOR)
    outcome = configstore.test_channel("hook")
    assert outcome.ok and outcome.message == (f"hook: test message accepted by webhook+http://127.0.0.1:"
                                              f"{webhook.server_address[1]}/in")
    [payload] = webhook.received
    assert payload["type"] == "test" and payload["channel"] == "hook"

    webhook.status = 503
    outcome = configstore.test_channel("hook")
    assert not outcome.ok and outcome.kind == "http_error" and "answered HTTP 503" in outcome.message
    with pytest.raises(NotFound):
        configstore.test_channel("nothing")


def test_a_rule_preview_counts_matches_per_language(config, query):
    story = query("INSERT INTO stories (title) VALUES ('Strikes') RETURNING id")[0]["id"]
    for n, (title, language) in enumerate([("US air strike in Syria", "en"), ("Frappe aérienne en Syrie", "fr"),
                                           ("Football results", "en"), ("Old strike in Syria", "en")]):
        query("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash, "
              "story_id, fetched_at) VALUES (%s, %s, %s, '', %s, 'wire', 'test', %s, %s, "
              "now() - make_interval(days => %s))",
              (f"https://e.org/{n}", f"https://e.org/{n}", title, language, str(n), story, 40 if n == 3 else 0))
    preview = configstore.preview_rule("(syria OR syrie) AND (strike OR frappe*)", days=7)
    assert (preview.scanned, preview.matched_articles, preview.matched_stories) == (3, 2, 1)
    assert preview.by_language == {"en": 1, "fr": 1}
    assert preview.stories[0]["languages"] == ["en", "fr"] and preview.stories[0]["articles"] == 2
    assert configstore.preview_rule("syria", language="fr").by_language == {}
    with pytest.raises(InvalidItem) as error:
        configstore.preview_rule("syria AND (")
    assert error.value.position == 11 and error.value.field == "query"
