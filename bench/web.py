"""The newswatch pages at archive scale: 1M articles, times per page through a real Airflow api-server.

An embedded PostgreSQL (pgserver, in a temporary folder removed afterwards) gets the real schema (every
migration) and a synthetic archive loaded with COPY:

- ``--articles`` articles (default 1,000,000) arriving at 2,740 a day (a year for 1M) from 200 feeds in 8
  languages (en, de, fr, es, it, pl, tr, ru). Titles and bodies are windows of real text (8 and 80 words)
  from the SemEval-2022 news-similarity corpus in ``../shared/data/news-similarity/`` (synthetic words when
  it is absent), so the language configurations stem real words and term frequencies are natural. The
  generated ``search_vector`` is computed by PostgreSQL during the COPY, as in production.
- stories of 1 to 6 consecutive articles (mean 2.5, with dedup reasons and scores), 3% of them alerted by
  one of 10 rules with 1-3 delivery attempts each, 30 days of hourly feed polls and 5-minute poll runs.

Then an ``airflow api-server`` (SQLite metadata in the temporary folder, SimpleAuthManager) serves the
plugin; every request carries a real JWT from ``/auth/token``, so Airflow's auth dependency runs as in
production. Measured, each page ``--repeat`` times after a warm-up (median and p90, milliseconds):

1. **without** migration 0006's indexes (the GIN index on ``search_vector`` and the keyset/story/feed
   indexes are dropped before the load), then
2. **with** them (built after the load, timed),

against two floors in the same run: ``/newswatch/health`` (HTTP only) and a bench-only route behind the same
auth that opens a connection and runs ``SELECT 1`` in the same read-only transaction as the pages.
Ratios in the report are page median / SELECT-1 median, and without / with indexes.

Run: .venv/bin/python bench/web.py [--articles 1000000] [--repeat 15] [--write]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, also when loaded by a test

import psycopg2  # noqa: E402
import requests  # noqa: E402
from report import DOC, environment, refuse_dirty_write, write_section  # noqa: E402

from newswatch import db  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "news-similarity" / "training_set.csv"
MIGRATION = ROOT / "plugins" / "newswatch" / "migrations" / "0006_search_and_ui.sql"
PER_DAY = 2740
LANGUAGES = {"en": 0.35, "de": 0.20, "fr": 0.12, "es": 0.12, "it": 0.08, "pl": 0.05, "tr": 0.04, "ru": 0.04}
FEEDS = 200
RULES = [f"rule-{n}" for n in range(10)]
CHANNELS = ["webhook", "email", "archive"]
NOW = datetime.now(UTC).replace(microsecond=0)
PASSWORD = "bench-password"
NULL = "\\N"  # COPY's text-format NULL
BENCH_PLUGIN = '''
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI

from newswatch.web.app import _AUTH
from newswatch.web.queries import reading

bench = FastAPI()


@bench.get("/select1", dependencies=_AUTH)
def select1():
    with reading() as cur:
        cur.execute("SELECT 1 AS one")
        return cur.fetchone()


class NewswatchBench(AirflowPlugin):
    name = "newswatch_bench"
    fastapi_apps = [{"app": bench, "url_prefix": "/nwbench", "name": "newswatch bench"}]
'''


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data -----------------------------------------------------------------------------------------------


def token_streams(rng: random.Random) -> dict[str, list[str]]:
    """Per language, the corpus's words in order (windows of it read like news); synthetic when absent."""
    streams: dict[str, list[str]] = {}
    if CORPUS.exists():
        csv.field_size_limit(sys.maxsize)
        seen: set[str] = set()
        with CORPUS.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                for text, language in ((row["text1"], row["lang1"]), (row["text2"], row["lang2"])):
                    if language in LANGUAGES and text not in seen:
                        seen.add(text)
                        streams.setdefault(language, []).extend(re.findall(r"\w[\w'-]*", text))
    for language in LANGUAGES:
        if len(streams.get(language, [])) < 2000:
            vocab = ["".join(rng.choice("abcdefghijklmnoprstuvy") for _ in range(rng.randint(3, 10)))
                     for _ in range(5000)]
            weights = [1 / (rank + 1) for rank in range(len(vocab))]
            streams[language] = rng.choices(vocab, weights=weights, k=50_000)
    return streams


