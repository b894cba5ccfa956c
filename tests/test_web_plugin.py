"""The Airflow plugin: registered with its nav item, and its page served by a real api-server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT


def test_plugin_is_registered_with_a_nav_item(airflow_db):
    result = subprocess.run([sys.executable, "-m", "airflow", "plugins", "-o", "json"],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    plugins = json.loads(result.stdout[result.stdout.index("["):])
    plugin = next(p for p in plugins if p["name"] == "newswatch")
    assert "newswatch" in json.dumps(plugin["external_views"])
    assert "/newswatch" in json.dumps(plugin["fastapi_apps"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def api_server(airflow_db, tmp_path, database_url):
    port = _free_port()
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"admin": "s3cret-test"}))
    env = os.environ.copy()
    env.update(
        NEWSWATCH_DATABASE_URL=database_url,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
    )
    log = open(tmp_path / "api-server.log", "w")  # noqa: SIM115 - closed in teardown
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "-p", str(port), "-H", "127.0.0.1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/newswatch/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGTERM)
        pytest.fail("api-server did not start:\n" + (tmp_path / "api-server.log").read_text()[-3000:])
    yield base
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    log.close()


def test_page_lists_stories_and_alerts_and_requires_login(api_server, query):
    query("INSERT INTO stories (id, title, article_count, languages, feeds) "
          "VALUES (7, 'Frappes en Syrie <script>alert(1)</script>', 2, '{fr}', '{journal-du-monde,info-express}')")
    query("INSERT INTO alerts (rule, story_id, channel, status, idempotency_key) "
          "VALUES ('syria-strikes', 7, 'webhook', 'sent', 'k1')")
    query("INSERT INTO feeds (name, url, consecutive_failures, last_error_kind) "
          "VALUES ('broken', 'http://127.0.0.1:9/feed', 3, 'http_error')")

    assert requests.get(api_server + "/newswatch/", timeout=10).status_code == 401
    assert requests.get(api_server + "/newswatch/api/stories", timeout=10).status_code == 401

    token = requests.post(api_server + "/auth/token", json={"username": "admin", "password": "s3cret-test"},
                          timeout=10).json()["access_token"]
    page = requests.get(api_server + "/newswatch/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert page.status_code == 200
    assert "Frappes en Syrie &lt;script&gt;" in page.text and "<script>alert" not in page.text
    assert "syria-strikes" in page.text and "info-express" in page.text
    assert "failing" in page.text and "http_error" in page.text
    stories = requests.get(api_server + "/newswatch/api/stories", cookies={"_token": token}, timeout=10).json()
    assert stories[0]["id"] == 7 and stories[0]["languages"] == ["fr"]
