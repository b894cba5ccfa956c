"""Scale-out benchmark: one cycle of the same latency-bound workload with 1 Celery worker, 2 Celery workers and
`newswatch poll` (one process), back to back in one run.

    .venv/bin/python bench/scaleout.py [--hosts 60] [--feeds 480] [--entries 4] [--concurrency 2] [--repeat N] [--write]

What it does, all on this machine (the only traffic is to 127.0.0.1):

1. serves the wire workload of the distributed test (``tests/wire.py``), larger: ``--feeds`` RSS feeds of
   ``--entries`` pages each, spread over ``--hosts`` loopback hosts (each a (host, port) of its own) that wait
   100-300 ms (``--min-latency``, ``--max-latency``, drawn per host from a seeded RNG) before every answer and
   count the requests they answer at once; the pages are copies of six wire stories, so the articles, stories
   and alerts every run must give are known beforehand;
2. **1 worker**, then **2 workers**: a fresh deployment each time, as compose runs it, on loopback processes
   (``tests/cluster.py``: Redis, an embedded PostgreSQL with a fresh news database, Airflow's API server,
   scheduler and DAG processor, Celery workers of ``--concurrency`` slots each; the Airflow pool
   ``newswatch_fetch`` sized for two workers, ``polling.max_parallel_tasks`` = 2 x concurrency), warmed up with
   one run of ``newswatch_maintenance``, then one run of ``newswatch_poll`` each. The cycle is the run's
   duration as Airflow records it (start to end), start-up of the deployment excluded; the fan-out is the span
   of its mapped tasks (first ``poll_feeds`` start to last ``fetch_articles`` end);
3. **`newswatch poll`**: the same cycle in one process (``newswatch poll --json``) against a fresh database.

Every run is checked against the truth (articles, stories, alerts, each alert received once) and for the
per-host limit (the most requests one host answered at once, at most ``polling.per_host_concurrency``). It
prints a Markdown table with the ratio of each cycle to the 1-worker one; `--write` puts it between
``<!-- scaleout:start -->`` and ``<!-- scaleout:end -->`` in docs/benchmarks.md (refused with uncommitted
changes). Target: 2 workers >= 1.7x 1 worker. Exit status 1 when a run was not clean or missed the target.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import DOC, environment, refuse_dirty_write, write_section  # noqa: E402

from tests.cluster import Cluster  # noqa: E402
from tests.servers import WebhookReceiver  # noqa: E402
from tests.wire import WireSites  # noqa: E402

SECTION = "scaleout"
TARGET = 1.7


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    name: str
    cycle: float  # seconds
    fan_out: float | None = None  # seconds of the mapped tasks, first start to last end
    tasks: Counter[str] = field(default_factory=Counter)  # mapped task instances per worker
    peak: int = 0  # most requests in flight on one host
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _truth(run: Run, sites: WireSites, webhook: WebhookReceiver, news_url: str, per_host: int) -> None:
    """Counts of the run's database, and what differs from the truth."""
    import psycopg2

    conn = psycopg2.connect(news_url)
    try:
        with conn.cursor() as cur:
            for table in ("articles", "stories", "alerts"):
                cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
                run.counts[table] = cur.fetchone()[0]
            cur.execute("SELECT count(*) FROM alerts WHERE status = 'sent'")
            sent = cur.fetchone()[0]
    finally:
        conn.close()
    keys = Counter(request.headers.get("idempotency-key") for request in webhook.requests)
    run.counts["received"] = sum(keys.values())
    expected = {"articles": sites.articles, "stories": len(sites.stories()), "alerts": len(sites.alerts())}
    for name, value in expected.items():
        if run.counts[name] != value:
            run.problems.append(f"{run.name}: {run.counts[name]} {name}, expected {value}")
    if sent != expected["alerts"] or len(keys) != expected["alerts"] or set(keys.values()) != {1}:
        run.problems.append(f"{run.name}: {sent} alerts sent, {run.counts['received']} received for {len(keys)} keys")
    run.peak = sites.peak_in_flight()
    if run.peak > per_host:
        run.problems.append(f"{run.name}: {run.peak} requests in flight on one host, over the limit of {per_host}")


def _reset(sites: WireSites, webhook: WebhookReceiver) -> None:
    sites.reset_peaks()
    webhook.requests.clear()
    webhook.received.clear()


