"""The newswatch pages inside the Airflow UI: stories, alerts, feed health, search, metrics.

A FastAPI app mounted by the Airflow plugin under ``/newswatch`` and shown in the Airflow UI through an
external view (Browse → newswatch, an iframe on the same origin). Airflow does not protect plugin routes
by itself: every page and JSON route requires an authenticated Airflow user (``requires_authenticated``),
except ``/health`` and ``/metrics`` (Prometheus text, counts only; see newswatch.metrics).

Pages (server-rendered HTML, no JavaScript, nothing fetched from elsewhere):

- ``/``: overview: latest stories with their first articles (expandable), languages and sources of the
  week, alerts with per-rule daily sparklines, failing feeds;
- ``/stories?before=…``: every story, newest first (keyset pagination);
- ``/stories/{id}``: one story: its articles with feed, language and why they were grouped (dedup reason
  and score), its alerts with every delivery attempt, the stories merged into it;
- ``/alerts?status=…&before=…``: the alert outbox with delivery attempts;
- ``/feeds?page=…``: feed health, failing feeds first, with daily article and error sparklines;
- ``/search?q=…&language=…&since=…&page=…``: full-text search in each article's language (newswatch.search).

JSON twins live under ``/api/``. Feed URLs are shown without credentials or query string (they may carry
tokens, and every logged-in user reads these pages). All feed-derived text is HTML-escaped (titles come from
strangers), links are emitted only for http(s) URLs, and every HTML answer carries a strict Content-Security-Policy (no
script at all, the one inline stylesheet allowed by its hash, framing only by the Airflow UI's origin).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg2
import psycopg2.errors
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from newswatch import db, metrics, search


def _authenticated():
    """Airflow's own authentication dependency (401 without a valid token cookie or bearer header)."""
    from airflow.api_fastapi.core_api.security import requires_authenticated

    return Depends(requires_authenticated())


# No /docs or /redoc: FastAPI's pages load their scripts from a CDN.
app = FastAPI(title="newswatch", description="Stories, alerts, feed health and search from the newswatch database.",
              docs_url=None, redoc_url=None)
_AUTH = [_authenticated()]

PAGE_SIZE = 25
OVERVIEW_ALERTS = 10
OVERVIEW_FEEDS = 20
STORY_ARTICLES = 100
MEMBERS_SHOWN = 5
ATTEMPTS_SHOWN = 10
SPARK_DAYS = 14
STATEMENT_TIMEOUT = "15s"
BIGINT_MAX = 2**63 - 1
FEED_URL_COLUMNS = ("url", "config_url", "permanent_redirect_url")


# --- database -----------------------------------------------------------------------------------------


@contextmanager
def _reading() -> Iterator[Any]:
    """One read-only transaction per request, with a statement timeout so a bad query cannot hang a page."""
    with db.transaction() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        cur.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        yield cur


def _today() -> date:
    return datetime.now(UTC).date()


def _day_series(rows: list[dict], key: str, days: int = SPARK_DAYS) -> dict[Any, list[int]]:
    """{key: [count per UTC day, oldest first]} from rows with ``key``, ``day`` (date) and ``n``."""
    today = _today()
    series: dict[Any, list[int]] = {}
    for row in rows:
        index = days - 1 - (today - row["day"]).days
        if 0 <= index < days:
            series.setdefault(row[key], [0] * days)[index] += row["n"]
    return series


def _since_days(days: int = SPARK_DAYS) -> datetime:
    return datetime.combine(_today() - timedelta(days=days - 1), datetime.min.time(), tzinfo=UTC)


def stories_page(cur, *, before: tuple[datetime, int] | None, limit: int) -> tuple[list[dict], bool]:
    cur.execute(
        """
        SELECT s.id, s.title, s.article_count, s.languages, s.feeds, s.first_seen_at, s.last_seen_at,
               a.canonical_url AS url
        FROM stories s LEFT JOIN articles a ON a.id = s.representative_article
        WHERE (%(ts)s::timestamptz IS NULL OR (s.last_seen_at, s.id) < (%(ts)s::timestamptz, %(id)s::bigint))
        ORDER BY s.last_seen_at DESC, s.id DESC LIMIT %(limit)s
        """,
        {"ts": before[0] if before else None, "id": before[1] if before else None, "limit": limit + 1},
    )
    rows = cur.fetchall()
    return rows[:limit], len(rows) > limit


def story_members(cur, story_ids: list[int], per_story: int) -> dict[int, list[dict]]:
    """The first ``per_story`` articles of each story, in arrival order."""
    if not story_ids:
        return {}
    cur.execute(
        """
        SELECT m.* FROM unnest(%s::bigint[]) AS sid, LATERAL (
            SELECT id, story_id, title, canonical_url AS url, feed, language, dedup_reason, dedup_score, fetched_at
            FROM articles WHERE story_id = sid ORDER BY fetched_at, id LIMIT %s) m
        """,
        (story_ids, per_story),
    )
    members: dict[int, list[dict]] = {}
    for row in cur.fetchall():
        members.setdefault(row["story_id"], []).append(row)
    return members


