"""Alerts: once per (rule, story, channel), retried while a channel is down, never sent twice."""

from __future__ import annotations

import pytest
import yaml

from newswatch.alerts.alerting import deliver_alerts, match_rules
from newswatch.config import load_settings
from newswatch.pipeline import run_cycle
from tests.scenario import seed_config, serve_seed_sites
from tests.servers import TricklingReceiver


def _settings(tmp_path, site, webhook, smtp, **changes):
    path = seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)
    if changes:
        config = yaml.safe_load(path.read_text())
        for key, value in changes.items():
            config[key] = value
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return load_settings(path)


def _retitle_seed_feeds(site, title: str) -> None:
    """Both seed feeds list their copy of the seed story under ``title`` (a hostile one, in these tests)."""
    from tests.scenario import rss
    from tests.servers import Route

    for feed, page in (("/a/feed.xml", "/monde/contre-attaque-americaine-en-syrie"),
                       ("/b/rss", "/2022/08/25/syrie-contre-attaque.html")):
        site.routes[feed] = Route(200, rss("x", [{"title": title, "link": site.url(page)}]),
                                  {"Content-Type": "application/rss+xml"})


@pytest.mark.slow  # a fault drill that waits out real deadlines or time limits
def test_channel_down_for_two_cycles_then_up_is_delivered_once(tmp_path, site, webhook, smtp, query):
    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp)
    webhook.status = 503

    run_cycle(settings)
    run_cycle(settings)
    rows = {row["channel"]: row for row in query("SELECT * FROM alerts")}
    assert rows["webhook"]["status"] == "pending" and rows["webhook"]["attempts"] == 2
    assert "did not accept" in rows["webhook"]["last_error"]
    assert rows["email"]["status"] == "sent" and rows["email"]["attempts"] == 1  # a failing channel blocks no other
    assert webhook.refused == 2 and webhook.received == []

    webhook.status = 200
    run_cycle(settings)
    run_cycle(settings)
    rows = {row["channel"]: row for row in query("SELECT * FROM alerts")}
    assert rows["webhook"]["status"] == "sent" and rows["webhook"]["attempts"] == 3
    assert rows["webhook"]["last_error"] is None and rows["webhook"]["sent_at"] is not None
    assert len(webhook.received) == 1 and len(smtp.wait_for(1)) == 1


def test_retried_stages_add_nothing(tmp_path, site, webhook, smtp, query):
    """An Airflow retry re-runs a stage that already committed: it must find nothing left to do."""
    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp)
    run_cycle(settings)
    assert len(webhook.received) == 1

    query("UPDATE articles SET matched_at = NULL")  # as if match_rules crashed before its commit
    assert match_rules(settings)["new_alerts"] == 0
    nothing = dict.fromkeys(("sent", "failed", "gave_up", "digests_sent", "gone", "deferred"), 0)
    assert deliver_alerts(settings) == nothing
    assert len(query("SELECT id FROM alerts")) == 2
    assert len(webhook.received) == 1 and len(smtp.wait_for(1)) == 1


def test_gives_up_after_max_attempts_and_records_why(tmp_path, site, webhook, smtp, query):
    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp,
                         alerts={"retry_base_seconds": 0, "max_attempts": 2},
                         channels=[{"name": "webhook", "url": "json://127.0.0.1:9/nothing-listens-here"},
                                   {"name": "email", "url": "mailto://127.0.0.1:9?from=nw@example.org"}])
    run_cycle(settings)
    run_cycle(settings)
    run_cycle(settings)
    rows = {row["channel"]: row for row in query("SELECT * FROM alerts")}
    assert rows["webhook"]["status"] == "failed" and rows["webhook"]["attempts"] == 2
    assert rows["email"]["status"] == "failed"
    assert rows["email"]["attempts"] == 2 and "did not accept the message" in rows["email"]["last_error"]


