"""Feed polling benchmark: newswatch's poller against a plain thread-pool poller, in the same run.

    .venv/bin/python bench/polling.py [--feeds 1000] [--baseline-feeds N] [--write [--out docs/benchmarks.md]]

What it does, all on this machine (the only traffic is to 127.0.0.1):

1. starts threaded loopback HTTP servers serving N distinct small RSS feeds (a few items each, with ETag and
   Last-Modified; a matching If-None-Match, or If-Modified-Since without one, gets 304), spread over H hosts
   127.0.0.1 .. 127.0.0.H (default 100: the poller limits concurrent requests per host name, and real feed
   lists span many hosts). Every response waits 100-300 ms first, the delay drawn per feed from a seeded RNG,
   so every run and every phase sees the same latency for the same feed. The servers count the bytes they
   receive and send, and the most requests in flight at once on one host;
2. starts an embedded PostgreSQL (pgserver) in a temporary directory, applies the migrations and points
   NEWSWATCH_DATABASE_URL at it;
3. poll 1: `newswatch.ingest.poller.poll_feeds` over the DAG's batches (`newswatch.pipeline.task_batches`), run
   the way the DAG's mapped `poll_feeds` task runs them: separate processes, at most
   `polling.max_parallel_tasks` at once (the Airflow pool's size), each batch with its own thread pool
   (polling.feed_workers), requests to one host limited across all of them (polling.per_host_concurrency);
4. poll 2: the same again after resetting `next_poll_at` to now() (every feed due), nothing changed on the
   server: every answer should be 304;
5. baseline: the same feeds through a thread pool as wide as the poller's fetches in flight
   (max_parallel_tasks x feed_workers threads), each a plain requests GET and `feedparser.parse` (no
   conditional GET, no database, no per-host limit): the strongest simple script, so that the speed-up shown
   is not concurrency alone.

It prints a Markdown table (wall time, requests/s, bytes, ratio against the baseline, conditional-GET
saving); `--write` puts it between `<!-- polling:start -->` and `<!-- polling:end -->` in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, also when loaded by a test
from report import DOC, environment, refuse_dirty_write, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

LAST_MODIFIED = "Mon, 03 Jun 2024 12:00:00 GMT"


# --------------------------------------------------------------------------------------------------
# The loopback feed server


def feed_document(index: int, items: int) -> bytes:
    """A small, distinct RSS 2.0 feed: a few items with title, link, GUID, date and a short summary."""
    rng = random.Random(index)
    words = ["market", "election", "storm", "court", "energy", "talks", "strike", "report", "vote", "deal"]
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
             f"<title>Bench feed {index}</title><link>http://127.0.0.1/site/{index}/</link>"
             f"<description>Feed number {index} of the polling benchmark</description>\n"]
    for item in range(items):
        published = datetime(2024, 6, 3, 11, 59 - item, tzinfo=UTC)
        title = " ".join(rng.choice(words) for _ in range(8)).capitalize()
        summary = " ".join(rng.choice(words) for _ in range(40))
        link = f"http://127.0.0.1/site/{index}/articles/{item}.html"
        parts.append(f"<item><title>{escape(title)}</title><link>{link}</link>"
                     f'<guid isPermaLink="true">{link}</guid><pubDate>{format_datetime(published)}</pubDate>'
                     f"<description>{escape(summary)}</description></item>\n")
    parts.append("</channel></rss>\n")
    return "".join(parts).encode("utf-8")


class _Counting:
    """Wraps the handler's socket files and counts the bytes that go through them."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def readline(self, size: int = -1) -> bytes:
        line = self.raw.readline(size)
        self.count += len(line)
        return line

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return self.raw.closed


