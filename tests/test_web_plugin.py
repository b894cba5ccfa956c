"""The Airflow plugin: registered with its nav item, its pages rendered safely, served behind login.

The page tests run the FastAPI app in-process (Airflow's auth dependency satisfied by an override) for
speed; ``api_server`` starts a real ``airflow api-server`` to check what is and is not behind login.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.servers import free_port, stop_process_group

PASSWORD = "s3cret-test"


@pytest.mark.slow  # `airflow plugins` in a subprocess
def test_plugin_is_registered_with_a_nav_item(airflow_db):
    result = subprocess.run([sys.executable, "-m", "airflow", "plugins", "-o", "json"],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    plugins = json.loads(result.stdout[result.stdout.index("["):])
    plugin = next(p for p in plugins if p["name"] == "newswatch")
    assert "newswatch" in json.dumps(plugin["external_views"])
    assert "/newswatch" in json.dumps(plugin["fastapi_apps"])


@contextmanager
def running_api_server(workdir: Path, database_url: str, password: str = PASSWORD, *,
                       users: dict[str, tuple[str, str]] | None = None, extra_plugins: dict[str, str] | None = None):
    """A real ``airflow api-server`` on a free loopback port; yields its URL.

    Its users are admin / ``password``, or ``users`` ({name: (SimpleAuthManager role, password)}).
    ``extra_plugins`` ({file name: source}) are loaded next to the newswatch plugin (they may import ``tests``).
    """
    port = free_port()
    users = users or {"admin": ("admin", password)}
    passwords = workdir / "passwords.json"
    passwords.write_text(json.dumps({name: secret for name, (_, secret) in users.items()}))
    env = os.environ.copy()
    env.update(
        NEWSWATCH_DATABASE_URL=database_url,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{name}:{role}" for name, (role, _) in users.items()),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
    )
    if extra_plugins:
        plugins = workdir / "plugins"
        plugins.mkdir()
        (plugins / "newswatch_plugin.py").write_text((ROOT / "plugins" / "newswatch_plugin.py").read_text())
        for name, source in extra_plugins.items():
            (plugins / name).write_text(source)
        env.update(AIRFLOW__CORE__PLUGINS_FOLDER=str(plugins),
                   PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]))
    log_path = workdir / "api-server.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "-p", str(port), "-H", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail("api-server exited:\n" + log_path.read_text()[-3000:])
            try:
                if requests.get(base + "/newswatch/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("api-server did not start:\n" + log_path.read_text()[-3000:])
        yield base
    finally:
        stop_process_group(process, timeout=30)
        log.close()


@pytest.fixture
def api_server(airflow_db, tmp_path, database_url):
    with running_api_server(tmp_path, database_url) as base:
        yield base


def seed_newsroom(query) -> dict[str, int]:
    """Two stories (one with hostile text), articles, alerts with delivery attempts, feeds, a poll run."""
    now = datetime.now(UTC)
    feeds = {}
    for name, url, failures, kind in (("journal-du-monde", "https://jdm.example/rss", 0, None),
                                      ("info-express", "https://ie.example/rss", 0, None),
                                      ("broken", "http://127.0.0.1:9/feed", 3, "http_error"),
                                      ("evil", "javascript:alert(1)", 1, "not_a_feed")):
        feeds[name] = query(
            "INSERT INTO feeds (name, url, consecutive_failures, last_error_kind, last_error, last_success_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (name, url, failures, kind, "<img src=x onerror=alert(2)>" if kind else None,
             None if failures else now))[0]["id"]
    query("INSERT INTO stories (id, title, article_count, languages, feeds, first_seen_at, last_seen_at) VALUES "
          "(7, 'Frappes en Syrie <script>alert(1)</script>', 2, '{fr}', '{journal-du-monde,info-express}', "
          "%s, %s), (8, 'Grève des cheminots', 1, '{fr}', '{info-express}', %s, %s)",
          (now - timedelta(hours=3), now - timedelta(hours=1), now - timedelta(hours=5), now - timedelta(hours=4)))
    articles = {}
    for key, story, feed, url, title, reason, score, of in (
        ("a1", 7, "journal-du-monde", "https://jdm.example/syrie", "Une frappe américaine en Syrie", "new_story",
         None, None),
        ("a2", 7, "info-express", "javascript:alert(3)", "Frappe en Syrie <b>bold</b>", "near_duplicate", 0.82,
         "a1"),
        ("a3", 8, "info-express", "https://ie.example/greve", "Grève des cheminots jeudi", "new_story", None, None),
    ):
        articles[key] = query(
            """
            INSERT INTO articles (url, canonical_url, title, body, language, feed, feed_id, extraction, content_hash,
                                  story_id, dedup_reason, dedup_score, dedup_of, fetched_at)
            VALUES (%(url)s, %(url)s, %(title)s, %(body)s, 'fr', %(feed)s, %(feed_id)s, 'trafilatura', %(key)s,
                    %(story)s, %(reason)s, %(score)s, %(of)s, %(at)s) RETURNING id
            """,
            {"url": url, "title": title, "body": f"{title}. Une frappe aérienne <img src=x onerror=alert(4)> a visé "
             "un dépôt de munitions près de Deir ez-Zor.", "feed": feed, "feed_id": feeds[feed], "key": key,
             "story": story, "reason": reason, "score": score, "of": articles.get(of) if of else None,
             "at": now - timedelta(hours=2)},
        )[0]["id"]
    query("UPDATE stories SET representative_article = %s WHERE id = 7", (articles["a1"],))
    alerts = {}
    for key, channel, status, attempts, error in (("sent", "webhook", "sent", 1, None),
                                                  ("failed", "email", "failed", 3, "SMTP said <no>")):
        alerts[key] = query(
            "INSERT INTO alerts (rule, story_id, article_id, channel, status, attempts, last_error, idempotency_key,"
            " sent_at) VALUES ('syria-strikes', 7, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (articles["a1"], channel, status, attempts, error, f"k-{key}", now if status == "sent" else None),
        )[0]["id"]
    for outcome, error in (("failed", "connection refused"), ("failed", "timeout"), ("failed", "SMTP said <no>")):
        query("INSERT INTO delivery_attempts (alert_id, channel, outcome, error, duration_ms) "
              "VALUES (%s, 'email', %s, %s, 40)", (alerts["failed"], outcome, error))
    query("INSERT INTO delivery_attempts (alert_id, channel, outcome, duration_ms) VALUES (%s, 'webhook', 'sent', 12)",
          (alerts["sent"],))
    query("INSERT INTO feed_polls (feed_id, outcome, error_kind) VALUES (%s, 'error', 'http_error')",
          (feeds["broken"],))
    query("INSERT INTO poll_runs (run_key, started_at, finished_at, feeds_polled, feeds_failed, new_articles, "
          "new_stories, alerts_sent, alerts_failed) VALUES ('r1', %s, %s, 4, 2, 3, 2, 1, 1)",
          (now - timedelta(minutes=5, seconds=30), now - timedelta(minutes=5)))
    return {**{f"article_{k}": v for k, v in articles.items()}, **{f"alert_{k}": v for k, v in alerts.items()},
            **{f"feed_{k}": v for k, v in feeds.items()}}


@pytest.fixture
def client(database_url):
    from fastapi.testclient import TestClient

    from newswatch.web import app as web

    web.app.dependency_overrides[web._AUTH[0].dependency] = lambda: None
    try:
        yield TestClient(web.app)
    finally:
        web.app.dependency_overrides.clear()


def _no_unsafe_markup(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), "inline event handler in markup"
    assert not re.search(r"<[^>]+\s(src|srcset|background)\s*=", html), "nothing may be loaded by the page"
    assert 'href="javascript' not in html.lower() and "href='javascript" not in html.lower()


def test_overview_lists_stories_members_alerts_and_failing_feeds(client, query):
    seed_newsroom(query)
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    _no_unsafe_markup(html)
    assert "Frappes en Syrie &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Frappe en Syrie &lt;b&gt;bold&lt;/b&gt;" in html  # a member article, in the expandable list
    assert "near_duplicate 0.82" in html and "journal-du-monde" in html and "info-express" in html
    assert "syria-strikes" in html and "SMTP said &lt;no&gt;" in html and "3 attempts" in html
    health = html[html.index("Feed health"):]
    assert "(2 failing of 4)" in health and ">broken<" in health and "evil" in health
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<svg class=\"spark\"" in html and "syria-strikes alerts: " in html
    assert "fr <b>3</b>" in html  # languages of the week
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_story_page_shows_articles_with_dedup_and_alert_attempts(client, query):
    made = seed_newsroom(query)
    page = client.get("/stories/7")
    assert page.status_code == 200
    html = page.text
    _no_unsafe_markup(html)
    assert "<h1>Frappes en Syrie &lt;script&gt;" in html
    assert '<a href="https://jdm.example/syrie" target="_blank" rel="noopener noreferrer">' in html
    assert "Frappe en Syrie &lt;b&gt;bold&lt;/b&gt;" in html and "javascript:alert(3)" not in html
    assert f"near_duplicate of <a href='#a{made['article_a1']}'>" in html and "0.82" in html
    assert "connection refused" in html and "timeout" in html and "webhook" in html
    assert "href='../'" in html or 'href="../"' in html  # links relative to the app root
    assert client.get("/stories/999").status_code == 404
    query("INSERT INTO story_merges (merged_story, into_story, reason) VALUES (55, 7, 'entities')")
    moved = client.get("/stories/55", follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == "7"
    data = client.get("/api/stories/7").json()
    assert [a["dedup_reason"] for a in data["articles"]] == ["new_story", "near_duplicate"]
    assert {len(a["delivery_attempts"]) for a in data["alerts"]} == {1, 3}


def test_stories_and_alerts_paginate_with_keyset_cursors(client, query):
    base = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(60):  # same timestamp for pairs: the id breaks ties
        query("INSERT INTO stories (id, title, last_seen_at) VALUES (%s, %s, %s)",
              (100 + i, f"Story {i}", base + timedelta(minutes=i // 2)))
    seen, url, pages = [], "/stories", 0
    while url:
        html = client.get(url).text
        seen += [int(n) for n in re.findall(r"href='stories/(\d+)'>Story", html)]
        nxt = re.search(r'<a href="(stories\?before=[^"]+)">Older stories', html)
        url = "/" + nxt.group(1).replace("&amp;", "&") if nxt else None
        pages += 1
    assert pages == 3 and len(seen) == 60 and len(set(seen)) == 60
    assert seen == sorted(seen, reverse=True)
    api = client.get("/api/stories", params={"limit": 25})
    assert len(api.json()) == 25 and 'rel="next"' in api.headers["link"]
    assert client.get("/stories", params={"before": "not-a-cursor"}).status_code == 400

    for i in range(30):
        query("INSERT INTO alerts (rule, story_id, channel, status, idempotency_key, created_at) "
              "VALUES ('r', 100, %s, 'pending', %s, %s)", (f"c{i}", f"k{i}", base))
    first = client.get("/api/alerts", params={"limit": 20})
    nxt = re.search(r"before=([^&>]+)", first.headers["link"]).group(1)
    second = client.get("/api/alerts", params={"limit": 20, "before": requests.utils.unquote(nxt)})
    ids = [a["id"] for a in first.json()] + [a["id"] for a in second.json()]
    assert len(ids) == 30 and len(set(ids)) == 30
    pending = client.get("/alerts", params={"status": "pending"}).text
    assert pending.count(">pending</span>") == 30 and "Older alerts" not in pending  # 50 per page
    assert "No alerts yet" in client.get("/alerts", params={"status": "sent"}).text


def test_feeds_and_search_pages(client, query):
    seed_newsroom(query)
    feeds = client.get("/feeds").text
    _no_unsafe_markup(feeds)
    assert "failing <b>2</b>" in feeds and "ok <b>2</b>" in feeds
    assert feeds.index(">broken<") < feeds.index(">journal-du-monde<")  # failing first
    assert "evil" in feeds and "javascript:alert(1)" not in feeds
    assert "broken failed polls" in feeds

    found = client.get("/search", params={"q": "frappes", "language": "fr"})
    assert found.status_code == 200
    html = found.text
    _no_unsafe_markup(html)
    assert "<mark>frappe</mark>" in html.lower() or "<mark>Frappe</mark>" in html
    assert "&lt;img src=x onerror=alert(4)&gt;" in html or "onerror" not in html
    assert "Results 1–3 for <b>frappes</b>" in html and "href='stories/7'" in html
    assert client.get("/search", params={"q": "frappe", "language": "xx!"}).status_code == 400
    assert client.get("/api/search", params={"q": "grève"}).json()["results"][0]["title"] == \
        "Grève des cheminots jeudi"
    assert client.get("/api/search", params={"q": ""}).status_code == 400


@pytest.mark.parametrize("path", [
    "/stories?before=2026-01-01T00:00:00,99999999999999999999",
    "/stories?before=2026-01-01T00:00:00,-99999999999999999999",
    "/stories/7?after=2026-01-01T00:00:00,99999999999999999999",
    "/alerts?before=2026-01-01T00:00:00,9223372036854775808",
    "/api/stories?before=2026-01-01T00:00:00,99999999999999999999",
    "/api/stories/7?after=2026-01-01T00:00:00,99999999999999999999",
    "/api/alerts?before=2026-01-01T00:00:00,-9223372036854775809",
    "/search?q=frappe&since=99999999d",
    "/search?q=frappe&since=9999999999999999999999w",
    "/api/search?q=frappe&since=99999999d",
])
def test_crafted_cursors_and_periods_are_refused(client, query, path):
    seed_newsroom(query)
    answer = client.get(path)
    assert answer.status_code == 400, (path, answer.status_code, answer.text[:300])
    text = answer.json()["detail"] if "/api/" in path else answer.text
    assert "cursor" in text or "since" in text


def test_nul_in_a_search_filter_is_only_data(client, query):
    seed_newsroom(query)
    answer = client.get("/api/search", params={"q": "frappe", "feed": "info\x00-express"})
    assert answer.status_code == 200 and {r["feed"] for r in answer.json()["results"]} == {"info-express"}


def test_feed_urls_are_shown_without_credentials_or_query(client, query):
    """Feed URLs can carry tokens; every logged-in user sees them only as operator events show them."""
    seed_newsroom(query)
    query("INSERT INTO feeds (name, url, config_url, permanent_redirect_url, consecutive_failures, last_error_kind) "
          "VALUES ('private', 'https://reader:pw-SECRET@feeds.example/rss?token=TOKEN-SECRET', "
          "'https://feeds.example/rss?token=OLD-SECRET', 'https://feeds.example/v2?key=NEW-SECRET', 2, 'timeout')")
    for path in ("/", "/feeds", "/api/feeds"):
        text = client.get(path).text
        assert "SECRET" not in text and "reader" not in text, path
        assert "https://feeds.example/rss?…" in text or "https://feeds.example/rss?\\u2026" in text, path
    feed = next(f for f in client.get("/api/feeds").json() if f["name"] == "private")
    assert (feed["url"], feed["config_url"], feed["permanent_redirect_url"]) == (
        "https://feeds.example/rss?…", "https://feeds.example/rss?…", "https://feeds.example/v2?…")
    plain = next(f for f in client.get("/api/feeds").json() if f["name"] == "journal-du-monde")
    assert plain["url"] == "https://jdm.example/rss"


def test_sparkline_and_highlight_helpers():
    from newswatch.web import render as web

    svg = web.sparkline([0, 1, 5, 2], "rule <x>")
    assert svg.startswith("<svg") and "rule &lt;x&gt;: 0, 1, 5, 2" in svg and "polyline" in svg
    assert web.highlight("a \x02<b>\x03 c \x02open") == "a <mark>&lt;b&gt;</mark> c <mark>open</mark>"
    assert web.highlight("\x03stray\x02") == "stray<mark></mark>"
    for url, ok in (("https://a.example/x", True), ("HTTP://a.example", True), ("javascript:alert(1)", False),
                    (" https://a.example", False), ("https:///nohost", False), ("data:text/html,x", False)):
        assert web.is_web_url(url) is ok, url


def test_metrics_are_prometheus_counts(client, query):
    seed_newsroom(query)
    text = client.get("/metrics")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in text.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values["newswatch_database_up"] == 1 and values["newswatch_articles"] == 3
    assert values["newswatch_stories"] == 2
    assert values['newswatch_alerts{status="sent"}'] == 1 and values['newswatch_alerts{status="failed"}'] == 1
    assert values["newswatch_feeds_failing"] == 2 and values['newswatch_feeds{state="ok"}'] == 2
    assert values["newswatch_last_run_new_articles"] == 3 and values["newswatch_last_run_duration_seconds"] == 30
    assert "syria" not in text.text and "broken" not in text.text  # counts only


def test_metrics_say_database_down_instead_of_failing(monkeypatch):
    from newswatch import metrics

    text = metrics.prometheus_text("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert "newswatch_database_up 0" in text


def test_emit_run_metrics_through_airflow_stats():
    from airflow.sdk._shared.observability.metrics import stats

    from newswatch.metrics import emit_run_metrics

    sent = []

    class Recorder:
        def incr(self, stat, count=1, rate=1, tags=None):
            sent.append(("incr", stat, count))

        def gauge(self, stat, value, rate=1, delta=False, tags=None):
            sent.append(("gauge", stat, value))

    saved = stats._factory, stats._backend, stats._export_legacy_names
    stats.initialize(factory=Recorder, export_legacy_names=False)
    try:
        assert emit_run_metrics({"feeds.feeds": 4, "articles.stored": 2, "alerts.sent": 1, "bad": "x"}) == 3
    finally:
        stats._factory, stats._backend, stats._export_legacy_names = saved
    assert ("incr", "newswatch.articles.stored", 2) in sent
    assert ("gauge", "newswatch.last_run.feeds.feeds", 4.0) in sent


@pytest.mark.slow  # a real `airflow api-server`
def test_pages_require_login_behind_a_real_api_server(api_server, query):
    seed_newsroom(query)
    for path in ("/newswatch/", "/newswatch/stories", "/newswatch/stories/7", "/newswatch/alerts",
                 "/newswatch/feeds", "/newswatch/search?q=frappe", "/newswatch/api/stories",
                 "/newswatch/api/search?q=frappe", "/newswatch/api/feeds"):
        assert requests.get(api_server + path, timeout=10).status_code == 401, path
    assert requests.get(api_server + "/newswatch/health", timeout=10).status_code == 200
    assert "newswatch_database_up 1" in requests.get(api_server + "/newswatch/metrics", timeout=10).text
    assert requests.get(api_server + "/newswatch/docs", timeout=10).status_code == 404  # no CDN-backed docs page

    token = requests.post(api_server + "/auth/token", json={"username": "admin", "password": PASSWORD},
                          timeout=10).json()["access_token"]
    page = requests.get(api_server + "/newswatch/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert page.status_code == 200
    assert "Frappes en Syrie &lt;script&gt;" in page.text and "<script>alert" not in page.text
    assert "syria-strikes" in page.text and "info-express" in page.text
    assert "failing" in page.text and "http_error" in page.text
    story = requests.get(api_server + "/newswatch/stories/7", cookies={"_token": token}, timeout=10)
    assert story.status_code == 200 and "near_duplicate" in story.text
    assert "Content-Security-Policy" in story.headers
    stories = requests.get(api_server + "/newswatch/api/stories", cookies={"_token": token}, timeout=10).json()
    assert stories[0]["id"] == 7 and stories[0]["languages"] == ["fr"]
    bad = requests.get(api_server + "/newswatch/", headers={"Authorization": "Bearer not-a-token"}, timeout=10)
    assert bad.status_code in (401, 403)