def test_message_carries_idempotency_key_and_plain_text(tmp_path, site, webhook, smtp, query):
    serve_seed_sites(site)
    run_cycle(_settings(tmp_path, site, webhook, smtp))
    key = query("SELECT idempotency_key FROM alerts WHERE channel = 'webhook'")[0]["idempotency_key"]
    message = webhook.received[0]["message"]
    assert f"Alert-Id: {key}" in message
    assert "Rule: syria-strikes" in message and "Language: fr" in message
    assert "<" not in message  # plain text: no markup reaches chat channels
    mail = smtp.wait_for(1)[0]
    texts = [part.get_payload(decode=True).decode() for part in mail.walk() if part.get_content_type() == "text/plain"]
    email_key = query("SELECT idempotency_key FROM alerts WHERE channel = 'email'")[0]["idempotency_key"]
    assert email_key != key and any(f"Alert-Id: {email_key}" in text for text in texts)


def test_alerts_file_channel(tmp_path, site, webhook, smtp, query):
    serve_seed_sites(site)
    target = tmp_path / "out" / "alerts.jsonl"
    settings = _settings(tmp_path, site, webhook, smtp,
                         channels=[{"name": "webhook", "url": f"jsonl://{target}"},
                                   {"name": "email", "url": f"jsonl://{target}"}])
    run_cycle(settings)
    run_cycle(settings)
    lines = [yaml.safe_load(line) for line in target.read_text().splitlines()]
    assert len(lines) == 2 and {line["rule"] for line in lines} == {"syria-strikes"}
    assert lines[0]["language"] == "fr" and lines[0]["story_id"] == lines[1]["story_id"]


def _copy_of_page_a(site, path: str) -> None:
    """Another site republishing the seed page under its own canonical URL."""
    from tests.scenario import FIXTURES
    from tests.servers import Route

    page = (FIXTURES / "seed_site_a.html").read_bytes().replace(
        b"/monde/contre-attaque-americaine-en-syrie", path.encode())
    site.routes[path] = Route(200, page, {"Content-Type": "text/html; charset=utf-8"})


def test_a_story_that_grows_sends_one_update_never_a_repeat(tmp_path, site, webhook, smtp, query, monkeypatch):
    from newswatch.alerts import alerting
    from tests.scenario import SEED_TITLE, rss
    from tests.servers import Route

    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp)
    run_cycle(settings)
    assert len(webhook.received) == 1

    # Three more sites carry the story: the story gains sources, so one update is sent, once.
    feeds = []
    for index in range(3):
        path = f"/copy{index}/story"
        _copy_of_page_a(site, path)
        document = rss(f"Copy {index}", [{"title": SEED_TITLE, "link": site.url(path)}])
        site.routes[f"/copy{index}/rss"] = Route(200, document, {"Content-Type": "application/rss+xml"})
        feeds.append({"name": f"copy-{index}", "url": site.url(f"/copy{index}/rss")})
    settings = _settings(tmp_path, site, webhook, smtp, feeds=[{"name": f.name, "url": f.url} for f in settings.feeds]
                         + feeds)
    recorded = []
    record = alerting._record_alert
    monkeypatch.setattr(alerting, "_record_alert", lambda cur, rule, channel, article, *rest: (
        recorded.append((rule.name, article["story_id"], channel)) or record(cur, rule, channel, article, *rest)))
    run_cycle(settings)
    # The three copies match in one batch: the story's alert and update are looked up once per channel, not
    # once per copy (the later copies would add nothing).
    assert sorted(recorded) == sorted(set(recorded)) and len(recorded) == 2
    run_cycle(settings)
    assert query("SELECT article_count FROM stories")[0]["article_count"] == 5
    kinds = sorted((row["channel"], row["kind"]) for row in query("SELECT channel, kind FROM alerts"))
    assert kinds == [("email", "new"), ("email", "update"), ("webhook", "new"), ("webhook", "update")]
    assert len(webhook.received) == 2
    assert webhook.received[1]["title"].startswith("[newswatch] update: syria-strikes")


def test_digest_rule_sends_one_message_per_period(tmp_path, site, webhook, smtp, query):
    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp, rules=[
        {"name": "syria-digest", "query": "syrie OR syria", "channels": ["webhook"],
         "digest": {"at": "08:00", "timezone": "Europe/Paris"}}])
    run_cycle(settings)
    parked = query("SELECT status, digest_due_at FROM alerts")
    assert len(parked) == 1 and parked[0]["status"] == "pending" and parked[0]["digest_due_at"] is not None
    assert parked[0]["digest_due_at"].astimezone().strftime("%M") == "00"
    assert webhook.received == []

    query("UPDATE alerts SET digest_due_at = now() - interval '1 minute'")  # the clock reaches 08:00
    run_cycle(settings)
    run_cycle(settings)
    assert len(webhook.received) == 1
    assert webhook.received[0]["title"] == "[newswatch] syria-digest: 1 story (digest)"
    assert "Contre-attaque américaine en Syrie" in webhook.received[0]["message"]
    assert query("SELECT status FROM alerts")[0]["status"] == "sent"
    assert [row["status"] for row in query("SELECT status FROM digests")] == ["sent"]