class _FeedHandler(BaseHTTPRequestHandler):
    server: _HostServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.0"  # one request per connection, like the pollers (a session per feed)

    def setup(self) -> None:
        super().setup()
        self.rfile = _Counting(self.rfile)  # type: ignore[assignment]
        self.wfile = _Counting(self.wfile)  # type: ignore[assignment]

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.site.account(received=self.rfile.count, sent=self.wfile.count)  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's hook name
        site = self.server.site
        match = re.fullmatch(r"/feed/(\d+)\.xml", self.path)
        index = int(match.group(1)) if match else -1
        if not 0 <= index < len(site.documents) or site.host_of(index) != self.server.number:
            self._send(404, b"not found", {"Content-Type": "text/plain"})
            return
        with self.server.counting():
            self._answer(site, index)

    def _answer(self, site: FeedSite, index: int) -> None:
        time.sleep(site.delays[index])
        etag = f'"feed-{index}-v1"'
        validators = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            fresh = etag in (tag.strip() for tag in if_none_match.split(","))
        else:
            fresh = self.headers.get("If-Modified-Since") == LAST_MODIFIED
        if fresh:
            self._send(304, b"", validators)
        else:
            self._send(200, site.documents[index], {"Content-Type": "application/rss+xml; charset=utf-8", **validators})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.site.account(status=status)


class _HostServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, site: FeedSite, number: int):
        super().__init__((f"127.0.0.{number + 1}", 0), _FeedHandler)
        self.site = site
        self.number = number
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._flight_lock = threading.Lock()
        self.in_flight = self.peak_in_flight = 0

    @contextmanager
    def counting(self) -> Iterator[None]:
        """One request being answered on this host: the politeness the pollers showed it."""
        with self._flight_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            with self._flight_lock:
                self.in_flight -= 1


class FeedSite:
    """N feeds spread over H loopback hosts (127.0.0.1 .. 127.0.0.H, each its own host name for the
    poller's per-host limit), with seeded per-feed latency; counts requests, statuses and bytes."""

    def __init__(self, feeds: int, items: int, seed: int, latency: tuple[float, float], hosts: int):
        self.documents = [feed_document(index, items) for index in range(feeds)]
        self.delays = [random.Random(f"{seed}:{index}").uniform(*latency) for index in range(feeds)]
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self.servers = [_HostServer(self, number) for number in range(hosts)]

    def host_of(self, index: int) -> int:
        return index % len(self.servers)  # neighbours in a batch sit on different hosts, as in real configs

    def url(self, index: int) -> str:
        host, port = self.servers[self.host_of(index)].server_address[:2]
        return f"http://{host}:{port}/feed/{index}.xml"

    def account(self, *, status: int | None = None, received: int = 0, sent: int = 0) -> None:
        with self._lock:
            if status is not None:
                self._stats["requests"] += 1
                self._stats[f"status_{status}"] += 1
            self._stats["bytes_received"] += received
            self._stats["bytes_sent"] += sent

    def take_stats(self) -> Counter[str]:
        """The counters since the last call (a phase's traffic, with the most requests in flight on one host),
        then zero them."""
        with self._lock:
            stats, self._stats = self._stats, Counter()
        stats["peak_per_host"] = max(server.peak_in_flight for server in self.servers)
        for server in self.servers:
            server.peak_in_flight = server.in_flight
        return stats

    def start(self) -> FeedSite:
        for server in self.servers:
            server.thread.start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


# --------------------------------------------------------------------------------------------------
# Phases


@dataclass
class Phase:
    name: str
    feeds: int
    wall: float
    stats: Counter[str]
    counts: dict[str, int] = field(default_factory=dict)
    scale: float = 1.0  # > 1 when measured on a sample and extrapolated to all feeds
    durations_ms: list[int] = field(default_factory=list)

    @property
    def requests(self) -> float:
        return self.stats["requests"] * self.scale

    @property
    def seconds(self) -> float:
        return self.wall * self.scale

    @property
    def sent(self) -> float:
        return self.stats["bytes_sent"] * self.scale

    @property
    def received(self) -> float:
        return self.stats["bytes_received"] * self.scale


def _warm(_: int) -> int:
    """Import the poller in a pool process (Airflow's task start-up, not part of a poll), then hold it."""
    import newswatch.ingest.poller  # noqa: F401

    time.sleep(1.0)  # so that each warm-up task lands in a different process
    return os.getpid()


