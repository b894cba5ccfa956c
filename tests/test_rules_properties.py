"""Property-based tests of the rule language (hypothesis).

Skipped when hypothesis is not installed; tests/test_rules.py::test_properties_seeded checks the
same properties with a seeded random generator, so they are covered either way.
"""

from __future__ import annotations

import os

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from newswatch.rules import Document, RuleSet, compile_rule, normalize_text  # noqa: E402
from tests.test_rules import (  # noqa: E402
    DOC_WORDS,
    FEEDS,
    LANGUAGES,
    NEAR_OPERANDS,
    OTHER_LEAVES,
    SCOPABLE,
    SITES,
    check_boolean_laws,
    check_near_laws,
    check_scope_laws,
)

# HYPOTHESIS_MAX_EXAMPLES=5000 for a deeper run; no example database, so nothing is written to the tree.
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

operands = st.sampled_from(NEAR_OPERANDS)
near_operators = st.one_of(st.just("NEAR"), st.integers(1, 8).map(lambda n: f"NEAR/{n}"))
leaves = st.one_of(
    operands,
    st.tuples(operands, near_operators, operands).map(" ".join),
    st.tuples(st.sampled_from(["title", "body"]), st.sampled_from(SCOPABLE)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.sampled_from(OTHER_LEAVES),
)


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.sampled_from(["NOT ", "-"]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, st.sampled_from([" AND ", " OR ", " ", "\n  AND "]), children).map(
            lambda t: f"({t[0]}){t[1]}({t[2]})"
        ),
    )


queries = st.recursive(leaves, _extend, max_leaves=8)
words = st.lists(st.sampled_from(DOC_WORDS), max_size=8).map(" ".join)
documents = st.builds(
    Document,
    title=words,
    body=words,
    language=st.sampled_from(LANGUAGES),
    feed=st.sampled_from(FEEDS),
    site=st.sampled_from(SITES),
)
document_lists = st.lists(documents, min_size=1, max_size=12)


@PROPERTY_SETTINGS
@given(queries)
def test_compile_never_raises_on_valid_queries(query: str) -> None:
    compile_rule(query)


@PROPERTY_SETTINGS
@given(queries, queries, document_lists)
def test_or_and_and_de_morgan(a: str, b: str, articles: list[Document]) -> None:
    """`A OR B` iff A or B, `A AND B` iff both, and NOT (A OR B) = NOT A AND NOT B."""
    check_boolean_laws(a, b, articles)


@PROPERTY_SETTINGS
@given(operands, operands, st.integers(1, 12), document_lists)
def test_near_implies_and_is_symmetric_and_monotonic(x: str, y: str, distance: int, articles: list[Document]) -> None:
    check_near_laws(x, y, distance, articles)


@PROPERTY_SETTINGS
@given(st.sampled_from(SCOPABLE), document_lists)
def test_scoped_term_implies_unscoped(term: str, articles: list[Document]) -> None:
    check_scope_laws(term, articles)


@PROPERTY_SETTINGS
@given(st.lists(queries, min_size=1, max_size=20), document_lists)
def test_rule_set_agrees_with_each_rule(texts: list[str], articles: list[Document]) -> None:
    rules = [compile_rule(text) for text in texts]
    ruleset = RuleSet(rules)
    for article in articles:
        assert ruleset.matching(article) == [rule for rule in rules if rule.matches(article)]


@PROPERTY_SETTINGS
@given(st.text())
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@PROPERTY_SETTINGS
@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_fast_path_agrees_with_the_full_folding(text: str) -> None:
    # A non-ASCII character that folds to nothing forces the general path on the same text.
    assert normalize_text(text) == normalize_text(text + "\u0301")
