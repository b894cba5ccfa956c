"""Full-text search over the archive: each article in its own language's configuration, pagination, CLI."""

from __future__ import annotations

import itertools
import json
from argparse import ArgumentParser
from datetime import UTC, datetime, timedelta

import pytest

from newswatch import db, search

_ids = itertools.count(1)


def add_article(query, title: str, body: str, language: str | None, *, feed: str = "wire",
                fetched_at: datetime | None = None, summary: str | None = None, story: int | None = None) -> int:
    n = next(_ids)
    if story is None:
        story = query("INSERT INTO stories (title) VALUES (%s) RETURNING id", (title,))[0]["id"]
    return query(
        """
        INSERT INTO articles (url, canonical_url, title, body, summary, language, feed, extraction, content_hash,
                              story_id, fetched_at)
        VALUES (%(url)s, %(url)s, %(title)s, %(body)s, %(summary)s, %(language)s, %(feed)s, 'trafilatura',
                %(hash)s, %(story)s, %(fetched)s) RETURNING id
        """,
        {"url": f"https://{feed}.example/{n}", "title": title, "body": body, "summary": summary,
         "language": language, "feed": feed, "hash": f"h{n}", "story": story,
         "fetched": fetched_at or datetime.now(UTC)},
    )[0]["id"]


def ids(rows: list[dict]) -> list[int]:
    return [row["id"] for row in rows]


def test_database_config_function_matches_the_python_table(query):
    present = {row["cfgname"] for row in query("SELECT cfgname FROM pg_ts_config")}
    for code, config in search.LANGUAGE_CONFIGS.items():
        expected = config if config in present else "simple"
        assert query("SELECT newswatch_ts_config(%s)::text AS c", (code,))[0]["c"] == expected, code
    assert query("SELECT newswatch_ts_config(NULL)::text AS c")[0]["c"] == "simple"
    assert query("SELECT newswatch_ts_config('FR')::text AS c")[0]["c"] == "french"
    assert search.ts_config("xx") == "simple" and search.ts_config(None) == "simple"


def test_french_query_finds_french_article_by_stemming(database_url, query):
    fr = add_article(query, "Une frappe américaine en Syrie",
                     "Les États-Unis ont mené une frappe aérienne contre des milices près de Deir ez-Zor.", "fr")
    add_article(query, "Grève des cheminots", "Les syndicats appellent à la grève générale jeudi.", "fr")
    # The same French words in an article of an unknown language are only matched word for word.
    raw = add_article(query, "frappe", "frappe unique", None)

    hits = search.search("frappes", url=database_url)
    assert ids(hits) == [fr]  # 'frappes' → french stem 'frapp' matches 'frappe'; the 'simple' article does not
    assert search.search("frappes", language="fr", url=database_url)[0]["id"] == fr
    assert search.search("frappes", language="en", url=database_url) == []
    assert ids(search.search("frappe", url=database_url)) in ([fr, raw], [raw, fr])
    assert "frappe" in hits[0]["snippet"] and "\x02" not in hits[0]["snippet"]


def test_other_languages_use_their_own_stemmers(database_url, query):
    de = add_article(query, "Luftangriff auf Damaskus", "Bei dem Luftangriff wurden mehrere Gebäude zerstört.", "de")
    en = add_article(query, "Strikes hit militia bases", "The United States is striking militia positions.", "en")
    es = add_article(query, "Ataques aéreos en Siria", "Los ataques aéreos continuaron durante la noche.", "es")
    assert ids(search.search("Luftangriffe", url=database_url)) == [de]
    assert set(ids(search.search("strike", url=database_url))) == {en}
    assert ids(search.search("ataque", language="es", url=database_url)) == [es]
    # English stop words alone make an empty query: nothing matches, nothing breaks.
    assert search.search("the", language="en", url=database_url) == []


def test_web_search_syntax_phrase_or_and_exclusion(database_url, query):
    a = add_article(query, "Frappe aérienne en Syrie", "Une frappe aérienne a visé un dépôt.", "fr")
    b = add_article(query, "Frappe de drone", "Une frappe de drone, pas aérienne au sens strict, a visé un camp. "
                    "Le raid était aérien.", "fr")
    c = add_article(query, "Bombardement", "Un bombardement massif.", "fr")
    assert ids(search.search('"frappe aérienne"', url=database_url)) == [a]
    assert set(ids(search.search("frappe -drone", url=database_url))) == {a}
    assert set(ids(search.search("bombardement or drone", url=database_url))) == {b, c}


