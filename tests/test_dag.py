"""The Airflow DAG: import hygiene, conventions, and full runs with dag.test() on real parts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scenario import seed_config, serve_seed_sites

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test parses or runs the DAG with Airflow


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "newswatch_poll" in dagbag.dag_ids


def test_dag_conventions(dagbag):
    dag = dagbag.get_dag("newswatch_poll")
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert "newswatch" in dag.tags
    assert dag.doc_md and "poll_feeds" in dag.doc_md
    assert dag.timetable.expression == "*/5 * * * *"
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_exponential_backoff, task.task_id
    assert [t.task_id for t in dag.topological_sort()] == [
        "load_config", "poll_feeds", "plan_articles", "fetch_articles", "cluster_stories",
        "match_rules", "deliver_alerts", "summarize",
    ]
    # Counts go through XCom as one value per task, not one XCom (and one API call) per key of the dict.
    for dag_id in ("newswatch_poll", "newswatch_maintenance"):
        for task in dagbag.get_dag(dag_id).tasks:
            assert task.multiple_outputs is False, (dag_id, task.task_id)


def test_dag_file_does_no_work_at_parse_time(tmp_path):
    """Parsing must not need the database, the config or the network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
    env["NEWSWATCH_CONFIG"] = str(tmp_path / "missing.yaml")
    env["NEWSWATCH_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    code = "import runpy; runpy.run_path('dags/newswatch_poll.py'); import sys; " \
           "assert 'newswatch.pipeline' not in sys.modules; assert 'trafilatura' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_dag_run_end_to_end_then_rerun_sends_nothing(dagbag, tmp_path, site, webhook, smtp, query, monkeypatch):
    serve_seed_sites(site)
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)))
    dag = dagbag.get_dag("newswatch_poll")

    run = dag.test()
    assert run.state == "success"
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert all(state in ("success", "skipped") for state in states.values()), states
    assert len([key for key in states if key[0] == "poll_feeds"]) == 1  # 4 feeds fit one batch

    assert len(query("SELECT id FROM articles")) == 2
    assert len(query("SELECT id FROM stories")) == 1
    assert [row["status"] for row in query("SELECT status FROM alerts")] == ["sent", "sent"]
    assert len(webhook.received) == 1 and len(smtp.wait_for(1)) == 1
    summary = query("SELECT * FROM poll_runs")
    assert len(summary) == 1 and summary[0]["new_articles"] == 2 and summary[0]["alerts_sent"] == 2

    # Re-running tasks of the same DAG run (as `airflow tasks clear` then a worker would): nothing new.
    env = {**os.environ}
    for task_id in ("fetch_articles", "cluster_stories", "match_rules", "deliver_alerts"):
        command = [sys.executable, "-m", "airflow", "tasks", "test", "newswatch_poll", task_id, run.run_id]
        if task_id == "fetch_articles":
            command += ["--map-index", "0"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert result.returncode == 0, task_id + result.stdout[-2000:] + result.stderr[-2000:]
    assert len(query("SELECT id FROM articles")) == 2
    assert len(query("SELECT id FROM alerts")) == 2
    assert len(webhook.received) == 1 and len(smtp.messages) == 1

    # A new run of the whole DAG: nothing stored twice, nothing sent twice.
    second = dag.test()
    assert second.state == "success"
    assert len(query("SELECT id FROM articles")) == 2
    assert len(query("SELECT id FROM alerts")) == 2
    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    assert len(query("SELECT id FROM poll_runs")) == 2


def test_dag_runs_what_was_added_from_the_ui(dagbag, tmp_path, site, webhook, smtp, query, monkeypatch):
    """A feed, a rule and a channel added from the UI are polled, matched and alerted by the scheduled DAG."""
    import yaml

    from newswatch import configstore
    from tests.scenario import shipped_rule

    serve_seed_sites(site)
    config = seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["feeds"] = [feed for feed in document["feeds"] if feed["name"] != "info-express"]
    document["rules"] = []
    config.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(config))
    configstore.add_feed("info-express", site.url("/b/rss"), actor="alice")
    configstore.add_channel("desk-hook", url=f"webhook+http://127.0.0.1:{webhook.server_address[1]}/desk",
                            actor="alice")
    configstore.add_rule("syria-from-the-ui", shipped_rule(), channels=["desk-hook"], actor="alice")

    run = dagbag.get_dag("newswatch_poll").test()
    assert run.state == "success"
    assert {row["feed"] for row in query("SELECT feed FROM articles")} == {"journal-du-monde", "info-express"}
    assert query("SELECT rule, channel, status FROM alerts") == [
        {"rule": "syria-from-the-ui", "channel": "desk-hook", "status": "sent"}]
    assert [payload["rule"] for payload in webhook.received] == ["syria-from-the-ui"]


