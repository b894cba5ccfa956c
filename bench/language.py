"""Language identification benchmark: newswatch.ingest.language.detect_language on labelled news texts.

Data: ``../shared/data/news-similarity/training_set.csv`` beside the repository: SemEval-2022 Task 8
(Multilingual News Article Similarity) training pairs as prepared by the task's winning team
(github.com/GeekDream-x/SemEval2022-Task8-TonyX, commit 4281dc9, Apache-2.0). Each row has two
texts (head+tail excerpts of about 1,000 characters) and their languages (lang1, lang2), which are
the gold labels here. A text that occurs in several rows is scored once. About 38% of rows are
machine-translated variants of other pairs (pair ids with a language suffix); they are reported
separately as well, since machine translation leaves untranslated fragments.

An answer of None ("unsure", see MIN_CONFIDENCE) counts as wrong in the accuracy and is also
reported on its own.

Run from the repository root::

    .venv/bin/python bench/language.py
    .venv/bin/python bench/language.py --chars 300   # only the first 300 characters of each text
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "news-similarity" / "training_set.csv"
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

_TRANSLATED = re.compile(r"\d[a-z]{2}$")  # "1484039360it": article 1484039360 machine-translated to Italian


def load_texts(path: Path = DEFAULT_DATA) -> list[tuple[str, str, bool]]:
    """Distinct (text, gold language, machine-translated) triples."""
    csv.field_size_limit(10_000_000)
    seen: dict[str, tuple[str, str, bool]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            ids = row["pair_id"].split("_")
            for index, (text_key, lang_key) in enumerate((("text1", "lang1"), ("text2", "lang2"))):
                text = (row[text_key] or "").strip()
                translated = index < len(ids) and _TRANSLATED.search(ids[index]) is not None
                if text and text not in seen:
                    seen[text] = (text, row[lang_key].strip(), translated)
    return list(seen.values())


@dataclass
class LanguageResult:
    per_language: dict[str, Counter[str]]  # gold language -> {"right", "wrong", "unsure"} counts
    by_origin: dict[bool, Counter[str]]  # machine-translated? -> counts
    confusions: Counter[tuple[str, str]]  # (gold, detected) for wrong answers
    seconds: float

    @property
    def overall(self) -> Counter[str]:
        return sum(self.per_language.values(), Counter())

    @staticmethod
    def accuracy(counts: Counter[str]) -> float:
        return counts["right"] / (sum(counts.values()) or 1)

    @property
    def macro_accuracy(self) -> float:
        return sum(self.accuracy(c) for c in self.per_language.values()) / (len(self.per_language) or 1)


def evaluate(texts: list[tuple[str, str, bool]], chars: int = 0) -> LanguageResult:
    """detect_language on every text (or its first ``chars`` characters) against the gold labels."""
    from newswatch.ingest.language import detect_language

    detect_language(texts[0][0])  # model loading is not part of the timing
    per_lang: dict[str, Counter[str]] = defaultdict(Counter)
    by_origin: dict[bool, Counter[str]] = defaultdict(Counter)
    confusions: Counter[tuple[str, str]] = Counter()
    start = time.perf_counter()
    for text, gold, translated in texts:
        found = detect_language(text[:chars] if chars else text)
        outcome = "right" if found == gold else ("unsure" if found is None else "wrong")
        per_lang[gold][outcome] += 1
        by_origin[translated][outcome] += 1
        if outcome == "wrong":
            confusions[(gold, found)] += 1
    return LanguageResult(dict(per_lang), dict(by_origin), confusions, time.perf_counter() - start)


def markdown_table(result: LanguageResult) -> str:
    rows = ["| language | texts | accuracy | wrong | unsure |", "|---|---:|---:|---:|---:|"]
    languages = sorted(result.per_language, key=lambda g: -sum(result.per_language[g].values()))
    labelled = [(g, result.per_language[g]) for g in languages] + [
        ("**all**", result.overall),
        ("original texts", result.by_origin.get(False, Counter())),
        ("machine-translated", result.by_origin.get(True, Counter())),
    ]
    for label, counts in labelled:
        rows.append(f"| {label} | {sum(counts.values()):,} | {LanguageResult.accuracy(counts):.3f} | "
                    f"{counts['wrong']} | {counts['unsure']} |")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--chars", type=int, default=0, help="use only the first N characters of each text")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    texts = load_texts(args.data)
    result = evaluate(texts, args.chars)
    print(f"{len(texts)} distinct texts, {len(texts) / result.seconds:.0f} texts/s"
          + (f", first {args.chars} characters" if args.chars else ""))  # fmt: skip
    print(markdown_table(result))
    print(f"macro accuracy over languages: {result.macro_accuracy:.3f}")
    if result.confusions:
        print("confusions (gold -> detected):",
              ", ".join(f"{g}->{f} {n}" for (g, f), n in result.confusions.most_common(8)))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
