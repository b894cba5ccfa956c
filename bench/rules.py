"""Keyword-rule matching benchmark: newswatch's rule matcher against a naive regex matcher, in the same run.

    .venv/bin/python bench/rules.py [--rules 1000] [--articles 10000] [--seed 7] [--write [--out docs/benchmarks.md]]

What it does, all in this process:

1. reads the texts of ``../shared/data/news-similarity/training_set.csv`` (SemEval-2022 Task 8 as prepared
   by github.com/GeekDream-x/SemEval2022-Task8-TonyX, commit 4281dc9, Apache-2.0; 10 languages) and builds
   a vocabulary per language from them: words of 4+ letters found in at least 3 texts and in at most 8% of
   the texts of their language (no stop words, no typos), and two-word phrases that occur in 2+ texts.
   Without the file it falls back to a synthetic vocabulary and says so;
2. generates N rules (default 1,000) shaped like alert rules: one to three concepts joined by AND, a concept
   being one to four alternatives OR-ed (words 60%, phrases 20%, wildcards 20%), a quarter of the rules
   with an excluded concept (``-(…)``), about 5% with NEAR, 5% with a title:/body: scope, 3% with a
   feed:/site:/lang: condition and 1% with a /regex/. Half the words of a rule come from one article of
   its language, so rules match now and then as real ones do;
3. builds M articles (default 10,000) from those texts: title = the text's first 8-14 words, body = the
   rest; texts are reused in a shuffled order, and each reuse shuffles the sentences of its body, so no two
   articles are the same (the preparation cache cannot help). Each article gets a feed, a site and the
   CSV's language;
4. times, one after another on the same articles:
   - **RuleSet**: ``RuleSet(rules).matching_indices(doc)`` per article: one ``prepare`` (normalise,
     tokenise, stem) per article, then only the rules whose indexed words occur in it are evaluated;
   - **Rule.matches, every rule**: ``[rule.matches(doc) for rule in rules]`` per article (one ``prepare``
     per article thanks to its cache, then every rule evaluated);
   - **naive baseline**: per (rule, article), the rule's boolean tree evaluated with short-circuit AND/OR,
     each term being one Python ``re`` pattern compiled once per rule term (word ``\\bword\\b``, phrase
     ``\\bair\\W+strike\\b``, wildcard ``\\bfrapp\\w*\\b``, NEAR an alternation of both orders with up to
     n-1 words between, the rule's regex as is) searched in the raw lowercased text (``str.lower`` of title +
     newline + body, or of the title or body alone for a scoped term, computed once per article); nothing
     is shared between rules or cached between terms. No stemming and no accent folding, so it matches
     a little less than newswatch: its match count is printed for scale, not as a reference;
5. checks that RuleSet and Rule.matches return exactly the same rules for every article, and prints a
   Markdown table; ``--write`` puts it between ``<!-- rules:start -->`` and ``<!-- rules:end -->`` in
   docs/benchmarks.md (re-read just before writing).

The default run takes about 4 minutes on 2 cores, most of it the baseline and the every-rule pass; scale it
down with ``--rules``/``--articles`` (the table says what was run).
"""

from __future__ import annotations

import argparse
import collections
import csv
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, also when loaded by a test
from report import DOC, environment, refuse_dirty_write, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "news-similarity" / "training_set.csv"
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from newswatch import rules as R  # noqa: E402  (after the sys.path line above)
from newswatch.rules import documents, syntax  # noqa: E402  (private: the tree's nodes, the stem cache)

HEADING = "## Keyword rules (`bench/rules.py`)"

FEEDS = {
    "en": ["bbc-world", "guardian-world", "aljazeera", "npr-world"],
    "fr": ["france24-fr", "lemonde-international", "rfi-fr"],
    "de": ["tagesschau", "spiegel-ausland", "dw-deutsch"],
    "es": ["elpais-internacional"],
    "it": ["ansa-mondo"],
}
SITES = ["www.bbc.co.uk", "www.reuters.com", "uk.reuters.com", "www.lemonde.fr", "www.spiegel.de", "elpais.com",
         "www.ansa.it", "www.aljazeera.com", "www.dw.com", "news.example.org"]  # fmt: skip
_LETTERS = re.compile(r"[^\W\d_]+")


# --------------------------------------------------------------------------------------------------
# Data


