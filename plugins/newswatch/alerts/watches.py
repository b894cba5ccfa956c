"""Meaning terms at match time: how close each new article is to the vectors of the rules' ``about:`` and
``like:`` terms, computed in PostgreSQL (pgvector), and the backlog of articles a rule could not judge yet.

The ``match_rules`` task never loads the model (nor numpy: tests/test_task_imports.py): the vectors it needs
are already in the database. An article's meaning is in ``article_meanings`` (the fetch tasks' worker processes
embed it, before grouping); an about-term's description is embedded by such workers at the start of every
``cluster_stories`` run (``newswatch.stories.grouping.embed_rule_meanings``) into ``rule_meanings``, keyed by
``newswatch.rules.meaning_key``; a like-term's vector is the mean meaning of the story it names
(``like:1234``) or the meaning of the article at that URL (``like:https://…``), read from the archive.

A rule whose description has no vector yet (added after this run's grouping started) would miss the
articles of this run: instead it is judged without it now (its keyword part may still match), and the
articles that have a meaning are kept in ``meaning_backlog`` and judged by that rule once the vector is
there (the next cycle). A like-term naming nothing the archive holds cannot match: check-config reports it.
Articles in a language the model does not read have no meaning and never match a meaning term.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from newswatch.rules import MeaningTerm, Rule

log = logging.getLogger(__name__)

# = newswatch.stories.meaning.MODEL, written out so that this module stays free of the model's imports
# (tests/test_watches.py checks that they agree).
MODEL = "use-multilingual-v3"
# Similarities this far below a rule's threshold are still fetched: the near-misses `rules test` shows.
NEAR_MISS = 0.05
BACKLOG_DAYS = 7


@dataclass
class Vectors:
    """The vectors the rules' meaning terms have now: about-terms by key (in ``rule_meanings``), like-terms
    as pgvector text (resolved from the archive); ``missing`` names the terms that have none."""

    about: list[str]
    like: dict[str, str]
    missing: dict[str, MeaningTerm]

    @property
    def ready(self) -> set[str]:
        return {*self.about, *self.like}


def terms_of(rules: Iterable[Rule]) -> dict[str, MeaningTerm]:
    """Every meaning term of the rules, by key."""
    return {term.key: term for rule in rules for term in rule.meanings}


def floor(rules: Iterable[Rule], margin: float = 0.0) -> float:
    """The lowest similarity any of the rules' meaning terms can use (minus ``margin``)."""
    return min((term.threshold for rule in rules for term in rule.meanings), default=1.0) - margin


def vectors(cur, terms: dict[str, MeaningTerm]) -> Vectors:
    """Which of ``terms`` have a vector now."""
    about = [key for key, term in terms.items() if term.kind == "about"]
    found: list[str] = []
    if about:
        cur.execute("SELECT key FROM rule_meanings WHERE key = ANY(%s) AND model = %s", (about, MODEL))
        found = [row["key"] for row in cur.fetchall()]
    like: dict[str, str] = {}
    for key, term in terms.items():
        if term.kind != "like":
            continue
        if term.value.isdigit():
            cur.execute("SELECT avg(m.embedding)::text AS v FROM articles a JOIN article_meanings m "
                        "ON m.article_id = a.id WHERE a.story_id = %s AND m.embedding IS NOT NULL", (int(term.value),))
        else:
            cur.execute("SELECT m.embedding::text AS v FROM articles a JOIN article_meanings m ON m.article_id = a.id "
                        "WHERE (a.canonical_url = %s OR a.url = %s) AND m.embedding IS NOT NULL LIMIT 1",
                        (term.value, term.value))
        row = cur.fetchone()
        if row and row["v"]:
            like[key] = row["v"]
    ready = {*found, *like}
    return Vectors(found, like, {key: term for key, term in terms.items() if key not in ready})


TERMS_CTE = """terms(key, embedding) AS (
    SELECT key, embedding FROM rule_meanings WHERE key = ANY(%(about)s) AND model = %(model)s
    UNION ALL SELECT k, v::vector FROM unnest(%(like_keys)s::text[], %(like_vectors)s::text[]) AS l(k, v)
)"""


def terms_params(ready: Vectors) -> dict:
    """The parameters of ``TERMS_CTE``: the ready vectors as a relation (key, embedding)."""
    return {"about": ready.about, "model": MODEL, "like_keys": list(ready.like),
            "like_vectors": list(ready.like.values())}


def similarities(cur, article_ids: list[int], ready: Vectors, at_least: float
                 ) -> dict[int, tuple[tuple[str, float], ...]]:
    """For each article with a meaning, its cosine similarity to every ready vector, those >= ``at_least``
    only (what `newswatch.rules.Document.meanings` takes). One query; pgvector does the arithmetic."""
    if not article_ids or not (ready.about or ready.like):
        return {}
    cur.execute(
        f"""
        WITH {TERMS_CTE}
        SELECT m.article_id, t.key, 1 - (m.embedding <=> t.embedding) AS similarity
        FROM article_meanings m CROSS JOIN terms t
        WHERE m.article_id = ANY(%(ids)s) AND m.embedding IS NOT NULL
          AND 1 - (m.embedding <=> t.embedding) >= %(floor)s
        """,
        {**terms_params(ready), "ids": article_ids, "floor": at_least},
    )
    found: dict[int, list[tuple[str, float]]] = {}
    for row in cur.fetchall():
        found.setdefault(row["article_id"], []).append((row["key"], round(float(row["similarity"]), 4)))
    return {article: tuple(sorted(pairs)) for article, pairs in found.items()}


def hold(cur, rules: list[str], article_ids: list[int]) -> int:
    """Keep the articles (those with a meaning) for rules that could not judge them yet; returns rows added."""
    if not rules or not article_ids:
        return 0
    cur.execute(
        "INSERT INTO meaning_backlog (rule, article_id) SELECT r, m.article_id FROM unnest(%s::text[]) AS r "
        "CROSS JOIN article_meanings m WHERE m.article_id = ANY(%s) AND m.embedding IS NOT NULL "
        "ON CONFLICT DO NOTHING", (rules, article_ids))
    return cur.rowcount


def backlog(cur, rules: Iterable[str]) -> dict[str, list[int]]:
    """The held articles of each of ``rules``; rows of rules gone from the configuration are dropped, and
    rows older than ``BACKLOG_DAYS`` with a warning (a description that could not be embedded in a week)."""
    names = list(rules)
    cur.execute("DELETE FROM meaning_backlog WHERE NOT rule = ANY(%s)", (names,))
    cur.execute("DELETE FROM meaning_backlog WHERE added_at < now() - make_interval(days => %s) "
                "RETURNING rule", (BACKLOG_DAYS,))
    expired = sorted({row["rule"] for row in cur.fetchall()})
    if expired:
        log.warning("rules %s waited %d days for the vector of a description: their held articles are dropped "
                    "(see `newswatch check-config`)", ", ".join(expired), BACKLOG_DAYS)
    cur.execute("SELECT rule, array_agg(article_id ORDER BY article_id) AS ids FROM meaning_backlog GROUP BY rule")
    return {row["rule"]: row["ids"] for row in cur.fetchall()}


def release(cur, rule: str, article_ids: list[int]) -> None:
    """The rule has judged these held articles."""
    cur.execute("DELETE FROM meaning_backlog WHERE rule = %s AND article_id = ANY(%s)", (rule, article_ids))