def test_title_weighs_more_and_filters_apply(database_url, query):
    old = datetime.now(UTC) - timedelta(days=40)
    in_title = add_article(query, "Syrie: frappes nocturnes", "Rien d'autre ici.", "fr", feed="lemonde")
    in_body = add_article(query, "Point sur la région", "Des frappes ont eu lieu en Syrie dans la nuit.", "fr",
                          feed="rfi")
    old_one = add_article(query, "Syrie: frappes", "Archives.", "fr", fetched_at=old, feed="rfi")
    ranked = ids(search.search("frappes syrie", url=database_url))
    assert set(ranked[:2]) == {in_title, old_one} and ranked[2] == in_body  # title (A) above body (D)
    assert ids(search.search("frappes", since=datetime.now(UTC) - timedelta(days=7), url=database_url)) == [
        in_title, in_body]
    assert ids(search.search("frappes", feed="rfi", url=database_url)) == [old_one, in_body]
    since = search.parse_since("30d")
    assert timedelta(days=29) < datetime.now(UTC) - since < timedelta(days=31)
    assert search.parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert search.parse_since("") is None


def test_pagination_pages_are_disjoint_and_ordered(database_url, query):
    base = datetime(2026, 11, 1, tzinfo=UTC)
    made = [add_article(query, f"Frappe numéro {i}", "frappe " * (1 + i % 3), "fr",
                        fetched_at=base + timedelta(hours=i)) for i in range(7)]
    seen: list[int] = []
    pages = []
    for offset in (0, 3, 6):
        with db.transaction(database_url) as cur:
            page = search.search_page(cur, "frappe", limit=3, offset=offset)
        pages.append(page)
        seen += ids(page.rows)
    assert [len(p.rows) for p in pages] == [3, 3, 1]
    assert [p.has_more for p in pages] == [True, True, False]
    assert sorted(seen) == sorted(made) and len(set(seen)) == 7
    ranks = [row["rank"] for p in pages for row in p.rows]
    assert ranks == sorted(ranks, reverse=True)


def test_retention_keeps_articles_findable_by_title(database_url, query):
    article = add_article(query, "Frappe sur Alep", "Le corps du texte parle de roquettes.", "fr")
    assert ids(search.search("roquettes", url=database_url)) == [article]
    query("UPDATE articles SET body = '', body_dropped_at = now() WHERE id = %s", (article,))
    assert search.search("roquettes", url=database_url) == []
    hit = search.search("alep", url=database_url)
    assert ids(hit) == [article] and hit[0]["body_dropped"] is True


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"query": "   "}, "enter words"),
    ({"query": "x" * 501}, "longer than"),
    ({"query": "frappe", "language": "french!"}, "ISO 639-1"),
    ({"query": "frappe", "offset": 10_001}, "refine the query"),
    ({"query": "frappe", "limit": 0}, "limit"),
])
def test_bad_requests_are_refused_with_a_message(database_url, kwargs, message):
    query = kwargs.pop("query")
    with pytest.raises(search.SearchError, match=message):
        search.search(query, url=database_url, **kwargs)


def test_hostile_query_text_is_only_data(database_url, query):
    add_article(query, "Frappe", "frappe", "fr")
    for text in ["'; DROP TABLE articles; --", "frappe & | ! ( ) : * <->", "\x00frappe", '"unterminated']:
        search.search(text, url=database_url)
    assert query("SELECT count(*) AS n FROM articles")[0]["n"] == 1


def _cli(*argv: str):
    parser = ArgumentParser(prog="newswatch search")
    search.add_arguments(parser)
    return search.run_cli(parser.parse_args(list(argv)))


def test_cli_table_and_json(database_url, query, capsys):
    article = add_article(query, "Frappe américaine en Syrie", "Une frappe aérienne.", "fr", feed="lemonde")
    assert _cli("frappes") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["ID", "STORY_ID", "LANGUAGE", "FEED", "FETCHED_AT", "RANK", "TITLE"]
    assert "Frappe américaine en Syrie" in out and "lemonde" in out
    assert _cli("frappes", "--json", "--language", "fr", "--since", "7d") == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == article and rows[0]["url"].startswith("https://lemonde.example/")
    assert _cli("nothing-matches-this") == 0
    assert "no article matches" in capsys.readouterr().err
    assert _cli("frappe", "--since", "last tuesday") == 2
    assert "since" in capsys.readouterr().err
    assert _cli("frappe", "--page", "0") == 2


def test_cli_refuses_a_period_beyond_the_calendar_in_one_line(database_url, query, capsys):
    add_article(query, "Frappe", "frappe", "fr")
    for since in ("99999999d", "9999999999999999999999h"):
        assert _cli("frappe", "--since", since) == 2
        err = capsys.readouterr().err
        assert err.startswith("newswatch search: since:") and len(err.strip().splitlines()) == 1, err
    with pytest.raises(search.SearchError, match="since"):
        search.parse_since("99999999d")
