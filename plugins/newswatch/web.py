"""The newswatch page inside the Airflow UI: recent stories, alerts and feed health.

A small FastAPI app mounted by the Airflow plugin under ``/newswatch`` and shown in an iframe through
an external view. Airflow does not protect plugin routes by itself, so every route except ``/health``
requires an authenticated Airflow user. All feed-derived text is HTML-escaped: titles come from
strangers.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from newswatch import db


def _authenticated():
    """Airflow's own authentication dependency (imported lazily: the module loads in every component)."""
    from airflow.api_fastapi.core_api.security import requires_authenticated

    return Depends(requires_authenticated())


app = FastAPI(title="newswatch", description="Stories, alerts and feed health from the newswatch database.")
_AUTH = [_authenticated()]


def _rows(sql: str, params: tuple = ()) -> list[dict]:
    with db.transaction() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def recent_stories(limit: int) -> list[dict]:
    return _rows(
        """
        SELECT s.id, s.title, s.article_count, s.languages, s.feeds, s.first_seen_at, s.last_seen_at,
               a.canonical_url AS url
        FROM stories s LEFT JOIN articles a ON a.id = s.representative_article
        ORDER BY s.last_seen_at DESC LIMIT %s
        """,
        (limit,),
    )


def recent_alerts(limit: int) -> list[dict]:
    return _rows(
        """
        SELECT al.id, al.rule, al.channel, al.status, al.attempts, al.last_error, al.created_at, al.sent_at,
               al.story_id, s.title
        FROM alerts al JOIN stories s ON s.id = al.story_id
        ORDER BY al.created_at DESC LIMIT %s
        """,
        (limit,),
    )


def feed_health() -> list[dict]:
    return _rows(
        """
        SELECT name, url, enabled, consecutive_failures, last_success_at, last_error_kind, last_error
        FROM feeds ORDER BY enabled DESC, consecutive_failures DESC, name
        """
    )


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/stories", dependencies=_AUTH)
def api_stories(limit: int = Query(50, ge=1, le=500)) -> list[dict]:
    return recent_stories(limit)


@app.get("/api/alerts", dependencies=_AUTH)
def api_alerts(limit: int = Query(50, ge=1, le=500)) -> list[dict]:
    return recent_alerts(limit)


@app.get("/api/feeds", dependencies=_AUTH)
def api_feeds() -> list[dict]:
    return feed_health()


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "–"


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _link(url: str | None, text: str) -> str:
    if url and url.startswith(("http://", "https://")):
        return f'<a href="{escape(url)}" target="_blank" rel="noopener noreferrer">{escape(text)}</a>'
    return escape(text)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2937}
h1{font-size:1.4rem;margin:0 0 1rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{background:#f9fafb;font-weight:600}.empty{color:#6b7280}
.sent{color:#047857}.pending{color:#b45309}.failed{color:#b91c1c}
"""


@app.get("/", response_class=HTMLResponse, dependencies=_AUTH)
def page(limit: int = Query(50, ge=1, le=500)) -> str:
    stories = _table(
        ["Story", "Articles", "Languages", "Sources", "First seen", "Last seen"],
        [[_link(s["url"], s["title"]), str(s["article_count"]), escape(", ".join(s["languages"])),
          escape(", ".join(s["feeds"])), _when(s["first_seen_at"]), _when(s["last_seen_at"])]
         for s in recent_stories(limit)],
        "No stories yet: the first poll has not stored any article.",
    )
    alerts = _table(
        ["Rule", "Story", "Channel", "Status", "Attempts", "Created", "Sent", "Last error"],
        [[escape(a["rule"]), escape(a["title"]), escape(a["channel"]),
          f'<span class="{escape(a["status"])}">{escape(a["status"])}</span>', str(a["attempts"]),
          _when(a["created_at"]), _when(a["sent_at"]), escape(a["last_error"] or "")]
         for a in recent_alerts(limit)],
        "No alerts yet.",
    )
    feeds = _table(
        ["Feed", "State", "Failures", "Last success", "Last error"],
        [[_link(f["url"], f["name"]),
          "disabled" if not f["enabled"] else ("failing" if f["consecutive_failures"] else "ok"),
          str(f["consecutive_failures"]), _when(f["last_success_at"]),
          escape(f"{f['last_error_kind'] or ''} {f['last_error'] or ''}".strip())]
         for f in feed_health()],
        "No feeds yet: they appear after the first run.",
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>newswatch</title><style>{_STYLE}</style>"
        f"</head><body><h1>newswatch</h1><h2>Latest stories</h2>{stories}<h2>Alerts</h2>{alerts}"
        f"<h2>Feed health</h2>{feeds}</body></html>"
    )
