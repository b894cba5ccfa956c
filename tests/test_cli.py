"""The CLI around the archive: rules test, listings in table and JSON form, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import psycopg2
import pytest
import yaml

from newswatch import db
from newswatch.cli import main
from newswatch.config import load_settings
from newswatch.pipeline import run_cycle
from tests.conftest import ROOT
from tests.scenario import seed_config, serve_seed_sites
from tests.servers import Route


def test_rules_test_on_the_archive(tmp_path, site, webhook, smtp, query, capsys):
    serve_seed_sites(site)
    config = seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)
    run_cycle(load_settings(config))
    capsys.readouterr()

    assert main(["rules", "test", "syria-strikes", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "rule 'syria-strikes': 1 stories (2 articles) matched among 2 articles" in out
    assert "Contre-attaque" in out

    assert main(["rules", "test", "football OR soccer", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["rules", "test", "syrie AND (frappe", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "invalid query" in err and "^" in err


def test_listings_as_json(tmp_path, site, webhook, smtp, query, capsys):
    serve_seed_sites(site)
    run_cycle(load_settings(seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)))
    capsys.readouterr()
    assert main(["stories", "--json"]) == 0
    stories = json.loads(capsys.readouterr().out)
    assert len(stories) == 1 and stories[0]["articles"] == 2 and stories[0]["languages"] == ["fr"]
    assert main(["alerts", "--json"]) == 0
    alerts = json.loads(capsys.readouterr().out)
    assert sorted(alert["channel"] for alert in alerts) == ["email", "webhook"]
    assert {alert["status"] for alert in alerts} == {"sent"}
    assert main(["alerts"]) == 0
    assert "syria-strikes" in capsys.readouterr().out


@pytest.mark.slow  # a `newswatch poll` subprocess drill
def test_poll_ends_with_one_line_when_postgresql_stops_mid_cycle(tmp_path, site):
    """PostgreSQL stops while ``newswatch poll`` waits on a feed: one line on stderr and the documented exit code."""
    server_dir = tmp_path / "own-postgres"
    url = db.start_embedded(server_dir)
    db.migrate(url)
    db.close_pools(url)
    fetched, release = threading.Event(), threading.Event()

    def slow_feed(request):
        fetched.set()
        release.wait(120)
        return Route(200, b"<rss version='2.0'><channel><title>t</title></channel></rss>",
                     {"Content-Type": "application/rss+xml"})

    site.routes["/feed.xml"] = slow_feed
    config = tmp_path / "newswatch.yaml"
    config.write_text(yaml.safe_dump({
        "feeds": [{"name": "wire", "url": site.url("/feed.xml")}],
        "network": {"allow_networks": ["127.0.0.1/32"]},
        "polling": {"worker_processes": 1},
    }))
    env = {**os.environ, "NEWSWATCH_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "plugins")}
    process = subprocess.Popen([sys.executable, "-m", "newswatch.cli", "poll", "--config", str(config)],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert fetched.wait(300), "newswatch poll never fetched the feed"
        assert db.stop_embedded(server_dir)
        release.set()
        out, err = process.communicate(timeout=300)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
            process.communicate()
        db.stop_embedded(server_dir)
    assert process.returncode == 3, (process.returncode, err[-3000:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-3000:]
    assert err.startswith("newswatch: the database is unavailable: "), err

    # Still stopped when the next run starts: the same line, the same code, and no feed is fetched.
    fetched.clear()
    again = subprocess.run([sys.executable, "-m", "newswatch.cli", "poll", "--config", str(config)], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 3 and not fetched.is_set()
    assert again.stderr.startswith("newswatch: the database is unavailable: ") and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr[-3000:]


@pytest.mark.slow  # a `newswatch poll` subprocess drill
def test_postgresql_stopped_mid_ingest_then_restarted_loses_no_article(tmp_path, site):
    """Drill: PostgreSQL stops while ``newswatch poll`` fetches article pages, then comes back. The run ends
    with exit code 3; the next one, once the dead run's leases have run out, stores every article once."""
    from tests.scenario import article_page, rss

    server_dir = tmp_path / "own-postgres"
    url = db.start_embedded(server_dir)
    html = {"Content-Type": "text/html; charset=utf-8"}
    stopped, release = threading.Event(), threading.Event()
    held = threading.Event()

    def held_page(request):
        held.set()
        release.wait(120)  # the database stops meanwhile
        return Route(200, article_page("Harbour reopens after the storm", _PARAGRAPHS, "en"), html)

    items = []
    for number in range(4):
        path = f"/news/{number}"
        site.routes[path] = held_page if number == 2 else Route(
            200, article_page(f"Council report {number}: the ferry line and the bridge", _PARAGRAPHS, "en"), html)
        items.append({"title": f"Report {number}", "link": site.url(path)})
    site.routes["/feed.xml"] = Route(200, rss("wire", items), {"Content-Type": "application/rss+xml"})
    config = tmp_path / "newswatch.yaml"
    # Deadlines far above how long stopping PostgreSQL may take on a busy machine: the held page must still be
    # in flight when the database is gone (a cut fetch would let the run finish before the stop).
    config.write_text(yaml.safe_dump({"feeds": [{"name": "wire", "url": site.url("/feed.xml")}],
                                      "network": {"allow_networks": ["127.0.0.1/32"], "read_timeout": 150,
                                                  "total_timeout": 300},
                                      "polling": {"worker_processes": 1, "article_workers": 1}}))
    env = {**os.environ, "NEWSWATCH_DATABASE_URL": url, "PYTHONPATH": str(ROOT / "plugins")}
    command = [sys.executable, "-m", "newswatch.cli", "poll", "--config", str(config)]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert held.wait(300), "newswatch poll never reached the held page"
        assert db.stop_embedded(server_dir)
        stopped.set()
        release.set()
        _, err = process.communicate(timeout=300)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 3 and "Traceback" not in err, (process.returncode, err[-3000:])

    try:
        url = db.start_embedded(server_dir)  # PostgreSQL is back
        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM articles")
            before = cur.fetchone()[0]
            cur.execute("UPDATE feed_entries SET lease_until = now() - interval '1 second' "
                        "WHERE lease_until IS NOT NULL")  # the dead run's leases run out
        again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        with conn.cursor() as cur:
            cur.execute("SELECT url FROM articles ORDER BY url")
            stored = [row[0] for row in cur.fetchall()]
            cur.execute("SELECT status, count(*) FROM feed_entries GROUP BY status")
            statuses = dict(cur.fetchall())
        conn.close()
    finally:
        db.close_pools(url)
        db.stop_embedded(server_dir)
    assert before < 4  # the stop came mid-ingest
    assert stored == sorted(site.url(f"/news/{number}") for number in range(4))  # all four, once each
    assert statuses == {"done": 4}