def test_signed_webhook_html_email_and_attempt_log(tmp_path, site, webhook, smtp, query):
    import hashlib
    import hmac

    from tests.scenario import SEED_TITLE

    serve_seed_sites(site)
    hostile = SEED_TITLE + ' <img src=x onerror="alert(1)"> 5 < 6 & <!channel>'
    _retitle_seed_feeds(site, hostile)
    port = webhook.server_address[1]
    settings = _settings(tmp_path, site, webhook, smtp, channels=[
        {"name": "webhook", "url": f"webhook+http://127.0.0.1:{port}/signed", "secret": "k3y"},
        {"name": "email", "url": f"mailto://127.0.0.1:{smtp.port}?from=nw@example.org&to=desk@example.org"
                                 "&mode=insecure"}])
    run_cycle(settings)

    request = next(r for r in webhook.requests if r.path == "/signed")
    expected = hmac.new(b"k3y", request.headers["x-newswatch-timestamp"].encode() + b"." + request.body,
                        hashlib.sha256).hexdigest()
    assert request.headers["x-newswatch-signature"] == f"sha256={expected}"
    key = query("SELECT idempotency_key FROM alerts WHERE channel = 'webhook'")[0]["idempotency_key"]
    assert request.headers["idempotency-key"] == key and webhook.received[0]["idempotency_key"] == key

    mail = smtp.wait_for(1)[0]
    html = next(part.get_payload(decode=True).decode() for part in mail.walk()
                if part.get_content_type() == "text/html")
    assert "5 &lt; 6 &amp;" in html  # feed text is escaped, not interpreted
    assert "<img" not in html and "onerror" not in html
    attempts = query("SELECT channel, outcome FROM delivery_attempts ORDER BY channel")
    assert attempts == [{"channel": "email", "outcome": "sent"}, {"channel": "webhook", "outcome": "sent"}]


def test_channel_from_airflow_connection(tmp_path, site, webhook, smtp, query, monkeypatch):
    import json

    serve_seed_sites(site)
    port = webhook.server_address[1]
    monkeypatch.setenv("AIRFLOW_CONN_NEWS_DESK", json.dumps(
        {"conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{port}/from-connection"}}}))
    settings = _settings(tmp_path, site, webhook, smtp, channels=[
        {"name": "webhook", "connection": "news_desk"}, {"name": "email", "connection": "missing_conn"}])
    run_cycle(settings)
    assert [r.path for r in webhook.requests] == ["/from-connection"]
    failed = query("SELECT last_error FROM alerts WHERE channel = 'email'")[0]["last_error"]
    assert "missing_conn" in failed


def test_slack_compatible_endpoint(tmp_path, site, webhook, smtp, query):
    """Mattermost speaks Slack's incoming-webhook format; Apprise's mmost:// can target loopback."""
    serve_seed_sites(site)
    port = webhook.server_address[1]
    settings = _settings(tmp_path, site, webhook, smtp, channels=[
        {"name": "webhook", "url": f"mmost://127.0.0.1:{port}/hookstoken"},
        {"name": "email", "url": f"jsonl://{tmp_path / 'alerts.jsonl'}"}])
    run_cycle(settings)
    assert len(webhook.received) == 1
    assert "syria-strikes" in webhook.received[0]["text"] and "<!channel>" not in webhook.received[0]["text"]


def test_field_scopes_see_the_article_site_and_feed(tmp_path, site, webhook, smtp, query):
    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp, rules=[
        {"name": "local-syria", "query": "site:127.0.0.1 AND title:syrie", "channels": ["webhook"]},
        {"name": "elsewhere", "query": "site:example.org AND syrie", "channels": ["webhook"]},
        {"name": "one-feed", "query": "feed:info-express AND frappe*", "channels": ["webhook"]}])
    run_cycle(settings)
    assert sorted(row["rule"] for row in query("SELECT rule FROM alerts")) == ["local-syria", "one-feed"]