def load_texts(path: Path) -> list[tuple[str, str]]:
    """(language, text) of every distinct text of the CSV."""
    csv.field_size_limit(sys.maxsize)
    seen: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            for lang, text in ((row["lang1"], row["text1"]), (row["lang2"], row["text2"])):
                text = " ".join(text.split())
                if len(text) > 200:
                    seen.setdefault(text, lang)
    return [(lang, text) for text, lang in seen.items()]


def synthetic_texts(rng: random.Random) -> list[tuple[str, str]]:
    syllables = ["ka", "lo", "mi", "ra", "te", "su", "vo", "ne", "di", "pa", "gu", "ze"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(3000)})
    weights = [1 / (rank + 1) for rank in range(len(words))]  # Zipf-like, as in real text
    texts = []
    for i in range(2000):
        sentences = [" ".join(rng.choices(words, weights, k=rng.randint(6, 18))).capitalize() + "."
                     for _ in range(rng.randint(5, 12))]  # fmt: skip
        texts.append(("en" if i % 2 else "xx", " ".join(sentences)))
    return texts


@dataclass
class Vocabulary:
    words: dict[str, list[str]]  # language -> words
    phrases: dict[str, list[str]]
    texts: dict[str, list[list[str]]]  # language -> the useful words of each text (rule anchors)


def vocabulary(texts: list[tuple[str, str]]) -> Vocabulary:
    by_lang: dict[str, list[list[str]]] = collections.defaultdict(list)
    for lang, text in texts:
        by_lang[lang].append(_LETTERS.findall(text.lower()))
    words, phrases, anchors = {}, {}, {}
    for lang, docs in by_lang.items():
        df = collections.Counter(w for doc in docs for w in set(doc) if len(w) >= 4)
        ceiling = max(3, 0.08 * len(docs))
        useful = {w for w, n in df.items() if 3 <= n <= ceiling and w.upper() not in ("AND", "OR", "NOT", "NEAR")}
        if len(useful) < 50:
            continue
        pairs = collections.Counter(p for doc in docs for p in {f"{a} {b}" for a, b in zip(doc, doc[1:], strict=False)
                                                               if a in useful and b in useful})  # fmt: skip
        words[lang] = sorted(useful)
        phrases[lang] = sorted(p for p, n in pairs.items() if n >= 2) or sorted(useful)[:1]
        anchors[lang] = [[w for w in doc if w in useful] for doc in docs]
        anchors[lang] = [a for a in anchors[lang] if len(a) >= 6]
    return Vocabulary(words, phrases, anchors)


def make_rules(vocab: Vocabulary, count: int, rng: random.Random) -> list[str]:
    languages = sorted(vocab.words)
    weights = [len(vocab.texts[lang]) for lang in languages]
    queries: list[str] = []
    while len(queries) < count:
        lang = rng.choices(languages, weights)[0]
        anchor = rng.choice(vocab.texts[lang])

        def alternative(lang: str = lang, anchor: list[str] = anchor) -> str:
            kind = rng.random()
            if kind < 0.2:
                return f'"{rng.choice(vocab.phrases[lang])}"'
            word = rng.choice(anchor) if rng.random() < 0.5 else rng.choice(vocab.words[lang])
            if kind < 0.4 and len(word) >= 6:
                return word[: max(4, len(word) - 3)] + "*"
            return word

        def concept() -> list[str]:
            return list(dict.fromkeys(alternative() for _ in range(rng.choice([1, 2, 2, 3, 4]))))

        def group(alternatives: list[str]) -> str:
            return alternatives[0] if len(alternatives) == 1 else f"({' OR '.join(alternatives)})"

        parts = [group(concept()) for _ in range(rng.choice([1, 2, 2, 2, 3]))]
        roll = rng.random()
        if roll < 0.05:  # proximity between two concepts
            near = rng.choice(["NEAR", "NEAR/3", "NEAR/5", "NEAR/8", "NEAR/15"])
            parts[0] = f"{group(concept())} {near} {group(concept())}"
        elif roll < 0.10:
            parts[0] = f"{rng.choice(['title', 'body'])}:{group(concept())}"
        elif roll < 0.13:
            parts.append(rng.choice([f"lang:{lang}", f"feed:{rng.choice(sum(FEEDS.values(), []))}",
                                     f"site:{rng.choice(['reuters.com', 'bbc.co.uk', 'lemonde.fr'])}"]))  # fmt: skip
        elif roll < 0.14:
            word = re.escape(R.normalize_text(rng.choice(anchor)))
            parts.append(f"/\\b{word}(s|es|en|e)?\\b/")
        if rng.random() < 0.25:
            parts.append(f"-{group(concept())}")
        query = " AND ".join(parts) if rng.random() < 0.5 else " ".join(parts)
        try:
            R.compile_rule(query)
        except R.RuleSyntaxError:
            continue
        queries.append(query)
    return queries


