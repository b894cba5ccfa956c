"""The SemEval-2022 Task 8 news-pair file as benchmark material: labels, a split by story, pages to serve.

``../shared/data/news-similarity/training_set.csv`` holds 1,283 pairs of news texts with annotator scores
(1 = very similar .. 4 = very dissimilar). A pair is "same story" when Overall <= 1.5 and "different"
when Overall >= 3; pairs in between are left out.

**Split by story, not by pair.** A pair id names two articles (``1484039360_1484180228``); machine
translations carry a language suffix (``1484039360it``) and are the same article. Articles linked by any
pair form one group (union-find over the numeric ids); a group goes wholly to the development part or to
the test part, by the parity of a SHA-256 of its smallest id. Thresholds are chosen on ``dev``; figures
are reported on ``test``.

**Publication times.** The file carries no dates, but its article ids were assigned in crawl order
(about a million a day in 2020). A text's time is estimated from its smallest id, with a line fitted to
the dates written in development-part texts ("20 April 2020", "March 3, 2020"): 1.088 days per million
ids, 2020-01-01 at id 1,484,052,036 (median error of the fit: one day). By this estimate pairs labelled
same story are a median 0.2 days apart, pairs whose annotators rated their times different (Time >= 3) a
median 37 days. It is an estimate: a few pairs labelled same story come out weeks apart.
"""

from __future__ import annotations

import csv
import hashlib
import html
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "news-similarity" / "training_set.csv"
SAME, DIFFERENT = 1.5, 3.0
_EPOCH_ID, _DAYS_PER_ID = 1_484_052_036, 1.088e-6
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
_SUFFIX = re.compile(r"[a-z]+$")


@dataclass
class Document:
    """One distinct text of the file: served as one article page."""

    number: int                  # position in the file's order of first appearance: the page's path
    text: str
    language: str
    ids: set[str] = field(default_factory=set)

    @property
    def published(self) -> datetime:
        first = min(int(_SUFFIX.sub("", key)) for key in self.ids)
        return _EPOCH + timedelta(days=(first - _EPOCH_ID) * _DAYS_PER_ID)

    @property
    def title_and_body(self) -> tuple[str, str]:
        return split_title(self.text)

    @property
    def articles(self) -> set[str]:
        """The article ids of this text without their translation suffix: two texts that share one are the
        same article (scraped twice, or machine-translated)."""
        return {_SUFFIX.sub("", key) for key in self.ids}


@dataclass
class Pair:
    pair_id: str
    a: Document
    b: Document
    overall: float
    entities: float
    geography: float
    part: str

    @property
    def same(self) -> bool:
        return self.overall <= SAME

    @property
    def labelled(self) -> bool:
        return self.overall <= SAME or self.overall >= DIFFERENT

    @property
    def cross_language(self) -> bool:
        return self.a.language != self.b.language

    @property
    def lookalike(self) -> bool:
        """Different stories whose annotators say they share actors or places."""
        return self.overall >= DIFFERENT and (self.entities <= 2 or self.geography <= 1.5)

    @property
    def languages(self) -> str:
        return f"{self.a.language}-{self.b.language}"


def load(path: Path = DATA) -> tuple[list[Document], list[Pair]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    documents: dict[str, Document] = {}
    for row in rows:
        for text, language, key in ((row["text1"], row["lang1"], row["pair_id"].split("_")[0]),
                                    (row["text2"], row["lang2"], row["pair_id"].split("_")[1])):
            document = documents.setdefault(text, Document(len(documents), text, language))
            document.ids.add(key)
    parts = split(rows)
    pairs = [Pair(row["pair_id"], documents[row["text1"]], documents[row["text2"]], float(row["Overall"]),
                  float(row["Entities"]), float(row["Geography"]), parts[row["pair_id"]]) for row in rows]
    return list(documents.values()), pairs


def split(rows: list[dict]) -> dict[str, str]:
    """pair id -> "dev" or "test", whole story groups at a time."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def ids(row: dict) -> list[str]:
        return [_SUFFIX.sub("", key) for key in row["pair_id"].split("_")]

    for row in rows:
        a, b = ids(row)
        parent[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for row in rows:
        for key in ids(row):
            groups.setdefault(find(key), []).append(key)
    part = {root: "dev" if int(hashlib.sha256(min(keys).encode()).hexdigest(), 16) % 2 == 0 else "test"
            for root, keys in groups.items()}
    return {row["pair_id"]: part[find(ids(row)[0])] for row in rows}


def split_title(text: str) -> tuple[str, str]:
    """The texts start with their headline: up to the first line break, double space or sentence end."""
    text = text.strip()
    for separator in ("\n", "  "):
        head, found, rest = text.partition(separator)
        if found and 10 <= len(head.strip()) <= 300:
            return head.strip(), rest.strip()
    match = re.search(r"[.!?。！？]\s", text[:300])
    if match and match.end() >= 20:
        return text[:match.end()].strip(), text[match.end():].strip()
    words = text.split()
    return " ".join(words[:12]), " ".join(words[12:])


def page(document: Document, title: str | None = None, body: str | None = None) -> bytes:
    """An article page as a news site would serve it: headline, paragraphs, publication time, language."""
    default_title, default_body = document.title_and_body
    title, body = title or default_title, body if body is not None else default_body
    paragraphs = [line.strip() for line in re.split(r"\n+", body) if line.strip()]
    published = document.published.isoformat()
    return (
        f'<!doctype html><html lang="{document.language}"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f'<meta property="article:published_time" content="{published}"></head>'
        f"<body><article><h1>{html.escape(title)}</h1>"
        + "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        + "</article></body></html>"
    ).encode("utf-8")