def _poll_batch(batch: list[int], settings) -> dict[str, int]:
    from newswatch.ingest.poller import poll_feeds

    return poll_feeds(batch, settings)


def run_poll(name: str, pool: ProcessPoolExecutor, batches: list[list[int]], settings, server: FeedSite,
             database_url: str) -> Phase:
    import psycopg2

    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM feed_polls")
        last_poll_id = cur.fetchone()[0]
    conn.close()
    server.take_stats()
    started = time.monotonic()
    results = list(pool.map(_poll_batch, batches, [settings] * len(batches)))
    wall = time.monotonic() - started
    counts: Counter[str] = Counter()
    for result in results:
        counts.update(result)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT duration_ms FROM feed_polls WHERE id > %s", (last_poll_id,))
        durations = [row[0] for row in cur.fetchall()]
    conn.close()
    return Phase(name, sum(len(batch) for batch in batches), wall, server.take_stats(), dict(counts),
                 durations_ms=durations)


def make_every_feed_due(database_url: str) -> None:
    import psycopg2

    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE feeds SET next_poll_at = now()")
    conn.close()


def run_baseline(server: FeedSite, indexes: list[int], total: int, threads: int) -> Phase:
    """GET + feedparser.parse in a thread pool, no validators kept, no per-host limit, no database."""
    import feedparser
    import requests

    def poll(index: int) -> int | None:
        # requests.get() builds a Session per call; this is the same without proxies from the environment.
        with requests.Session() as session:
            session.trust_env = False
            try:
                response = session.get(server.url(index), timeout=30)
                response.raise_for_status()
            except requests.RequestException:
                return None
        return len(feedparser.parse(response.content).entries)

    server.take_stats()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(poll, indexes))
    wall = time.monotonic() - started
    entries = sum(result for result in results if result is not None)
    failed = sum(result is None for result in results)
    return Phase("baseline", total, wall, server.take_stats(), {"entries": entries, "failed": failed},
                 scale=total / len(indexes))


# --------------------------------------------------------------------------------------------------
# Report