def test_rules_run_outside_any_transaction(tmp_path, site, webhook, smtp, query, database_url, monkeypatch):
    """Matching is CPU work: while the rules run, no article row is locked (a story merge could update it)
    and no transaction is open; the alerts are then recorded once."""
    import psycopg2

    from newswatch import rules

    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp)
    run_cycle(settings)
    query("DELETE FROM delivery_attempts")
    query("DELETE FROM alerts")
    query("UPDATE articles SET matched_at = NULL")
    seen: list[tuple] = []
    real = rules.RuleSet.matching_indices

    def checked(self, document):
        with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
            cur.execute("SELECT id FROM articles WHERE matched_at IS NULL FOR UPDATE NOWAIT")
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND state LIKE 'idle in transaction%'")
            seen.append(cur.fetchone())
        connection.close()
        return real(self, document)

    monkeypatch.setattr(rules.RuleSet, "matching_indices", checked)
    counts = match_rules(settings)
    assert seen and set(seen) == {(0,)}
    assert counts["new_alerts"] == 2 and len(query("SELECT id FROM alerts")) == 2
    assert match_rules(settings)["new_alerts"] == 0


@pytest.mark.slow  # a fault drill that waits out real deadlines or time limits
@pytest.mark.parametrize("scheme", ["webhook+http", "json"])
def test_a_trickling_channel_is_cut_at_its_deadline_and_blocks_no_other(tmp_path, site, webhook, smtp, query,
                                                                        database_url, scheme):
    """A receiver that answers one byte a second (each read well within the read timeout) would hold a send
    for minutes: the send is cut at ``alerts.send_timeout``, recorded as a failed attempt of kind ``timeout``,
    and the other channel's alert of the same run is delivered. No transaction is open while it waits."""
    import psycopg2

    seen: list[tuple] = []

    def open_transactions(request) -> None:
        with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND state LIKE 'idle in transaction%'")
            seen.append(cur.fetchone())
        connection.close()

    slow = TricklingReceiver(on_request=open_transactions).start()
    try:
        serve_seed_sites(site)
        settings = _settings(tmp_path, site, webhook, smtp, alerts={"retry_base_seconds": 0, "send_timeout": 2},
                             channels=[{"name": "webhook", "url": f"{scheme}://127.0.0.1:{slow.port}/hook"},
                                       {"name": "email", "url": f"mailto://127.0.0.1:{smtp.port}?from=nw@example.org"
                                                                "&to=desk@example.org&mode=insecure"}])
        run_cycle(settings)
    finally:
        slow.stop()
    assert len(slow.requests) == 1 and seen == [(0,)]
    assert slow.bytes_sent < len(TricklingReceiver.ANSWER)  # the answer never completed
    attempts = {row["channel"]: row for row in query("SELECT channel, outcome, error FROM delivery_attempts")}
    assert attempts["webhook"]["outcome"] == "failed"
    assert attempts["webhook"]["error"].startswith("timeout: ")
    assert attempts["email"]["outcome"] == "sent" and len(smtp.wait_for(1)) == 1
    rows = {row["channel"]: row for row in query("SELECT channel, status, last_error FROM alerts")}
    assert rows["webhook"]["status"] == "pending" and rows["webhook"]["last_error"].startswith("timeout: ")
    assert rows["email"]["status"] == "sent"