def make_articles(texts: list[tuple[str, str]], count: int, rng: random.Random) -> list[R.Document]:
    order = list(range(len(texts)))
    articles = []
    for i in range(count):
        if i % len(texts) == 0:
            rng.shuffle(order)
        lang, text = texts[order[i % len(texts)]]
        words = text.split()
        cut = rng.randint(8, 14)
        title, body = " ".join(words[:cut]), " ".join(words[cut:])
        if i >= len(texts):  # a reuse: same words, sentences in another order
            sentences = re.split(r"(?<=[.!?])\s+", body)
            rng.shuffle(sentences)
            body = " ".join(sentences) + f" ({i})"
        feed = rng.choice(FEEDS.get(lang, ["wire"]))
        articles.append(R.Document(title, body, lang if lang != "xx" else None, feed, rng.choice(SITES)))
    return articles


# --------------------------------------------------------------------------------------------------
# The naive baseline

Texts = dict[str, str]  # "all" / "title" / "body" -> lowercased raw text
Check = Callable[[Texts, R.Document], bool]


def _term_regex(term: syntax._Term) -> str:
    words = re.findall(r"[\w*]+", term.source.lower())
    return r"\b" + r"\W+".join(r"\w*".join(map(re.escape, w.split("*"))) for w in words) + r"\b"


def naive(node: object) -> Check:
    """The baseline's matcher for one parsed rule: one `re` per term, evaluated on raw lowercased text."""
    if isinstance(node, syntax._Term):
        pattern, where = re.compile(_term_regex(node)), node.scope or "all"
        return lambda texts, doc: pattern.search(texts[where]) is not None
    if isinstance(node, syntax._Regex):
        pattern, where = node.pattern, node.scope or "all"
        return lambda texts, doc: pattern.search(texts[where]) is not None
    if isinstance(node, syntax._Field):
        scope, value = node.scope, node.value
        if scope == "feed":
            return lambda texts, doc: doc.feed.lower() == value
        if scope == "site":
            return lambda texts, doc: doc.site == value or doc.site.endswith("." + value)
        return lambda texts, doc: (lang := (doc.language or "").lower()) == value or lang.startswith(value + "-")
    if isinstance(node, syntax._Near):
        left = "(?:" + "|".join(_term_regex(t) for t in node.left) + ")"
        right = "(?:" + "|".join(_term_regex(t) for t in node.right) + ")"
        gap = rf"\W+(?:\w+\W+){{0,{node.distance - 1}}}"
        pattern = re.compile(f"{left}{gap}{right}|{right}{gap}{left}")
        where = node.left[0].scope or "all"
        return lambda texts, doc: pattern.search(texts[where]) is not None
    if isinstance(node, syntax._Not):
        child = naive(node.child)
        return lambda texts, doc: not child(texts, doc)
    if isinstance(node, syntax._And | syntax._Or):
        children = [naive(child) for child in node.children]
        if isinstance(node, syntax._And):
            return lambda texts, doc: all(child(texts, doc) for child in children)
        return lambda texts, doc: any(child(texts, doc) for child in children)
    raise TypeError(node)


# --------------------------------------------------------------------------------------------------
# Runs


@dataclass
class System:
    """One matcher: `match(doc)` returns the numbers of the matching rules."""

    name: str
    match: Callable[[R.Document], list[int]]
    newswatch: bool  # has its own prepare/stem caches, swapped in before each call
    stems: dict[str, dict[str, str]]
    seconds: float = 0.0
    articles: int = 0
    matches: int = 0
    evaluated: int = 0  # rule evaluations (the index's candidates for RuleSet)
    sample_seconds: float = 0.0  # RuleSet only: its time on the articles the other systems also ran
    sample_articles: int = 0


