"""Full-text search over the stored articles, in each article's own language.

Migration 0006 gives every article a ``search_vector``: its title (weight A), feed summary (C) and body (D)
analysed with the PostgreSQL text-search configuration of its language (``newswatch_ts_config``: fr →
french, de → german, …, anything else → simple), indexed with GIN. A query is parsed with
``websearch_to_tsquery`` — plain words, ``"a phrase"``, ``or``, ``-word`` — in the configuration of the
article it is tested against, so "frappes" finds a French article that says "frappe", and "strikes" an
English one that says "striking" (stemming relates inflections of a word, not irregular forms).

Without a language filter the query is first parsed in every configuration and the distinct forms OR-ed
into one literal (a superset) that probes the GIN index; each candidate is then checked and ranked with the
query in its own language's configuration, joined by language code (one parse per configuration, not one
per row: that per-row parse tripled the time of a common word at 1M articles). Results
are ranked with ``ts_rank`` (normalised by document length), newest first among equals, and paginated
with LIMIT/OFFSET; a page asks for one row more than it shows to know whether another page follows,
so no full count is ever computed.

Used by the UI (``newswatch.web``) and by ``newswatch search`` (``run_cli``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from newswatch import db
from newswatch.output import print_json, print_table

# ISO 639-1 code → PostgreSQL text-search configuration; the same table as migration 0006 (which keeps
# only the configurations the server has: a code missing there falls back to 'simple' on both sides).
LANGUAGE_CONFIGS: dict[str, str] = {
    "ar": "arabic", "ca": "catalan", "da": "danish", "de": "german", "el": "greek", "en": "english",
    "es": "spanish", "eu": "basque", "fi": "finnish", "fr": "french", "ga": "irish", "hi": "hindi",
    "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian", "lt": "lithuanian",
    "nb": "norwegian", "ne": "nepali", "nl": "dutch", "nn": "norwegian", "no": "norwegian",
    "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian", "sv": "swedish",
    "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}
MAX_QUERY_LENGTH = 500
MAX_LIMIT = 200
MAX_OFFSET = 10_000  # deeper pages are refused: refine the query instead
# Markers around highlighted words in raw snippets (control characters never shown as text).
MARK_START, MARK_STOP = "\x02", "\x03"
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_SINCE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")


class SearchError(ValueError):
    """The search cannot be run as asked (empty query, bad language, page too deep); message is for users."""


@dataclass(frozen=True)
class SearchPage:
    rows: list[dict[str, Any]]
    has_more: bool
    offset: int
    limit: int


def ts_config(language: str | None) -> str:
    """The text-search configuration used for ``language`` (an ISO 639-1 code or None)."""
    return LANGUAGE_CONFIGS.get((language or "").lower(), "simple")


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """``7d``, ``12h``, ``2w`` (ago) or an ISO date/time (UTC when naive); None/'' means no limit."""
    if value is None or not value.strip():
        return None
    now = now or datetime.now(UTC)
    match = _SINCE.match(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        try:
            return now - {"h": timedelta(hours=amount), "d": timedelta(days=amount),
                          "w": timedelta(weeks=amount)}[unit]
        except OverflowError:  # before year 1: no calendar, and no article either
            raise SearchError(f"since: {value.strip()[:40]!r} reaches back before year 1; use a shorter period "
                              "or leave it empty for no limit") from None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SearchError(f"since: {value!r} is neither a duration such as 7d, 12h, 2w nor a date such as "
                          "2026-11-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _check(query: str, language: str | None, limit: int, offset: int) -> tuple[str, str | None]:
    query = (query or "").strip()
    if not query:
        raise SearchError("enter words to search for")
    if len(query) > MAX_QUERY_LENGTH:
        raise SearchError(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    if language is not None:
        language = language.strip().lower() or None
    if language is not None and not _LANGUAGE.match(language):
        raise SearchError(f"language: {language!r} is not an ISO 639-1 code such as fr or en")
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit must be between 1 and {MAX_LIMIT}")
    if not 0 <= offset <= MAX_OFFSET:
        raise SearchError(f"only the first {MAX_OFFSET} results can be paged through: refine the query")
    return db.clean_text(query), language


_RESULTS = """
    SELECT a.id, a.title, a.canonical_url AS url, a.feed, a.language, a.published_at, a.fetched_at,
           a.story_id, s.title AS story_title, round(h.rank::numeric, 4)::float AS rank,
           (a.body_dropped_at IS NOT NULL) AS body_dropped,
           ts_headline(newswatch_ts_config(a.language), left(coalesce(nullif(a.body, ''), a.summary, ''), 20000),
                       h.tsq, 'StartSel=' || chr(2) || ', StopSel=' || chr(3)
                       || ', MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "') AS snippet
    FROM hits h JOIN articles a ON a.id = h.id LEFT JOIN stories s ON s.id = a.story_id
    ORDER BY h.rank DESC, a.fetched_at DESC, a.id DESC
"""
_FILTERS = """
          AND (%(since)s::timestamptz IS NULL OR a.fetched_at >= %(since)s::timestamptz)
          AND (%(feed)s::text IS NULL OR a.feed = %(feed)s::text)