def test_airflow_dags_test_cli_with_only_env(airflow_db, tmp_path, site, webhook, smtp, database_url, query):
    """`airflow dags test newswatch_poll` with NEWSWATCH_CONFIG, NEWSWATCH_DATABASE_URL and AIRFLOW__CORE__*."""
    serve_seed_sites(site)
    config = seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)
    # Airflow's metadata is the SQLite file under AIRFLOW_HOME: no AIRFLOW__DATABASE__ variable needed.
    env = {key: value for key, value in os.environ.items()
           if key.startswith("AIRFLOW__CORE__") or key in ("AIRFLOW_HOME", "PATH", "HOME")}
    env.update(NEWSWATCH_CONFIG=str(config), NEWSWATCH_DATABASE_URL=database_url)
    result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "newswatch_poll"],
                            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(query("SELECT id FROM stories")) == 1
    assert len(webhook.received) == 1


BROKEN_CONFIGS = {
    "bad-url": (b"feeds: [{name: a, url: 'gopher://nowhere'}]\n", "feeds[0].url: must be an http:// or https:// URL"),
    "not-utf8": (b"feeds: [{name: caf\xe9, url: 'http://127.0.0.1/f'}]\n", "not UTF-8"),
    "deep-rule": (b"rules: [{name: deep, query: '" + b"(" * 3000 + b"syria" + b")" * 3000 + b"'}]\n", "deep"),
    "alias-loop": (b"feeds: &a [*a]\n", "alias"),
    "duplicate-key": (b"feeds: [{name: a, url: 'http://127.0.0.1/a'}]\nfeeds: []\n", "duplicate"),
}


@pytest.mark.parametrize("case", BROKEN_CONFIGS)
def test_failed_task_notifies_the_operator(case, dagbag, tmp_path, webhook, database_url, monkeypatch):
    """A broken config fails load_config at once (one try, no retry: a retry will not heal it) and the
    operator hears about it in one message, whatever the breakage."""
    content, expected = BROKEN_CONFIGS[case]
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(content)
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(broken))
    monkeypatch.setenv("NEWSWATCH_OPERATOR_URL", f"json://127.0.0.1:{webhook.server_address[1]}/ops")

    dag_run = dagbag.get_dag("newswatch_poll").test()
    assert dag_run.state == "failed"
    instances = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert instances["load_config"].state == "failed" and instances["load_config"].try_number == 1
    assert len(webhook.received) == 1  # one broken file, one notification
    message = webhook.received[0]
    assert message["title"] == "[newswatch] task failed: newswatch_poll.load_config"
    assert expected in message["message"] and "Traceback" not in message["message"]


# --- concurrency: the Airflow pool and batches ----------------------------------------------------------------


def _pool_slots() -> int | None:
    from airflow.models.pool import Pool

    pool = Pool.get_pool("newswatch_fetch")
    return pool.slots if pool is not None else None


def _delete_pool() -> None:
    from airflow.models.pool import Pool

    if Pool.get_pool("newswatch_fetch") is not None:
        Pool.delete_pool("newswatch_fetch")


def test_mapped_tasks_run_in_the_pool_not_under_a_constant(dagbag):
    dag = dagbag.get_dag("newswatch_poll")
    for task in dag.tasks:
        mapped = task.task_id in ("poll_feeds", "fetch_articles")
        assert task.pool == ("newswatch_fetch" if mapped else "default_pool"), task.task_id
        assert task.max_active_tis_per_dagrun is None, task.task_id


