"""newswatch scaled out as compose runs it: the CeleryExecutor with two workers, on loopback processes.

Redis (Debian's redis-server), the embedded PostgreSQL (news and Airflow's metadata), Airflow's API server,
scheduler and DAG processor and two Celery workers ``w1`` and ``w2`` (``tests/cluster.py``) run one cycle of
a latency-bound workload with a known outcome (``tests/wire.py``): 12 feeds on 4 loopback hosts answering in
100-300 ms, 24 pages that are copies of 6 wire stories, 5 alerts to a webhook receiver. Mid-cycle, the worker
fetching a page that the test holds is killed with SIGKILL (with everything under it); a short
``[scheduler] task_instance_heartbeat_timeout`` lets the scheduler notice, and the other worker retries its
tasks. Then:

* tasks ran on both workers (each task instance's ``hostname``), the killed one's were retried on the other,
  within a bounded time;
* articles, stories and alerts are exactly the workload's truth, and the receiver got each alert once;
* no host ever had more than ``polling.per_host_concurrency`` requests in flight.

Not part of ``make test``: ``make test-distributed`` runs it (``.ci/run`` does, after ``make test``). It takes
about 3-4 minutes on 2 cores.
"""

from __future__ import annotations

import time
from collections import Counter

import psycopg2
import psycopg2.extras
import pytest

from tests.cluster import Cluster
from tests.servers import WebhookReceiver
from tests.wire import WireSites

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

WORKERS = ("w1", "w2")
PER_HOST = 2
HEARTBEAT_TIMEOUT = 30  # seconds without a heartbeat before the scheduler gives a task up
VISIBILITY_TIMEOUT = 120  # seconds before Redis hands an unacknowledged task message out again
# Heartbeat timeout + its detection interval + the DAG's 30 s retry delay + queueing and start-up, with room
# for a loaded 2-core machine.
RECOVERY_BOUND = 240


@pytest.fixture
def workload():
    sites = WireSites(hosts=4, feeds=12, entries=2, latency=(0.1, 0.3)).start()
    webhook = WebhookReceiver().start()
    yield sites, webhook
    sites.stop()
    webhook.stop()


def _rows(url: str, sql: str) -> list[dict]:
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def _owner(cluster: Cluster, client: tuple[str, int]) -> str | None:
    """The worker whose process tree holds the connection coming from ``client``."""
    import psutil

    owners = {conn.pid for conn in psutil.net_connections(kind="tcp")
              if conn.laddr and (conn.laddr.ip, conn.laddr.port) == tuple(client) and conn.pid}
    return next((name for name in WORKERS if owners & cluster.worker_tree(name)), None)


def _cycle_with_a_kill(cluster: Cluster, held) -> dict:
    """Start the cluster, run one cycle, SIGKILL the worker fetching the held page midway; what happened."""
    cluster.start(list(WORKERS))
    run_id = cluster.trigger()

    # Mid-cycle: a fetch_articles task is fetching the held page. Kill the worker running it.
    deadline = time.monotonic() + 300
    while not held.arrived.wait(2) and time.monotonic() < deadline:
        assert cluster.run(run_id)["state"] == "running", "the run ended before the held page was requested"
    assert held.arrived.is_set(), "the held page was never requested"
    victim = _owner(cluster, held.client)
    assert victim is not None, "no worker holds the held page's connection"
    lost = {(ti["task_id"], ti["map_index"]) for ti in cluster.task_instances(run_id)
            if ti["state"] == "running" and ti["hostname"] == victim}
    assert any(task_id == "fetch_articles" for task_id, _ in lost), lost
    killed = time.monotonic()
    cluster.kill_worker(victim)
    held.release.set()

    recovered: dict[tuple[str, int], float] = {}  # seconds from the kill to the task's success
    while len(recovered) < len(lost) and time.monotonic() - killed < RECOVERY_BOUND + 60:
        for ti in cluster.task_instances(run_id):
            key = (ti["task_id"], ti["map_index"])
            if key in lost and key not in recovered and ti["state"] == "success":
                recovered[key] = time.monotonic() - killed
        time.sleep(2)
    return {"victim": victim, "survivor": next(name for name in WORKERS if name != victim), "lost": lost,
            "recovered": recovered, "run": cluster.wait_for_run(run_id, 300),
            "instances": cluster.task_instances(run_id), "tries": {key: cluster.tries(run_id, *key) for key in lost},
            "articles": _rows(cluster.news_url, "SELECT url, story_id FROM articles"),
            "alerts": _rows(cluster.news_url, "SELECT rule, story_id, channel, status, idempotency_key FROM alerts")}


