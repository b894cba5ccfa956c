"""`make run`'s script brings up Airflow with the DAG unpaused, the plugin, and a run that alerts."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from tests.conftest import ROOT
from tests.scenario import seed_config, serve_seed_sites
from tests.servers import free_port, stop_process_group

pytestmark = pytest.mark.slow  # starts the whole of Airflow through scripts/run.sh


@pytest.fixture
def standalone(tmp_path, site, webhook, smtp):
    serve_seed_sites(site)
    data = tmp_path / "data"
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "NEWSWATCH_"))}
    env.update(
        PATH=f"{ROOT / '.venv' / 'bin'}:{env['PATH']}",
        NEWSWATCH_DATA_DIR=str(data),
        NEWSWATCH_CONFIG=str(seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)),
        AIRFLOW__API__PORT=str(port),
    )
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(["scripts/run.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 240
    while "newswatch is up" not in log_path.read_text() and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("run.sh exited:\n" + log_path.read_text()[-4000:])
        time.sleep(1)
    try:
        assert "newswatch is up" in log_path.read_text(), log_path.read_text()[-4000:]
        yield f"http://localhost:{port}", data, log_path, env
    finally:
        stop_process_group(process, timeout=60)
        subprocess.run([str(ROOT / ".venv" / "bin" / "newswatch"), "db", "stop"], env=env, capture_output=True)


def test_run_script_serves_dag_plugin_and_delivers(standalone, webhook):
    base, data, log_path, env = standalone
    banner = log_path.read_text()
    login = next(line for line in banner.splitlines() if "login:" in line)
    user, password = login.split("login:", 1)[1].strip().split(" / ")
    token = requests.post(f"{base}/auth/token", json={"username": user, "password": password},
                          timeout=10).json()["access_token"]
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"

    assert api.get(f"{base}/api/v2/importErrors", timeout=10).json()["total_entries"] == 0
    deadline = time.monotonic() + 120
    dag = None
    while time.monotonic() < deadline:  # the dag-processor parses the folder shortly after start
        answer = api.get(f"{base}/api/v2/dags/newswatch_poll", timeout=10)
        if answer.ok:
            dag = answer.json()
            break
        time.sleep(2)
    assert dag is not None and dag["is_paused"] is False
    assert api.get(f"{base}/newswatch/", timeout=10).status_code == 200
    assert requests.get(f"{base}/newswatch/", timeout=10).status_code == 401

    run = api.post(f"{base}/api/v2/dags/newswatch_poll/dagRuns", json={"logical_date": None}, timeout=10)
    assert run.ok, run.text
    run_id = run.json()["dag_run_id"]
    state = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and state not in ("success", "failed"):
        time.sleep(3)
        try:  # the run's tasks keep both cores busy: a slow answer is asked again, the deadline still holds
            state = api.get(f"{base}/api/v2/dags/newswatch_poll/dagRuns/{run_id}", timeout=30).json()["state"]
        except requests.exceptions.RequestException:
            continue
    assert state == "success", log_path.read_text()[-4000:]
    assert len(webhook.received) == 1
    page = api.get(f"{base}/newswatch/", timeout=30).text
    assert "Contre-attaque américaine en Syrie" in page and "syria-strikes" in page

    # make stop stops the process group make run recorded, and only that.
    group = int((data / "airflow.pgid").read_text())
    subprocess.run(["make", "stop"], cwd=ROOT, env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _group_alive(group):
        time.sleep(1)
    assert not _group_alive(group), "airflow standalone is still running after make stop"
    assert not (data / "airflow.pgid").exists()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