def test_newswatch_pool_creates_then_resizes_the_pool_from_the_config(airflow_db, tmp_path, capsys):
    from newswatch.cli import main

    _delete_pool()
    config = tmp_path / "newswatch.yaml"
    config.write_text("polling: {max_parallel_tasks: 3}\n")
    assert main(["pool", "--config", str(config)]) == 0
    assert _pool_slots() == 3
    assert main(["pool", "--config", str(config)]) == 0
    config.write_text("polling: {max_parallel_tasks: 6}\n")
    assert main(["pool", "--config", str(config)]) == 0
    assert _pool_slots() == 6
    assert capsys.readouterr().out.splitlines() == [
        "Airflow pool newswatch_fetch: 3 slots (created)",
        "Airflow pool newswatch_fetch: 3 slots (unchanged)",
        "Airflow pool newswatch_fetch: 6 slots (resized from 3)",
    ]
    config.write_text("polling: {max_parallel_tasks: 0}\n")
    assert main(["pool", "--config", str(config)]) == 2
    assert "polling.max_parallel_tasks: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_scheduler_start_creates_a_missing_pool(airflow_db, tmp_path):
    """Airflow never schedules a task whose pool does not exist (the run would wait for ever): the scheduler
    creates the pool as it starts, through the newswatch plugin's listener, sized from the config."""
    _delete_pool()
    config = tmp_path / "newswatch.yaml"
    config.write_text("polling: {max_parallel_tasks: 5}\n")
    env = {**os.environ, "NEWSWATCH_CONFIG": str(config)}
    result = subprocess.run([sys.executable, "-m", "airflow", "scheduler", "--num-runs", "1"], env=env,
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _pool_slots() == 5


def test_only_airflow_jobs_touch_the_pool_when_they_start(airflow_db, tmp_path, monkeypatch):
    """Every task process calls the plugin's listener as it starts (with a TaskRunnerMarker), under a Celery
    worker too, and has no metadata access there: the listener leaves it alone. A job (scheduler, DAG
    processor, triggerer) creates the pool."""
    from airflow.jobs.job import Job
    from airflow.sdk.execution_time.task_runner import TaskRunnerMarker

    from newswatch import airflow_pool

    _delete_pool()
    config = tmp_path / "newswatch.yaml"
    config.write_text("polling: {max_parallel_tasks: 7}\n")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(config))
    airflow_pool.on_starting(TaskRunnerMarker())
    assert _pool_slots() is None
    airflow_pool.on_starting(Job())
    assert _pool_slots() == 7


def test_a_backlog_larger_than_the_map_limit_drains_in_one_run(dagbag, tmp_path, site, query, monkeypatch):
    """12 queued pages, 2 per batch, but Airflow maps at most 3 instances: 3 larger batches, all stored."""
    from tests.scenario import article_page, rss
    from tests.servers import Route

    items = []
    for index in range(12):
        body = "\n\n".join(f"Bulletin {index}, part {n}: the Velmora port office said on Tuesday that crossing "
                           f"{index} resumes after the storm, with extra ferries at dawn." for n in range(5))
        site.routes[f"/n/{index}"] = Route(200, article_page(f"Velmora port bulletin {index}", body, "en"),
                                           {"Content-Type": "text/html; charset=utf-8"})
        items.append({"title": f"Velmora port bulletin {index}", "link": site.url(f"/n/{index}")})
    site.routes["/feed"] = Route(200, rss("Port", items), {"Content-Type": "application/rss+xml"})
    config = tmp_path / "newswatch.yaml"
    config.write_text(f"feeds: [{{name: port, url: '{site.url('/feed')}'}}]\n"
                      "network: {allow_networks: ['127.0.0.1/32']}\n"
                      "polling: {batch_size: 2, worker_processes: 1}\n")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(config))
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")

    run = dagbag.get_dag("newswatch_poll").test()
    assert run.state == "success"
    fetches = [ti for ti in run.get_task_instances() if ti.task_id == "fetch_articles"]
    assert len(fetches) == 3 and all(ti.state == "success" for ti in fetches)
    assert len(query("SELECT id FROM articles")) == 12
    assert query("SELECT count(*) AS n FROM feed_entries WHERE status <> 'done'")[0]["n"] == 0