_PARAGRAPHS = "\n\n".join(f"Paragraph {n}: the council of Velmora met on Tuesday to discuss the harbour budget, the "
                           "ferry line and the repairs of the old bridge, officials said." for n in range(6))


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for code in ("0", "1", "2", "3"):
        assert f"\n  {code}  " in out, out


@pytest.mark.parametrize("argv", [["feeds"], ["stories", "--json"], ["alerts"], ["search", "syrie"], ["migrate"],
                                  ["poll"], ["rules", "test", "syrie"]])
def test_every_database_command_ends_with_one_line_and_exit_3_when_postgresql_is_unreachable(
        argv, tmp_path, monkeypatch, capsys):
    """Nothing listens where the database should be: each command says so in one line, with the documented
    exit code, and no traceback."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("NEWSWATCH_DATABASE_URL", f"postgresql://news@127.0.0.1:{port}/news?connect_timeout=5")
    config = tmp_path / "newswatch.yaml"
    config.write_text("rules: [{name: syria, query: syrie}]\n", encoding="utf-8")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(config))
    capsys.readouterr()
    assert main(argv) == 3
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("newswatch: the database is unavailable: "), captured.err
    assert "Traceback" not in captured.err + captured.out


# --- the configuration added from the UI, from the command line ---------------------------------------------------


@pytest.fixture
def file_config(tmp_path, database_url, monkeypatch):
    from tests.test_configstore import write_config

    path = write_config(tmp_path / "newswatch.yaml")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(path))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_feeds_add_by_a_site_url_list_disable_remove(file_config, site, capsys):
    from tests.scenario import rss

    site.routes["/"] = Route(200, b'<html><head><link rel="alternate" type="application/rss+xml" title="News" '
                                  b'href="/news.xml"></head><body></body></html>', {"Content-Type": "text/html"})
    site.routes["/news.xml"] = Route(200, rss("Velmora Gazette", [
        {"title": "Harbour budget passed", "link": site.url("/1")}]), {"Content-Type": "application/rss+xml"})
    code, out, err = run(capsys, "feeds", "add", site.url("/"), "--language", "en")
    assert code == 0, err
    assert f"{site.url('/news.xml')} (found on {site.url('/')}): Velmora Gazette, 1 entries shown" in out
    assert "Harbour budget passed" in out and "added feed 'Velmora Gazette'" in out

    code, out, _ = run(capsys, "feeds", "list", "--json")
    feeds = {feed["name"]: feed for feed in json.loads(out)}
    assert feeds["wire"]["source"] == "file" and not feeds["wire"]["editable"]
    assert feeds["Velmora Gazette"]["source"] == "ui" and feeds["Velmora Gazette"]["language"] == "en"
    assert feeds["Velmora Gazette"]["created_by"].endswith("(cli)")

    assert run(capsys, "feeds", "disable", "Velmora Gazette")[:2] == (0, "feed 'Velmora Gazette' disabled\n")
    assert run(capsys, "feeds", "edit", "Velmora Gazette", "--interval", "900")[0] == 0
    code, out, _ = run(capsys, "feeds", "list")
    assert "Velmora Gazette" in out and "ui" in out and "900" in out
    assert run(capsys, "feeds", "remove", "Velmora Gazette")[1] == ("removed feed 'Velmora Gazette' (its articles "
                                                                   "and history stay)\n")
    assert run(capsys, "feeds", "--json")[0] == 0  # feed health, as before


def test_feeds_of_the_file_and_bad_input_are_refused_in_one_line(file_config, site, capsys):
    for argv, message in (
        (["feeds", "remove", "wire"], "newswatch: feed 'wire' is declared in the config file: change it there"),
        (["feeds", "disable", "wire"], "newswatch: feed 'wire' is declared in the config file"),
        (["feeds", "add", "https://example.org/x.xml", "--name", "wire", "--no-check"],
         "newswatch: feed name 'wire' is taken by the config file"),
        (["feeds", "add", "gopher://example.org/x", "--no-check", "--name", "g"],
         "newswatch: feed 'g': url: must be an http:// or https:// URL"),
        (["feeds", "add", site.url("/nothing.xml")],
         f"newswatch: {site.url('/nothing.xml')}: http_error: HTTP 404 (add it anyway with --no-check)"),
        (["feeds", "remove", "nothing"], "newswatch: no feed named 'nothing' was added from the UI"),
        (["rules", "remove", "syria-strikes"], "newswatch: rule 'syria-strikes' is declared in the config file"),
        (["channels", "remove", "desk"], "newswatch: channel 'desk' is declared in the config file"),
    ):
        code, out, err = run(capsys, *argv)
        assert code == 2 and err.startswith(message), (argv, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1, err


def test_opml_import_and_export_from_the_command_line(file_config, tmp_path, capsys):
    from tests.conftest import FIXTURES

    code, out, err = run(capsys, "feeds", "import-opml", str(FIXTURES / "opml" / "feedly.opml"))
    assert code == 0, err
    assert "#6 Reuters World News [Must read]: skipped: same feed as outline #2 (Reuters World News)" in out
    assert out.splitlines()[-1] == "feedly.opml: 4 added, 1 skipped, 0 refused (of 5 outlines)"
    exported = tmp_path / "out.opml"
    assert run(capsys, "feeds", "export-opml", str(exported), "--source", "ui")[2] == f"wrote 4 feeds to {exported}\n"
    assert exported.read_bytes().count(b"<outline ") == 4
    code, out, _ = run(capsys, "feeds", "export-opml")
    assert out.count("<outline ") == 5  # the file's feed too

    hostile = tmp_path / "xxe.opml"
    hostile.write_text('<!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]><opml><body/></opml>')
    code, _, err = run(capsys, "feeds", "import-opml", str(hostile))
    assert (code, err) == (2, f"newswatch: {hostile}: the file declares a DOCTYPE or entities (refused for safety: "
                                "OPML needs neither)\n")
    code, _, err = run(capsys, "feeds", "import-opml", str(tmp_path / "missing.opml"))
    assert code == 2 and "No such file or directory" in err and len(err.splitlines()) == 1


def test_rules_and_channels_from_the_command_line(file_config, webhook, capsys, monkeypatch):
    import io

    code, _, err = run(capsys, "rules", "add", "quakes", "earthquake AND (damage", "--channel", "desk")
    assert code == 2
    assert err.splitlines() == ["newswatch: rule 'quakes': invalid query: col 22: expected ')' to close '(' at col 15",
                                "  earthquake AND (damage", "                        ^"]
    code, out, err = run(capsys, "rules", "add", "quakes", "earthquake AND damage", "--channel", "nowhere")
    assert code == 2 and err == "newswatch: rule 'quakes': unknown channel(s) 'nowhere'\n"

    hook = f"webhook+http://127.0.0.1:{webhook.server_address[1]}/in?token=s3cr3t"
    monkeypatch.setattr("sys.stdin", io.StringIO(hook + "\n"))
    monkeypatch.setenv("HOOK_KEY", "hmac-s3cr3t")
    code, out, err = run(capsys, "channels", "add", "hook", "-", "--secret-env", "HOOK_KEY")
    assert code == 0, err
    assert out == f"added channel 'hook': webhook+http://127.0.0.1:{webhook.server_address[1]}/in?…\n"
    assert run(capsys, "rules", "add", "quakes", "earthquake AND damage", "--channel", "hook", "--digest-every",
               "1h")[1] == "added rule 'quakes' alerting hook\n"
    code, out, _ = run(capsys, "rules", "list", "--json")
    assert [(r["name"], r["source"], r["channels"]) for r in json.loads(out)] == [
        ("syria-strikes", "file", ["desk"]), ("quakes", "ui", ["hook"])]
    assert run(capsys, "rules", "disable", "quakes")[0] == 0

    code, out, _ = run(capsys, "channels", "test", "hook")
    assert code == 0 and out.startswith("hook: test message accepted by webhook+http://127.0.0.1:")
    assert webhook.received[-1]["type"] == "test"
    webhook.status = 500
    code, out, err = run(capsys, "channels", "test", "hook")
    assert code == 1 and err.startswith("hook: http_error: ") and "answered HTTP 500" in err

    code, out, err = run(capsys, "channels", "remove", "hook")
    assert code == 2 and err == "newswatch: channel 'hook' is still used by rule 'quakes': remove it from them first\n"

    code, out, _ = run(capsys, "config", "export")
    assert "name: quakes" in out and "${NEWSWATCH_CHANNEL_HOOK_URL}" in out and "s3cr3t" not in out
    code, out, _ = run(capsys, "config", "audit")
    lines = out.splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "ACTION", "KIND", "NAME", "CHANGES"]
    assert [line.split()[4:6] for line in lines[1:]] == [["disable", "rule"], ["add", "rule"], ["add", "channel"]]
    code, out, _ = run(capsys, "config", "audit", "--json", "--kind", "channel")
    [entry] = json.loads(out)
    assert entry["after"]["url"].endswith("/in?…") and entry["after"]["secret"] == "…"
    everything = json.dumps([json.loads(run(capsys, *argv)[1]) for argv in (
        ["channels", "list", "--json"], ["config", "audit", "--json"])])
    assert "s3cr3t" not in everything
