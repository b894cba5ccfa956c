"""HTML: the Jinja2 templates, their helpers, and the headers every page is sent with.

Everything a page shows goes through Jinja2's autoescaping (feed titles, errors and snippets are written by
strangers); nothing here builds markup by hand. The few pieces of markup with logic (links, sparklines,
highlighted snippets, tables) are macros in ``templates/macros.html``; the Python side only prepares data
(points of a sparkline, marked segments of a snippet) and decides what is a safe link.

The one stylesheet (``static/newswatch.css``) is inlined and allowed by its hash, so a page loads nothing
and the Content-Security-Policy allows no script at all. A page that one day needs a script serves it as a
static file and adds ``script-src 'self'`` (or its hash) to :data:`CONTENT_SECURITY_POLICY`, never inline.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template
from markupsafe import Markup

from newswatch import search
from newswatch.urls import redact
from newswatch.web import security
from newswatch.web.queries import SPARK_DAYS

HERE = Path(__file__).resolve().parent
STYLESHEET = (HERE / "static" / "newswatch.css").read_text(encoding="utf-8")
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLESHEET.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'self'; base-uri 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# (path relative to the app root, label): the top navigation, in this order
NAV = [("", "Overview"), ("stories", "Stories"), ("alerts", "Alerts"), ("feeds", "Feeds"), ("search", "Search"),
       ("settings/feeds", "Settings")]
PERIODS = [("", "any time"), ("1d", "last day"), ("7d", "last week"), ("30d", "last 30 days"), ("365d", "last year")]


# --- what the templates call ---------------------------------------------------------------------------


def is_web_url(url: str | None) -> bool:
    """Whether ``url`` may become a link: http(s) with a host, no whitespace or control character."""
    if not url or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def when(value: datetime | None) -> str:
    """A moment as UTC ``YYYY-MM-DD HH:MM``, or a dash."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "–"


def score(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def href(base: str, path: str, **params: Any) -> str:
    """A link relative to the page (``base`` leads back to the app root), so pages work under any prefix."""
    query = urlencode({key: value for key, value in params.items() if value not in (None, "")})
    target = base + path
    if not target:
        target = "./"
    return target + ("?" + query if query else "")


def spark_points(values: list[int], label: str, width: int, height: int) -> dict[str, Any]:
    """What a sparkline of daily counts (oldest left) draws: its polyline, last point and title (plain text)."""
    peak = max(values) or 1
    step = (width - 4) / max(len(values) - 1, 1)
    points = [(2 + i * step, height - 2 - (value / peak) * (height - 4)) for i, value in enumerate(values)]
    return {"line": " ".join(f"{x:.1f},{y:.1f}" for x, y in points),
            "last_x": f"{points[-1][0]:.1f}", "last_y": f"{points[-1][1]:.1f}",
            "title": f"{label}: {', '.join(str(v) for v in values)} (per day, oldest first)"}


def highlight_segments(snippet: str | None) -> list[tuple[str, bool]]:
    """A ts_headline snippet as (text, marked) segments, balanced whatever the text holds.

    A stray stop marker is dropped, an unclosed start is closed at the end (an empty marked segment when
    nothing follows it), so the ``<mark>`` elements the template makes always pair up.
    """
    segments: list[tuple[str, bool]] = []
    current: list[str] = []
    marked = False
    for char in snippet or "":
        if char == search.MARK_START and not marked:
            if current:
                segments.append(("".join(current), False))
            current, marked = [], True
        elif char == search.MARK_STOP and marked:
            segments.append(("".join(current), True))
            current, marked = [], False
        elif char not in (search.MARK_START, search.MARK_STOP):
            current.append(char)
    if current or marked:
        segments.append(("".join(current), marked))
    return segments


def rules_by_activity(activity: dict[str, list[int]]) -> list[tuple[str, list[int]]]:
    """Rules with their daily alert counts, busiest first, then by name."""
    return sorted(activity.items(), key=lambda item: (-sum(item[1]), item[0]))


ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template is HTML
    undefined=StrictUndefined,  # a misspelt name fails the page in tests instead of rendering as nothing
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # the API server loads plugins once; templates change with the code
)
ENV.filters.update(when=when, score=score, redact=redact)
ENV.tests["web_url"] = is_web_url
ENV.globals.update(
    plural=plural, rules_by_activity=rules_by_activity, spark_points=spark_points,
    highlight_segments=highlight_segments, SPARK_DAYS=SPARK_DAYS, LANGUAGES=sorted(search.LANGUAGE_CONFIGS.items()),
    PERIODS=PERIODS, MAX_QUERY_LENGTH=search.MAX_QUERY_LENGTH, CSRF_FIELD=security.CSRF_FIELD,
)


def _macro(name: str) -> Any:
    return getattr(ENV.get_template("macros.html").module, name)


def sparkline(values: list[int], label: str, *, color: str = "#2563eb", width: int = 112, height: int = 22) -> Markup:
    """The sparkline macro from Python: a small inline SVG of daily counts, ``label`` its accessible name."""
    return Markup(_macro("sparkline")(values, label, color=color, width=width, height=height))


def highlight(snippet: str | None) -> Markup:
    """The highlight macro from Python: the snippet escaped, its search markers turned into ``<mark>``."""
    return Markup(_macro("highlight")(snippet))


# --- pages --------------------------------------------------------------------------------------------


def base_for(request: Request) -> str:
    """Relative prefix to the app root from the requested page (links work under any proxy prefix)."""
    path = request.url.path
    root = request.scope.get("root_path", "")
    depth = path[len(root):].count("/") - 1 if path.startswith(root) else 0
    return "../" * max(depth, 0)


def page(request: Request, template: str | Template, *, title: str, active: str = "", status_code: int = 200,
         **context: Any) -> HTMLResponse:
    """Render ``template`` (which extends ``base.html``) as a page answer with the strict headers.

    Every page gets ``base`` and ``href`` (links relative to the app root), its ``title`` and nav ``active``
    section (the first segment of its path in the nav), ``can_edit`` (whether the user may change
    configuration: show edit controls only then) and ``csrf_token()`` for the forms (``forms.html``'s
    ``csrf_field()`` puts it in a form).
    """
    base = base_for(request)
    user = security.current_user(request)
    values = {
        "base": base, "href": partial(href, base), "title": title, "active": active, "nav": NAV,
        "stylesheet": Markup(STYLESHEET), "search_query": "", "search_language": "", "search_since": "",
        "can_edit": security.request_may_edit(request),
        "csrf_token": (lambda: security.csrf_token(user)) if user is not None else _no_token,
        **context,
    }
    html = ENV.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=HTML_HEADERS)


def _no_token() -> str:
    raise RuntimeError("a form rendered for a request without a user: forms belong to pages behind the login")


def error_page(request: Request, title: str, message: str, status_code: int) -> HTMLResponse:
    return page(request, "error.html", title=title, message=message, status_code=status_code)