def _clean(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _ts(moment: datetime) -> str:
    return moment.isoformat()


class _Chunks(io.RawIOBase):
    """A file-like object over an iterator of text lines, for COPY ... FROM STDIN without a temp file."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while len(self._buffer) < len(target):
            try:
                self._buffer += next(self._lines).encode()
            except StopIteration:
                break
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _copy(cur, table: str, columns: str, lines: Iterator[str]) -> float:
    began = time.perf_counter()
    cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.BufferedReader(_Chunks(lines), 1 << 20))
    return time.perf_counter() - began


def load(url: str, articles: int, seed: int) -> dict:
    """Fill the archive; returns timings and facts used by the measurements."""
    rng = random.Random(seed)
    streams = token_streams(rng)
    facts: dict = {"timings": {}}
    languages = list(LANGUAGES)
    weights = [LANGUAGES[code] for code in languages]
    feeds = [(n + 1, f"{languages[n % len(languages)]}-feed-{n:03d}", languages[n % len(languages)])
             for n in range(FEEDS)]
    feeds_by_language: dict[str, list[tuple[int, str, str]]] = {}
    for feed in feeds:
        feeds_by_language.setdefault(feed[2], []).append(feed)
    span = timedelta(days=articles / PER_DAY)
    start = NOW - span
    step = span / articles

    # Stories: consecutive articles, 1-6 per story (mean 2.5).
    sizes = [1, 1, 1, 2, 2, 3, 4, 6]
    plan: list[tuple[int, int]] = []  # (first article id, size)
    next_id = 1
    while next_id <= articles:
        size = min(rng.choice(sizes), articles - next_id + 1)
        plan.append((next_id, size))
        next_id += size
    article_story = [0] * (articles + 1)
    for story_id, (first, size) in enumerate(plan, start=1):
        for article_id in range(first, first + size):
            article_story[article_id] = story_id
    facts["stories"] = len(plan)

    # Each article's feed (and so its language), drawn up front: stories are written before their articles.
    article_feed = array("H", [0])
    for _ in range(articles):
        article_feed.append(rng.choice(feeds_by_language[rng.choices(languages, weights)[0]])[0] - 1)

    def at(article_id: int) -> datetime:
        return start + step * article_id

    def story_lines() -> Iterator[str]:
        for story_id, (first, size) in enumerate(plan, start=1):
            members = [feeds[article_feed[i]] for i in range(first, first + size)]
            langs = "{" + ",".join(sorted({m[2] for m in members})) + "}"
            srcs = "{" + ",".join(sorted({m[1] for m in members})) + "}"
            yield (f"{story_id}\tStory {story_id}\t{first}\t{size}\t{langs}\t{srcs}\t{_ts(at(first))}\t"
                   f"{_ts(at(first + size - 1))}\n")

    def article_lines() -> Iterator[str]:
        for article_id in range(1, articles + 1):
            feed_id, feed_name, language = feeds[article_feed[article_id]]
            stream = streams[language]
            title_at = rng.randrange(len(stream) - 10)
            body_at = rng.randrange(len(stream) - 90)
            title = _clean(" ".join(stream[title_at:title_at + 8]).capitalize())
            body = _clean(" ".join(stream[body_at:body_at + 80]))
            story_id = article_story[article_id]
            first = plan[story_id - 1][0]
            if article_id == first:
                reason, score, of = "new_story", NULL, NULL
            elif rng.random() < 0.2:
                reason, score, of = "content_hash", "1", str(first)
            else:
                reason, score, of = "near_duplicate", f"{rng.uniform(0.55, 0.95):.3f}", str(first)
            link = f"https://{feed_name}.example/{article_id}"
            moment = at(article_id)
            yield (f"{article_id}\t{link}\t{link}\t{title}\t{body}\t{language}\t{feed_name}\t{feed_id}\t"
                   f"trafilatura\th{article_id}\t{story_id}\t{reason}\t{score}\t{of}\t{_ts(moment)}\t"
                   f"{_ts(moment - timedelta(hours=1))}\t{_ts(moment)}\n")

    with db.transaction(url) as cur:
        cur.execute("SET maintenance_work_mem = '512MB'")
        for feed_id, name, _language in feeds:
            failing = feed_id % 17 == 0
            cur.execute(
                "INSERT INTO feeds (id, name, url, consecutive_failures, last_success_at, last_error_kind, last_error,"
                " last_polled_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (feed_id, name, f"https://{name}.example/rss", 3 if failing else 0,
                 NOW - timedelta(hours=5 if failing else 0), "timeout" if failing else None,
                 "read timed out" if failing else None, NOW))
        cur.execute("SELECT setval('feeds_id_seq', %s)", (FEEDS,))
        facts["timings"]["stories"] = _copy(cur, "stories", "id, title, representative_article, article_count, "
                                            "languages, feeds, first_seen_at, last_seen_at", story_lines())
        log(f"loading {articles:,} articles (COPY; search_vector computed by PostgreSQL) ...")
        facts["timings"]["articles"] = _copy(
            cur, "articles", "id, url, canonical_url, title, body, language, feed, feed_id, extraction, content_hash, "
            "story_id, dedup_reason, dedup_score, dedup_of, fetched_at, published_at, matched_at", article_lines())
        log(f"  articles: {facts['timings']['articles']:.0f} s")
        began = time.perf_counter()
        cur.execute("UPDATE stories s SET title = a.title FROM articles a WHERE a.id = s.representative_article")
        facts["timings"]["story titles"] = time.perf_counter() - began
        alerted = sorted(rng.sample(range(1, len(plan) + 1), k=max(1, len(plan) * 3 // 100)))
        alerts: list[tuple[int, str, datetime, int]] = []

        def alert_lines() -> Iterator[str]:
            for alert_id, story_id in enumerate(alerted, start=1):
                first, _ = plan[story_id - 1]
                created = at(first) + timedelta(minutes=rng.randint(1, 30))
                status = rng.choices(["sent", "failed", "pending"], [0.93, 0.04, 0.03])[0]
                attempts = {"sent": rng.choice([1, 1, 1, 2]), "failed": 10, "pending": rng.randint(1, 3)}[status]
                channel = rng.choice(CHANNELS)
                alerts.append((alert_id, channel, created, min(attempts, 3)))
                sent_at = _ts(created + timedelta(seconds=5)) if status == "sent" else "\\N"
                error = "connection refused" if status != "sent" else "\\N"
                yield (f"{alert_id}\t{rng.choice(RULES)}\t{story_id}\t{first}\t{channel}\t{status}\t{attempts}\t"
                       f"{error}\tk{alert_id}\t{_ts(created)}\t{sent_at}\n")

        facts["timings"]["alerts"] = _copy(cur, "alerts", "id, rule, story_id, article_id, channel, status, attempts, "
                                           "last_error, idempotency_key, created_at, sent_at", alert_lines())

        def attempt_lines() -> Iterator[str]:
            for alert_id, channel, created, attempts in alerts:
                for n in range(attempts):
                    outcome = "sent" if n == attempts - 1 and rng.random() < 0.9 else "failed"
                    error = "\\N" if outcome == "sent" else "timeout"
                    yield (f"{alert_id}\t{channel}\t{_ts(created + timedelta(minutes=5 * n))}\t{outcome}\t{error}\t"
                           f"{rng.randint(5, 900)}\n")

        facts["timings"]["delivery_attempts"] = _copy(
            cur, "delivery_attempts", "alert_id, channel, attempted_at, outcome, error, duration_ms", attempt_lines())

        def poll_lines() -> Iterator[str]:
            for hour in range(30 * 24):
                at = NOW - timedelta(hours=hour)
                for feed_id, _, _ in feeds:
                    error = feed_id % 17 == 0 and hour < 5
                    status, kind = (NULL, "timeout") if error else ("200", NULL)
                    yield (f"{feed_id}\t{_ts(at)}\t{'error' if error else 'ok'}\t{status}\t{kind}\t20\t"
                           f"{0 if error else rng.randint(0, 3)}\n")

        facts["timings"]["feed_polls"] = _copy(cur, "feed_polls", "feed_id, polled_at, outcome, http_status, "
                                               "error_kind, entries, new_entries", poll_lines())

        def run_lines() -> Iterator[str]:
            for n in range(30 * 288):
                at = NOW - timedelta(minutes=5 * n)
                yield f"run-{n}\t{_ts(at - timedelta(seconds=40))}\t{_ts(at)}\t{FEEDS}\t11\t9\t4\t1\t0\n"

        facts["timings"]["poll_runs"] = _copy(cur, "poll_runs", "run_key, started_at, finished_at, feeds_polled, "
                                              "feeds_failed, new_articles, new_stories, alerts_sent, alerts_failed",
                                              run_lines())
        for table in ("articles", "stories", "alerts", "delivery_attempts", "feed_polls", "poll_runs"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    facts["alerts"] = len(alerts)
    middle = len(plan) // 2
    alerted_set = set(alerted)
    facts["story_id"] = next((sid for sid in range(middle, len(plan) + 1)
                              if plan[sid - 1][1] >= 4 and sid in alerted_set), middle)
    facts["middle_story"] = middle
    return facts


# --- indexes --------------------------------------------------------------------------------------------


def migration_indexes() -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of every index migration 0006 creates."""
    text = MIGRATION.read_text(encoding="utf-8")
    return [(m.group(1), m.group(0)) for m in re.finditer(r"CREATE INDEX (\w+) ON [^;]+;", text)]


def drop_indexes(url: str) -> None:
    with db.transaction(url) as cur:
        for name, _ in migration_indexes():
            cur.execute(f"DROP INDEX {name}")


def create_indexes(url: str) -> dict[str, float]:
    timings = {}
    with db.transaction(url) as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        for name, statement in migration_indexes():
            began = time.perf_counter()
            cur.execute(statement)
            timings[name] = time.perf_counter() - began
            log(f"  index {name}: {timings[name]:.1f} s")
    return timings


def vacuum(url: str) -> float:
    began = time.perf_counter()
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM (ANALYZE)")
    conn.close()
    return time.perf_counter() - began


def sizes(url: str) -> dict[str, str]:
    with db.transaction(url) as cur:
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database())) AS db, "
                    "pg_size_pretty(pg_total_relation_size('articles')) AS articles, "
                    "pg_size_pretty(coalesce(pg_relation_size(to_regclass('articles_search')), 0)) AS gin")
        return dict(cur.fetchone())


