"""The Settings pages: feeds, rules, channels and the change log, read by every user, changed by editors.

What the YAML file declares is shown read-only; what was added from the UI is changed here through
``newswatch.configstore``, which checks each item as the file's are checked and audits every change. These
routes only translate forms into its calls: every POST has ``dependencies=security.EDITOR`` (login 401, edit
permission 403, this page's CSRF token 403) and passes the Airflow user as the actor. A refusal
(``ConfigRefused``) is shown as its one line on the page it came from, with what was typed kept; a change that
worked answers 303 to its list page (a reload does not repeat it), which says what was done.

Network work, discovering a feed and testing a channel, happens before any transaction of the page is open:
``discovery.check_feed`` and ``configstore.test_channel`` run first and the page reads the configuration
afterwards.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newswatch import config, configstore
from newswatch.rules import DEFAULT_MIN_SIMILARITY, RuleSyntaxError, compile_rule
from newswatch.web import queries, render, security
from newswatch.web.queries import reading

router = APIRouter()
# Airflow's login on every page (401 without it); changes use security.EDITOR instead.
_AUTH = [Depends(security.authenticated)]

PREVIEW_DAYS = (1, 7, 30, 90)
PREVIEW_STORIES = 25
AUDIT_PAGE = 50
BIGINT_MAX = 2**63 - 1
# What a change did, by the ``done`` value of the page it redirects to: the page's notice says it.
DONE = {"added": "added", "updated": "saved", "enabled": "enabled", "disabled": "disabled", "removed": "removed"}
# HTTP status of a refusal by its reason: the page is shown again with the line, under this status.
REFUSAL_STATUS = {"not_found": 404, "file_managed": 409, "name_taken": 409, "in_use": 409, "invalid": 400}
_NAME = re.compile(config.NAME_PATTERN)

FormText = Annotated[str, Form()]


# --- helpers ------------------------------------------------------------------------------------------


def _page(request: Request, template: str, *, title: str, section: str, status_code: int = 200,
          **context: Any) -> HTMLResponse:
    """A settings page: the Settings nav item on, ``section`` (its sub-nav path) marked, no notice or error
    unless given."""
    values: dict[str, Any] = {"notice": None, "error": None, **context}
    return render.page(request, template, title=title, active="settings", settings_page=section,
                       status_code=status_code, **values)


def _notice(kind: str, done: str, name: str) -> str | None:
    """The line a list page shows after a change redirected to it; only known verbs and valid names."""
    if done not in DONE or len(name) > 100 or not _NAME.match(name):
        return None
    return f"{kind.capitalize()} {name!r} {DONE[done]}."


def _done(request: Request, path: str, done: str, name: str) -> RedirectResponse:
    """303 to the list page (relative, so it works under any prefix), saying what was done."""
    return RedirectResponse(render.href(render.base_for(request), path, done=done, name=name), status_code=303)


def _actor(request: Request) -> str:
    """Who makes the change, for the audit: the Airflow user's name (EDITOR made sure there is one)."""
    user = security.current_user(request)
    return user.get_name() if user is not None else "unknown"


def _status(exc: configstore.ConfigRefused) -> int:
    return REFUSAL_STATUS.get(exc.reason, 400)


def _seconds(text: str) -> int | None:
    """A feed interval from a form: blank is adaptive (None), else whole seconds."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise configstore.InvalidItem("interval: must be a whole number of seconds (blank: adaptive)",
                                      field="interval")
    return int(text)


def _overview() -> tuple[configstore.Overview | None, str, list[str]]:
    """Both sources merged, the config file's path, and why that file cannot be used (then no overview)."""
    try:
        return configstore.overview(), str(config.config_path()), []
    except config.ConfigError as exc:
        return None, exc.path, exc.problems


def _conflicts(view: configstore.Overview | None, kind: str) -> list[str]:
    """The merge's lines about items of ``kind`` (a name both sources declare, a check a UI item fails)."""
    return [line for line in (view.problems if view else []) if line.startswith(f"{kind} ")]


def _find(kind: configstore.Kind, name: str) -> configstore.Item | None:
    """The item the pages show under ``name`` (the file's when both have it), or None."""
    view, _, _ = _overview()
    if view is None:
        return None
    return next((item for item in view.items[kind] if item.name == name), None)