@pytest.mark.slow  # a fault drill that waits out a real deadline
def test_a_hung_channel_with_a_queue_delays_no_other_channel_and_is_asked_once_per_run(tmp_path, site, webhook,
                                                                                       smtp, query):
    """Three alerts for a channel that never answers in time and three for a healthy one: the healthy
    channel has all of its alerts while the first send to the hung one is still waiting for its answer
    (the channels are sent side by side), and the hung channel is asked once in the run: its other alerts
    wait for the next run with no attempt counted, instead of costing one deadline each."""
    import time

    from newswatch.alerts.alerting import deliver_alerts

    send_timeout = 5.0
    fast_count_while_hung: list[int] = []

    def watch_the_healthy_channel(request) -> None:
        deadline = time.monotonic() + send_timeout  # the sender gives up on this request then
        while len(webhook.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        fast_count_while_hung.append(len(webhook.received))

    hung = TricklingReceiver(on_request=watch_the_healthy_channel).start()
    try:
        serve_seed_sites(site)
        rules = [{"name": name, "query": query_text, "channels": ["hung", "webhook"]}
                 for name, query_text in (("syria-fr", "syrie"), ("strikes-fr", "frappe*"), ("us-fr", "américain*"))]
        settings = _settings(tmp_path, site, webhook, smtp, rules=rules,
                             alerts={"retry_base_seconds": 0, "send_timeout": send_timeout},
                             channels=[{"name": "hung", "url": f"webhook+http://127.0.0.1:{hung.port}/hook"},
                                       {"name": "webhook", "url": f"json://127.0.0.1:{webhook.server_address[1]}/hook"}])
        run_cycle(settings)
        assert fast_count_while_hung == [3] and len(hung.requests) == 1
        rows = query("SELECT channel, status, attempts FROM alerts ORDER BY channel, id")
        statuses = [(row["channel"], row["status"]) for row in rows]
        assert statuses == [("hung", "pending")] * 3 + [("webhook", "sent")] * 3
        assert sorted(row["attempts"] for row in rows if row["channel"] == "hung") == [0, 0, 1]
        assert deliver_alerts(settings)["deferred"] == 2  # the next run asks the hung channel once again
        assert len(hung.requests) == 2 and len(webhook.received) == 3
    finally:
        hung.stop()


@pytest.mark.parametrize("scheme", ["webhook+http", "json"])
def test_an_answer_after_the_deadline_means_a_repeat_with_the_same_idempotency_key(tmp_path, site, webhook, smtp,
                                                                                   query, scheme):
    """The receiver took the first POST but answered too late: the send counts as failed (``timeout``), the
    retry delivers it again, and both carry the alert's Idempotency-Key, so the receiver can drop the repeat."""
    import time

    from tests.servers import Route

    def late_once(request) -> Route:
        if len(site.hits("/late")) == 1:
            time.sleep(2.5)  # past send_timeout: the sender has given up by the time this answer leaves
        return Route(200, b'{"ok": true}', {"Content-Type": "application/json"})

    site.routes["/late"] = late_once
    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp, alerts={"retry_base_seconds": 0, "send_timeout": 1},
                         channels=[{"name": "webhook", "url": f"{scheme}://127.0.0.1:{site.server_address[1]}/late"},
                                   {"name": "email", "url": f"jsonl://{tmp_path / 'alerts.jsonl'}"}])
    run_cycle(settings)
    deliver_alerts(settings)
    key = query("SELECT idempotency_key FROM alerts WHERE channel = 'webhook'")[0]["idempotency_key"]
    assert [request.headers.get("idempotency-key") for request in site.hits("/late")] == [key, key]
    attempts = query("SELECT outcome, error FROM delivery_attempts WHERE channel = 'webhook' ORDER BY id")
    assert [row["outcome"] for row in attempts] == ["failed", "sent"]
    assert attempts[0]["error"].startswith("timeout: ") and "may have received" in attempts[0]["error"]
    assert query("SELECT status, attempts FROM alerts WHERE channel = 'webhook'") == [{"status": "sent", "attempts": 2}]


MENTIONS = "@everyone @here @channel <@123> <@!124> <@&456> <#789> <!channel> <!here> <!everyone>"
PING = r"@(everyone|here|channel)\b|<[@#!][\w&!^]"  # what Discord, Slack or Mattermost would turn into a ping


