"""Story-grouping cost per new article as the archive grows: 10k, 100k, 1M stored articles.

An embedded PostgreSQL (pgserver) in a temporary folder gets the real schema (all migrations) and a
synthetic archive loaded in bulk with INSERT ... SELECT over generate_series:

- articles arriving at a constant rate of 2,740 a day (1M a year), each in its own story, with
  32 LSH band rows (distinct pseudo-random hashes) and an entity fingerprint of 20 items drawn
  (skewed towards frequent ones) from the items of the SemEval news-similarity texts, so that real
  probes find real candidates to score; ``article_entities`` and ``entity_df`` are filled from them.
- probes: real articles (SemEval texts and the Syria fixtures) with their real fingerprints and bands,
  published at the newest end of the archive. Each probe goes through the real per-article step of
  ``assign_stories`` (fingerprint, index writes, the four layers, story writes) in a transaction that is
  rolled back, so every size is measured with the same probes.

Reported: median, mean and p90 time per probe, each size's ratio to the 10k median, and the naive
baseline (fetch every stored article and apply the same pairwise decision in Python) at 10k and 100k.
EXPLAIN (ANALYZE, BUFFERS) of the band and entity candidate queries checks they use the indexes.

Run: .venv/bin/python bench/dedup_scale.py [--sizes 10000,100000,1000000] [--probes 150]
"""

from __future__ import annotations

import argparse
import collections
import csv
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402

from newswatch import db, entities, stories  # noqa: E402
from newswatch.config import Settings  # noqa: E402
from newswatch.dedup import fingerprint, signature_from_bytes, title_key  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "news-similarity" / "training_set.csv"
FIXTURES = ROOT / "tests" / "fixtures" / "stories"
PER_DAY = 2740
ITEMS_PER_ARTICLE = 20
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FIRST_SYNTHETIC_ID = 1_000_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def texts() -> list[tuple[str, str]]:
    csv.field_size_limit(sys.maxsize)
    seen: dict[str, str] = {}
    with DATA.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            for text, language in ((row["text1"], row["lang1"]), (row["text2"], row["lang2"])):
                seen.setdefault(text, language)
    return list(seen.items())


def setup(url: str, corpus: list[tuple[str, str]], probe_count: int) -> tuple[list[int], list[str]]:
    """Schema and probe articles; returns the probe ids and the vocabulary (items, most frequent first)."""
    db.migrate(url)
    df: collections.Counter[str] = collections.Counter()
    for text, language in corpus:
        df.update(set(entities.extract("", text, language).items))
    vocab = [item for item, _ in df.most_common() if item not in entities.GENERIC]
    settings = Settings()
    probes = []
    with db.transaction(url) as cur:
        fixtures = [(path.read_text(encoding="utf-8"), "de" if path.name.endswith("-de.txt") else "en")
                    for path in sorted(FIXTURES.glob("*.txt"))]
        chosen = fixtures + [(t, lang) for t, lang in corpus if len(t) > 600][:probe_count - len(fixtures)]
        for index, (text, language) in enumerate(chosen):
            print_ = fingerprint(text, settings.dedup.min_tokens)
            title = " ".join(text.split()[:10]) or f"probe {index}"
            cur.execute(
                "INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash, "
                "minhash, published_at, fetched_at) VALUES (%s, %s, %s, %s, %s, 'probe', 'bench', %s, %s, %s, %s) "
                "RETURNING id",
                (f"http://probe/{index}", f"http://probe/{index}", title, text, language, print_.content_hash,
                 print_.signature_bytes, NOW - timedelta(hours=index % 24), NOW),
            )
            article_id = cur.fetchone()["id"]
            probes.append(article_id)
            for band, value in print_.bands():
                cur.execute("INSERT INTO article_bands (band, hash, article_id, language) VALUES (%s, %s, %s, %s)",
                            (band, value, article_id, language))
    return probes, vocab