def caret(query: str, position: int) -> dict[str, Any]:
    """Where a rule's syntax error is: the query split around the offending character, for the caret display.

    ``line`` and ``column`` count from 1; ``pad`` puts a caret under the character (tabs kept as tabs so it
    lines up in a ``<pre>``).
    """
    position = max(0, min(position, len(query)))
    start = query.rfind("\n", 0, position) + 1
    end = query.find("\n", position)
    end = len(query) if end < 0 else end
    before = query[start:position]
    return {"line": query.count("\n", 0, position) + 1, "column": position - start + 1,
            "head": query[:start], "before": before, "at": query[position:min(position + 1, end)],
            "after": query[min(position + 1, end):end], "tail": query[end:].removeprefix("\n"),
            "pad": "".join("\t" if char == "\t" else " " for char in before)}


def audit_lines(entry: configstore.AuditEntry) -> list[str]:
    """What an audit entry changed, one line per key: an addition lists what was set, an update what moved."""
    if entry.action == "add":
        return [f"{key}: {_short(value)}" for key, value in (entry.after or {}).items()
                if value not in (None, [], "") and key != "name"]
    if entry.action == "remove":
        return []
    return entry.changes()


def threshold_label(query: str, min_similarity: float | None) -> str | None:
    """What a rules page says of a rule's ``min_similarity``: None when its query has no meaning term (the
    threshold then changes nothing), else the value, marked when it is the default."""
    try:
        if not compile_rule(query).meanings:
            return None
    except RuleSyntaxError:
        return None
    return f"{DEFAULT_MIN_SIMILARITY:.2f} (default)" if min_similarity is None else f"{min_similarity:.2f}"


def _min_similarity(text: str) -> float | None:
    """A form's ``min_similarity``: blank is the default (None); ValueError for what is not a number
    (configstore checks the range)."""
    text = text.strip().replace(",", ".")
    if not text:
        return None
    value = float(text)
    if value != value:  # NaN
        raise ValueError(text)
    return value


