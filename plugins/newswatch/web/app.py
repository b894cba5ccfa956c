"""The newswatch app: its routes, who may call them, and how errors are answered.

Mounted by the Airflow plugin under ``/newswatch`` (see ``newswatch.web``). Each HTML route reads through
``queries`` in one read-only transaction and renders a template through ``render.page``; each JSON route
returns the same rows. Every route but ``/health`` and ``/metrics`` depends on ``_AUTH`` (Airflow's login);
routes that change configuration add ``security.EDITOR`` (may edit, CSRF token). The Settings pages and their
forms live in ``config_pages`` and are included here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import psycopg2
import psycopg2.errors
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from newswatch import db, metrics, search
from newswatch.web import config_pages, queries, render, security
from newswatch.web.queries import reading

# No /docs or /redoc: FastAPI's pages load their scripts from a CDN.
app = FastAPI(title="newswatch", description="Stories, alerts, feed health and search from the newswatch database.",
              docs_url=None, redoc_url=None)
# Airflow's login on every non-public route (401 without a valid token cookie or bearer header).
_AUTH = [Depends(security.authenticated)]
# The Settings pages (feeds, rules, channels, changes) and the forms that change the configuration.
app.include_router(config_pages.router)

PAGE_SIZE = 25
OVERVIEW_ALERTS = 10
OVERVIEW_FEEDS = 20
STORY_ARTICLES = 100
MEMBERS_SHOWN = 5
BIGINT_MAX = 2**63 - 1


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


def _older_stories(request: Request, stories: list[dict]) -> str:
    return render.href(render.base_for(request), "stories",
                       before=_cursor_text(stories[-1]["last_seen_at"], stories[-1]["id"]))


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
    with reading() as cur:
        stories, more = queries.stories_page(cur, before=None, limit=PAGE_SIZE)
        members = queries.story_members(cur, [s["id"] for s in stories], MEMBERS_SHOWN)
        languages, sources = queries.week_languages_and_sources(cur)
        alerts, more_alerts = queries.alerts_page(cur, before=None, limit=OVERVIEW_ALERTS)
        attempts = queries.delivery_attempts(cur, [a["id"] for a in alerts])
        activity = queries.rule_activity(cur)
        feeds = queries.all_feeds(cur)
        shown = [f for f in feeds if f["state"] == "failing"][:OVERVIEW_FEEDS] or feeds[:OVERVIEW_FEEDS]
        feed_articles, feed_errors = queries.feed_activity(cur, [f["id"] for f in shown])
        queries.add_entry_failures(cur, shown)
    return render.page(
        request, "overview.html", title="newswatch",
        stories=stories, members=members, older=_older_stories(request, stories) if more else None,
        languages=[(r["language"], r["n"]) for r in languages], sources=[(r["feed"], r["n"]) for r in sources],
        activity=activity, alerts=alerts, attempts=attempts, more_alerts=more_alerts,
        failing=sum(1 for f in feeds if f["state"] == "failing"), feed_count=len(feeds),
        feeds=shown, feed_articles=feed_articles, feed_errors=feed_errors, more_feeds=len(feeds) > len(shown),
    )


@app.get("/stories", response_class=HTMLResponse, dependencies=_AUTH)
def stories_list(request: Request, before: str | None = None) -> HTMLResponse:
    with reading() as cur:
        stories, more = queries.stories_page(cur, before=_parse_cursor(before), limit=PAGE_SIZE)
        members = queries.story_members(cur, [s["id"] for s in stories], MEMBERS_SHOWN)
    return render.page(request, "stories.html", title="Stories", active="stories", stories=stories,
                       members=members, newest=bool(before),
                       older=_older_stories(request, stories) if more else None)


@app.get("/stories/{story_id}", response_class=HTMLResponse, dependencies=_AUTH)
def story_page(request: Request, story_id: int, after: str | None = None) -> Response:
    with reading() as cur:
        story = queries.story_detail(cur, story_id)
        if story is None:
            target = queries.merged_into(cur, story_id)
            if target is not None:
                return RedirectResponse(f"{target}", status_code=307)
            return render.error_page(request, "Story not found", f"There is no story {story_id}.", 404)
        articles, more = queries.story_articles(cur, story_id, after=_parse_cursor(after), limit=STORY_ARTICLES)
        alerts, _ = queries.alerts_page(cur, before=None, limit=200, story_id=story_id)
        attempts = queries.delivery_attempts(cur, [a["id"] for a in alerts])
        merges = queries.merges_into(cur, story_id)
    next_articles = render.href(render.base_for(request), f"stories/{story_id}",
                                after=_cursor_text(articles[-1]["fetched_at"], articles[-1]["id"])) if more else None
    return render.page(request, "story.html", title=story["title"], active="stories", story=story,
                       articles=articles, article_ids={a["id"] for a in articles}, first_articles=bool(after),
                       next_articles=next_articles, alerts=alerts, attempts=attempts, merges=merges)


@app.get("/alerts", response_class=HTMLResponse, dependencies=_AUTH)
def alerts_list(request: Request, before: str | None = None,
                status: str | None = Query(None, pattern="^(pending|sent|failed)?$")) -> HTMLResponse:
    status = status or None
    with reading() as cur:
        alerts, more = queries.alerts_page(cur, before=_parse_cursor(before), limit=PAGE_SIZE * 2, status=status)
        attempts = queries.delivery_attempts(cur, [a["id"] for a in alerts])
        activity = queries.rule_activity(cur)
    older = render.href(render.base_for(request), "alerts", status=status,
                        before=_cursor_text(alerts[-1]["created_at"], alerts[-1]["id"])) if more else None
    return render.page(request, "alerts.html", title="Alerts", active="alerts", status=status, alerts=alerts,
                       attempts=attempts, activity=activity, newest=bool(before), older=older)


@app.get("/feeds", response_class=HTMLResponse, dependencies=_AUTH)
def feeds_list(request: Request, page: int = Query(1, ge=1, le=10_000)) -> HTMLResponse:
    size = PAGE_SIZE * 4
    with reading() as cur:
        feeds = queries.all_feeds(cur)
        shown = feeds[(page - 1) * size: page * size]
        feed_articles, feed_errors = queries.feed_activity(cur, [f["id"] for f in shown])
        queries.add_entry_failures(cur, shown)
    counts = [(state, sum(1 for f in feeds if f["state"] == state)) for state in ("failing", "new", "ok", "disabled")]
    return render.page(request, "feeds.html", title="Feed health", active="feeds", counts=counts, feeds=shown,
                       feed_articles=feed_articles, feed_errors=feed_errors, page_number=page,
                       more=len(feeds) > page * size)


@app.get("/search", response_class=HTMLResponse, dependencies=_AUTH)
def search_html(request: Request, q: str = "", language: str = "", since: str = "",
                page: int = Query(1, ge=1, le=1000)) -> HTMLResponse:
    context: dict[str, Any] = {"title": "Search", "active": "search", "search_query": q,
                               "search_language": language, "search_since": since, "page_number": page,
                               "result": None, "error": None}
    if not q.strip():
        return render.page(request, "search.html", **context)
    try:
        moment = search.parse_since(since)
        with reading() as cur:
            result = search.search_page(cur, q, language=language or None, since=moment, limit=PAGE_SIZE,
                                        offset=(page - 1) * PAGE_SIZE)
    except search.SearchError as exc:
        return render.page(request, "search.html", status_code=400, **{**context, "error": str(exc)})
    return render.page(request, "search.html", **{**context, "result": result})


# --- routes: JSON -------------------------------------------------------------------------------------


def _next_link(request: Request, **params: Any) -> dict[str, str]:
    query = urlencode({**dict(request.query_params), **params})
    return {"Link": f'<{request.url.path}?{query}>; rel="next"'}


@app.get("/api/stories", dependencies=_AUTH)
def api_stories(request: Request, limit: int = Query(50, ge=1, le=500), before: str | None = None) -> Response:
    """Latest stories, newest first; the ``Link: rel="next"`` header gives the next page."""
    with reading() as cur:
        rows, more = queries.stories_page(cur, before=_parse_cursor(before), limit=limit)
    headers = _next_link(request, before=_cursor_text(rows[-1]["last_seen_at"], rows[-1]["id"])) if more else {}
    return JSONResponse(_jsonable(rows), headers=headers)


@app.get("/api/stories/{story_id}", dependencies=_AUTH)
def api_story(story_id: int, after: str | None = None, limit: int = Query(100, ge=1, le=500)) -> dict:
    with reading() as cur:
        story = queries.story_detail(cur, story_id)
        if story is None:
            raise HTTPException(status_code=404, detail=f"no story {story_id}")
        articles, more = queries.story_articles(cur, story_id, after=_parse_cursor(after), limit=limit)
        alerts, _ = queries.alerts_page(cur, before=None, limit=200, story_id=story_id)
        attempts = queries.delivery_attempts(cur, [a["id"] for a in alerts])
    for alert in alerts:
        alert["delivery_attempts"] = attempts.get(alert["id"], [])
    story.pop("search_vector", None)
    return {"story": story, "articles": articles, "more_articles": more,
            "next_after": _cursor_text(articles[-1]["fetched_at"], articles[-1]["id"]) if more else None,
            "alerts": alerts}


@app.get("/api/alerts", dependencies=_AUTH)
def api_alerts(request: Request, limit: int = Query(50, ge=1, le=500), before: str | None = None,
               status: str | None = Query(None, pattern="^(pending|sent|failed)$")) -> Response:
    with reading() as cur:
        rows, more = queries.alerts_page(cur, before=_parse_cursor(before), limit=limit, status=status)
        attempts = queries.delivery_attempts(cur, [a["id"] for a in rows])
    for row in rows:
        row["delivery_attempts"] = attempts.get(row["id"], [])
    headers = _next_link(request, before=_cursor_text(rows[-1]["created_at"], rows[-1]["id"])) if more else {}
    return JSONResponse(_jsonable(rows), headers=headers)


@app.get("/api/feeds", dependencies=_AUTH)
def api_feeds() -> list[dict]:
    with reading() as cur:
        feeds = queries.all_feeds(cur)
    for feed in feeds:  # validators and internals are no operator's business here
        for key in ("etag", "last_modified"):
            feed.pop(key, None)
    return feeds


@app.get("/api/search", dependencies=_AUTH)
def api_search(q: str, language: str | None = None, since: str | None = None, feed: str | None = None,
               limit: int = Query(50, ge=1, le=search.MAX_LIMIT), offset: int = Query(0, ge=0)) -> dict:
    try:
        moment = search.parse_since(since)
        with reading() as cur:
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
        return render.error_page(request, "Database unavailable", message, 503)
    return JSONResponse({"detail": message}, status_code=503)


@app.exception_handler(psycopg2.errors.UndefinedColumn)
@app.exception_handler(psycopg2.errors.UndefinedTable)
@app.exception_handler(psycopg2.errors.UndefinedFunction)
def _schema_behind(request: Request, exc: Exception) -> Response:
    message = "The newswatch schema is older than this page: run `newswatch migrate` (or one poll run)."
    if _wants_html(request):
        return render.error_page(request, "Schema out of date", message, 503)
    return JSONResponse({"detail": message}, status_code=503)


@app.exception_handler(security.Refused)
def _refused(request: Request, exc: security.Refused) -> Response:
    """A change the user may not make, or one without a valid form token: 403, as a page or as JSON."""
    if _wants_html(request):
        return render.error_page(request, "Not allowed", exc.message, 403)
    return JSONResponse({"detail": exc.message}, status_code=403)