_DROP = """
ALTER TABLE article_bands DROP CONSTRAINT article_bands_pkey;
DROP INDEX article_bands_article;
ALTER TABLE article_entities DROP CONSTRAINT article_entities_pkey;
DROP INDEX article_entities_article;
"""
_CREATE = """
ALTER TABLE article_bands ADD PRIMARY KEY (band, hash, article_id);
CREATE INDEX article_bands_article ON article_bands (article_id);
ALTER TABLE article_entities ADD PRIMARY KEY (entity, seen_at, article_id);
CREATE INDEX article_entities_article ON article_entities (article_id);
"""


class _Timed:
    """A cursor that logs how long each bulk statement took."""

    def __init__(self, cur) -> None:
        self.cur = cur

    def execute(self, sql: str, params: dict | None = None) -> None:
        began = time.perf_counter()
        self.cur.execute(sql, params)
        log(f"  {time.perf_counter() - began:6.1f} s  {' '.join(sql.split())[:70]}")


def _load_fingerprints(cur, first: int, last: int, vocab: list[str]) -> None:
    """COPY a random fingerprint per synthetic article into bench_entities (skewed to frequent items)."""
    import io

    import numpy as np

    began = time.perf_counter()
    rng = np.random.default_rng(first)
    cur.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_entities (id bigint PRIMARY KEY, entities text[]); "
                "TRUNCATE bench_entities")
    for start in range(first, last + 1, 100_000):
        stop = min(start + 100_000, last + 1)
        ranks = (rng.random((stop - start, ITEMS_PER_ARTICLE)) ** 3 * len(vocab)).astype(int)
        buffer = io.StringIO()
        for offset, row in enumerate(ranks):
            buffer.write(f"{start + offset}\t{{{','.join(sorted({vocab[r] for r in row}))}}}\n")
        buffer.seek(0)
        cur.copy_expert("COPY bench_entities (id, entities) FROM STDIN", buffer)
    log(f"  {time.perf_counter() - began:6.1f} s  fingerprints generated and copied")


def grow(url: str, start: int, stop: int, vocab: list[str]) -> float:
    """Add synthetic articles numbered start..stop-1 (older as the number grows); returns seconds."""
    began = time.perf_counter()
    first, last = FIRST_SYNTHETIC_ID + start, FIRST_SYNTHETIC_ID + stop - 1
    params = {"first": first, "last": last, "base": FIRST_SYNTHETIC_ID, "now": NOW, "per_day": PER_DAY}
    conn = db.connect(url)
    conn.autocommit = True
    with conn.cursor() as raw:
        cur = _Timed(raw)
        cur.execute("SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 2; "
                    "SET synchronous_commit = off")
        cur.execute(_DROP)
        _load_fingerprints(raw, first, last, vocab)
        cur.execute("INSERT INTO stories (id, title, article_count, languages, feeds) SELECT i, "
                    "'synthetic story ' || i, 1, '{en}', '{bulk}' FROM generate_series(%(first)s, %(last)s) i", params)
        cur.execute(
            """
            INSERT INTO articles (id, url, canonical_url, title, body, language, feed, extraction, content_hash,
                                  published_at, fetched_at, story_id, dedup_reason, matched_at, entities)
            SELECT i, 'http://synthetic/' || i, 'http://synthetic/' || i, 'Synthetic article ' || i, 'synthetic',
                   (ARRAY['en','fr','de','es'])[1 + i %% 4], 'bulk', 'synthetic', md5(i::text),
                   t, t, i, 'new_story', t,
                   b.entities
            FROM generate_series(%(first)s, %(last)s) i
                 JOIN bench_entities b ON b.id = i,
                 LATERAL (SELECT %(now)s - ((i - %(base)s)::float / %(per_day)s) * interval '1 day' AS t) ts
            """,
            params,
        )
        cur.execute(
            """
            INSERT INTO article_bands (band, hash, article_id, language)
            SELECT g, (i::bigint * 32 + g) * 2654435761, i, (ARRAY['en','fr','de','es'])[1 + i %% 4]
            FROM generate_series(%(first)s, %(last)s) i, generate_series(0, 31) g
            """,
            params,
        )
        cur.execute("INSERT INTO article_entities (entity, seen_at, article_id) "
                    "SELECT unnest(entities), published_at, id FROM articles WHERE id BETWEEN %(first)s AND %(last)s",
                    params)
        cur.execute(_CREATE)
        cur.execute("TRUNCATE entity_df")
        cur.execute("INSERT INTO entity_df SELECT entity, count(*) FROM article_entities GROUP BY entity")
        cur.execute("INSERT INTO entity_df SELECT '', count(*) FROM articles WHERE entities IS NOT NULL")
        cur.execute("SELECT setval('stories_id_seq', %(last)s); SELECT setval('articles_id_seq', %(last)s)", params)
        cur.execute("DROP TABLE bench_entities")
        cur.execute("VACUUM ANALYZE")
    conn.close()
    return time.perf_counter() - began


