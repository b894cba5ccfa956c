"""Quality of the "same story" decision on SemEval-2022 Task 8 pairs, against a MinHash-only baseline.

Data: ../shared/data/news-similarity/training_set.csv (1,283 pairs; Overall 1 = very similar, 4 = very
dissimilar). A pair is "same story" when Overall <= 1.5 and "different" when Overall >= 3; pairs in
between are left out. Precision and recall are those of the "same story" answer, split into
same-language and cross-language pairs.

- baseline: the dedup before this change, i.e. the same normalised text (content hash) or an estimated
  MinHash Jaccard similarity of word 5-gram shingles >= the near-duplicate threshold (0.5), in any
  language pair (it was only ever asked about same-language pairs).
- ours: ``newswatch.stories.pair_decision``, the layers of ``assign_stories`` applied to one pair, with
  entity document frequencies computed over every text of the file (the "archive").

The texts carry no separate headline, so the title layer is not exercised here.

Run: .venv/bin/python bench/dedup_quality.py [--by-language]
"""

from __future__ import annotations

import argparse
import collections
import csv
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from newswatch import entities  # noqa: E402
from newswatch.config import Settings  # noqa: E402
from newswatch.dedup import fingerprint, similarity  # noqa: E402
from newswatch.stories import pair_decision  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "news-similarity" / "training_set.csv"
SAME, DIFFERENT = 1.5, 3.0


def load(path: Path) -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--by-language", action="store_true", help="also print figures per language pair")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    settings = Settings()
    rows = load(args.data)
    started = time.perf_counter()

    documents: dict[tuple[str, str], dict] = {}
    for row in rows:
        for text, language in ((row["text1"], row["lang1"]), (row["text2"], row["lang2"])):
            if (text, language) in documents:
                continue
            print_ = fingerprint(text, settings.dedup.min_tokens)
            documents[(text, language)] = {
                "content_hash": print_.content_hash, "signature": print_.signature, "title_key": None,
                "entities": list(entities.extract("", text, language).items), "language": language,
            }
    df: collections.Counter[str] = collections.Counter()
    for document in documents.values():
        df.update(set(document["entities"]))
    total = len(documents)
    extracted = time.perf_counter() - started

    tally: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    reasons: collections.Counter[str] = collections.Counter()
    for row in rows:
        overall = float(row["Overall"])
        if SAME < overall < DIFFERENT:
            continue
        label = overall <= SAME
        a = documents[(row["text1"], row["lang1"])]
        b = documents[(row["text2"], row["lang2"])]
        comparable = a["signature"] is not None and b["signature"] is not None
        baseline = comparable and (a["content_hash"] == b["content_hash"] or similarity(
            a["signature"], b["signature"]) >= settings.dedup.near_duplicate_threshold)
        decision = pair_decision(a, b, df, total, settings)
        if decision:
            reasons[(decision[0], "true" if label else "false")] += 1
        kinds = ["same-language" if row["lang1"] == row["lang2"] else "cross-language", "all"]
        if args.by_language:
            kinds.append(f"{row['lang1']}-{row['lang2']}")
        for kind in kinds:
            for system, answer in (("baseline", baseline), ("ours", decision is not None)):
                counts = tally[(kind, system)]
                counts["positives"] += label
                counts["negatives"] += not label
                counts["tp"] += answer and label
                counts["fp"] += answer and not label

    print(f"# dedup quality: {args.data.name}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
          f"{platform.node()} ({platform.machine()}, Python {platform.python_version()})")
    print(f"{len(rows)} pairs, {total} distinct texts; same story: Overall <= {SAME}, different: >= {DIFFERENT}; "
          f"fingerprints in {extracted:.1f} s")
    print()
    print("| pairs | same / different | system | precision | recall | TP | FP |")
    print("|---|---|---|---|---|---|---|")
    for kind in sorted({k for k, _ in tally}, key=lambda k: ({"same-language": 0, "cross-language": 1,
                                                               "all": 2}.get(k, 3), k)):
        for system in ("baseline", "ours"):
            counts = tally[(kind, system)]
            answered = counts["tp"] + counts["fp"]
            precision = f"{counts['tp'] / answered:.3f}" if answered else "n/a"
            recall = f"{counts['tp'] / counts['positives']:.3f}" if counts["positives"] else "n/a"
            print(f"| {kind} | {counts['positives']} / {counts['negatives']} | {system} | {precision} | {recall} "
                  f"| {counts['tp']} | {counts['fp']} |")
    print()
    print("answers of ours by layer:", ", ".join(f"{layer} {kind} positives {n}"
                                                  for (layer, kind), n in sorted(reasons.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
