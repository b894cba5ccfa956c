"""Retention and upkeep: settings, each step on a real database, and the daily DAG run with dag.test()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newswatch import maintenance
from newswatch.retention import Retention, RetentionConfigError, parse_retention

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC)


# --- settings -----------------------------------------------------------------------------------------


def test_defaults_yaml_then_environment():
    assert parse_retention(None, env={}) == Retention(90, 30, 90, True)
    assert parse_retention({"article_bodies_days": 30, "vacuum": False}, env={}) == Retention(30, 30, 90, False)
    env = {"NEWSWATCH_RETENTION_ARTICLE_BODIES_DAYS": "7d", "NEWSWATCH_RETENTION_VACUUM": "yes",
           "NEWSWATCH_RETENTION_FEED_POLLS_DAYS": ""}
    assert parse_retention({"article_bodies_days": 30, "feed_polls_days": 0, "vacuum": False}, env=env) == \
        Retention(7, 0, 90, True)


def test_every_problem_is_reported_at_once():
    with pytest.raises(RetentionConfigError) as caught:
        parse_retention({"article_bodies_days": -1, "feed_polls_days": 3, "delivery_attempts_days": True,
                         "keep_forever": 1, "vacuum": "maybe"},
                        env={"NEWSWATCH_RETENTION_BODY_DAYS": "4"})
    problems = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 6, problems
    for fragment in ("retention.article_bodies_days: must be between 0", "retention.feed_polls_days: must be 0 or "
                     "at least 8", "retention.delivery_attempts_days: must be a whole number",
                     "retention.keep_forever: unknown key", "retention.vacuum: must be true or false",
                     "NEWSWATCH_RETENTION_BODY_DAYS: unknown setting"):
        assert fragment in problems
    with pytest.raises(RetentionConfigError, match="must be a mapping"):
        parse_retention([90], env={})


def test_load_from_the_yaml_file(tmp_path):
    config = tmp_path / "newswatch.yaml"
    assert maintenance.load_retention(config, env={}) == Retention()  # no file: defaults
    config.write_text("feeds: []\nretention:\n  article_bodies_days: 60\n  delivery_attempts_days: 0\n")
    assert maintenance.load_retention(config, env={}) == Retention(60, 30, 0, True)
    config.write_text("retention: [unclosed\n")
    with pytest.raises(RetentionConfigError, match="not valid YAML"):
        maintenance.load_retention(config, env={})


def test_retention_is_read_by_the_config_loader(tmp_path, monkeypatch):
    """${VAR} expands in retention as everywhere else, and the file's other rules (duplicates, UTF-8) hold."""
    config = tmp_path / "newswatch.yaml"
    config.write_text("retention:\n  article_bodies_days: ${BODY_DAYS}\n  feed_polls_days: ${POLL_DAYS:-14}\n")
    monkeypatch.setenv("BODY_DAYS", "45")
    assert maintenance.load_retention(config, env={}) == Retention(45, 14, 90, True)
    monkeypatch.delenv("BODY_DAYS")
    with pytest.raises(RetentionConfigError, match="retention.article_bodies_days: environment variable BODY_DAYS"):
        maintenance.load_retention(config, env={})
    config.write_text("retention: {article_bodies_days: 10}\nretention: {article_bodies_days: 20}\n")
    with pytest.raises(RetentionConfigError, match="line 2: duplicate key 'retention'"):
        maintenance.load_retention(config, env={})
    config.write_bytes("retention: {article_bodies_days: 10}  # d\xe9j\xe0\n".encode("latin-1"))
    with pytest.raises(RetentionConfigError, match="not UTF-8"):
        maintenance.load_retention(config, env={})


# --- steps on a real database -------------------------------------------------------------------------


def _seed(query) -> dict[str, int]:
    """Old and new articles (grouped and matched, or not yet), polls, alerts and delivery attempts."""
    feed = query("INSERT INTO feeds (name, url) VALUES ('wire', 'https://wire.example/rss') RETURNING id")[0]["id"]
    story = query("INSERT INTO stories (title) VALUES ('Frappes') RETURNING id")[0]["id"]
    made = {"feed": feed, "story": story}
    for name, age, grouped, matched in (("old1", 200, True, True), ("old2", 120, True, True),
                                        ("old_unmatched", 200, True, False), ("old_ungrouped", 200, False, False),
                                        ("recent", 10, True, True)):
        made[name] = query(
            """
            INSERT INTO articles (url, canonical_url, title, body, language, feed, feed_id, extraction, content_hash,
                                  story_id, fetched_at, matched_at)
            VALUES (%(u)s, %(u)s, %(t)s, 'Une frappe aérienne sur Alep.', 'fr', 'wire', %(f)s, 'trafilatura', %(t)s,
                    %(s)s, %(at)s, %(m)s) RETURNING id
            """,
            {"u": f"https://wire.example/{name}", "t": f"Frappe {name}", "f": feed, "s": story if grouped else None,
             "at": NOW - timedelta(days=age), "m": NOW if matched else None},
        )[0]["id"]
    for age in (3, 20, 40, 100):
        query("INSERT INTO feed_polls (feed_id, polled_at, outcome) VALUES (%s, %s, 'ok')",
              (feed, NOW - timedelta(days=age)))
    for key, status in (("sent", "sent"), ("pending", "pending")):
        alert = query("INSERT INTO alerts (rule, story_id, article_id, channel, status, idempotency_key) "
                      "VALUES ('syria', %s, %s, %s, %s, %s) RETURNING id",
                      (story, made["old1"], key, status, key))[0]["id"]
        made[f"alert_{key}"] = alert
        for age in (5, 100, 200):
            query("INSERT INTO delivery_attempts (alert_id, channel, attempted_at, outcome) VALUES (%s, %s, %s, %s)",
                  (alert, key, NOW - timedelta(days=age), "sent" if status == "sent" else "failed"))
    return made