def measure(url: str, probes: list[int], settings: Settings) -> tuple[list[float], collections.Counter[str]]:
    """Time the per-article step of assign_stories for each probe, rolled back afterwards."""
    timings: list[float] = []
    reasons: collections.Counter[str] = collections.Counter()
    conn = db.connect(url)
    try:
        for probe in probes:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(
                    "SELECT id, title, body, language, feed, content_hash, minhash, fetched_at, is_partial, "
                    "COALESCE(published_at, fetched_at) AS seen_at FROM articles WHERE id = %s", (probe,))
                article = cur.fetchone()
                counts = {"articles": 0, "new_stories": 0, "joined": 0, "merged": 0}
                began = time.perf_counter()
                stories._cluster_one(cur, article, settings, counts)
                timings.append(time.perf_counter() - began)
                cur.execute("SELECT dedup_reason FROM articles WHERE id = %s", (probe,))
                reasons[cur.fetchone()["dedup_reason"]] += 1
            conn.rollback()
    finally:
        conn.close()
    return timings, reasons


def naive(url: str, probes: list[int], settings: Settings) -> list[float]:
    """Compare each probe with every stored article (no index): fetch all, decide pair by pair."""
    timings = []
    with db.transaction(url) as cur:
        for probe in probes:
            began = time.perf_counter()
            cur.execute("SELECT id, title, body, language, content_hash, minhash FROM articles WHERE id = %s", (probe,))
            row = cur.fetchone()
            mine = {"content_hash": row["content_hash"], "language": row["language"],
                    "signature": signature_from_bytes(bytes(row["minhash"])) if row["minhash"] else None,
                    "title_key": title_key(row["title"]),
                    "entities": list(entities.extract(row["title"], row["body"], row["language"]).items)}
            cur.execute("SELECT entity, df FROM entity_df")
            df = {r["entity"]: r["df"] for r in cur.fetchall()}
            total = df.pop("", 0)
            cur.execute("SELECT id, language, content_hash, minhash, title_key, entities FROM articles "
                        "WHERE story_id IS NOT NULL")
            for other in cur.fetchall():
                theirs = {"content_hash": other["content_hash"], "language": other["language"],
                          "signature": signature_from_bytes(bytes(other["minhash"])) if other["minhash"] else None,
                          "title_key": other["title_key"], "entities": other["entities"] or []}
                stories.pair_decision(mine, theirs, df, total, settings)
            timings.append(time.perf_counter() - began)
    return timings


