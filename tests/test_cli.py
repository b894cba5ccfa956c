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
    config.write_text(yaml.safe_dump({"feeds": [{"name": "wire", "url": site.url("/feed.xml")}],
                                      "network": {"allow_networks": ["127.0.0.1/32"]},
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