def test_drop_bodies_keeps_everything_else_and_is_idempotent(database_url, query):
    made = _seed(query)
    assert maintenance.drop_article_bodies(90, batch=1) == 2
    rows = {r["id"]: r for r in query("SELECT id, title, body, body_dropped_at, story_id, canonical_url "
                                      "FROM articles")}
    for name in ("old1", "old2"):
        row = rows[made[name]]
        assert row["body"] == "" and row["body_dropped_at"] is not None
        assert row["title"] == f"Frappe {name}" and row["story_id"] == made["story"] and row["canonical_url"]
    for name in ("old_unmatched", "old_ungrouped", "recent"):  # the pipeline still needs these bodies
        assert rows[made[name]]["body"] and rows[made[name]]["body_dropped_at"] is None
    assert len(query("SELECT id FROM alerts")) == 2
    assert maintenance.drop_article_bodies(90) == 0  # a second run changes nothing
    assert maintenance.drop_article_bodies(0) == 0  # 0 keeps everything


def test_prune_history(database_url, query):
    made = _seed(query)
    assert maintenance.prune_feed_polls(30, batch=1) == 2
    assert sorted(r["age"] for r in query("SELECT extract(day FROM now() - polled_at)::int AS age FROM feed_polls")) \
        == [3, 20]
    assert maintenance.prune_delivery_attempts(90) == 2  # only the sent alert's two old attempts
    left = query("SELECT alert_id, count(*) AS n FROM delivery_attempts GROUP BY alert_id")
    assert {r["alert_id"]: r["n"] for r in left} == {made["alert_sent"]: 1, made["alert_pending"]: 3}
    assert maintenance.prune_feed_polls(30) == 0 and maintenance.prune_delivery_attempts(90) == 0
    assert maintenance.prune_feed_polls(0) == 0


def test_vacuum_analyze_runs_outside_a_transaction(database_url, query):
    _seed(query)
    done = maintenance.vacuum_analyze()
    assert {"articles", "stories", "alerts", "feed_polls", "delivery_attempts"} <= set(done)
    analysed = query("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
    assert "articles" in {r["relname"] for r in analysed}


def test_run_all_counts(database_url, query):
    _seed(query)
    counts = maintenance.run_all(Retention(90, 30, 90, True))
    assert counts == {"bodies_dropped": 2, "feed_polls_deleted": 2, "delivery_attempts_deleted": 2,
                      "tables_vacuumed": len(maintenance.VACUUM_TABLES)}
    assert maintenance.run_all(Retention(90, 30, 90, False))["bodies_dropped"] == 0


# --- the DAG ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.mark.slow  # parses the DAG with Airflow
def test_dag_imports_and_follows_conventions(dagbag):
    assert dagbag.import_errors == {}
    dag = dagbag.get_dag("newswatch_maintenance")
    assert dag.catchup is False and dag.max_active_runs == 1
    assert {"newswatch", "maintenance"} <= set(dag.tags)
    assert dag.doc_md and "article_bodies_days" in dag.doc_md and "VACUUM" in dag.doc_md
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
    assert [t.task_id for t in dag.topological_sort()][0] == "load_retention"
    assert dag.get_task("vacuum_analyze").upstream_task_ids == {
        "load_retention", "drop_article_bodies", "prune_feed_polls", "prune_delivery_attempts"}


@pytest.mark.slow  # dag.test()
def test_dag_run_applies_retention_then_rerun_changes_nothing(dagbag, database_url, query, tmp_path, monkeypatch):
    made = _seed(query)
    config = tmp_path / "newswatch.yaml"
    config.write_text("retention:\n  article_bodies_days: 100\n  feed_polls_days: 30\n")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(config))
    monkeypatch.setenv("NEWSWATCH_RETENTION_DELIVERY_ATTEMPTS_DAYS", "150")
    dag = dagbag.get_dag("newswatch_maintenance")

    run = dag.test()
    assert run.state == "success"
    results = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()}
    assert results["load_retention"] == {"article_bodies_days": 100, "feed_polls_days": 30,
                                         "delivery_attempts_days": 150, "vacuum": True}
    assert results["drop_article_bodies"] == 2 and results["prune_feed_polls"] == 2
    assert results["prune_delivery_attempts"] == 1
    assert "articles" in results["vacuum_analyze"]
    assert query("SELECT body FROM articles WHERE id = %s", (made["recent"],))[0]["body"]

    again = dag.test()
    assert again.state == "success"
    second = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in again.get_task_instances()}
    assert second["drop_article_bodies"] == 0 and second["prune_feed_polls"] == 0
    assert second["prune_delivery_attempts"] == 0


@pytest.mark.slow  # dag.test()
def test_dag_run_with_bad_settings_fails_before_deleting(dagbag, database_url, query, monkeypatch, tmp_path):
    _seed(query)
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(tmp_path / "absent.yaml"))
    monkeypatch.setenv("NEWSWATCH_RETENTION_ARTICLE_BODIES_DAYS", "ninety")
    run = dagbag.get_dag("newswatch_maintenance").test()
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["load_retention"] == "failed" and states["drop_article_bodies"] == "upstream_failed"
    assert query("SELECT count(*) AS n FROM articles WHERE body_dropped_at IS NOT NULL")[0]["n"] == 0
