"""Config loading: the shipped file is valid, and every mistake gets one clear line with its key."""

from __future__ import annotations

import pytest

from newswatch.cli import main
from newswatch.config import ConfigError, load_settings, parse_settings
from tests.conftest import ROOT


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_settings(text)
    return error.value.problems


def test_shipped_config_is_valid():
    settings = load_settings(ROOT / "config" / "newswatch.yaml")
    assert len(settings.enabled_feeds) >= 12
    assert {feed.language for feed in settings.feeds} >= {"en", "fr", "de"}
    rule = next(rule for rule in settings.rules if rule.name == "syria-strikes")
    assert rule.channels and all(settings.channel(name) for name in rule.channels)
    assert settings.network.allow_networks == []


def test_each_problem_is_reported_with_its_location():
    problems = problems_of("""
feeds:
  - {name: a, url: "ftp://example.org/feed"}
  - {name: a, url: "https://example.org/rss", colour: blue}
rules:
  - {name: r1, query: "syria AND (strike", channels: [nowhere]}
channels:
  - {name: hook, url: "not a url"}
network:
  allow_networks: ["10.0.0.0/33"]
""")
    assert "feeds[0].url: must be an http:// or https:// URL" in problems
    assert "feeds[1].colour: unknown key" in problems
    assert any(p.startswith("rules[0].query: invalid query: col 17") for p in problems), problems
    assert any(p.startswith("channels[0].url: must be an Apprise URL") for p in problems)
    assert any(p.startswith("network.allow_networks: '10.0.0.0/33' is not a CIDR") for p in problems)
    assert len(problems) == 5


def test_cross_reference_problems():
    problems = problems_of("""
feeds:
  - {name: a, url: "https://example.org/1"}
  - {name: a, url: "https://example.org/2"}
rules:
  - {name: r, query: syria, channels: [missing]}
""")
    assert problems == ["feeds[1].name: duplicate name 'a'", "rules[0].channels: unknown channel 'missing'"]


def test_environment_interpolation(monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    settings = parse_settings("""
channels:
  - {name: hook, url: "json://127.0.0.1/hook?token=${HOOK_TOKEN}"}
  - {name: mail, url: "mailto://${SMTP_HOST:-127.0.0.1}"}
""")
    assert settings.channel("hook").url == "json://127.0.0.1/hook?token=s3cret"
    assert settings.channel("mail").url == "mailto://127.0.0.1"
    monkeypatch.delenv("HOOK_TOKEN")
    assert problems_of('channels: [{name: hook, url: "json://h/${HOOK_TOKEN}"}]') == [
        "channels[0].url: environment variable HOOK_TOKEN is not set"]


@pytest.mark.parametrize(("text", "expected"), [
    ("feeds: [", "not valid YAML"),
    ("- just\n- a list", "the top level must be a mapping"),
    ("feeds: {name: a}", "feeds: Input should be a valid list"),
])
def test_malformed_documents(text, expected):
    problems = problems_of(text)
    assert len(problems) == 1 and expected in problems[0]


def test_check_config_command(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("feeds: [{name: a, url: 'https://example.org/rss'}]\n")
    assert main(["check-config", str(good)]) == 0
    assert "OK (1 enabled feeds" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("feeds: [{name: a, url: 'gopher://x'}]\nrules: [{name: r, query: 'a OR'}]\n")
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "feeds[0].url: must be an http:// or https:// URL" in err
    assert "rules[0].query: invalid query" in err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err