# --- the server -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ApiServer:
    """``airflow api-server`` with newswatch's plugin and the bench-only SELECT 1 route."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        plugins = folder / "plugins"
        plugins.mkdir()
        (plugins / "newswatch_plugin.py").write_text((ROOT / "plugins" / "newswatch_plugin.py").read_text())
        (plugins / "newswatch_bench_plugin.py").write_text(BENCH_PLUGIN)
        (folder / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))
        self.env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "NEWSWATCH"))}
        self.env.update(
            PYTHONPATH=str(ROOT / "plugins"),
            AIRFLOW_HOME=str(folder / "airflow"),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(plugins),
            AIRFLOW__CORE__DAGS_FOLDER=str(folder / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{folder / 'airflow' / 'airflow.db'}",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(folder / "passwords.json"),
            AIRFLOW__API__BASE_URL=self.base,
            NEWSWATCH_DATABASE_URL=database_url,
        )
        (folder / "airflow").mkdir()
        (folder / "dags").mkdir()
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ApiServer:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, check=True,
                       capture_output=True)
        self.log = open(self.folder / "api-server.log", "w")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "-p", str(self.port), "-H", "127.0.0.1", "-w", "1"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/newswatch/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            raise RuntimeError("api-server did not start:\n" + (self.folder / "api-server.log").read_text()[-3000:])
        token = requests.post(self.base + "/auth/token", json={"username": "admin", "password": PASSWORD},
                              timeout=10).json()["access_token"]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()

    def time(self, path: str, repeat: int, budget: float = 60.0) -> dict:
        """Median and p90 ms of ``repeat`` GETs after one warm-up; fewer when a page is slow (budget seconds)."""
        session = self.session if not path.startswith("/newswatch/health") else requests.Session()
        first = session.get(self.base + path, timeout=120)
        timings: list[float] = []
        statuses = {first.status_code}
        spent = 0.0
        for _ in range(repeat):
            began = time.perf_counter()
            answer = session.get(self.base + path, timeout=120)
            elapsed = time.perf_counter() - began
            statuses.add(answer.status_code)
            timings.append(elapsed * 1000)
            spent += elapsed
            if spent > budget and len(timings) >= 3:
                break
        ordered = sorted(timings)
        return {"median": statistics.median(timings), "p90": ordered[int(0.9 * (len(ordered) - 1))],
                "n": len(timings), "status": sorted(statuses), "bytes": len(first.content)}


def pages(facts: dict) -> list[tuple[str, str]]:
    middle = facts["cursor"]
    return [
        ("floor: /health (HTTP, no auth, no database)", "/newswatch/health"),
        ("floor: SELECT 1 behind auth (connection + transaction)", "/nwbench/select1"),
        ("overview (25 stories + members, languages, alerts, sparklines, failing feeds)", "/newswatch/"),
        ("stories, a page in the middle of the archive (keyset cursor)", "/newswatch/stories?" + middle),
        (f"story page (story {facts['story_id']}: articles, alerts, attempts)",
         f"/newswatch/stories/{facts['story_id']}"),
        ("alerts page (50, with attempts and per-rule sparklines)", "/newswatch/alerts"),
        ("feeds page (100 feeds, article and error sparklines)", "/newswatch/feeds"),
        ("search, rare word, all languages: `frappes`", "/newswatch/search?q=frappes"),
        ("search, common word, all languages: `people`", "/newswatch/search?q=people"),
        ("search, common word, one language: `polizei` (de)", "/newswatch/search?q=polizei&language=de"),
        ("search, phrase, last 30 days: `\"prime minister\"`", "/newswatch/search?q=%22prime+minister%22&since=30d"),
        ("search, page 5 of a common word", "/newswatch/search?q=people&page=5"),
        ("metrics (Prometheus text)", "/newswatch/metrics"),
    ]


def match_counts(url: str) -> dict[str, int]:
    """How many articles each searched word matches (for the report; not timed)."""
    out = {}
    with db.transaction(url) as cur:
        for label, config, words in (("frappes", None, "frappes"), ("people", None, "people"),
                                     ("polizei (de)", "german", "polizei")):
            if config:
                cur.execute("SELECT count(*) AS n FROM articles WHERE language = 'de' AND "
                            "search_vector @@ websearch_to_tsquery('german', %s)", (words,))
            else:
                cur.execute("SELECT count(*) AS n FROM articles WHERE search_vector @@ "
                            "websearch_to_tsquery(newswatch_ts_config(language), %s)", (words,))
            out[label] = cur.fetchone()["n"]
    return out


# --- report ---------------------------------------------------------------------------------------------


def render(args, facts: dict, without: dict, with_: dict, index_times: dict, size_info: dict, counts: dict,
           total: float) -> str:
    floor = with_["/nwbench/select1"]["median"]
    floor_without = without["/nwbench/select1"]["median"]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {environment('psycopg2-binary', 'fastapi')}; "
        "PostgreSQL 16 (pgserver), Airflow 3.3.2 api-server with 1 worker.",
        "",
        f"Data: {args.articles:,} articles ({PER_DAY:,} a day from {FEEDS} feeds in {len(LANGUAGES)} languages, "
        f"titles and bodies of real news text), {facts['stories']:,} stories, {facts['alerts']:,} alerts with "
        f"delivery attempts, 30 days of feed polls and poll runs; database {size_info['db']}, of which articles "
        f"{size_info['articles']} (GIN index {size_info['gin']}). Load with COPY: "
        + ", ".join(f"{table} {seconds:.0f} s" for table, seconds in facts["timings"].items())
        + f" ({args.articles / facts['timings']['articles']:,.0f} articles/s including the generated "
        f"`search_vector`); migration 0006's indexes built afterwards in {sum(index_times.values()):.0f} s "
        f"(GIN {index_times.get('articles_search', 0):.0f} s); VACUUM ANALYZE {facts['vacuum']:.0f} s.",
        "",
        "Method: every page requested through a real `airflow api-server` with a JWT from `/auth/token` (Airflow's "
        f"auth dependency runs), one warm-up then up to {args.repeat} timed requests, median (p90) in ms; "
        "\"vs SELECT 1\" is the page's median over the median of a bench-only route behind the same auth that "
        "opens a connection and runs `SELECT 1` in the pages' read-only transaction; \"speed-up\" is the median "
        "without migration 0006's indexes over the median with them (same data, same server).",
        "",
        "| page | without 0006 indexes | with 0006 indexes | vs SELECT 1 | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, path in pages(facts):
        a, b = without[path], with_[path]
        status = "" if b["status"] == [200] else f" (HTTP {b['status']})"
        status_a = "" if a["status"] == [200] else f" (HTTP {a['status']})"
        ratio, speedup = b["median"] / floor, a["median"] / b["median"]
        lines.append(f"| {label} | {a['median']:,.1f} ({a['p90']:,.0f}){status_a} | "
                     f"{b['median']:,.1f} ({b['p90']:,.0f}){status} | ×{ratio:.1f} | ×{speedup:.1f} |")
    common = "/newswatch/search?q=people"
    per_match = (with_[common]["median"] - floor) / max(counts.get("people", 1), 1) * 1000
    lines += [
        "",
        "Reading: pages that read a bounded number of rows stay within a few times the SELECT-1 floor at this "
        "size; the stories, story and alerts pages were already served by migration 0001's indexes "
        "(`stories_last_seen`, `articles_story`, `alerts_created`; 0006 adds the id tie-breakers of the keyset "
        "cursors). A search costs in proportion to the articles it matches, because every match is ranked "
        f"(`ts_rank` reads each matching row): about {per_match:.1f} µs per match here, so a rare word costs little "
        "more than the floor and a word in 5% of the archive a few hundred ms; without the GIN index every "
        "search reads the whole table.",
        "",
        f"SELECT-1 floor: {floor:.1f} ms with, {floor_without:.1f} ms without the indexes. Words matched: "
        + ", ".join(f"{word} {n:,} articles" for word, n in counts.items()) + ".",
        f"Total run time {total / 60:.0f} min.",
        "",
        "Reproduce (the 1M load dominates; `--articles 100000` for a quick check):",
        "",
        "```sh",
        ".venv/bin/python bench/web.py --articles 1000000 --write",
        "```",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--write", action="store_true", help="update the web section of docs/benchmarks.md")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    refuse_dirty_write(args.write)
    import pgserver

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nw-bench-web-") as folder:
        server = pgserver.get_server(Path(folder) / "pg", cleanup_mode="delete")
        try:
            server.psql("CREATE DATABASE bench")
            url = server.get_uri("bench")
            db.migrate(url)
            drop_indexes(url)
            facts = load(url, args.articles, args.seed)
            log("VACUUM ANALYZE ...")
            facts["vacuum"] = vacuum(url)
            with db.transaction(url) as cur:
                cur.execute("SELECT last_seen_at, id FROM stories ORDER BY id OFFSET %s LIMIT 1",
                            (facts["middle_story"],))
                row = cur.fetchone()
            from urllib.parse import urlencode
            facts["cursor"] = urlencode({"before": f"{row['last_seen_at'].isoformat()},{row['id']}"})
            with ApiServer(Path(folder), url) as api:
                log("measuring without migration 0006's indexes ...")
                without = {path: api.time(path, args.repeat) for _, path in pages(facts)}
                for path, result in without.items():
                    log(f"  {result['median']:9.1f} ms  {path}")
                log("building migration 0006's indexes ...")
                index_times = create_indexes(url)
                vacuum(url)
                log("measuring with them ...")
                with_ = {path: api.time(path, args.repeat) for _, path in pages(facts)}
                for path, result in with_.items():
                    log(f"  {result['median']:9.1f} ms  {path}")
            counts = match_counts(url)
            size_info = sizes(url)
        finally:
            server.cleanup()
    text = render(args, facts, without, with_, index_times, size_info, counts, time.perf_counter() - started)
    print(text)
    if args.write:
        write_section("web", "## UI pages at 1M articles (`bench/web.py`)", text, args.out)
        log(f"wrote the web section of {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