def run_celery(workers: int, args: argparse.Namespace, sites: WireSites, webhook: WebhookReceiver,
               config: Path, folder: Path) -> Run:
    names = [f"w{number}" for number in range(1, workers + 1)]
    name = f"{workers} Celery worker{'s' if workers > 1 else ''}"
    log(f"{name}: starting the deployment")
    with Cluster(folder, config, concurrency=args.concurrency) as cluster:
        cluster.start(names)
        cluster.warm_up()  # measured as a deployment that has been up for a while
        _reset(sites, webhook)
        log(f"{name}: running one cycle")
        run_id = cluster.trigger()
        state = cluster.wait_for_run(run_id, args.timeout)
        instances = cluster.task_instances(run_id)
        mapped = [ti for ti in instances if ti["task_id"] in ("poll_feeds", "fetch_articles") and ti["start_date"]]
        run = Run(name, _seconds(state["start_date"], state["end_date"]))
        if mapped:
            run.fan_out = _seconds(min(ti["start_date"] for ti in mapped), max(ti["end_date"] for ti in mapped))
        run.tasks = Counter(ti["hostname"] for ti in mapped)
        if state["state"] != "success":
            run.problems.append(f"{name}: the run ended {state['state']}")
        _truth(run, sites, webhook, cluster.news_url, args.per_host)
    log(f"{name}: cycle {run.cycle:.1f} s, fan-out {run.fan_out or 0:.1f} s, tasks {dict(run.tasks)}, "
        f"peak {run.peak}, {run.counts}")
    return run


