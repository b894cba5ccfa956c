"""Cost per new article of ``match_rules`` with 1,000 meaning rules against 1,000 keyword rules, in the same run.

    .venv/bin/python bench/watch_cost.py [--rules 1000] [--articles 2000] [--write]

The real task function on a real PostgreSQL (an embedded pgserver with pgvector, in a temporary directory):
``--articles`` articles made from the texts of the SemEval news file (title = first words, body = the rest; each
its own story, with a stored meaning), then ``newswatch.alerts.alerting.match_rules`` runs three times over the
same unmatched articles, with:

- no rule (the cost of reading the articles and marking them: the floor);
- ``--rules`` keyword rules shaped like alert rules (``bench/rules.py``'s generator);
- ``--rules`` meaning rules ``about:"…"``, one distinct description each, their vectors already in
  ``rule_meanings`` (as cluster_stories leaves them).

The meanings of articles and descriptions are random unit vectors, not the model's: the cost of the pgvector
query (one cosine per article and rule) does not depend on the values, and embedding the descriptions is not
part of match_rules (it runs once per description, in cluster_stories). Fewer similarities reach the threshold
than with real vectors, so the rule evaluation after the query is slightly cheaper than in production; it is a
dict lookup per candidate rule.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rules as rules_bench  # noqa: E402
from report import environment, refuse_dirty_write, write_section  # noqa: E402


def vector(rng: random.Random) -> str:
    values = [rng.gauss(0, 1) for _ in range(512)]
    norm = sum(v * v for v in values) ** 0.5
    return "[" + ",".join(f"{v / norm:.6g}" for v in values) + "]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="rewrite the section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    refuse_dirty_write(args.write)
    import os

    import pgserver

    from newswatch import db
    from newswatch.alerts.alerting import match_rules
    from newswatch.config import Settings
    from newswatch.rules import meaning_key

    rng = random.Random(args.seed)
    texts = rules_bench.load_texts(rules_bench.DEFAULT_DATA)
    keyword_rules = rules_bench.make_rules(rules_bench.vocabulary(texts), args.rules, rng)
    articles = rules_bench.make_articles(texts, args.articles, rng)
    descriptions = [f"event {index}: " + re.sub(r'["“”„‟«»]', " ", " ".join(texts[index % len(texts)][1].split())[:80])
                    for index in range(args.rules)]
    with tempfile.TemporaryDirectory(prefix="nw-watch-cost-") as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        server.psql("CREATE DATABASE bench")
        os.environ[db.DATABASE_URL_ENV] = server.get_uri("bench")
        db.migrate()
        with db.transaction() as cur:
            for number, article in enumerate(articles):
                cur.execute("INSERT INTO stories (title) VALUES (%s) RETURNING id", (article.title[:200],))
                story = cur.fetchone()["id"]
                cur.execute(
                    "INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash, "
                    "story_id) VALUES (%s, %s, %s, %s, %s, %s, 'bench', %s, %s) RETURNING id",
                    (f"http://127.0.0.1/{number}", f"http://127.0.0.1/{number}", article.title, article.body,
                     article.language, article.feed, str(number), story))
                cur.execute("INSERT INTO article_meanings (article_id, model, embedding) VALUES (%s, %s, %s::vector)",
                            (cur.fetchone()["id"], "use-multilingual-v3", vector(rng)))
            for description in descriptions:
                cur.execute("INSERT INTO rule_meanings (key, model, description, embedding) "
                            "VALUES (%s, 'use-multilingual-v3', %s, %s::vector)",
                            (meaning_key("about", description), description, vector(rng)))
        runs = {
            "no rule": [],
            f"{args.rules} keyword rules": [{"name": f"k{i}", "query": q} for i, q in enumerate(keyword_rules)],
            f"{args.rules} meaning rules": [{"name": f"m{i}", "query": f'about:"{d}"'}
                                            for i, d in enumerate(descriptions)],
        }
        results = {}
        for name, rules in [("warm-up", []), *runs.items()]:  # the first pass warms caches and the server
            settings = Settings.model_validate({"rules": rules})
            with db.transaction() as cur:
                cur.execute("UPDATE articles SET matched_at = NULL")
            started = time.perf_counter()
            counts = match_rules(settings)
            elapsed = time.perf_counter() - started
            assert counts["articles"] == len(articles), counts
            if name == "warm-up":
                continue
            results[name] = (elapsed, counts["matches"])
            print(f"{name}: {elapsed:.2f} s, {elapsed / len(articles) * 1000:.2f} ms per article, "
                  f"{counts['matches']} matches", flush=True)
    floor = results["no rule"][0]
    lines = [f"Environment: {environment()}.", "",
             f"`match_rules` over {len(articles)} new articles on an embedded PostgreSQL (pgvector), same run:", "",
             "| rules | ms per article | above no rule | matches |", "|---|---|---|---|"]
    for name, (elapsed, matches) in results.items():
        lines.append(f"| {name} | {elapsed / len(articles) * 1000:.2f} | "
                     f"{(elapsed - floor) / len(articles) * 1000:.2f} | {matches} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("watch-cost", "## Meaning rules at match time (bench/watch_cost.py)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
