"""Alerts: once per (rule, story, channel), retried while a channel is down, never sent twice."""

from __future__ import annotations

import yaml

from newswatch.alerting import deliver_alerts, match_rules
from newswatch.config import load_settings
from newswatch.pipeline import run_cycle
from tests.scenario import seed_config, serve_seed_sites


def _settings(tmp_path, site, webhook, smtp, **changes):
    path = seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)
    if changes:
        config = yaml.safe_load(path.read_text())
        for key, value in changes.items():
            config[key] = value
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return load_settings(path)


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
    assert deliver_alerts(settings) == {"sent": 0, "failed": 0, "gave_up": 0}
    assert len(query("SELECT id FROM alerts")) == 2
    assert len(webhook.received) == 1 and len(smtp.wait_for(1)) == 1


def test_gives_up_after_max_attempts_and_records_why(tmp_path, site, webhook, smtp, query):
    serve_seed_sites(site)
    settings = _settings(tmp_path, site, webhook, smtp,
                         alerts={"retry_base_seconds": 0, "max_attempts": 2},
                         channels=[{"name": "webhook", "url": "json://127.0.0.1:9/nothing-listens-here"},
                                   {"name": "email", "url": "this-is-not-a-service://x"}])
    run_cycle(settings)
    run_cycle(settings)
    run_cycle(settings)
    rows = {row["channel"]: row for row in query("SELECT * FROM alerts")}
    assert rows["webhook"]["status"] == "failed" and rows["webhook"]["attempts"] == 2
    assert rows["email"]["status"] == "failed"
    assert "not a valid Apprise URL" in rows["email"]["last_error"]


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