def _lines(text: str) -> str:
    """A textarea's text with the line breaks the rule file has: browsers send CRLF, which would shift every
    position the parser reports and end up in the stored query."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


# --- feeds --------------------------------------------------------------------------------------------


def _feeds_page(request: Request, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    with reading() as cur:
        configuration = queries.configured_feeds(cur)
    values: dict[str, Any] = {"check": None, "form": {}, "confirm": False, "report": None, **context}
    return _page(request, "settings_feeds.html", title="Feed settings", section="settings/feeds",
                 status_code=status_code, configuration=configuration, **values)


@router.get("/settings/feeds", response_class=HTMLResponse, dependencies=_AUTH)
def settings_feeds(request: Request, done: str = "", name: str = "") -> HTMLResponse:
    """The configured feeds and where each is declared; YAML-declared ones are read-only here."""
    return _feeds_page(request, notice=_notice("feed", done, name))


@router.post("/settings/feeds/check", response_class=HTMLResponse, dependencies=security.EDITOR)
def feeds_check(request: Request, url: FormText = "") -> HTMLResponse:
    """Fetch the URL once (a feed, or a page advertising one) and show what it holds before anything is saved.

    The check runs with no transaction open; the page reads the configuration after it.
    """
    from newswatch.ingest import discovery

    try:
        network = config.load_settings().network
    except config.ConfigError as exc:
        return _feeds_page(request, status_code=409, error=f"{exc.path} cannot be used: fix it first",
                           form={"url": url})
    check = discovery.check_feed(url, network)
    form = {"url": url, "name": "", "language": "", "interval": ""}
    if check.ok and check.url:
        taken = [item.name for item in configstore.list_items("feed")]
        form = {**form, "url": check.url, "name": configstore.suggest_name(check.title, check.url, taken)}
    return _feeds_page(request, check=check, form=form)


@router.post("/settings/feeds/add", response_class=HTMLResponse, dependencies=security.EDITOR)
def feeds_add(request: Request, url: FormText, name: FormText = "", language: FormText = "",
              interval: FormText = "") -> Response:
    """Save a feed the check found (the confirmation form carries the URL the check settled on)."""
    form = {"url": url, "name": name, "language": language, "interval": interval}
    try:
        item = configstore.add_feed(name.strip(), url.strip(), language=language.strip() or None,
                                    interval=_seconds(interval), actor=_actor(request))
    except configstore.ConfigRefused as exc:
        return _feeds_page(request, status_code=_status(exc), error=str(exc), form=form, confirm=True)
    return _done(request, "settings/feeds", "added", item.name)


@router.post("/settings/feeds/enabled", response_class=HTMLResponse, dependencies=security.EDITOR)
def feeds_enabled(request: Request, name: FormText, enabled: FormText) -> Response:
    on = enabled == "true"
    try:
        configstore.set_enabled("feed", name, on, actor=_actor(request))
    except configstore.ConfigRefused as exc:
        return _feeds_page(request, status_code=_status(exc), error=str(exc))
    return _done(request, "settings/feeds", "enabled" if on else "disabled", name)


def _feed_page(request: Request, name: str, *, status_code: int = 200, error: str | None = None,
               form: dict[str, str] | None = None) -> HTMLResponse:
    item = _find("feed", name)
    if item is None:
        return render.error_page(request, "Feed not found", error or f"There is no feed named {name!r}.", 404)
    form = form or {"language": item.fields.get("language") or "", "interval": str(item.fields.get("interval") or "")}
    return _page(request, "settings_feed.html", title=f"Feed {name}", section="settings/feeds",
                 status_code=status_code, item=item, form=form, path=str(config.config_path()), error=error)


@router.get("/settings/feeds/edit", response_class=HTMLResponse, dependencies=_AUTH)
def feed_edit(request: Request, name: str) -> HTMLResponse:
    """One feed: its settings, and for a feed added from the UI, the forms to change or remove it."""
    return _feed_page(request, name)


@router.post("/settings/feeds/edit", response_class=HTMLResponse, dependencies=security.EDITOR)
def feed_save(request: Request, name: FormText, language: FormText = "", interval: FormText = "") -> Response:
    try:
        configstore.update_feed(name, language=language.strip() or None, interval=_seconds(interval),
                                actor=_actor(request))
    except configstore.ConfigRefused as exc:
        return _feed_page(request, name, status_code=_status(exc), error=str(exc),
                          form={"language": language, "interval": interval})
    return _done(request, "settings/feeds", "updated", name)


@router.post("/settings/feeds/remove", response_class=HTMLResponse, dependencies=security.EDITOR)
def feed_remove(request: Request, name: FormText) -> Response:
    try:
        configstore.remove("feed", name, actor=_actor(request))
    except configstore.ConfigRefused as exc:
        return _feeds_page(request, status_code=_status(exc), error=str(exc))
    return _done(request, "settings/feeds", "removed", name)


@router.post("/settings/feeds/import", response_class=HTMLResponse, dependencies=security.EDITOR)
def feeds_import(request: Request, file: Annotated[UploadFile, File()],
                 dry_run: Annotated[str, Form()] = "") -> HTMLResponse:
    """Add the feeds of an uploaded OPML file; the page shows one line per outline (added, skipped, refused).

    Nothing is fetched: each feed is checked as the file's are, and the poller reports one that does not work.
    """
    from newswatch import opml

    data = file.file.read(opml.MAX_BYTES + 1)  # one byte more than allowed: parse_opml refuses it in one line
    source = (file.filename or "upload.opml").replace("\\", "/").rsplit("/", 1)[-1][:100]
    try:
        report = opml.import_opml(data, actor=_actor(request), source=source, dry_run=bool(dry_run))
    except opml.OpmlError as exc:
        return _feeds_page(request, status_code=400, error=f"{source}: {exc}")
    except config.ConfigError as exc:
        return _feeds_page(request, status_code=409, error=f"{exc.path} cannot be used: fix it first")
    return _feeds_page(request, report=report, report_source=source)


@router.get("/settings/feeds/export.opml", dependencies=security.EDITOR)
def feeds_export(source: Literal["all", "file", "ui"] = "all") -> Response:
    """The configured feeds as OPML 2.0, for editors only: it holds full feed URLs, which the pages redact."""
    from newswatch import opml

    feeds = opml.configured_feeds(config.load_settings(ui=True), source)
    return Response(opml.export_opml(feeds), media_type="text/x-opml; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="newswatch-feeds.opml"',
                             "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


# --- rules --------------------------------------------------------------------------------------------


@router.get("/settings/rules", response_class=HTMLResponse, dependencies=_AUTH)
def settings_rules(request: Request, done: str = "", name: str = "") -> HTMLResponse:
    """Every rule, the file's read-only; a preview link for all, edit controls for editors."""
    return _rules_page(request, notice=_notice("rule", done, name))