def systems(rules: list[R.Rule]) -> tuple[System, System, System]:
    ruleset = R.RuleSet(rules)
    checks = [naive(rule._root) for rule in rules]

    def every_rule(doc: R.Document) -> list[int]:
        return [n for n, rule in enumerate(rules) if rule.matches(doc)]

    def baseline(doc: R.Document) -> list[int]:
        title, body = doc.title.lower(), doc.body.lower()
        texts = {"all": f"{title}\n{body}", "title": title, "body": body}
        return [n for n, check in enumerate(checks) if check(texts, doc)]

    return (
        System("RuleSet", ruleset.matching_indices, True, {}),
        System("Rule.matches", every_rule, True, {}),
        System("naive", baseline, False, {}),
    )


def measure(all_systems: tuple[System, ...], articles: list[R.Document], sample: set[int]) -> list[str]:
    """Run the systems interleaved article by article (a load burst slows all alike); returns problems.

    The first system runs on every article, the others on the articles in `sample`. Before each
    newswatch call the preparation cache is emptied and that system's own stem cache is put in place,
    so each newswatch system runs as if alone and prepares every article from scratch; each starts with
    an empty stem cache.
    """
    first, *others = all_systems
    problems: list[str] = []
    ruleset = first.match.__self__  # type: ignore[attr-defined]
    for number, doc in enumerate(articles):
        results = {}
        for system in [first, *others] if number in sample else [first]:
            if system.newswatch:
                R.prepare.cache_clear()
                documents._DOCUMENT_STEMS = system.stems
            start = time.perf_counter()
            found = system.match(doc)
            elapsed = time.perf_counter() - start
            system.seconds += elapsed
            system.articles += 1
            system.matches += len(found)
            results[system.name] = found
            if system is first:
                system.evaluated += len(ruleset._candidates(R.prepare(doc)))  # untimed
                if number in sample:
                    system.sample_seconds += elapsed
                    system.sample_articles += 1
            else:
                system.evaluated += len(ruleset.rules)
        if "Rule.matches" in results and results["Rule.matches"] != results["RuleSet"]:
            problems.append(f"article {number}: RuleSet {results['RuleSet']} != Rule.matches {results['Rule.matches']}")
    return problems


# --------------------------------------------------------------------------------------------------
# Report