def test_chat_channels_get_mentions_neutralised_and_webhooks_the_raw_title(tmp_path, site, webhook, smtp, query):
    """A feed title that says ``@everyone`` must not ping a whole Discord server or Slack channel: chat text
    reads the same with a zero-width space after each ``@``/``<!``, while JSON webhooks get the title as data."""
    import re

    from tests.scenario import SEED_TITLE

    serve_seed_sites(site)
    hostile = f"{SEED_TITLE} {MENTIONS} via https://social.example/@reporter/1"
    _retitle_seed_feeds(site, hostile)
    port = webhook.server_address[1]
    settings = _settings(tmp_path, site, webhook, smtp, channels=[
        {"name": "webhook", "url": f"mmost://127.0.0.1:{port}/hookstoken"},
        {"name": "email", "url": f"webhook+http://127.0.0.1:{port}/raw"}])
    run_cycle(settings)

    chat = next(payload for payload in webhook.received if "text" in payload)
    data = next(payload for payload in webhook.received if payload.get("type") == "alert")
    assert "@everyone" in data["title"] and "<@&456>" in data["title"]  # data, not chat text: unchanged
    assert not re.search(PING, chat["text"]), chat["text"]
    assert data["title"] in chat["text"].replace("\u200b", "")  # reads the same
    assert "https://social.example/@reporter/1" in chat["text"]  # links keep working

    # Every mention form, straight through the delivery function (feedparser drops the <!…> ones).
    from newswatch.alerts.delivery import AlertMessage, send

    message = AlertMessage("key", "rule", 1, f"Title {MENTIONS}", "https://example.org/a", "en", "feed",
                           None, summary=f"Summary {MENTIONS} mail desk@example.org")
    send(f"mmost://127.0.0.1:{port}/hookstoken", message)
    text = webhook.received[-1]["text"]
    assert not re.search(PING, text), text
    assert f"Title {MENTIONS}" in text.replace("\u200b", "") and f"Summary {MENTIONS}" in text.replace("\u200b", "")