def explain(url: str, probe: int, settings: Settings) -> list[str]:
    """Plans of the band and entity candidate queries for one probe: index use and rows read."""
    lines = []
    with db.transaction(url) as cur:
        cur.execute("SELECT id, title, body, language, COALESCE(published_at, fetched_at) AS seen_at "
                    "FROM articles WHERE id = %s", (probe,))
        article = cur.fetchone()
        window = timedelta(days=settings.dedup.window_days)
        low, high = article["seen_at"] - window, article["seen_at"] + window
        items = list(entities.extract(article["title"], article["body"], article["language"]).items)
        cur.execute("SELECT entity, df FROM entity_df WHERE entity = ANY(%s)", (items,))
        df = {r["entity"]: r["df"] for r in cur.fetchall()}
        probes = sorted((i for i in items if df.get(i, 0) > 0 and i not in entities.GENERIC), key=df.get)[:24]
        for name, sql, params in (
            ("bands", stories.NEAR_DUPLICATE_SQL, {"per_band": stories._PER_BAND, "id": probe,
                                                   "language": article["language"], "low": low, "high": high}),
            ("entities", stories.ENTITY_SQL, {"probes": probes, "low": low, "high": high, "id": probe,
                                              "per_item": stories._PER_ITEM, "limit": stories._ENTITY_CANDIDATES}),
        ):
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + sql, params)
            plan = [row["QUERY PLAN"] for row in cur.fetchall()]
            scans = [line.strip() for line in plan if "Scan" in line]
            execution = next((line.strip() for line in plan if line.strip().startswith("Execution Time")), "")
            buffers = next((line.strip() for line in plan if "Buffers" in line), "")
            lines.append(f"{name}: {len(probes) if name == 'entities' else 32} probes; {execution}; top {buffers}")
            lines.extend(f"    {scan}" for scan in scans)
            if any("Seq Scan on article" in line for line in plan):
                lines.append("    WARNING: sequential scan on an article table")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--probes", type=int, default=150)
    parser.add_argument("--naive-sizes", default="10000,100000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    naive_sizes = {int(s) for s in args.naive_sizes.split(",") if s}
    import pgserver

    settings = Settings()
    started = time.perf_counter()
    corpus = texts()
    with tempfile.TemporaryDirectory(prefix="nw-bench-") as folder:
        server = pgserver.get_server(Path(folder) / "pg", cleanup_mode="delete")
        try:
            server.psql("CREATE DATABASE bench")
            url = server.get_uri("bench")
            probes, vocab = setup(url, corpus, args.probes)
            log(f"{len(probes)} probes, vocabulary of {len(vocab)} entity items")
            results = []
            stored = 0
            for size in sizes:
                seconds = grow(url, stored, size, vocab)
                stored = size
                log(f"archive at {size:,} articles (load {seconds:.0f} s)")
                measure(url, probes[:10], settings)  # warm the cache
                timings, reasons = measure(url, probes, settings)
                plans = explain(url, probes[0], settings)
                naive_timings = naive(url, probes[:max(2, 200_000 // size)], settings) if size in naive_sizes else []
                results.append((size, seconds, timings, reasons, plans, naive_timings))
                log(f"{size:,}: median {statistics.median(timings) * 1000:.1f} ms")
        finally:
            server.cleanup()

    base = statistics.median(results[0][2])
    print(f"# dedup scale: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({platform.machine()}, "
          f"Python {platform.python_version()}), total {time.perf_counter() - started:.0f} s")
    print(f"{len(probes)} probe articles; {PER_DAY:,} synthetic articles a day, {ITEMS_PER_ARTICLE} entity items and "
          f"32 LSH bands each; window ±{settings.dedup.window_days} days")
    print()
    print("| stored articles | load (s) | median ms / article | mean | p90 | ratio to 10k (median) "
          "| naive ms / article |")
    print("|---|---|---|---|---|---|---|")
    for size, seconds, timings, _, _, naive_timings in results:
        ordered = sorted(timings)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        median = statistics.median(timings)
        naive_text = f"{statistics.mean(naive_timings) * 1000:,.0f} ({len(naive_timings)} probes)" \
            if naive_timings else "not run"
        print(f"| {size:,} | {seconds:.0f} | {median * 1000:.1f} | {statistics.mean(timings) * 1000:.1f} | "
              f"{p90 * 1000:.1f} | {median / base:.2f}× | {naive_text} |")
    print()
    for size, _, _, reasons, plans, _ in results:
        print(f"{size:,}: decisions {dict(reasons.most_common())}")
        for line in plans:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