def report(ran: tuple[System, ...], args: argparse.Namespace, notes: list[str], command: str) -> str:
    ruleset, every, base = ran
    per_article = base.seconds / base.articles
    rows = [
        ("**newswatch `RuleSet.matching_indices`**, all articles", ruleset.articles, ruleset.seconds,
         ruleset.evaluated / ruleset.articles, ruleset.matches),
        ("**newswatch `RuleSet.matching_indices`**, the sampled articles", ruleset.sample_articles,
         ruleset.sample_seconds, None, None),
        ("newswatch `Rule.matches` on every rule, the sampled articles", every.articles, every.seconds,
         every.evaluated / max(every.articles, 1), every.matches),
        ("naive baseline (defined above), the sampled articles", base.articles, base.seconds,
         base.evaluated / base.articles, base.matches),
    ]  # fmt: skip
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {environment('snowballstemmer', 'PyStemmer')}.",
        "",
        *notes,
        "",
        "| system, articles | articles | time | articles/s | rules evaluated per article | matches | speed vs naive |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, articles, seconds, evaluated, matches in rows:
        if not articles:
            continue
        lines.append(
            f"| {label} | {articles:,} | {seconds:.1f} s | {articles / seconds:,.0f} | "
            f"{'' if evaluated is None else f'{evaluated:,.0f}'} | {'' if matches is None else f'{matches:,}'} | "
            f"×{per_article / (seconds / articles):.1f} |"
        )
    lines += ["", "Reproduce:", "", "```sh", command, "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--articles", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="news-similarity training_set.csv")
    parser.add_argument("--sample", type=int, default=2000,
                        help="articles (spread evenly) that Rule.matches and the naive baseline also run on")
    parser.add_argument("--write", action="store_true", help="update the rules section of docs/benchmarks.md")
    parser.add_argument("--out", type=Path, default=DOC, help="the Markdown file --write updates")
    args = parser.parse_args(argv)
    refuse_dirty_write(args.write)
    rng = random.Random(args.seed)

    if args.data.is_file():
        texts = load_texts(args.data)
        languages = collections.Counter(lang for lang, _ in texts)
        data_note = (
            f"Texts: the {len(texts):,} distinct texts of `../shared/data/news-similarity/training_set.csv` "
            "(SemEval-2022 Task 8 as prepared by github.com/GeekDream-x/SemEval2022-Task8-TonyX, commit 4281dc9, "
            f"Apache-2.0; {', '.join(f'{k} {v}' for k, v in languages.most_common())}; about 1,000 characters "
            "each), reused in shuffled order with the sentences of each reuse shuffled so that every article "
            "is distinct; title = first 8-14 words. Rule vocabulary from the same texts: words of 4+ letters "
            "in 3+ texts and at most 8% of their language's texts, two-word phrases seen twice or more."
        )
    else:
        print(f"{args.data} not found: using a synthetic vocabulary (results are not comparable)", file=sys.stderr)
        texts = synthetic_texts(rng)
        data_note = "Texts: SYNTHETIC (the news-similarity CSV was not found), Zipf-distributed made-up words."
    vocab = vocabulary(texts)
    texts = [(lang, text) for lang, text in texts if lang in vocab.words or lang == "xx"]
    queries = make_rules(vocab, args.rules, rng)
    articles = make_articles(texts, args.articles, rng)
    rules = [R.compile_rule(query) for query in queries]
    kinds = collections.Counter()
    for query in queries:
        kinds["NEAR"] += "NEAR" in query
        kinds["title:/body:"] += "title:" in query or "body:" in query
        kinds["feed:/site:/lang:"] += any(f"{k}:" in query for k in ("feed", "site", "lang"))
        kinds["/regex/"] += "/\\b" in query
        kinds["exclusion"] += " -" in query
        kinds["wildcard"] += "*" in query
        kinds["phrase"] += '"' in query
    rule_mix = "Rules: " + ", ".join(f"{v:,} with {k}" for k, v in kinds.items()) + (
        f"; for example `{next(q for q in queries if 'NEAR' not in q)}` and "
        f"`{next((q for q in queries if 'NEAR' in q), queries[1])}`."
    )
    print(f"{len(rules)} rules, {len(articles)} articles; e.g. {queries[:3]}", file=sys.stderr)

    sample_size = min(args.sample, len(articles))
    sample = {round(i * len(articles) / sample_size) for i in range(sample_size)} if sample_size else set()
    ran = systems(rules)
    started = time.perf_counter()
    problems = measure(ran, articles, sample)
    print(f"measured in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if problems:
        print("RuleSet and Rule.matches disagree:", *problems[:10], sep="\n  ", file=sys.stderr)
        return 1
    baseline_note = (
        "Naive baseline, precisely: for each (rule, article), the rule's boolean tree evaluated with "
        "short-circuit AND/OR/NOT, each term being one Python `re` compiled once per rule term (word "
        "`\\bword\\b`, phrase `\\bair\\W+strike\\b`, wildcard `\\bfrapp\\w*\\b`, NEAR/n one pattern with "
        "both orders and at most n-1 words between, a rule regex as is, feed/site/lang compared as strings) "
        "searched in the raw text lowercased with `str.lower` (title + newline + body, or the title or body "
        "alone for a scoped term; lowercased once per article); nothing is shared between rules or between "
        "articles. It does no stemming and no accent folding, so it matches less than newswatch: its match "
        "count is for scale, not a reference."
    )
    method = (
        f"Method: {len(rules):,} generated rules, {len(articles):,} articles. `RuleSet` runs on every article; "
        f"`Rule.matches` on every rule and the naive baseline also run on {len(sample):,} of them spread evenly "
        "(\"the sampled articles\"), interleaved article by article in one process so that load affects all "
        "alike. Speed vs naive compares time per article on the sampled articles. newswatch's times include "
        "preparing each article (normalise, tokenise, Snowball-stem; its preparation cache is emptied before "
        "every call, and each newswatch system keeps its own cache of document-word stems, empty at the "
        "start); compiling rules and building the index are excluded for every system. `RuleSet` and "
        "`Rule.matches` returned the same rules for every sampled article."
    )
    command = (f".venv/bin/python bench/rules.py --rules {args.rules} --articles {args.articles} "
               f"--sample {args.sample} --seed {args.seed}{' --write' if args.write else ''}")  # fmt: skip
    text = report(ran, args, [method, "", data_note, "", rule_mix, "", baseline_note], command)
    print(text)
    if args.write:
        write_section("rules", HEADING, text, args.out)
        print(f"wrote the rules section of {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
