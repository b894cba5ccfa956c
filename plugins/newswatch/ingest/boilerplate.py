"""Per-site boilerplate learning: paragraphs a site repeats in many articles are its template.

Main-text extraction removes most page chrome, but every site has a few paragraphs that sit inside
the article body on every page: a cookie notice, a newsletter box, "Related Articles", a template
byline, an "About the company" footer. They make unrelated articles look alike (dedup) and match
rules they have nothing to do with. This module learns them from what the site publishes:

* ``learn(cur, site, body)`` counts, per site and normalised paragraph, in how many distinct
  articles the paragraph appeared (a body already learned counts once, so retries are harmless);
* ``strip(cur, site, body)`` removes the paragraphs seen in at least ``min_articles`` earlier
  articles of the site *and* in at least ``min_share`` of them, but never more than
  ``max_strip_share`` of the body: a site that publishes the same story several times (updates,
  syndication) must not lose it. ``template(cur, site)`` reads what stripping needs once and
  ``strip_with(template, body)`` strips without the database, in the process that extracted the page;
  ``lines(body)`` likewise prepares what ``learn`` records.

Call ``strip`` before ``learn`` for each new article (``strip_and_learn`` does both), inside the
transaction that stores the article. Both take a psycopg2 cursor; the tables are in migration 0003.
Concurrent workers serialise per site on the ``boilerplate_sites`` row, taken first, then lock
line rows in hash order, so they cannot deadlock each other.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

from psycopg2.extras import execute_values

from newswatch.text import normalize_text
from newswatch.urls import site_of

__all__ = [
    "DEFAULT_POLICY",
    "Lines",
    "Policy",
    "Template",
    "learn",
    "line_key",
    "lines",
    "prune",
    "site_of",
    "split_paragraphs",
    "strip",
    "strip_and_learn",
    "strip_with",
    "template",
]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_DIGITS = re.compile(r"\d+")
_SAMPLE_CHARS = 200
# Paragraphs of one body taken into account: a pathological page cannot write thousands of rows.
_MAX_PARAGRAPHS = 400


@dataclass(frozen=True)
class Policy:
    """When a recurring paragraph counts as the site's template."""

    min_articles: int = 3  # seen in at least this many distinct earlier articles of the site ...
    min_share: float = 0.2  # ... and in at least this share of them
    max_strip_share: float = 0.5  # never remove more than this share of a body's characters
    # Above max_strip_share, only paragraphs on at least this share of the site's articles (a true
    # template: cookie notice, footer) are removed, again within max_strip_share; else nothing.
    template_share: float = 0.5


DEFAULT_POLICY = Policy()


def split_paragraphs(body: str) -> list[str]:
    return [p for p in (part.strip() for part in _PARAGRAPH_BREAK.split(body or "")) if p]