"""

# One language: its configuration (folded to a constant by the planner, as newswatch_ts_config is immutable),
# and the GIN index answers exactly.
_ONE_LANGUAGE = f"""
    WITH hits AS (
        SELECT a.id, ts_rank(a.search_vector, q.tsq, 1) AS rank, q.tsq
        FROM articles a, (SELECT websearch_to_tsquery(newswatch_ts_config(%(language)s), %(q)s) AS tsq) q
        WHERE a.language = %(language)s AND a.search_vector @@ q.tsq {_FILTERS}
        ORDER BY rank DESC, a.fetched_at DESC, a.id DESC
        LIMIT %(limit)s OFFSET %(offset)s
    ) {_RESULTS}
"""

# Every language: the GIN index is probed with the union of the query in every configuration (a literal,
# computed first), then each candidate is checked and ranked with the query in its own language's
# configuration, joined by language code (one parse per configuration, not one per row).
_ALL_LANGUAGES = f"""
    WITH own AS MATERIALIZED (
        SELECT code, websearch_to_tsquery(newswatch_ts_config(code), %(q)s) AS tsq FROM unnest(%(codes)s::text[]) code
    ), other AS MATERIALIZED (
        SELECT websearch_to_tsquery('simple', %(q)s) AS tsq
    ), hits AS (
        SELECT a.id, ts_rank(a.search_vector, m.tsq, 1) AS rank, m.tsq
        FROM articles a LEFT JOIN own ON own.code = lower(a.language) CROSS JOIN other,
             LATERAL (SELECT coalesce(own.tsq, other.tsq) AS tsq) m
        WHERE a.search_vector @@ %(superset)s::tsquery AND a.search_vector @@ m.tsq {_FILTERS}
        ORDER BY rank DESC, a.fetched_at DESC, a.id DESC
        LIMIT %(limit)s OFFSET %(offset)s
    ) {_RESULTS}
"""


def _superset(cur, query: str) -> str | None:
    """The query parsed in every configuration, OR-ed (distinct forms only); None when all are empty."""
    cur.execute(
        "SELECT DISTINCT websearch_to_tsquery(newswatch_ts_config(code), %(q)s)::text AS tsq "
        "FROM unnest(%(codes)s::text[] || ARRAY[NULL]) code",
        {"q": query, "codes": sorted(LANGUAGE_CONFIGS)},
    )
    forms = sorted(row["tsq"] for row in cur.fetchall() if row["tsq"])
    return " | ".join(f"({form})" for form in forms) or None


def search_page(cur, query: str, *, language: str | None = None, since: datetime | None = None,
                feed: str | None = None, limit: int = 50, offset: int = 0) -> SearchPage:
    """One page of results using an open cursor (dict rows); ``snippet`` carries MARK_START/MARK_STOP."""
    query, language = _check(query, language, limit, offset)
    params = {"q": query, "language": language, "since": since, "feed": db.clean_text(feed) or None, "limit": limit + 1,
              "offset": offset, "codes": sorted(LANGUAGE_CONFIGS)}
    if language is not None:
        cur.execute(_ONE_LANGUAGE, params)
    else:
        params["superset"] = _superset(cur, query)
        if params["superset"] is None:  # only stop words: nothing can match
            return SearchPage(rows=[], has_more=False, offset=offset, limit=limit)
        cur.execute(_ALL_LANGUAGES, params)
    rows = [dict(row) for row in cur.fetchall()]
    return SearchPage(rows=rows[:limit], has_more=len(rows) > limit, offset=offset, limit=limit)


def plain_snippet(snippet: str | None) -> str:
    return (snippet or "").replace(MARK_START, "").replace(MARK_STOP, "")


def search(query: str, *, language: str | None = None, since: datetime | None = None, feed: str | None = None,
           limit: int = 50, offset: int = 0, url: str | None = None) -> list[dict[str, Any]]:
    """Articles matching ``query``, best first: id, title, url, feed, language, published_at, fetched_at,
    story_id, story_title, rank, body_dropped, snippet (plain text)."""
    with db.transaction(url) as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        page = search_page(cur, query, language=language, since=since, feed=feed, limit=limit, offset=offset)
    for row in page.rows:
        row["snippet"] = plain_snippet(row["snippet"])
    return page.rows


# --- command line (`newswatch search`; wired in newswatch/cli.py) -----------------------------------------

COLUMNS = ["id", "story_id", "language", "feed", "fetched_at", "rank", "title"]


def add_arguments(parser) -> None:
    """The options of ``newswatch search`` on an argparse (sub)parser."""
    parser.add_argument("query", help='words, "a phrase", or, -word (web search syntax)')
    parser.add_argument("--language", help="only articles in this language (ISO 639-1 code such as fr)")
    parser.add_argument("--since", help="only articles fetched since: 7d, 12h, 2w or a date such as 2026-11-01")
    parser.add_argument("--feed", help="only articles first seen in this feed")
    parser.add_argument("--limit", type=int, default=20, help=f"results per page (1-{MAX_LIMIT}, default 20)")
    parser.add_argument("--page", type=int, default=1, help="page number (default 1)")
    parser.add_argument("--json", action="store_true", help="JSON (with snippets) instead of a table")


def run_cli(args) -> int:
    """``newswatch search``: a table, or JSON with ``--json``. Exit 0 (even with no result), 2 on bad input."""
    try:
        since = parse_since(args.since)
        if args.page < 1:
            raise SearchError("page must be 1 or more")
        rows = search(args.query, language=args.language, since=since, feed=args.feed, limit=args.limit,
                      offset=(args.page - 1) * args.limit)
    except SearchError as exc:
        print(f"newswatch search: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no article matches", file=sys.stderr)
        return 0
    print_table(rows, COLUMNS, max_width=70)
    return 0


