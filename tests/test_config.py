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
  - {name: mail, url: "mailto://${SMTP_HOST:-127.0.0.1}?from=nw@example.org"}
""")
    assert settings.channel("hook").url == "json://127.0.0.1/hook?token=s3cret"
    assert settings.channel("mail").url == "mailto://127.0.0.1?from=nw@example.org"
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


# --- channels no Apprise plugin can use, networks that admit everything, ports out of range ---------------


def test_channel_urls_apprise_cannot_use_are_refused(tmp_path, capsys):
    problems = problems_of("""
channels:
  - {name: unknown-scheme, url: "foo://bar"}
  - {name: slack-without-tokens, url: "slack://"}
  - {name: hook, url: "json://127.0.0.1:8080/hook"}
  - {name: file, url: "jsonl:///tmp/alerts.jsonl"}
  - {name: signed, url: "webhook+https://hooks.example.org/in", secret: k}
polling:
  operator_channels: ["hook", "tgram://"]
""")
    assert [p.split(":")[0] for p in problems] == ["channels[0].url", "channels[1].url", "polling.operator_channels"]
    assert all("Apprise" in p for p in problems), problems
    assert "foo://…" in problems[0] and "slack://…" in problems[1] and "tgram://…" in problems[2]

    config = tmp_path / "channels.yaml"
    config.write_text('channels: [{name: ops, url: "foo://bar"}]\n')
    assert main(["check-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "1 problem(s)" in err and "channels[0].url" in err and "Traceback" not in err


def test_ports_out_of_range_are_refused():
    problems = problems_of("""
feeds:
  - {name: a, url: "https://example.org:70000/rss"}
  - {name: b, url: "https://example.org:0/rss"}
channels:
  - {name: hook, url: "json://127.0.0.1:99999/hook"}
  - {name: signed, url: "webhook+https://hooks.example.org:123456/in"}
""")
    assert [p.split(":")[0] for p in problems] == ["feeds[0].url", "feeds[1].url", "channels[0].url",
                                                   "channels[1].url"]
    assert all("port" in p and "1-65535" in p for p in problems), problems


def test_an_apprise_token_after_the_hosts_colon_is_not_a_port():
    """A Telegram bot token is ``<bot id>:<secret>``: ``tgram://123456789:AAbb…/chat`` is a valid Apprise URL."""
    settings = parse_settings('channels: [{name: telegram, url: "tgram://123456789:AAbbCCddEEff/987654"}]')
    assert settings.channel("telegram").url.startswith("tgram://123456789:")
    assert problems_of('channels: [{name: t, url: "tgram://123456789:70000/987654"}]')[0].startswith(
        "channels[0].url: port '70000' is out of range")


def test_networks_that_admit_every_address_are_warned_about(tmp_path, capsys):
    from newswatch.config import config_warnings

    settings = parse_settings('network: {allow_networks: ["127.0.0.1/32", "0.0.0.0/0", "::/0"]}')
    warnings = config_warnings(settings)
    assert len(warnings) == 2 and all(w.startswith("network.allow_networks:") for w in warnings)
    assert "'0.0.0.0/0'" in warnings[0] and "'::/0'" in warnings[1]
    assert config_warnings(parse_settings('network: {allow_networks: ["127.0.0.1/32"]}')) == []

    config = tmp_path / "open.yaml"
    config.write_text('network: {allow_networks: ["0.0.0.0/0"]}\n')
    assert main(["check-config", str(config)]) == 0  # allowed, but said out loud
    captured = capsys.readouterr()
    assert "OK" in captured.out and "warning: network.allow_networks: '0.0.0.0/0'" in captured.err


# --- hostile files: one line each, never a traceback -------------------------------------------------------


HOSTILE_FILES = {
    "not-utf8": ("feeds: [{name: caf\xe9, url: 'https://example.org/rss'}]\n".encode("latin-1"), "not UTF-8"),
    "deep-rule": (("rules: [{name: r, query: '" + "(" * 3000 + "syria" + ")" * 3000 + "'}]\n").encode(),
                  "rules[0].query: invalid query"),
    "deep-not": (("rules: [{name: r, query: '" + "NOT " * 3000 + "syria'}]\n").encode(),
                 "rules[0].query: invalid query"),
    "deep-yaml": (("rules: " + "[" * 3000 + "]" * 3000 + "\n").encode(), "nested more than"),
    "recursive-alias": (b"feeds: &loop [*loop]\n", "contains itself through an alias"),
    "recursive-mapping": (b"network: &net {user_agent: x, extra: *net}\n", "contains itself through an alias"),
    "alias-bomb": (("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
                              for i in range(5))).encode(), "aliases"),
    "duplicate-top-level": (b"feeds: [{name: a, url: 'https://a.example/rss'}]\nrules: []\n"
                            b"feeds: [{name: b, url: 'https://b.example/rss'}]\n",
                            "line 3: duplicate key 'feeds' (first at line 1)"),
    "duplicate-nested": (b"network:\n  user_agent: a\n  user_agent: b\n",
                         "line 3: duplicate key 'user_agent' (first at line 2)"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_files_give_one_line_each(case, tmp_path, capsys):
    content, expected = HOSTILE_FILES[case]
    config = tmp_path / f"{case}.yaml"
    config.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert len(error.value.problems) == 1 and expected in error.value.problems[0], error.value.problems
    assert main(["check-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "1 problem(s)" in err and expected in err and "Traceback" not in err


def test_merge_keys_are_not_duplicates():
    settings = parse_settings("""
feeds:
  - &base {name: a, url: "https://a.example/rss", language: fr}
  - {<<: *base, name: b, url: "https://b.example/rss"}
""")
    assert [(feed.name, feed.language) for feed in settings.feeds] == [("a", "fr"), ("b", "fr")]


def test_hostile_files_fail_the_dag_task_once(tmp_path, monkeypatch):
    """The DAG turns these into the same config failure as any other mistake: failed at once, not retried."""
    import runpy

    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    settings_of = runpy.run_path(str(ROOT / "dags" / "newswatch_poll.py"))["_settings"]
    for case in ("not-utf8", "deep-rule", "recursive-alias", "duplicate-top-level"):
        config = tmp_path / f"{case}.yaml"
        config.write_bytes(HOSTILE_FILES[case][0])
        monkeypatch.setenv("NEWSWATCH_CONFIG", str(config))
        with pytest.raises(AirflowFailException, match="invalid configuration"):
            settings_of()
        with pytest.raises(AirflowSkipException):
            settings_of(skip_when_invalid=True)