def alerts_page(cur, *, before: tuple[datetime, int] | None, limit: int, status: str | None = None,
                story_id: int | None = None) -> tuple[list[dict], bool]:
    cur.execute(
        """
        SELECT al.*, s.title AS story_title
        FROM alerts al LEFT JOIN stories s ON s.id = al.story_id
        WHERE (%(ts)s::timestamptz IS NULL OR (al.created_at, al.id) < (%(ts)s::timestamptz, %(id)s::bigint))
          AND (%(status)s::text IS NULL OR al.status = %(status)s::text)
          AND (%(story)s::bigint IS NULL OR al.story_id = %(story)s::bigint)
        ORDER BY al.created_at DESC, al.id DESC LIMIT %(limit)s
        """,
        {"ts": before[0] if before else None, "id": before[1] if before else None, "status": status,
         "story": story_id, "limit": limit + 1},
    )
    rows = cur.fetchall()
    return rows[:limit], len(rows) > limit


def delivery_attempts(cur, alert_ids: list[int], per_alert: int = ATTEMPTS_SHOWN) -> dict[int, list[dict]]:
    """The latest delivery attempts of each alert (table of migration 0005; empty before it)."""
    if not alert_ids:
        return {}
    cur.execute("SELECT to_regclass('delivery_attempts') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        return {}
    cur.execute(
        """
        SELECT d.* FROM unnest(%s::bigint[]) AS aid, LATERAL (
            SELECT alert_id, channel, attempted_at, outcome, error, duration_ms FROM delivery_attempts
            WHERE alert_id = aid ORDER BY attempted_at DESC, id DESC LIMIT %s) d
        """,
        (alert_ids, per_alert),
    )
    attempts: dict[int, list[dict]] = {}
    for row in cur.fetchall():
        attempts.setdefault(row["alert_id"], []).append(row)
    return attempts


def rule_activity(cur, days: int = SPARK_DAYS) -> dict[str, list[int]]:
    cur.execute(
        """
        SELECT rule, (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
        FROM alerts WHERE created_at >= %s GROUP BY 1, 2
        """,
        (_since_days(days),),
    )
    return _day_series(cur.fetchall(), "rule", days)


def all_feeds(cur) -> list[dict]:
    """Every feed, failing first (then new, ok, disabled). ``SELECT *``: later migrations' columns are optional.

    Feed URLs may carry credentials or tokens (``?key=…``), and every logged-in user reads these pages: they
    are shown as operator events show them, without credentials or query string.
    """
    from newswatch.urls import redact

    cur.execute("SELECT * FROM feeds")
    feeds = cur.fetchall()
    order = {"failing": 0, "new": 1, "ok": 2, "disabled": 3}
    for feed in feeds:
        feed["state"] = metrics.feed_state(feed)
        for key in FEED_URL_COLUMNS:
            if feed.get(key):
                feed[key] = redact(feed[key])
    feeds.sort(key=lambda f: (order[f["state"]], -(f.get("consecutive_failures") or 0), f["name"]))
    return feeds


def feed_activity(cur, feed_ids: list[int], days: int = SPARK_DAYS) -> tuple[dict, dict]:
    """Articles stored and failed polls per feed and UTC day over the last ``days`` days."""
    if not feed_ids:
        return {}, {}
    since = _since_days(days)
    cur.execute(
        """
        SELECT feed_id, (fetched_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM articles
        WHERE feed_id = ANY(%s) AND fetched_at >= %s GROUP BY 1, 2
        """,
        (feed_ids, since),
    )
    articles = _day_series(cur.fetchall(), "feed_id", days)
    cur.execute(
        """
        SELECT feed_id, (polled_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM feed_polls
        WHERE feed_id = ANY(%s) AND polled_at >= %s AND outcome = 'error' GROUP BY 1, 2
        """,
        (feed_ids, since),
    )
    return articles, _day_series(cur.fetchall(), "feed_id", days)


def week_languages_and_sources(cur) -> tuple[list[dict], list[dict]]:
    """Articles of the last 7 days per language and per feed (one scan of the fetched_at index range)."""
    cur.execute(
        """
        SELECT coalesce(language, '?') AS language, feed, count(*) AS n, GROUPING(language) AS by_feed FROM articles
        WHERE fetched_at >= now() - interval '7 days' GROUP BY GROUPING SETS ((language), (feed))
        """
    )
    rows = cur.fetchall()
    languages = sorted(({"language": r["language"], "n": r["n"]} for r in rows if not r["by_feed"]),
                       key=lambda r: (-r["n"], r["language"]))
    sources = sorted(({"feed": r["feed"], "n": r["n"]} for r in rows if r["by_feed"]),
                     key=lambda r: (-r["n"], r["feed"]))[:30]
    return languages, sources


def story_detail(cur, story_id: int) -> dict | None:
    cur.execute(
        """
        SELECT s.*, a.canonical_url AS url FROM stories s LEFT JOIN articles a ON a.id = s.representative_article
        WHERE s.id = %s
        """,
        (story_id,),
    )
    return cur.fetchone()


def story_articles(cur, story_id: int, *, after: tuple[datetime, int] | None, limit: int) -> tuple[list[dict], bool]:
    cur.execute(
        """
        SELECT id, title, canonical_url AS url, feed, language, published_at, fetched_at, is_partial,
               dedup_reason, dedup_score, dedup_of, body_dropped_at
        FROM articles
        WHERE story_id = %(story)s
          AND (%(ts)s::timestamptz IS NULL OR (fetched_at, id) > (%(ts)s::timestamptz, %(id)s::bigint))
        ORDER BY fetched_at, id LIMIT %(limit)s
        """,
        {"story": story_id, "ts": after[0] if after else None, "id": after[1] if after else None,
         "limit": limit + 1},
    )
    rows = cur.fetchall()
    return rows[:limit], len(rows) > limit


def merged_into(cur, story_id: int) -> int | None:
    """The story a merged (deleted) story now lives in (table of migration 0004; None before it)."""
    cur.execute("SELECT to_regclass('story_merges') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        return None
    cur.execute("SELECT into_story FROM story_merges WHERE merged_story = %s ORDER BY merged_at DESC LIMIT 1",
                (story_id,))
    row = cur.fetchone()
    return row["into_story"] if row else None


def merges_into(cur, story_id: int) -> list[dict]:
    cur.execute("SELECT to_regclass('story_merges') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        return []
    cur.execute("SELECT merged_story, reason, score, merged_at FROM story_merges WHERE into_story = %s "
                "ORDER BY merged_at", (story_id,))
    return cur.fetchall()


# --- cursors ------------------------------------------------------------------------------------------


def _cursor_text(moment: datetime, row_id: int) -> str:
    return f"{moment.isoformat()},{row_id}"


def _parse_cursor(value: str | None) -> tuple[datetime, int] | None:
    if not value:
        return None
    try:
        moment, row_id = value.rsplit(",", 1)
        parsed = datetime.fromisoformat(moment)
        number = int(row_id)
    except ValueError:
        raise HTTPException(status_code=400, detail="invalid page cursor") from None
    if not 0 <= number <= BIGINT_MAX:  # ids are bigint: a larger one would fail in the database, not here
        raise HTTPException(status_code=400, detail="invalid page cursor")
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), number


# --- HTML ---------------------------------------------------------------------------------------------

_STYLE = """
:root{color-scheme:light dark}
body{font-family:system-ui,sans-serif;margin:1.2rem 1.5rem;color:#1f2937;background:#fff;font-size:14px}
a{color:#1d4ed8}h1{font-size:1.35rem;margin:0 0 .6rem}h2{font-size:1.05rem;margin:1.5rem 0 .5rem}
nav.top{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;margin-bottom:1rem;padding-bottom:.6rem;
border-bottom:1px solid #e5e7eb}nav.top a{font-weight:600;text-decoration:none}nav.top a.on{color:#111827}
form.search{display:flex;gap:.4rem;flex-wrap:wrap;margin-left:auto}
input,select,button{font:inherit;padding:.2rem .4rem}
table{border-collapse:collapse;width:100%}table.compact{width:auto;min-width:40%}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{background:#f9fafb;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.empty,.muted{color:#6b7280}.small{font-size:.85em}
.sent,.ok{color:#047857}.pending,.new{color:#b45309}.failed,.failing{color:#b91c1c}.disabled{color:#6b7280}
details summary{cursor:pointer;color:#374151}details ul{margin:.3rem 0 .2rem 1rem;padding:0}
mark{background:#fde68a;color:inherit}.pager{margin:.6rem 0;display:flex;gap:1rem}
.chips span{display:inline-block;margin:0 .4rem .3rem 0;padding:.05rem .45rem;border:1px solid #d1d5db;
border-radius:.6rem}.error{color:#b91c1c;font-weight:600}svg.spark{vertical-align:middle}
@media (prefers-color-scheme:dark){body{background:#111827;color:#e5e7eb}a{color:#93c5fd}
th{background:#1f2937}th,td,nav.top{border-color:#374151}nav.top a.on{color:#f9fafb}
details summary{color:#d1d5db}mark{background:#854d0e}}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'self'; base-uri 'none'"
)
_HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_NAV = [("", "Overview"), ("stories", "Stories"), ("alerts", "Alerts"), ("feeds", "Feeds"), ("search", "Search")]


def _when(value: datetime | None) -> str:
    return escape(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")) if value else "–"


def _is_web_url(url: str | None) -> bool:
    if not url or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _link(url: str | None, text: str) -> str:
    """An outbound link for http(s) URLs only; anything else is shown as plain text."""
    if _is_web_url(url):
        return f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(text)}</a>'
    return escape(text)


def _href(base: str, path: str, **params: Any) -> str:
    query = urlencode({key: value for key, value in params.items() if value not in (None, "")})
    target = base + path
    if not target:
        target = "./"
    return escape(target + ("?" + query if query else ""))


def _table(headers: list[str], rows: list[list[str]], empty: str, numeric: set[int] | None = None,
           compact: bool = False) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    if compact:
        return (f"<table class='compact'><thead><tr>{head}</tr></thead><tbody>"
                + _table(headers, rows, empty, numeric).split("<tbody>", 1)[1])
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _status(value: str | None) -> str:
    text = escape(value or "")
    return f'<span class="{text}">{text}</span>'


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def sparkline(values: list[int], label: str, *, color: str = "#2563eb", width: int = 112, height: int = 22) -> str:
    """A small inline SVG line of daily counts (oldest left); ``label`` is its accessible name and tooltip."""
    count = len(values)
    if not count:
        return ""
    peak = max(values) or 1
    step = (width - 4) / max(count - 1, 1)
    points = [(2 + i * step, height - 2 - (value / peak) * (height - 4)) for i, value in enumerate(values)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    last_x, last_y = points[-1]
    title = escape(f"{label}: {', '.join(str(v) for v in values)} (per day, oldest first)")
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{title}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
        f'<line x1="2" y1="{height - 2}" x2="{width - 2}" y2="{height - 2}" stroke="#d1d5db" stroke-width="1"/>'
        f'<polyline fill="none" stroke="{escape(color)}" stroke-width="1.5" stroke-linejoin="round" points="{line}"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="2" fill="{escape(color)}"/></svg>'
    )


def _search_form(base: str, query: str = "", language: str = "", since: str = "") -> str:
    options = ['<option value="">any language</option>'] + [
        f'<option value="{code}"{" selected" if code == language else ""}>{code} ({escape(name)})</option>'
        for code, name in sorted(search.LANGUAGE_CONFIGS.items())
    ]
    periods = [("", "any time"), ("1d", "last day"), ("7d", "last week"), ("30d", "last 30 days"),
               ("365d", "last year")]
    since_options = [f'<option value="{value}"{" selected" if value == since else ""}>{text}</option>'
                     for value, text in periods]
    return (
        f'<form class="search" method="get" action="{_href(base, "search")}" role="search">'
        f'<input type="search" name="q" value="{escape(query)}" placeholder="Search articles" '
        f'aria-label="Search articles" maxlength="{search.MAX_QUERY_LENGTH}">'
        f'<select name="language" aria-label="Language">{"".join(options)}</select>'
        f'<select name="since" aria-label="Period">{"".join(since_options)}</select>'
        '<button type="submit">Search</button></form>'
    )


def _html(title: str, body: str, *, base: str, active: str, status_code: int = 200,
          search_box: str = "") -> HTMLResponse:
    nav = "".join(
        f'<a href="{_href(base, path)}"{" class=on" if path == active else ""}>{escape(text)}</a>'
        for path, text in _NAV
    )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} · newswatch</title><style>{_STYLE}</style></head><body>"
        f"<nav class='top' aria-label='newswatch'>{nav}{search_box or _search_form(base)}</nav>"
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(page, status_code=status_code, headers=_HTML_HEADERS)


def _older_stories(base: str, stories: list[dict]) -> str:
    return _href(base, "stories", before=_cursor_text(stories[-1]["last_seen_at"], stories[-1]["id"]))


def _pager(*links: tuple[str | None, str]) -> str:
    items = [f'<a href="{href}">{escape(text)}</a>' for href, text in links if href]
    return f'<div class="pager">{"".join(items)}</div>' if items else ""


def _members_html(base: str, story: dict, members: list[dict]) -> str:
    if not members:
        return ""
    items = "".join(
        f"<li>{_link(m['url'], m['title'])} <span class='muted small'>{escape(m['feed'])} · "
        f"{escape(m['language'] or '?')} · {escape(m['dedup_reason'] or '')}"
        f"{' ' + _score(m['dedup_score']) if m['dedup_score'] is not None else ''}</span></li>"
        for m in members
    )
    total = max(story["article_count"], len(members))
    more = total - len(members)
    tail = f"<li><a href='{_href(base, 'stories/' + str(story['id']))}'>{more} more…</a></li>" if more > 0 else ""
    return f"<details><summary>{_plural(total, 'article')}</summary><ul>{items}{tail}</ul></details>"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _stories_table(base: str, stories: list[dict], members: dict[int, list[dict]]) -> str:
    return _table(
        ["Story", "Articles", "Languages", "Sources", "First seen", "Last seen"],
        [[f"<a href='{_href(base, 'stories/' + str(s['id']))}'>{escape(s['title'])}</a>"
          f"{' · ' + _link(s['url'], 'source') if _is_web_url(s['url']) else ''}"
          f"{_members_html(base, s, members.get(s['id'], []))}",
          str(s["article_count"]), escape(", ".join(s["languages"])), escape(", ".join(s["feeds"])),
          _when(s["first_seen_at"]), _when(s["last_seen_at"])]
         for s in stories],
        "No stories yet: the first poll has not stored any article.",
        numeric={1},
    )


def _attempts_html(attempts: list[dict]) -> str:
    if not attempts:
        return ""
    items = "".join(
        f"<li>{_when(a['attempted_at'])} {escape(a['channel'])} {_status(a['outcome'])}"
        f"{' · ' + str(a['duration_ms']) + ' ms' if a.get('duration_ms') is not None else ''}"
        f"{' · ' + escape(a['error']) if a.get('error') else ''}</li>"
        for a in attempts
    )
    return f"<details><summary>{_plural(len(attempts), 'attempt')}</summary><ul class='small'>{items}</ul></details>"


def _alerts_table(base: str, alerts: list[dict], attempts: dict[int, list[dict]], *, with_story: bool = True) -> str:
    headers = ["Rule", "Kind"] + (["Story"] if with_story else []) + [
        "Channel", "Status", "Attempts", "Created", "Sent", "Last error"]
    rows = []
    for a in alerts:
        row = [escape(a["rule"]), escape(a.get("kind") or "new")]
        if with_story:
            story_title = a["story_title"] or f"story {a['story_id']}"
            row.append(f"<a href='{_href(base, 'stories/' + str(a['story_id']))}'>{escape(story_title)}</a>")
        row += [escape(a["channel"]), _status(a["status"]),
                f"{a['attempts']}{_attempts_html(attempts.get(a['id'], []))}",
                _when(a["created_at"]), _when(a["sent_at"]), escape(a["last_error"] or "")]
        rows.append(row)
    return _table(headers, rows, "No alerts yet.", numeric=set())


def _rules_table(activity: dict[str, list[int]]) -> str:
    return _table(
        ["Rule", f"Alerts per day, last {SPARK_DAYS} days", "Total"],
        [[escape(rule), sparkline(values, f"{rule} alerts"), str(sum(values))]
         for rule, values in sorted(activity.items(), key=lambda item: (-sum(item[1]), item[0]))],
        f"No alert in the last {SPARK_DAYS} days.",
        numeric={2}, compact=True,
    )


def _feeds_table(feeds: list[dict], articles: dict, errors: dict) -> str:
    rows = []
    for f in feeds:
        state = f["state"]
        if state == "disabled" and f.get("disabled_reason"):
            state_text = f"{_status('disabled')} <span class='small'>({escape(f['disabled_reason'])})</span>"
        elif state == "disabled":
            state_text = f"{_status('disabled')} <span class='small'>(config)</span>"
        else:
            state_text = _status(state)
        series = articles.get(f["id"], [0] * SPARK_DAYS)
        error_series = errors.get(f["id"], [0] * SPARK_DAYS)
        rows.append([
            _link(f["url"], f["name"]), state_text, str(f.get("consecutive_failures") or 0),
            _when(f.get("last_success_at")), _when(f.get("next_poll_at")) if state != "disabled" else "–",
            sparkline(series, f"{f['name']} articles") + f" <span class='small'>{sum(series)}</span>",
            (sparkline(error_series, f"{f['name']} failed polls", color="#b91c1c")
             + f" <span class='small'>{sum(error_series)}</span>") if any(error_series) else "–",
            escape(f"{f.get('last_error_kind') or ''} {f.get('last_error') or ''}".strip()),
            str(f.get("articles_failed") or 0), escape(f.get("article_error") or ""),
        ])
    return _table(["Feed", "State", "Failures", "Last success", "Next poll", f"Articles/day ({SPARK_DAYS} d)",
                   "Failed polls/day", "Last error", "Articles given up", "Last article error"], rows,
                  "No feeds yet: they appear after the first run.", numeric={2, 8})


def _chips(items: list[tuple[str, int]]) -> str:
    return "<p class='chips'>" + "".join(f"<span>{escape(k)} <b>{n}</b></span>" for k, n in items) + "</p>"


def _error_page(base: str, title: str, message: str, status_code: int) -> HTMLResponse:
    return _html(title, f"<p class='error'>{escape(message)}</p>", base=base, active="", status_code=status_code)


def _base_for(request: Request) -> str:
    """Relative prefix to the app root from the requested page (links work under any proxy prefix)."""
    path = request.url.path
    root = request.scope.get("root_path", "")
    depth = path[len(root):].count("/") - 1 if path.startswith(root) else 0
    return "../" * max(depth, 0)


# --- routes: public -----------------------------------------------------------------------------------


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/metrics", response_class=PlainTextResponse)
def metrics_endpoint() -> Response:
    """Prometheus text format; public, counts only (no titles, URLs, feed or rule names)."""
    return PlainTextResponse(metrics.prometheus_text(), media_type="text/plain; version=0.0.4; charset=utf-8",
                             headers={"Cache-Control": "no-store"})


# --- routes: HTML -------------------------------------------------------------------------------------


@app.get("/", response_class=HTMLResponse, dependencies=_AUTH)
def overview(request: Request) -> HTMLResponse:
    base = _base_for(request)
    with _reading() as cur:
        stories, more = stories_page(cur, before=None, limit=PAGE_SIZE)
        members = story_members(cur, [s["id"] for s in stories], MEMBERS_SHOWN)
        languages, sources = week_languages_and_sources(cur)
        alerts, more_alerts = alerts_page(cur, before=None, limit=OVERVIEW_ALERTS)
        attempts = delivery_attempts(cur, [a["id"] for a in alerts])
        activity = rule_activity(cur)
        feeds = all_feeds(cur)
        shown = [f for f in feeds if f["state"] == "failing"][:OVERVIEW_FEEDS] or feeds[:OVERVIEW_FEEDS]
        feed_articles, feed_errors = feed_activity(cur, [f["id"] for f in shown])
        failures = metrics.entry_failures(cur, [f["id"] for f in shown])
    for feed in shown:
        entries = failures.get(feed["id"], {})
        feed["articles_failed"], feed["article_error"] = entries.get("failed", 0), entries.get("error")
    failing = sum(1 for f in feeds if f["state"] == "failing")
    older = _older_stories(base, stories) if more else None
    body = (
        "<h2>Latest stories</h2>" + _stories_table(base, stories, members) + _pager((older, "Older stories →"))
        + "<h2>Languages, last 7 days</h2>"
        + (_chips([(r["language"], r["n"]) for r in languages]) if languages else "<p class='empty'>No article.</p>")
        + "<h2>Sources, last 7 days</h2>"
        + (_chips([(r["feed"], r["n"]) for r in sources]) if sources else "<p class='empty'>No article.</p>")
        + "<h2>Alerts</h2>" + _rules_table(activity) + _alerts_table(base, alerts, attempts)
        + _pager((_href(base, "alerts") if more_alerts else None, "All alerts →"))
        + f"<h2>Feed health <span class='muted small'>({failing} failing of {len(feeds)})</span></h2>"
        + _feeds_table(shown, feed_articles, feed_errors)
        + _pager((_href(base, "feeds") if len(feeds) > len(shown) else None, "All feeds →"))
    )
    return _html("newswatch", body, base=base, active="")


@app.get("/stories", response_class=HTMLResponse, dependencies=_AUTH)
def stories_list(request: Request, before: str | None = None) -> HTMLResponse:
    base = _base_for(request)
    with _reading() as cur:
        stories, more = stories_page(cur, before=_parse_cursor(before), limit=PAGE_SIZE)
        members = story_members(cur, [s["id"] for s in stories], MEMBERS_SHOWN)
    older = _older_stories(base, stories) if more else None
    body = _pager((_href(base, "stories") if before else None, "← Newest")) + _stories_table(base, stories, members) \
        + _pager((older, "Older stories →"))
    return _html("Stories", body, base=base, active="stories")


@app.get("/stories/{story_id}", response_class=HTMLResponse, dependencies=_AUTH)
def story_page(request: Request, story_id: int, after: str | None = None) -> Response:
    base = _base_for(request)
    with _reading() as cur:
        story = story_detail(cur, story_id)
        if story is None:
            target = merged_into(cur, story_id)
            if target is not None:
                return RedirectResponse(f"{target}", status_code=307)
            return _error_page(base, "Story not found", f"There is no story {story_id}.", 404)
        articles, more = story_articles(cur, story_id, after=_parse_cursor(after), limit=STORY_ARTICLES)
        alerts, _ = alerts_page(cur, before=None, limit=200, story_id=story_id)
        attempts = delivery_attempts(cur, [a["id"] for a in alerts])
        merges = merges_into(cur, story_id)
    by_id = {a["id"] for a in articles}
    rows = []
    for a in articles:
        reason = escape(a["dedup_reason"] or "–")
        if a["dedup_of"] is not None:
            other = f"#{a['dedup_of']}"
            reason += f" of <a href='#a{a['dedup_of']}'>{other}</a>" if a["dedup_of"] in by_id else f" of {other}"
        notes = []
        if a["is_partial"]:
            notes.append("feed text only")
        if a["body_dropped_at"]:
            notes.append("body removed by retention")
        rows.append([
            f"<span id='a{a['id']}'>#{a['id']}</span>", _link(a["url"], a["title"])
            + (f" <span class='muted small'>({escape(', '.join(notes))})</span>" if notes else ""),
            escape(a["feed"]), escape(a["language"] or "?"), reason, _score(a["dedup_score"]),
            _when(a["published_at"]), _when(a["fetched_at"]),
        ])
    next_link = _href(base, f"stories/{story_id}", after=_cursor_text(articles[-1]["fetched_at"], articles[-1]["id"])) \
        if more else None
    summary = (
        f"<p>{_link(story['url'], 'Representative article')} · first seen {_when(story['first_seen_at'])} · "
        f"last seen {_when(story['last_seen_at'])} · {_plural(story['article_count'], 'article')}</p>"
        f"<p>Languages: {escape(', '.join(story['languages']) or '–')}<br>"
        f"Sources: {escape(', '.join(story['feeds']) or '–')}</p>"
    )
    merged = ""
    if merges:
        merged = "<h2>Stories merged into this one</h2>" + _table(
            ["Story", "Reason", "Score", "Merged"],
            [[f"#{m['merged_story']}", escape(m["reason"]), _score(m["score"]), _when(m["merged_at"])] for m in merges],
            "")
    body = (
        summary + "<h2>Articles</h2>"
        + _table(["#", "Article", "Feed", "Language", "Grouped by", "Score", "Published", "Fetched"], rows,
                 "No article in this story.")
        + _pager((_href(base, f"stories/{story_id}") if after else None, "← First articles"), (next_link, "More →"))
        + "<h2>Alerts</h2>" + _alerts_table(base, alerts, attempts, with_story=False) + merged
    )
    return _html(story["title"], body, base=base, active="stories")


@app.get("/alerts", response_class=HTMLResponse, dependencies=_AUTH)
def alerts_list(request: Request, before: str | None = None,
                status: str | None = Query(None, pattern="^(pending|sent|failed)?$")) -> HTMLResponse:
    base = _base_for(request)
    status = status or None
    with _reading() as cur:
        alerts, more = alerts_page(cur, before=_parse_cursor(before), limit=PAGE_SIZE * 2, status=status)
        attempts = delivery_attempts(cur, [a["id"] for a in alerts])
        activity = rule_activity(cur)
    filters = " · ".join(
        f"<a href='{_href(base, 'alerts', status=value)}'>{escape(text)}</a>" if value != (status or "")
        else f"<b>{escape(text)}</b>"
        for value, text in (("", "all"), ("pending", "pending"), ("sent", "sent"), ("failed", "failed"))
    )
    older = _href(base, "alerts", status=status,
                  before=_cursor_text(alerts[-1]["created_at"], alerts[-1]["id"])) if more else None
    body = (
        _rules_table(activity) + f"<p>Status: {filters}</p>" + _alerts_table(base, alerts, attempts)
        + _pager((_href(base, "alerts", status=status) if before else None, "← Newest"), (older, "Older alerts →"))
    )
    return _html("Alerts", body, base=base, active="alerts")


@app.get("/feeds", response_class=HTMLResponse, dependencies=_AUTH)
def feeds_list(request: Request, page: int = Query(1, ge=1, le=10_000)) -> HTMLResponse:
    base = _base_for(request)
    size = PAGE_SIZE * 4
    with _reading() as cur:
        feeds = all_feeds(cur)
        shown = feeds[(page - 1) * size: page * size]
        feed_articles, feed_errors = feed_activity(cur, [f["id"] for f in shown])
        failures = metrics.entry_failures(cur, [f["id"] for f in shown])
    for feed in shown:
        entries = failures.get(feed["id"], {})
        feed["articles_failed"], feed["article_error"] = entries.get("failed", 0), entries.get("error")
    counts = {state: sum(1 for f in feeds if f["state"] == state) for state in ("failing", "new", "ok", "disabled")}
    body = (
        _chips(list(counts.items())) + _feeds_table(shown, feed_articles, feed_errors)
        + _pager((_href(base, "feeds", page=page - 1) if page > 1 else None, "← Previous"),
                 (_href(base, "feeds", page=page + 1) if len(feeds) > page * size else None, "Next →"))
    )
    return _html("Feed health", body, base=base, active="feeds")


@app.get("/search", response_class=HTMLResponse, dependencies=_AUTH)
def search_html(request: Request, q: str = "", language: str = "", since: str = "",
                page: int = Query(1, ge=1, le=1000)) -> HTMLResponse:
    base = _base_for(request)
    form = _search_form(base, q, language, since)
    if not q.strip():
        return _html("Search", "<p class='muted'>Words, \"a phrase\", <code>or</code>, <code>-word</code>; each "
                     "article is searched in its own language (stemming: <i>frappes</i> finds <i>frappe</i>).</p>",
                     base=base, active="search", search_box=form)
    try:
        moment = search.parse_since(since)
        with _reading() as cur:
            result = search.search_page(cur, q, language=language or None, since=moment, limit=PAGE_SIZE,
                                        offset=(page - 1) * PAGE_SIZE)
    except search.SearchError as exc:
        return _html("Search", f"<p class='error'>{escape(str(exc))}</p>", base=base, active="search",
                     search_box=form, status_code=400)
    rows = [[
        _link(r["url"], r["title"]) + f"<div class='small'>{_highlight(r['snippet'])}</div>",
        f"<a href='{_href(base, 'stories/' + str(r['story_id']))}'>{escape(r['story_title'] or '')}</a>"
        if r["story_id"] else "–",
        escape(r["feed"]), escape(r["language"] or "?"), _when(r["fetched_at"]), f"{r['rank']:.3f}",
    ] for r in result.rows]
    first = result.offset + 1
    heading = (f"<p class='muted'>Results {first}–{result.offset + len(result.rows)} for "
               f"<b>{escape(q)}</b>, best first</p>") if result.rows else ""
    params = {"q": q, "language": language, "since": since}
    body = heading + _table(["Article", "Story", "Feed", "Language", "Fetched", "Rank"], rows,
                            "No article matches.", numeric={5}) + _pager(
        (_href(base, "search", **params, page=page - 1) if page > 1 else None, "← Previous"),
        (_href(base, "search", **params, page=page + 1) if result.has_more else None, "Next →"))
    return _html("Search", body, base=base, active="search", search_box=form)


def _highlight(snippet: str | None) -> str:
    """Escape a ts_headline snippet and turn its markers into <mark> (balanced whatever the text holds)."""
    out, open_ = [], False
    for char_run in _split_marks(snippet or ""):
        if char_run == search.MARK_START:
            if not open_:
                out.append("<mark>")
                open_ = True
        elif char_run == search.MARK_STOP:
            if open_:
                out.append("</mark>")
                open_ = False
        else:
            out.append(escape(char_run))
    if open_:
        out.append("</mark>")
    return "".join(out)


def _split_marks(text: str) -> list[str]:
    parts, current = [], []
    for char in text:
        if char in (search.MARK_START, search.MARK_STOP):
            if current:
                parts.append("".join(current))
                current = []
            parts.append(char)
        else:
            current.append(char)
    if current:
        parts.append("".join(current))
    return parts


# --- routes: JSON -------------------------------------------------------------------------------------


def _next_link(request: Request, **params: Any) -> dict[str, str]:
    query = urlencode({**dict(request.query_params), **params})
    return {"Link": f'<{request.url.path}?{query}>; rel="next"'}


@app.get("/api/stories", dependencies=_AUTH)
def api_stories(request: Request, limit: int = Query(50, ge=1, le=500), before: str | None = None) -> Response:
    """Latest stories, newest first; the ``Link: rel="next"`` header gives the next page."""
    with _reading() as cur:
        rows, more = stories_page(cur, before=_parse_cursor(before), limit=limit)
    headers = _next_link(request, before=_cursor_text(rows[-1]["last_seen_at"], rows[-1]["id"])) if more else {}
    return JSONResponse(_jsonable(rows), headers=headers)


@app.get("/api/stories/{story_id}", dependencies=_AUTH)
def api_story(story_id: int, after: str | None = None, limit: int = Query(100, ge=1, le=500)) -> dict:
    with _reading() as cur:
        story = story_detail(cur, story_id)
        if story is None:
            raise HTTPException(status_code=404, detail=f"no story {story_id}")
        articles, more = story_articles(cur, story_id, after=_parse_cursor(after), limit=limit)
        alerts, _ = alerts_page(cur, before=None, limit=200, story_id=story_id)
        attempts = delivery_attempts(cur, [a["id"] for a in alerts])
    for alert in alerts:
        alert["delivery_attempts"] = attempts.get(alert["id"], [])
    story.pop("search_vector", None)
    return {"story": story, "articles": articles, "more_articles": more,
            "next_after": _cursor_text(articles[-1]["fetched_at"], articles[-1]["id"]) if more else None,
            "alerts": alerts}


@app.get("/api/alerts", dependencies=_AUTH)
def api_alerts(request: Request, limit: int = Query(50, ge=1, le=500), before: str | None = None,
               status: str | None = Query(None, pattern="^(pending|sent|failed)$")) -> Response:
    with _reading() as cur:
        rows, more = alerts_page(cur, before=_parse_cursor(before), limit=limit, status=status)
        attempts = delivery_attempts(cur, [a["id"] for a in rows])
    for row in rows:
        row["delivery_attempts"] = attempts.get(row["id"], [])
    headers = _next_link(request, before=_cursor_text(rows[-1]["created_at"], rows[-1]["id"])) if more else {}
    return JSONResponse(_jsonable(rows), headers=headers)


@app.get("/api/feeds", dependencies=_AUTH)
def api_feeds() -> list[dict]:
    with _reading() as cur:
        feeds = all_feeds(cur)
    for feed in feeds:  # validators and internals are no operator's business here
        for key in ("etag", "last_modified"):
            feed.pop(key, None)
    return feeds


@app.get("/api/search", dependencies=_AUTH)
def api_search(q: str, language: str | None = None, since: str | None = None, feed: str | None = None,
               limit: int = Query(50, ge=1, le=search.MAX_LIMIT), offset: int = Query(0, ge=0)) -> dict:
    try:
        moment = search.parse_since(since)
        with _reading() as cur:
            result = search.search_page(cur, q, language=language, since=moment, feed=feed, limit=limit,
                                        offset=offset)
    except search.SearchError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    for row in result.rows:
        row["snippet"] = search.plain_snippet(row["snippet"])
    return {"results": result.rows, "offset": offset, "limit": limit, "has_more": result.has_more}


def _jsonable(rows: list[dict]) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(rows)


# --- errors -------------------------------------------------------------------------------------------


def _wants_html(request: Request) -> bool:
    path = request.url.path[len(request.scope.get("root_path", "")):]
    return not path.startswith("/api/")


@app.exception_handler(db.DatabaseNotConfigured)
@app.exception_handler(psycopg2.OperationalError)
def _database_unavailable(request: Request, exc: Exception) -> Response:
    message = f"The newswatch database is unavailable: {db.first_line(exc)}"
    if isinstance(exc, psycopg2.errors.QueryCanceled):
        message = "The query took too long and was cancelled; narrow the search."
    if _wants_html(request):
        return _error_page(_base_for(request), "Database unavailable", message, 503)
    return JSONResponse({"detail": message}, status_code=503)


@app.exception_handler(psycopg2.errors.UndefinedColumn)
@app.exception_handler(psycopg2.errors.UndefinedTable)
@app.exception_handler(psycopg2.errors.UndefinedFunction)
def _schema_behind(request: Request, exc: Exception) -> Response:
    message = "The newswatch schema is older than this page: run `newswatch migrate` (or one poll run)."
    if _wants_html(request):
        return _error_page(_base_for(request), "Schema out of date", message, 503)
    return JSONResponse({"detail": message}, status_code=503)