def _bytes(value: float) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def report(args: argparse.Namespace, settings, first: Phase, second: Phase, baseline: Phase,
           delays: list[float], problems: list[str]) -> str:
    workers = settings.polling.feed_workers
    tasks = settings.polling.max_parallel_tasks
    mean_latency = statistics.mean(delays)
    per_host_limit = settings.polling.per_host_concurrency
    per_host_delay: Counter[int] = Counter()
    for index, delay in enumerate(delays):
        per_host_delay[index % args.hosts] += delay
    floor = max(sum(delays) / (tasks * workers), max(per_host_delay.values()) / per_host_limit)
    batch_size = getattr(args, "batch_len", settings.polling.batch_size)
    extrapolated = baseline.scale != 1.0
    base_label = (f"baseline: {tasks * workers} threads, requests GET + feedparser.parse, no conditional GET, "
                  "no per-host limit")
    if extrapolated:
        base_label += f" (measured on {baseline.stats['requests']} feeds, scaled ×{baseline.scale:.2f})"
    rows = [
        (base_label, baseline),
        (f"poll 1: `poll_feeds`, batches of {batch_size}, {tasks} batches at once × {workers} "
         f"threads, at most {per_host_limit} requests per host, PostgreSQL writes", first),
        ("poll 2: nothing changed (conditional GET → 304)", second),
    ]
    lines = [
        "| run | requests | wall time | requests/s | bytes sent by server | bytes received | most in flight on "
        "one host | speed vs baseline | bytes vs baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, phase in rows:
        lines.append(
            f"| {label} | {phase.requests:,.0f} | {phase.seconds:,.1f} s | {phase.requests / phase.seconds:,.1f} | "
            f"{_bytes(phase.sent)} | {_bytes(phase.received)} | {phase.stats['peak_per_host']} | "
            f"×{baseline.seconds / phase.seconds:,.2f} | {phase.sent / baseline.sent:.1%} |"
        )
    saving = 1 - second.sent / first.sent
    saving_both = 1 - (second.sent + second.received) / (first.sent + first.received)
    p50 = statistics.median(first.durations_ms) if first.durations_ms else 0
    p95 = statistics.quantiles(first.durations_ms, n=20)[-1] if len(first.durations_ms) >= 20 else 0
    text = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {environment('feedparser', 'requests')}.",
        "",
        f"Method: {args.feeds:,} distinct RSS feeds ({args.items} items, about "
        f"{_bytes(statistics.mean(len(feed_document(i, args.items)) for i in range(min(args.feeds, 50))))} each) "
        f"spread over {args.hosts} loopback host{'s' if args.hosts > 1 else ''} (threaded servers on "
        f"127.0.0.1{f' .. 127.0.0.{args.hosts}' if args.hosts > 1 else ''}, neighbouring feeds on different hosts) "
        f"that wait {args.min_latency * 1000:.0f}–{args.max_latency * 1000:.0f} ms "
        f"before every answer (seeded per feed, mean {mean_latency * 1000:.0f} ms, the same in every run), with "
        "ETag and Last-Modified. Poll runs go through `newswatch.ingest.poller.poll_feeds` exactly as the DAG's mapped "
        f"task does (one process per batch, at most {tasks} at once as in the Airflow pool, start-up excluded; "
        f"at most {per_host_limit} requests per host across them) against an "
        "embedded PostgreSQL; before poll 2 every feed's `next_poll_at` is reset so that all are due. Bytes are "
        "counted by the server on the wire (status line, headers and body; no compression). Speed vs baseline "
        "is baseline wall time / run wall time; bytes vs baseline is the run's bytes sent / the baseline's.",
        "",
        *lines,
        "",
        f"- Conditional-GET saving, poll 2 vs poll 1: **{saving:.1%}** of the bytes sent by the server "
        f"({saving_both:.1%} counting both directions; request headers do not shrink). Target: > 90%.",
        f"- Poll 1 stored {first.counts.get('new_entries', 0):,} new entries, {first.counts.get('failed', 0)} "
        f"failed; poll 2: {second.counts.get('not_modified', 0):,} of {second.feeds:,} answered 304, "
        f"{second.counts.get('new_entries', 0)} new entries.",
        f"- Per feed in poll 1 (feed_polls.duration_ms, fetch + parse + store): median {p50:.0f} ms, "
        f"p95 {p95:.0f} ms. Lower bound set by the injected latency alone: {floor:.1f} s "
        f"({tasks}×{workers} fetches in flight, at most {per_host_limit} per host).",
    ]
    if extrapolated:
        text.append(f"- The baseline was measured on {baseline.stats['requests']:,} of the {args.feeds:,} feeds "
                    f"({baseline.wall:.1f} s) and scaled by {baseline.scale:.2f}: its time and bytes are "
                    "extrapolated, not measured.")
    text += [f"- **Problem:** {problem}" for problem in problems]
    text += ["", "Reproduce (about a minute for 1,000 feeds on 2 cores):", "",
             "```sh", f".venv/bin/python bench/polling.py --feeds {args.feeds} --hosts {args.hosts}"
             + (f" --baseline-feeds {args.baseline_feeds}" if extrapolated else "") + " --write", "```"]
    return "\n".join(text)