def run_cli(args: argparse.Namespace, sites: WireSites, webhook: WebhookReceiver, config: Path, folder: Path) -> Run:
    import pgserver

    log("newswatch poll: one process")
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder / "pg", cleanup_mode="delete")
    try:
        server.psql("CREATE DATABASE news")
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "NEWSWATCH_"))}
        env.update(NEWSWATCH_DATABASE_URL=server.get_uri("news"), NEWSWATCH_CONFIG=str(config),
                   NEWSWATCH_DATA_DIR=str(folder / "data"), PYTHONWARNINGS="ignore")
        subprocess.run([sys.executable, "-m", "newswatch.cli", "migrate"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        _reset(sites, webhook)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "newswatch.cli", "poll", "--json"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=args.timeout)
        run = Run("`newswatch poll`, one process", time.perf_counter() - started)
        if result.returncode != 0:
            run.problems.append(f"newswatch poll exited {result.returncode}: {result.stderr[-500:]}")
        else:
            totals = json.loads(result.stdout)
            run.fan_out = (totals.get("feeds.ms", 0) + totals.get("articles.ms", 0)) / 1000
        _truth(run, sites, webhook, server.get_uri("news"), args.per_host)
    finally:
        server.cleanup()
    log(f"newswatch poll: {run.cycle:.1f} s, fan-out {run.fan_out or 0:.1f} s, peak {run.peak}, {run.counts}")
    return run


def report(args: argparse.Namespace, sites: WireSites, runs: list[Run], ratio: float, problems: list[str],
           attempts: dict[str, list[float]]) -> str:
    one = runs[0]
    lines = ["| setup | cycle | vs 1 worker | fan-out (feeds + pages) | vs 1 worker | mapped tasks per worker | "
             "most in flight on one host | articles / stories / alerts |",
             "|---|---:|---:|---:|---:|---|---:|---|"]
    for run in runs:
        fan = f"{run.fan_out:,.1f} s" if run.fan_out else "–"
        fan_ratio = f"×{one.fan_out / run.fan_out:.2f}" if run.fan_out and one.fan_out else "–"
        tasks = ", ".join(f"{host} {count}" for host, count in sorted(run.tasks.items())) or "–"
        counts = " / ".join(str(run.counts.get(name, "?")) for name in ("articles", "stories", "alerts"))
        lines.append(f"| {run.name} | {run.cycle:,.1f} s | ×{one.cycle / run.cycle:.2f} | {fan} | {fan_ratio} | "
                     f"{tasks} | {run.peak} | {counts} |")
    latency = f"{args.min_latency * 1000:.0f}–{args.max_latency * 1000:.0f} ms"
    text = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {environment('apache-airflow-core', 'celery')}.",
        "",
        f"Method: {args.feeds} RSS feeds of {args.entries} pages each ({sites.articles:,} pages, copies of "
        f"{len(sites.stories())} wire stories) on {args.hosts} loopback hosts that wait {latency} before every "
        "answer (seeded per host). Each Celery run is a fresh deployment on loopback processes, as compose runs "
        f"it (Redis, PostgreSQL, API server, scheduler, DAG processor, workers of {args.concurrency} slots each, "
        f"the pool `newswatch_fetch` of {2 * args.concurrency} slots), and one run of `newswatch_poll`: *cycle* "
        "is the run's duration as Airflow records it, *fan-out* the span of its mapped `poll_feeds` and "
        "`fetch_articles` tasks. `newswatch poll` runs the same cycle in one process against a fresh database "
        f"(its fan-out: the feed and article stages). Settings: batches of at least {args.batch_size} (about one per "
        f"pool slot), {args.feed_workers} feed and {args.article_workers} page fetches in flight per task, "
        f"{args.worker_processes} extraction process per task, at most {args.per_host} requests per host across "
        "everything: one worker's cycle waits on the servers; with two, the pages' CPU work comes close to filling "
        "the cores (all processes share them). Every run is checked against the truth "
        "(articles, stories, alerts, each alert received once by the webhook receiver).",
        "",
        *lines,
        "",
        f"- 2 workers vs 1: **×{ratio:.2f}** per cycle (target ≥ ×{TARGET}).",
    ]
    if args.repeat > 1:
        text.append(f"- Fastest of {args.repeat} interleaved runs each; all cycles: " + "; ".join(
            f"{name}: {', '.join(f'{cycle:.1f}' for cycle in cycles)} s" for name, cycles in attempts.items()) + ".")
    text += [f"- **Problem:** {problem}" for problem in problems]
    text += ["", "Reproduce (about 15 minutes on 2 cores per --repeat):", "", "```sh",
             f".venv/bin/python bench/scaleout.py --hosts {args.hosts} --feeds {args.feeds} --entries {args.entries} "
             f"--concurrency {args.concurrency} --repeat {args.repeat} --write", "```"]
    return "\n".join(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=60, help="loopback hosts (default 60)")
    parser.add_argument("--feeds", type=int, default=480, help="feeds (default 480)")
    parser.add_argument("--entries", type=int, default=4, help="pages per feed (default 4)")
    parser.add_argument("--min-latency", type=float, default=0.1, help="seconds (default 0.1)")
    parser.add_argument("--max-latency", type=float, default=0.3, help="seconds (default 0.3)")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker slots per worker (default 2)")
    parser.add_argument("--batch-size", type=int, default=None, help="polling.batch_size (default: the config's)")
    parser.add_argument("--feed-workers", type=int, default=4, help="polling.feed_workers (default 4)")
    parser.add_argument("--article-workers", type=int, default=2, help="polling.article_workers (default 2)")
    parser.add_argument("--worker-processes", type=int, default=1,
                        help="polling.worker_processes per task (default 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the setups this many times, interleaved; the fastest cycle of each counts")
    parser.add_argument("--per-host", type=int, default=2, help="polling.per_host_concurrency (default 2)")
    parser.add_argument("--only", choices=["1", "2", "poll"], action="append",
                        help="run only these setups (repeatable; default all three)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one cycle may take (default 900)")
    parser.add_argument("--write", action="store_true", help="update the scaleout section of --out")
    parser.add_argument("--out", type=Path, default=DOC, help=f"Markdown file for --write (default {DOC})")
    args = parser.parse_args(argv)
    refuse_dirty_write(args.write)
    if args.write and args.only:
        parser.error("--write needs all three setups (no --only)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Stopped from outside (also in the background, where SIGINT is ignored): stop the deployments too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from newswatch.config import Polling

    defaults = Polling()
    args.batch_size = args.batch_size or defaults.batch_size
    only = set(args.only or ["1", "2", "poll"])
    sites = WireSites(hosts=args.hosts, feeds=args.feeds, entries=args.entries,
                      latency=(args.min_latency, args.max_latency)).start()
    webhook = WebhookReceiver().start()
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="nw-scaleout-") as tmp:
            folder = Path(tmp)
            config = sites.config(folder / "newswatch.yaml", webhook, batch_size=args.batch_size,
                                  feed_workers=args.feed_workers, article_workers=args.article_workers,
                                  worker_processes=args.worker_processes, per_host_concurrency=args.per_host,
                                  max_parallel_tasks=2 * args.concurrency)
            for attempt in range(args.repeat):
                for workers in (1, 2):
                    if str(workers) in only:
                        runs.append(run_celery(workers, args, sites, webhook, config,
                                               folder / f"celery-{workers}-{attempt}"))
                if "poll" in only:
                    runs.append(run_cli(args, sites, webhook, config, folder / f"cli-{attempt}"))
    finally:
        sites.stop()
        webhook.stop()
    problems = [problem for run in runs for problem in run.problems]
    attempts = {run.name: [other.cycle for other in runs if other.name == run.name] for run in runs}
    by_name: dict[str, Run] = {}
    for run in runs:  # the fastest cycle of each setup
        if run.name not in by_name or run.cycle < by_name[run.name].cycle:
            by_name[run.name] = run
    runs = list(by_name.values())
    ratio = 0.0
    if "1 Celery worker" in by_name and "2 Celery workers" in by_name:
        ratio = by_name["1 Celery worker"].cycle / by_name["2 Celery workers"].cycle
        if ratio < TARGET:
            problems.append(f"2 workers are ×{ratio:.2f} of 1 worker, under the target of ×{TARGET}")
    section = report(args, sites, runs, ratio, problems, attempts)
    print(section)
    if args.write:
        write_section(SECTION, "## Scale-out: Celery workers (`bench/scaleout.py`)", section, args.out)
        log(f"wrote {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