def line_key(paragraph: str) -> int | None:
    """A signed 64-bit hash of the paragraph folded for matching; None when it has no word.

    Case, accents, typography and whitespace are folded (text.normalize_text) and digit runs
    become "0", so "© 2024" and "© 2025", or "Updated 3 hours ago" on each page, are one line.
    """
    folded = _DIGITS.sub("0", normalize_text(paragraph))
    if not any(ch.isalnum() for ch in folded):
        return None
    digest = hashlib.blake2b(folded.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _body_key(body: str) -> int:
    """Identity of an article body (whitespace aside): the same body stored twice is learned once."""
    digest = hashlib.blake2b(" ".join(body.split()).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _keyed(body: str) -> list[tuple[str, int | None]]:
    return [(p, line_key(p)) for p in split_paragraphs(body)[:_MAX_PARAGRAPHS]]


@dataclass(frozen=True)
class Lines:
    """What learning needs from a body: its identity and its paragraphs' keys, each with a sample."""

    body_key: int
    keys: tuple[tuple[int, str], ...]


def lines(body: str) -> Lines | None:
    """The body's paragraph keys (a line counts once per article); None when there is nothing to learn."""
    keyed = [(p, k) for p, k in _keyed(body) if k is not None]
    if not keyed:
        return None
    first_sample: dict[int, str] = {}
    for paragraph, key in keyed:
        first_sample.setdefault(key, paragraph[:_SAMPLE_CHARS])
    return Lines(_body_key(body), tuple(sorted(first_sample.items())))


def learn(cur, site: str, body: str | Lines | None) -> bool:
    """Count the body's paragraphs for ``site``; False when this body was already learned (or empty).

    ``body`` may be the text or its ``lines`` (computed where the page was extracted).
    """
    learned = lines(body) if isinstance(body, str) else body
    if not site or learned is None:
        return False
    cur.execute(
        "INSERT INTO boilerplate_articles (site, body_hash) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING site",
        (site, learned.body_key),
    )
    if cur.fetchone() is None:
        return False
    # The site row first: concurrent learners of one site queue here instead of deadlocking below.
    cur.execute(
        "INSERT INTO boilerplate_sites (site, articles) VALUES (%s, 1) "
        "ON CONFLICT (site) DO UPDATE SET articles = boilerplate_sites.articles + 1, updated_at = now()",
        (site,),
    )
    execute_values(  # one statement for all the lines (keys are unique and sorted: no deadlock, no conflict)
        cur,
        "INSERT INTO boilerplate_lines (site, line_hash, articles, sample) VALUES %s "
        "ON CONFLICT (site, line_hash) DO UPDATE "
        "SET articles = boilerplate_lines.articles + 1, last_seen_at = now()",
        [(site, key, sample) for key, sample in learned.keys],
        template="(%s, %s, 1, %s)",
    )
    return True


@dataclass(frozen=True)
class Template:
    """What a site is known to repeat: its article count and the counts of its recurring paragraphs."""

    articles: int = 0
    lines: dict[int, int] = field(default_factory=dict)


def template(cur, site: str, policy: Policy = DEFAULT_POLICY) -> Template:
    """The site's lines frequent enough to be stripped from any body (one read, reusable for many bodies)."""
    if not site:
        return Template()
    cur.execute("SELECT articles FROM boilerplate_sites WHERE site = %s", (site,))
    row = cur.fetchone()
    site_articles = _first(row) if row else 0
    if site_articles < policy.min_articles:
        return Template(site_articles)
    cur.execute(
        "SELECT line_hash, articles FROM boilerplate_lines WHERE site = %s AND articles >= %s",
        (site, max(policy.min_articles, math.ceil(policy.min_share * site_articles))),
    )
    return Template(site_articles, {_first(r): _second(r) for r in cur.fetchall()})


def strip(cur, site: str, body: str, policy: Policy = DEFAULT_POLICY) -> str:
    """The body without the site's template paragraphs (see Policy); unchanged when nothing is known."""
    if not site or not body:
        return body
    return strip_with(template(cur, site, policy), body, policy)


def strip_with(known: Template, body: str, policy: Policy = DEFAULT_POLICY) -> str:
    """``strip`` with the site's template already read (no database: runs where the page is extracted)."""
    if not body or known.articles < policy.min_articles or not known.lines:
        return body
    keyed = _keyed(body)

    def share(key: int | None) -> float:
        seen = known.lines.get(key, 0) if key is not None else 0
        return seen / known.articles if seen >= policy.min_articles else 0.0

    total = sum(len(p) for p, _ in keyed) or 1
    for threshold in (policy.min_share, policy.template_share):
        drop = {i for i, (_, key) in enumerate(keyed) if share(key) >= threshold}
        removed = sum(len(keyed[i][0]) for i in drop)
        if drop and removed <= policy.max_strip_share * total:
            return "\n\n".join(p for i, (p, _) in enumerate(keyed) if i not in drop) + _tail(body)
    return body


def _tail(body: str) -> str:
    """Paragraphs beyond _MAX_PARAGRAPHS are kept as they are."""
    paragraphs = split_paragraphs(body)
    return "\n\n" + "\n\n".join(paragraphs[_MAX_PARAGRAPHS:]) if len(paragraphs) > _MAX_PARAGRAPHS else ""


def strip_and_learn(cur, site: str, body: str, policy: Policy = DEFAULT_POLICY) -> str:
    """Strip with what earlier articles taught, then learn from this (unstripped) body."""
    cleaned = strip(cur, site, body, policy)
    learn(cur, site, body)
    return cleaned


def prune(cur, *, older_than_days: int = 30, policy: Policy = DEFAULT_POLICY) -> int:
    """Forget rare lines not seen for a while (the table would otherwise grow with every article).

    Lines seen in fewer than ``policy.min_articles`` articles and not seen for ``older_than_days``
    are deleted, as are the body hashes learned before then. Site totals are kept, so a deleted
    line that comes back starts again from 1 in a site whose share threshold is unchanged: template
    lines, which recur on every page, are never old. Returns the number of lines deleted.
    """
    cur.execute(
        "DELETE FROM boilerplate_lines WHERE articles < %s AND last_seen_at < now() - make_interval(days => %s)",
        (policy.min_articles, older_than_days),
    )
    deleted = cur.rowcount
    cur.execute(
        "DELETE FROM boilerplate_articles WHERE learned_at < now() - make_interval(days => %s)", (older_than_days,)
    )
    return deleted


def _first(row) -> object:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def _second(row) -> object:
    return list(row.values())[1] if isinstance(row, dict) else row[1]