# --------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=1000, help="number of feeds (default 1000)")
    parser.add_argument("--items", type=int, default=5, help="items per feed (default 5)")
    parser.add_argument("--hosts", type=int, default=100,
                        help="loopback hosts the feeds are spread over, 127.0.0.1 .. 127.0.0.N (default 100; "
                        "1 puts every feed behind the poller's per-host limit)")
    parser.add_argument("--baseline-feeds", type=int, default=None,
                        help="measure the baseline on this many feeds and extrapolate (default: all feeds)")
    parser.add_argument("--min-latency", type=float, default=0.1, help="seconds (default 0.1)")
    parser.add_argument("--max-latency", type=float, default=0.3, help="seconds (default 0.3)")
    parser.add_argument("--seed", type=int, default=20240603)
    parser.add_argument("--write", action="store_true", help="update the polling section of --out")
    parser.add_argument("--out", type=Path, default=DOC, help=f"Markdown file for --write (default {DOC})")
    args = parser.parse_args(argv)
    refuse_dirty_write(args.write)
    if args.feeds < 1 or not 0 <= args.min_latency <= args.max_latency <= 5:
        parser.error("need --feeds >= 1 and 0 <= --min-latency <= --max-latency <= 5")
    if not 1 <= args.hosts <= 254:
        parser.error("--hosts must be between 1 and 254")
    if args.baseline_feeds is not None and not 1 <= args.baseline_feeds <= args.feeds:
        parser.error("--baseline-feeds must be between 1 and --feeds")
    return args


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pgserver
    import psycopg2

    from newswatch import db
    from newswatch.config import Settings
    from newswatch.ingest.poller import sync_feeds
    from newswatch.pipeline import task_batches

    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nw-bench-") as tmp:
        _progress("starting the embedded PostgreSQL")
        postgres = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        server = FeedSite(args.feeds, args.items, args.seed, (args.min_latency, args.max_latency), args.hosts).start()
        try:
            admin = psycopg2.connect(postgres.get_uri("postgres"))
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute("CREATE DATABASE newswatch_bench")
            admin.close()
            database_url = postgres.get_uri("newswatch_bench")
            db.migrate(database_url)
            os.environ[db.DATABASE_URL_ENV] = database_url  # inherited by the pool's processes

            settings = Settings.model_validate({
                "feeds": [{"name": f"bench-{index:05d}", "url": server.url(index)} for index in range(args.feeds)],
                # 127.0.0.1 .. 127.0.0.H: loopback only (a /32 when --hosts 1).
                "network": {"allow_networks": ["127.0.0.1/32" if args.hosts == 1 else "127.0.0.0/24"]},
            })
            ids = sync_feeds(settings)
            batches = task_batches(ids, settings)
            args.batch_len = max((len(batch) for batch in batches), default=0)
            tasks = settings.polling.max_parallel_tasks
            _progress(f"{len(ids)} feeds in {len(batches)} batches; warming up {tasks} processes")
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=tasks, mp_context=context) as pool:
                list(pool.map(_warm, range(tasks)))
                _progress("poll 1")
                first = run_poll("poll 1", pool, batches, settings, server, database_url)
                _progress(f"poll 1: {first.wall:.1f} s, {dict(first.counts)}")
                make_every_feed_due(database_url)
                _progress("poll 2")
                second = run_poll("poll 2", pool, batches, settings, server, database_url)
                _progress(f"poll 2: {second.wall:.1f} s, {dict(second.counts)}")

            indexes = list(range(args.feeds))
            if args.baseline_feeds and args.baseline_feeds < args.feeds:
                indexes = sorted(random.Random(args.seed).sample(indexes, args.baseline_feeds))
            threads = settings.polling.max_parallel_tasks * settings.polling.feed_workers
            _progress(f"baseline over {len(indexes)} feeds, {threads} threads")
            baseline = run_baseline(server, indexes, args.feeds, threads)
            _progress(f"baseline: {baseline.wall:.1f} s")
        finally:
            server.stop()
            postgres.cleanup()

    if first.counts.get("failed") or first.counts.get("new_entries") != args.feeds * args.items:
        problems.append(f"poll 1 was not clean: {first.counts}")
    if second.counts.get("not_modified") != args.feeds:
        problems.append(f"poll 2 did not get 304 for every feed: {second.counts} (were all feeds due?)")
    for phase in (first, second):
        if phase.stats["peak_per_host"] > settings.polling.per_host_concurrency:
            problems.append(f"{phase.name}: {phase.stats['peak_per_host']} requests in flight on one host, over the "
                            f"limit of {settings.polling.per_host_concurrency}")
    if baseline.counts["failed"] or baseline.counts["entries"] != len(indexes) * args.items:
        problems.append(f"the baseline was not clean: {baseline.counts}")
    section = report(args, settings, first, second, baseline, server.delays, problems)
    print(section)
    if args.write:
        write_section("polling", "## Feed polling (`bench/polling.py`)", section, args.out)
        _progress(f"wrote {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