def _rules_page(request: Request, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    view, path, problems = _overview()
    return _page(request, "settings_rules.html", title="Rule settings", section="settings/rules",
                 status_code=status_code, rules=view.items["rule"] if view else [],
                 thresholds={item.name: threshold_label(item.fields.get("query", ""), item.fields.get("min_similarity"))
                             for item in (view.items["rule"] if view else [])},
                 conflicts=_conflicts(view, "rule"), path=path, problems=problems, **context)


def _rule_page(request: Request, *, form: dict[str, Any], original: str, status_code: int = 200,
               **context: Any) -> HTMLResponse:
    view, path, problems = _overview()
    item = next((i for i in view.items["rule"] if i.name == original), None) if view and original else None
    values: dict[str, Any] = {"preview": None, "syntax": None, "syntax_error": None, **context}
    try:
        threshold = threshold_label(form["query"], _min_similarity(form.get("min_similarity", "")))
    except ValueError:
        threshold = None
    return _page(request, "settings_rule.html", title=f"Rule {original}" if original else "New rule",
                 section="settings/rules", status_code=status_code, form=form, original=original, item=item,
                 threshold=threshold, default_similarity=DEFAULT_MIN_SIMILARITY,
                 channels=view.items["channel"] if view else [], path=path, problems=problems,
                 preview_days=PREVIEW_DAYS, **values)


@router.get("/settings/rules/edit", response_class=HTMLResponse, dependencies=_AUTH)
def rule_edit(request: Request, name: str = "") -> HTMLResponse:
    """A new rule's form, or one rule: its query and channels, editable when it was added from the UI."""
    form: dict[str, Any] = {"name": "", "query": "", "channels": [], "days": 7, "language": "",
                            "min_similarity": ""}
    if name:
        item = _find("rule", name)
        if item is None:
            return render.error_page(request, "Rule not found", f"There is no rule named {name!r}.", 404)
        threshold = item.fields.get("min_similarity")
        form = {**form, "name": item.name, "query": item.fields.get("query", ""),
                "channels": list(item.fields.get("channels") or []),
                "min_similarity": "" if threshold is None else f"{threshold:g}"}
    return _rule_page(request, form=form, original=name)


def _preview(query: str, days: int, language: str, min_similarity: float | None = None
             ) -> tuple[configstore.RulePreview | None, dict | None, str | None]:
    """The preview of ``query`` (its meaning terms at ``min_similarity``), or the caret display and line of its
    syntax error."""
    try:
        return configstore.preview_rule(query, days=days, limit=PREVIEW_STORIES, language=language or None,
                                        min_similarity=min_similarity), None, None
    except configstore.InvalidItem as exc:
        return None, (caret(query, exc.position) if exc.position is not None else None), str(exc)


@router.post("/settings/rules/save", response_class=HTMLResponse, dependencies=security.EDITOR)
def rule_save(request: Request, name: FormText = "", query: FormText = "", original: FormText = "",
              channels: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies the default
              days: Annotated[int, Form(ge=1, le=365)] = 7, language: FormText = "",
              min_similarity: FormText = "", do: FormText = "save") -> Response:
    """Preview a draft (``do=preview``: what it would have matched) or save it; errors at their position."""
    query = _lines(query)
    form = {"name": original or name.strip(), "query": query, "channels": channels, "days": days,
            "language": language, "min_similarity": min_similarity.strip()}
    try:
        threshold = _min_similarity(min_similarity)
    except ValueError:
        return _rule_page(request, form=form, original=original, status_code=400,
                          error=f"min_similarity: {min_similarity.strip()!r} is not a number; write one from 0 to 1 "
                                f"(e.g. 0.45), or leave it blank for the default ({DEFAULT_MIN_SIMILARITY:.2f})")
    if do == "preview":
        preview, syntax, error = _preview(query, days, language, threshold)
        return _rule_page(request, form=form, original=original, preview=preview, syntax=syntax,
                          error=error if syntax is None else None, syntax_error=error,
                          status_code=200 if error is None else 400)
    try:
        if original:
            configstore.update_rule(original, query=query, channels=channels, min_similarity=threshold,
                                    actor=_actor(request))
        else:
            configstore.add_rule(name.strip(), query, channels=channels, min_similarity=threshold,
                                 actor=_actor(request))
    except configstore.ConfigRefused as exc:
        syntax = caret(query, exc.position) if exc.field == "query" and exc.position is not None else None
        return _rule_page(request, form=form, original=original, status_code=_status(exc), syntax=syntax,
                          error=None if syntax else str(exc), syntax_error=str(exc))
    return _done(request, "settings/rules", "updated" if original else "added", form["name"])


@router.get("/settings/rules/preview", response_class=HTMLResponse, dependencies=_AUTH)
def rule_preview(request: Request, name: str = "", query: str = "",
                 days: Annotated[int, Query(ge=1, le=365)] = 7, language: str = "") -> HTMLResponse:
    """What a configured rule (``name``, at its ``min_similarity``) or a draft (``query``, at the default) would
    have matched: for every user, it changes nothing."""
    threshold = None
    if name:
        item = _find("rule", name)
        if item is None:
            return render.error_page(request, "Rule not found", f"There is no rule named {name!r}.", 404)
        query, threshold = item.fields.get("query", ""), item.fields.get("min_similarity")
    query = _lines(query)
    preview, syntax, error = _preview(query, days, language, threshold) if query.strip() else (None, None, None)
    return _page(request, "settings_rule_preview.html", title=f"Preview of {name}" if name else "Rule preview",
                 section="settings/rules", status_code=200 if error is None else 400, name=name, query=query,
                 days=days, language=language, preview=preview, syntax=syntax, syntax_error=error,
                 preview_days=PREVIEW_DAYS)


@router.post("/settings/rules/enabled", response_class=HTMLResponse, dependencies=security.EDITOR)
def rules_enabled(request: Request, name: FormText, enabled: FormText) -> Response:
    on = enabled == "true"
    try:
        configstore.set_enabled("rule", name, on, actor=_actor(request))
    except configstore.ConfigRefused as exc:
        return _rules_page(request, status_code=_status(exc), error=str(exc))
    return _done(request, "settings/rules", "enabled" if on else "disabled", name)


@router.post("/settings/rules/remove", response_class=HTMLResponse, dependencies=security.EDITOR)
def rule_remove(request: Request, name: FormText) -> Response:
    try:
        configstore.remove("rule", name, actor=_actor(request))
    except configstore.ConfigRefused as exc:
        return _rules_page(request, status_code=_status(exc), error=str(exc))
    return _done(request, "settings/rules", "removed", name)


# --- channels -----------------------------------------------------------------------------------------


def _channels_page(request: Request, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    view, path, problems = _overview()
    used: dict[str, list[str]] = {}
    for rule in view.items["rule"] if view else []:
        for channel in rule.fields.get("channels") or []:
            used.setdefault(channel, []).append(rule.name)
    values: dict[str, Any] = {"test": None, "form": {"name": "", "url": "", "connection": ""}, **context}
    return _page(request, "settings_channels.html", title="Channel settings", section="settings/channels",
                 status_code=status_code, channels=view.items["channel"] if view else [],
                 conflicts=_conflicts(view, "channel"), used=used, path=path, problems=problems, **values)


@router.get("/settings/channels", response_class=HTMLResponse, dependencies=_AUTH)
def settings_channels(request: Request, done: str = "", name: str = "") -> HTMLResponse:
    """Every channel with its URL redacted (never in clear once saved), who uses it, and where it is declared."""
    return _channels_page(request, notice=_notice("channel", done, name))


@router.post("/settings/channels/add", response_class=HTMLResponse, dependencies=security.EDITOR)
def channels_add(request: Request, name: FormText = "", url: FormText = "", connection: FormText = "",
                 secret: FormText = "") -> Response:
    """Save a channel; its URL and secret are written, never shown again but redacted."""
    try:
        item = configstore.add_channel(name.strip(), url=url.strip() or None, connection=connection.strip() or None,
                                       secret=secret or None, actor=_actor(request))
    except configstore.ConfigRefused as exc:
        # What was typed comes back to its author (it was not saved), except the secret.
        return _channels_page(request, status_code=_status(exc), error=str(exc),
                              form={"name": name, "url": url, "connection": connection})
    return _done(request, "settings/channels", "added", item.name)


@router.post("/settings/channels/test", response_class=HTMLResponse, dependencies=security.EDITOR)
def channels_test(request: Request, name: FormText) -> HTMLResponse:
    """Send a test message through the delivery code (no transaction open) and show what happened."""
    try:
        outcome = configstore.test_channel(name)
    except configstore.ConfigRefused as exc:
        return _channels_page(request, status_code=_status(exc), error=str(exc))
    except config.ConfigError as exc:
        return _channels_page(request, status_code=409, error=f"{exc.path} cannot be used: fix it first")
    return _channels_page(request, test=outcome)


def _channel_page(request: Request, name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    item = _find("channel", name)
    if item is None:
        return render.error_page(request, "Channel not found", f"There is no channel named {name!r}.", 404)
    return _page(request, "settings_channel.html", title=f"Channel {name}", section="settings/channels",
                 status_code=status_code, item=item, path=str(config.config_path()), **context)


@router.get("/settings/channels/edit", response_class=HTMLResponse, dependencies=_AUTH)
def channel_edit(request: Request, name: str) -> HTMLResponse:
    """One channel, redacted; for one added from the UI, forms to replace its URL or secret, or remove it."""
    return _channel_page(request, name)


@router.post("/settings/channels/edit", response_class=HTMLResponse, dependencies=security.EDITOR)
def channel_save(request: Request, name: FormText, url: FormText = "", secret: FormText = "",
                 clear_secret: FormText = "") -> Response:
    """Replace what was retyped; a blank URL or secret keeps the stored one (it is never sent to the page)."""
    try:
        configstore.update_channel(name, url=url.strip() or configstore.KEEP,
                                   secret=None if clear_secret else (secret or configstore.KEEP),
                                   actor=_actor(request))
    except configstore.ConfigRefused as exc:
        return _channel_page(request, name, status_code=_status(exc), error=str(exc))
    return _done(request, "settings/channels", "updated", name)


@router.post("/settings/channels/remove", response_class=HTMLResponse, dependencies=security.EDITOR)
def channel_remove(request: Request, name: FormText) -> Response:
    try:
        configstore.remove("channel", name, actor=_actor(request))
    except configstore.ConfigRefused as exc:
        return _channels_page(request, status_code=_status(exc), error=str(exc))
    return _done(request, "settings/channels", "removed", name)


# --- changes ------------------------------------------------------------------------------------------


@router.get("/settings/changes", response_class=HTMLResponse, dependencies=_AUTH)
def settings_changes(request: Request, kind: Annotated[str, Query(pattern="^(feed|rule|channel)?$")] = "",
                     name: Annotated[str, Query(max_length=100)] = "",
                     before: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None) -> HTMLResponse:
    """Who changed what and when (the audit log), newest first: for every logged-in user."""
    entries = configstore.audit_log(limit=AUDIT_PAGE + 1, kind=kind or None, name=name or None,  # type: ignore[arg-type]
                                    before_id=before)
    older = None
    if len(entries) > AUDIT_PAGE:
        entries = entries[:AUDIT_PAGE]
        older = render.href(render.base_for(request), "settings/changes", kind=kind, name=name,
                            before=entries[-1].id)
    return _page(request, "settings_changes.html", title="Configuration changes", section="settings/changes",
                 entries=entries, older=older, newest=before is not None, kind=kind, name=name,
                 audit_lines=audit_lines)