def _held_webhook_cycle(tmp_path, site, webhook, smtp, database_url: str):
    """``newswatch poll`` over the seed sites, whose webhook receiver holds the first request until released.

    Returns (config path, the running process, received event, release event); the process runs in its own
    session so that a drill can kill it with its workers.
    """
    import os
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from tests.servers import Route

    received, release = threading.Event(), threading.Event()

    def hold_first(request) -> Route:
        if len(site.hits("/hook")) == 1:
            received.set()
            release.wait(60)  # the drill strikes meanwhile
        return Route(200, b'{"ok": true}', {"Content-Type": "application/json"})

    site.routes["/hook"] = hold_first
    serve_seed_sites(site)
    path = seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)
    config = yaml.safe_load(path.read_text())
    config["channels"] = [{"name": "webhook", "url": f"webhook+http://127.0.0.1:{site.server_address[1]}/hook"},
                          {"name": "email", "url": f"jsonl://{tmp_path / 'alerts.jsonl'}"}]
    # A deadline far above how long a drill's strike may take on a busy machine: the held request must still be
    # in flight when it lands (a send cut at its deadline would be recorded before the strike).
    config["alerts"] = {**config.get("alerts", {}), "send_timeout": 200}
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    plugins = str(Path(__file__).resolve().parents[1] / "plugins")
    env = {**os.environ, "NEWSWATCH_DATABASE_URL": database_url, "NEWSWATCH_CONFIG": str(path),
           "NEWSWATCH_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": plugins}
    cycle = subprocess.Popen([sys.executable, "-m", "newswatch.cli", "poll"], env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return path, cycle, received, release


def _wait_until_recorded_sent(query, channel: str) -> None:
    """Channels are sent side by side: wait (bounded) until ``channel``'s alert is recorded as sent, so that
    a drill striking the held channel finds no other message in flight."""
    import time

    deadline = time.monotonic() + 120
    while query("SELECT status FROM alerts WHERE channel = %s", (channel,)) != [{"status": "sent"}]:
        assert time.monotonic() < deadline, f"the {channel} alert was never recorded as sent"
        time.sleep(0.05)


def _redeliver_after_the_leases(tmp_path, site, query, path, articles: list[dict], key: str) -> None:
    """Time passes (the dead attempt's lease runs out); two cycles: the held alert is sent once more, with its
    Idempotency-Key, and nothing else is stored or sent twice."""
    query("UPDATE alerts SET lease_until = now() - interval '1 second' WHERE lease_until IS NOT NULL")
    settings = load_settings(path)
    run_cycle(settings)
    run_cycle(settings)
    assert [request.headers.get("idempotency-key") for request in site.hits("/hook")] == [key, key]
    assert query("SELECT status FROM alerts WHERE channel = 'webhook'") == [{"status": "sent"}]
    assert query("SELECT id FROM articles ORDER BY id") == articles
    assert len(query("SELECT id FROM alerts")) == 2
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow  # a `newswatch poll` subprocess drill
def test_a_cycle_killed_mid_delivery_loses_nothing_and_repeats_one_message_with_its_key(tmp_path, site, webhook, smtp,
                                                                                        query, database_url):
    """``kill -9`` of ``newswatch poll`` while the receiver holds the webhook request: the articles and the
    decided alerts were committed before; the leased alert is sent again once its lease runs out, with the same
    Idempotency-Key (the one duplicate a crash may cause); a further cycle sends nothing."""
    import os
    import signal

    path, cycle, received, release = _held_webhook_cycle(tmp_path, site, webhook, smtp, database_url)
    try:
        assert received.wait(300), "the cycle never reached delivery"
        _wait_until_recorded_sent(query, "email")  # the other channel's lane runs beside the held one
        os.killpg(cycle.pid, signal.SIGKILL)
        cycle.communicate(timeout=30)
    finally:
        release.set()
        if cycle.poll() is None:
            os.killpg(cycle.pid, signal.SIGKILL)
    articles = query("SELECT id FROM articles ORDER BY id")
    webhook_alert = query("SELECT status, lease_until IS NOT NULL AS leased, idempotency_key FROM alerts "
                          "WHERE channel = 'webhook'")
    assert len(articles) == 2 and len(webhook_alert) == 1
    assert webhook_alert[0]["status"] == "pending" and webhook_alert[0]["leased"]
    _redeliver_after_the_leases(tmp_path, site, query, path, articles, webhook_alert[0]["idempotency_key"])


@pytest.mark.slow  # a `newswatch poll` subprocess drill
def test_postgresql_stopped_mid_delivery_then_restarted_sends_the_alert_once_more_with_its_key(
        tmp_path, site, webhook, smtp, monkeypatch):
    """Drill: PostgreSQL stops while the receiver holds the webhook request, so the sent message cannot be
    recorded. The cycle ends in one line with exit code 3; once PostgreSQL is back and the lease has run out,
    the alert is sent once more with the same Idempotency-Key and recorded; nothing else is repeated."""
    import os
    import signal

    import psycopg2
    import psycopg2.extras

    from newswatch import db

    server_dir = tmp_path / "own-postgres"
    url = db.start_embedded(server_dir)
    db.migrate(url)
    db.close_pools(url)
    path, cycle, received, release = _held_webhook_cycle(tmp_path, site, webhook, smtp, url)

    def query_before(sql: str, params: tuple = ()) -> list[dict]:
        with psycopg2.connect(url, cursor_factory=psycopg2.extras.RealDictCursor) as before, before.cursor() as cur:
            cur.execute(sql, params)
            rows = [dict(row) for row in cur.fetchall()]
        before.close()
        return rows

    try:
        assert received.wait(300), "the cycle never reached delivery"
        _wait_until_recorded_sent(query_before, "email")  # the other channel's lane runs beside the held one
        assert db.stop_embedded(server_dir)
        release.set()
        _, err = cycle.communicate(timeout=300)
    finally:
        release.set()
        if cycle.poll() is None:
            os.killpg(cycle.pid, signal.SIGKILL)
            cycle.communicate()
    assert cycle.returncode == 3, (cycle.returncode, err[-3000:])
    lines = err.strip().splitlines()  # the seed sites' broken feed is logged before: one warning line
    assert "Traceback" not in err and lines[-1].startswith("newswatch: the database is unavailable: "), err[-3000:]
    assert sum("database" in line for line in lines) == 1, err[-3000:]

    url = db.start_embedded(server_dir)  # PostgreSQL is back
    conn = psycopg2.connect(url, cursor_factory=psycopg2.extras.RealDictCursor)
    conn.autocommit = True

    def query(sql: str, params: tuple = ()) -> list[dict]:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return [dict(row) for row in cur.fetchall()] if cur.description else []

    monkeypatch.setenv("NEWSWATCH_DATABASE_URL", url)
    try:
        articles = query("SELECT id FROM articles ORDER BY id")
        webhook_alert = query("SELECT status, idempotency_key FROM alerts WHERE channel = 'webhook'")
        assert len(articles) == 2 and len(webhook_alert) == 1 and webhook_alert[0]["status"] == "pending"
        _redeliver_after_the_leases(tmp_path, site, query, path, articles, webhook_alert[0]["idempotency_key"])
    finally:
        conn.close()
        db.close_pools(url)
        db.stop_embedded(server_dir)