def test_two_celery_workers_share_a_cycle_and_one_killed_midway_is_recovered(tmp_path, workload):
    sites, webhook = workload
    config = sites.config(tmp_path / "newswatch.yaml", webhook, batch_size=2, max_parallel_tasks=4,
                          per_host_concurrency=PER_HOST, worker_processes=1, article_workers=4, feed_workers=4)
    held = sites.hold(next(iter(sites.story_of)))  # the first page of the first feed: the fetch phase's start
    cluster = Cluster(tmp_path / "cluster", config, concurrency=2, heartbeat_timeout=HEARTBEAT_TIMEOUT,
                      visibility_timeout=VISIBILITY_TIMEOUT)
    try:
        with cluster:
            outcome = _cycle_with_a_kill(cluster, held)
    except BaseException:
        print(cluster.diagnostics())  # shown by pytest with the failure
        raise
    run, instances, lost, recovered = outcome["run"], outcome["instances"], outcome["lost"], outcome["recovered"]
    victim, survivor, tries = outcome["victim"], outcome["survivor"], outcome["tries"]

    assert run["state"] == "success", [(ti["task_id"], ti["map_index"], ti["state"]) for ti in instances]

    # Both workers ran tasks; the lost ones were retried on the survivor, within the bound.
    hosts = Counter(ti["hostname"] for ti in instances if ti["state"] == "success")
    assert set(hosts) == set(WORKERS), hosts
    assert set(recovered) == lost, f"not recovered within {RECOVERY_BOUND + 60} s: {lost - set(recovered)}"
    assert max(recovered.values()) <= RECOVERY_BOUND, recovered
    print(f"{victim} killed; its {len(lost)} task(s) done on {survivor} after {max(recovered.values()):.0f} s")
    for key in lost:
        final = next(ti for ti in instances if (ti["task_id"], ti["map_index"]) == key)
        assert final["hostname"] == survivor and final["try_number"] >= 2, final
        assert victim in {attempt["hostname"] for attempt in tries[key]}, tries[key]

    # Exactly the truth: every page stored once, one story per wire story, every alert once.
    articles = outcome["articles"]
    assert len(articles) == sites.articles
    assert {row["url"] for row in articles} == set(sites.story_of)
    slugs_of: dict[int, set[str]] = {}
    for row in articles:
        slugs_of.setdefault(row["story_id"], set()).add(sites.story_of[row["url"]].slug)
    assert sorted(len(slugs) for slugs in slugs_of.values()) == [1] * len(sites.stories()), slugs_of
    slug = {story: slugs.pop() for story, slugs in slugs_of.items()}
    alerts = outcome["alerts"]
    assert {(a["rule"], slug[a["story_id"]], a["channel"]) for a in alerts} == sites.alerts()
    assert len(alerts) == len(sites.alerts()) and {a["status"] for a in alerts} == {"sent"}
    received = Counter(request.headers.get("idempotency-key") for request in webhook.requests)
    assert received == Counter(a["idempotency_key"] for a in alerts), received
    assert set(received.values()) == {1}

    # Politeness held across both workers and every task process.
    assert 1 <= sites.peak_in_flight() <= PER_HOST
