"""The UI-managed part of the configuration: feeds, rules and channels added from the pages or the CLI.

What the YAML file declares stays the file's: read-only here, changed by editing the file. What is added here
lives in ``ui_feeds``, ``ui_rules`` and ``ui_channels`` and is merged with the file by
``newswatch.config.load_settings(ui=True)`` (the DAG and every command that runs the pipeline do), each item
marked with its source. Every function checks its item with the same pydantic models and rule parser as the
file, and writes the change and its ``config_audit`` row in one short transaction (no network inside it:
``test_channel`` sends after reading). A refusal is a :class:`ConfigRefused` whose ``str()`` is one line to
show; pages and commands show it as it is.

Channel URLs and secrets are stored as given, since delivery needs them, and never handed out: every
:class:`Item` and audit row carries them redacted (:func:`newswatch.urls.redact_channel`), feed URLs in audit
rows without credentials or query (:func:`newswatch.urls.redact`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg2.extras
import yaml

from newswatch import db
from newswatch.config import (
    UI_TABLES,
    Settings,
    load_settings,
    merge_ui,
    read_ui_rows,
    ui_fields,
    validate_ui_item,
)
from newswatch.urls import redact, redact_channel, site_of

Kind = Literal["feed", "rule", "channel"]
KINDS: tuple[Kind, ...] = ("feed", "rule", "channel")
_PLURAL: dict[str, str] = {"feed": "feeds", "rule": "rules", "channel": "channels"}
# The columns of each ui_* table a change may set, by model field (ui_feeds calls `interval` interval_seconds).
_COLUMNS: dict[str, dict[str, str]] = {
    "feed": {"name": "name", "url": "url", "enabled": "enabled", "language": "language",
             "interval": "interval_seconds"},
    "rule": {"name": "name", "query": "query", "channels": "channels", "enabled": "enabled", "digest": "digest",
             "updates": "updates", "min_similarity": "min_similarity"},
    "channel": {"name": "name", "url": "url", "connection": "connection", "secret": "secret"},
}
MAX_ACTOR = 200


class _Keep:
    """The value of an update argument that was not given: the field keeps its value."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


# --- refusals ----------------------------------------------------------------------------------------------------


class ConfigRefused(Exception):
    """A change that was not made; ``str(exc)`` is one line to show as it is.

    ``reason`` is a stable label (the subclasses'); ``problems`` has one line per problem of an invalid item
    (``url: must be an http:// or https:// URL``); ``field`` and ``position`` locate a rule's syntax error
    (the 0-based offset in ``query``) for a page to point at.
    """

    reason = "refused"

    def __init__(self, message: str, problems: Sequence[str] = (), *, field: str | None = None,
                 position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems)
        self.field = field
        self.position = position


class NotFound(ConfigRefused):
    """No such item, in the file or from the UI."""

    reason = "not_found"


class FileManaged(ConfigRefused):
    """The item is declared in the YAML file: change it there."""

    reason = "file_managed"


class NameTaken(ConfigRefused):
    """Another item of the kind has this name, in the file or from the UI."""

    reason = "name_taken"


class InvalidItem(ConfigRefused):
    """The item fails the configuration's checks (the same as the file's)."""

    reason = "invalid"


class InUse(ConfigRefused):
    """Removing the item would leave something naming it (a rule naming a channel)."""

    reason = "in_use"


# --- what the pages and commands see -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One configured feed, rule or channel, from either source, as pages and commands may show it.

    ``fields`` are the item's keys as the YAML would write them, channel ``url`` and ``secret`` redacted
    (``secret`` is ``"…"`` when set). ``problem`` says why a UI item is not in use, or runs changed (a name
    the file also declares, a check it now fails, a channel it names that is gone); None when it runs as
    written. ``created_*`` and ``updated_*`` are None for items of the file.
    """

    kind: Kind
    name: str
    source: Literal["file", "ui"]
    fields: dict[str, Any]
    problem: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None

    @property
    def editable(self) -> bool:
        """Whether the pages and commands may change it: only what was added from the UI."""
        return self.source == "ui"

    @property
    def enabled(self) -> bool:
        return bool(self.fields.get("enabled", True))

    def public(self) -> dict[str, Any]:
        """A JSON-ready view for pages, ``--json`` and the audit: every URL redacted, times in ISO 8601."""
        fields = _redacted(self.kind, self.fields) if self.kind == "feed" else self.fields  # channels: already
        return {"kind": self.kind, "name": self.name, "source": self.source, "editable": self.editable,
                **fields, "problem": self.problem,
                "created_by": self.created_by, "created_at": _iso(self.created_at),
                "updated_by": self.updated_by, "updated_at": _iso(self.updated_at)}


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    kind: str
    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str | None = None

    def changes(self) -> list[str]:
        """The keys that changed, as ``key: old -> new`` (values as stored: already redacted)."""
        before, after = self.before or {}, self.after or {}
        return [f"{key}: {_short(before.get(key))} -> {_short(after.get(key))}"
                for key in dict.fromkeys([*before, *after]) if before.get(key) != after.get(key)]

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "at": _iso(self.at), "actor": self.actor, "action": self.action, "kind": self.kind,
                "name": self.name, "before": self.before, "after": self.after, "detail": self.detail}


@dataclass(frozen=True)
class ChannelTest:
    """The outcome of :func:`test_channel`: ``ok``, and one line saying what happened (redacted)."""

    channel: str
    ok: bool
    message: str
    kind: str | None = None  # DeliveryError kind when it failed: connection, http_error, refused, timeout, …


@dataclass(frozen=True)
class RuleCheck:
    """A draft query checked as the configuration checks rules: ``error`` and ``position`` when it fails."""

    ok: bool
    error: str | None = None
    position: int | None = None


@dataclass
class Overview:
    """Both sources at once, merged as the pipeline merges them: for a page that shows everything."""

    settings: Settings
    items: dict[str, list[Item]] = field(default_factory=dict)  # by kind: feed, rule, channel

    @property
    def problems(self) -> list[str]:
        return self.settings.ui_problems


# --- reading ----------------------------------------------------------------------------------------------------


def overview(*, config: str | os.PathLike[str] | None = None, database_url: str | None = None) -> Overview:
    """Every feed, rule and channel, file first then UI, with the merge's verdict on each UI item.

    ConfigError when the file itself cannot be used (pages show its lines); DatabaseNotConfigured or a
    psycopg2 error when the database cannot be read.
    """
    settings = load_settings(config)
    rows = read_ui_rows(database_url)
    merged = merge_ui(settings, rows)
    view = Overview(merged)
    for kind in KINDS:
        plural = _PLURAL[kind]
        items = [Item(kind, model.name, "file", _file_fields(kind, model))
                 for model in getattr(settings, plural)]
        for row in rows[plural]:
            items.append(_item(kind, row, merged))
        view.items[kind] = items
    return view


def list_items(kind: Kind, *, config: str | os.PathLike[str] | None = None,
               database_url: str | None = None) -> list[Item]:
    """The feeds, rules or channels of both sources: the file's first, then the UI's, oldest first."""
    return overview(config=config, database_url=database_url).items[_kind(kind)]


def get_item(kind: Kind, name: str, *, config: str | os.PathLike[str] | None = None,
             database_url: str | None = None) -> Item:
    """One item by name; when both sources have the name, the file's (the one in use). NotFound otherwise."""
    for item in list_items(kind, config=config, database_url=database_url):
        if item.name == name:
            return item
    raise NotFound(f"no {kind} named {name!r}")


_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9 _.:-]+")


def suggest_name(text: str, url: str, taken: Iterable[str]) -> str:
    """A name the configuration accepts (``[A-Za-z0-9][A-Za-z0-9 _.:-]*``, at most 100 characters) made from a
    feed's title, else its site, unique among ``taken`` thanks to a number: "Le Monde – Actualités" becomes
    "Le Monde - Actualites", a second "Le Monde - Actualites 2"."""
    from text_unidecode import unidecode

    taken = set(taken)
    base = " ".join(_NAME_CHARACTERS.sub(" ", unidecode(text or "")).split()).lstrip(" _.:-")[:90].rstrip()
    if not base:
        base = _NAME_CHARACTERS.sub("-", site_of(url)).lstrip(" _.:-")[:90] or "feed"
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base} {number}"
    return name


def check_rule_query(query: str) -> RuleCheck:
    """Check a draft query with the rule parser, for a page to show the error at its position as one types."""
    from newswatch.rules import RuleSyntaxError, compile_rule

    try:
        compile_rule(query)
    except RuleSyntaxError as exc:
        return RuleCheck(False, str(exc), exc.position)
    return RuleCheck(True)


@dataclass(frozen=True)
class RulePreview:
    """What a query would have matched among the articles fetched in the last ``days``: the matched stories
    (newest first, at most the limit asked for; each with its articles' count, title, feeds, languages, last
    article and the terms that matched), totals, and matched articles per language (``?``: undetected)."""

    query: str
    days: int
    scanned: int
    matched_articles: int
    stories: list[dict[str, Any]]
    matched_stories: int
    by_language: dict[str, int]
    # Stories not matched whose articles came within ``watches.NEAR_MISS`` of a meaning term's threshold, nearest
    # first, each with the term and its similarity: what one looks at to tune ``min_similarity``.
    near_misses: list[dict[str, Any]] = field(default_factory=list)
    # Meaning terms that have no vector (a like: naming nothing in the archive; a description the workers failed).
    unresolved: list[str] = field(default_factory=list)
    # The threshold the query's meaning terms were matched at (None: it has none), and how far below it a
    # near-miss may be: what a page or command says beside the similarities.
    min_similarity: float | None = None
    near_miss: float = 0.0


def preview_rule(query: str, *, days: int = 7, limit: int = 50, language: str | None = None,
                 min_similarity: float | None = None, settings: Settings | None = None,
                 database_url: str | None = None) -> RulePreview:
    """Match ``query`` against the stored archive, as the rule engine will match new articles: the engine of
    ``newswatch rules test`` and of a rules page's preview. ``language`` keeps articles of that language only.

    InvalidItem (``field='query'``, ``position``) for a query that does not parse. The descriptions of its
    about-terms are embedded first, in the worker processes (``settings`` sizes them), outside any transaction;
    the articles are then streamed from a read-only transaction (a server-side cursor), never all loaded,
    each with its similarities to the meaning terms computed by pgvector, as match_rules computes them.
    """
    from datetime import UTC, timedelta

    from psycopg2.extras import RealDictCursor

    from newswatch.alerts import watches
    from newswatch.rules import Document, RuleSyntaxError, compile_rule

    try:
        rule = compile_rule(query, min_similarity)
    except RuleSyntaxError as exc:
        raise InvalidItem(f"invalid query: {exc}", [f"query: invalid query: {exc}"], field="query",
                          position=exc.position) from None
    terms = watches.terms_of([rule])
    if any(term.kind == "about" for term in terms.values()):
        from newswatch.stories.grouping import embed_rule_meanings

        embed_rule_meanings(settings or Settings(), [rule], database_url=database_url)
    since = datetime.now(UTC) - timedelta(days=days)
    stories: dict[int, dict[str, Any]] = {}
    near: dict[int, dict[str, Any]] = {}
    by_language: dict[str, int] = {}
    scanned = matched = 0
    conn = db.connect(database_url)
    try:
        conn.set_session(readonly=True)
        with conn, conn.cursor(cursor_factory=RealDictCursor) as plain:
            vectors = watches.vectors(plain, terms)
        lateral = _PREVIEW_MEANINGS if vectors.ready else "LEFT JOIN LATERAL (SELECT NULL::text[] AS keys, " \
                                                          "NULL::float8[] AS sims) s ON true"
        with conn, conn.cursor("rule_preview", cursor_factory=RealDictCursor) as cur:
            cur.itersize = 500
            cur.execute(
                f"WITH {watches.TERMS_CTE} SELECT a.id, a.story_id, a.title, a.body, a.language, a.feed, "
                f"a.fetched_at, s.keys, s.sims FROM articles a {lateral} WHERE a.fetched_at >= %(since)s "
                "AND (%(language)s::text IS NULL OR a.language = %(language)s) ORDER BY a.fetched_at DESC",
                {**watches.terms_params(vectors), "floor": watches.floor([rule], watches.NEAR_MISS),
                 "since": since, "language": language})
            for article in cur:
                scanned += 1
                meanings = tuple(zip(article["keys"] or (), (round(s, 4) for s in article["sims"] or ()),
                                     strict=True))
                document = Document(article["title"], article["body"], article["language"], article["feed"],
                                    meanings=meanings)
                if not rule.matches(document):
                    missed = rule.near_misses(document, watches.NEAR_MISS)
                    best = max((s for _, s in meanings), default=0.0)
                    if missed and best > near.get(article["story_id"], {}).get("best", -1.0):
                        near[article["story_id"]] = {"story": article["story_id"], "title": article["title"],
                                                     "language": article["language"], "near": missed[0],
                                                     "best": best}
                    continue
                matched += 1
                by_language[article["language"] or "?"] = by_language.get(article["language"] or "?", 0) + 1
                story = stories.setdefault(article["story_id"], {
                    "story": article["story_id"], "articles": 0, "title": article["title"], "feeds": set(),
                    "languages": set(), "last_seen": article["fetched_at"], "matched": rule.explain(document)})
                story["articles"] += 1
                story["feeds"].add(article["feed"])
                story["languages"].add(article["language"] or "?")
    finally:
        conn.close()
    rows = [{**story, "feeds": sorted(story["feeds"]), "languages": sorted(story["languages"])}
            for story in stories.values()][:max(0, limit)]
    misses = sorted((row for story_id, row in near.items() if story_id not in stories), key=lambda row: -row["best"])
    return RulePreview(query, days, scanned, matched, rows, len(stories), dict(sorted(by_language.items())),
                       [{key: row[key] for key in ("story", "title", "language", "near")} for row in misses[:limit]],
                       [term.label for term in vectors.missing.values()],
                       rule.min_similarity if terms else None, watches.NEAR_MISS)


# Each article's similarities to the ready meaning terms (``watches.TERMS_CTE``), those worth showing only.
_PREVIEW_MEANINGS = """
LEFT JOIN LATERAL (
    SELECT array_agg(t.key) AS keys, array_agg(1 - (m.embedding <=> t.embedding)) AS sims
    FROM article_meanings m CROSS JOIN terms t
    WHERE m.article_id = a.id AND m.embedding IS NOT NULL AND 1 - (m.embedding <=> t.embedding) >= %(floor)s
) s ON true"""


def audit_log(*, limit: int = 50, kind: Kind | None = None, name: str | None = None,
              before_id: int | None = None, database_url: str | None = None) -> list[AuditEntry]:
    """The latest changes, newest first (``before_id``: the page after the entry with that id)."""
    conditions, params = [], []
    if kind is not None:
        conditions.append("kind = %s")
        params.append(_kind(kind))
    if name is not None:
        conditions.append("name = %s")
        params.append(name)
    if before_id is not None:
        conditions.append("id < %s")
        params.append(before_id)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    with db.transaction(database_url) as cur:
        cur.execute(f"SELECT id, at, actor, action, kind, name, before, after, detail FROM config_audit {where} "
                    "ORDER BY id DESC LIMIT %s", (*params, max(1, min(limit, 1000))))
        return [AuditEntry(**row) for row in cur.fetchall()]


def export_yaml(*, database_url: str | None = None) -> str:
    """The UI-managed part as YAML that can be pasted into the config file.

    Nothing secret is written: a channel URL that has something to hide (what :func:`redact_channel` would
    change) and every ``secret`` become ``${NEWSWATCH_CHANNEL_<NAME>_URL}`` / ``_SECRET`` references, which the
    file expands from the environment; a comment lists them with the redacted URL, to be set before the file
    is used. Once pasted, remove the items from the UI: while both have a name, the file's is used and the
    conflict is reported.
    """
    rows = read_ui_rows(database_url)
    document: dict[str, list[dict[str, Any]]] = {}
    variables: list[str] = []
    for plural in ("feeds", "rules", "channels"):
        items = []
        for row in rows[plural]:
            fields = ui_fields(plural, row)
            if plural == "rules" and not fields.get("channels"):
                fields.pop("channels", None)
            for key, default in (("enabled", True), ("updates", True)):
                if fields.get(key) is default:
                    fields.pop(key)
            if plural == "channels":
                stem = "NEWSWATCH_CHANNEL_" + "".join(c if c.isalnum() else "_" for c in row["name"].upper())
                if fields.get("url") and redact_channel(fields["url"]) != fields["url"]:
                    variables.append(f"{stem}_URL  ({redact_channel(fields['url'])})")
                    fields["url"] = f"${{{stem}_URL}}"
                if fields.get("secret"):
                    variables.append(f"{stem}_SECRET")
                    fields["secret"] = f"${{{stem}_SECRET}}"
            items.append(fields)
        if items:
            document[plural] = items
    header = ["# newswatch: the feeds, rules and channels added from the UI, to paste into the config file.",
              "# Then remove them from the UI: while a name is in both, the file's is used and the other reported."]
    if variables:
        header.append("# Set these environment variables first (the URLs and secrets are not written here):")
        header.extend(f"#   {variable}" for variable in variables)
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False) if document \
        else "{}\n"
    return "\n".join(header) + "\n" + body


# --- changing ---------------------------------------------------------------------------------------------------


def add_feed(name: str, url: str, *, language: str | None = None, interval: int | None = None,
             enabled: bool = True, actor: str, detail: str | None = None,
             config: str | os.PathLike[str] | None = None, database_url: str | None = None) -> Item:
    """Add a feed; NameTaken when a feed of the file or the UI has the name, InvalidItem when it fails."""
    return _add("feed", {"name": name, "url": url, "enabled": enabled, "language": language, "interval": interval},
                actor, detail, config, database_url)


def update_feed(name: str, *, url: str = KEEP, language: str | None = KEEP, interval: int | None = KEEP,
                actor: str, detail: str | None = None, config: str | os.PathLike[str] | None = None,
                database_url: str | None = None) -> Item:
    """Change a UI feed's URL, language or interval (None clears language and interval)."""
    return _update("feed", name, {"url": url, "language": language, "interval": interval}, "update", actor,
                   detail, config, database_url)


def add_rule(name: str, query: str, *, channels: Iterable[str] = (), enabled: bool = True,
             digest: dict[str, Any] | None = None, updates: bool = True, min_similarity: float | None = None,
             actor: str, detail: str | None = None, config: str | os.PathLike[str] | None = None,
             database_url: str | None = None) -> Item:
    """Add a rule; a syntax error is an InvalidItem with ``field='query'`` and its ``position``."""
    return _add("rule", {"name": name, "query": query, "channels": list(channels), "enabled": enabled,
                         "digest": digest, "updates": updates, "min_similarity": min_similarity}, actor, detail,
                config, database_url)


def update_rule(name: str, *, query: str = KEEP, channels: Iterable[str] = KEEP,
                digest: dict[str, Any] | None = KEEP, updates: bool = KEEP, min_similarity: float | None = KEEP,
                actor: str, detail: str | None = None, config: str | os.PathLike[str] | None = None,
                database_url: str | None = None) -> Item:
    """Change a UI rule's query, channels, digest (None: none), updates or min_similarity (None: the default)."""
    changes = {"query": query, "channels": channels if channels is KEEP else list(channels), "digest": digest,
               "updates": updates, "min_similarity": min_similarity}
    return _update("rule", name, changes, "update", actor, detail, config, database_url)


def add_channel(name: str, *, url: str | None = None, connection: str | None = None, secret: str | None = None,
                actor: str, detail: str | None = None, config: str | os.PathLike[str] | None = None,
                database_url: str | None = None) -> Item:
    """Add a channel given by ``url`` (checked with Apprise's parser, nothing sent) or an Airflow ``connection``."""
    return _add("channel", {"name": name, "url": url, "connection": connection, "secret": secret}, actor, detail,
                config, database_url)


def update_channel(name: str, *, url: str | None = KEEP, connection: str | None = KEEP, secret: str | None = KEEP,
                   actor: str, detail: str | None = None, config: str | os.PathLike[str] | None = None,
                   database_url: str | None = None) -> Item:
    """Change a UI channel; a page leaves ``url`` and ``secret`` as KEEP unless the user typed new ones."""
    return _update("channel", name, {"url": url, "connection": connection, "secret": secret}, "update", actor,
                   detail, config, database_url)


def set_enabled(kind: Literal["feed", "rule"], name: str, enabled: bool, *, actor: str, detail: str | None = None,
                config: str | os.PathLike[str] | None = None, database_url: str | None = None) -> Item:
    """Enable or disable a UI feed or rule (channels have no such switch: disable the rules that use one)."""
    if _kind(kind) == "channel":
        raise ConfigRefused("a channel cannot be disabled: disable the rules that alert it, or remove it")
    return _update(kind, name, {"enabled": enabled}, "enable" if enabled else "disable", actor, detail, config,
                   database_url)


def _locked_row(cur, table: str, kind: Kind, name: str, settings: Settings) -> dict:
    """The UI item's row, locked for the change in this transaction; refused when the UI holds no such item."""
    cur.execute(f"SELECT * FROM {table} WHERE name = %s FOR UPDATE", (name,))
    row = cur.fetchone()
    if row is None:
        raise _missing(kind, name, settings)
    return row


def remove(kind: Kind, name: str, *, actor: str, detail: str | None = None,
           config: str | os.PathLike[str] | None = None, database_url: str | None = None) -> None:
    """Remove a UI item. A removed feed stops being polled; its articles and history stay (as for the file).

    InUse for a channel that a UI rule or ``polling.operator_channels`` still names.
    """
    kind = _kind(kind)
    actor = _actor(actor)
    settings = _file_settings(config)
    table = UI_TABLES[_PLURAL[kind]]
    with db.transaction(database_url) as cur:
        row = _locked_row(cur, table, kind, name, settings)
        if kind == "channel":
            cur.execute("SELECT name FROM ui_rules WHERE %s = ANY(channels) ORDER BY name", (name,))
            users = [f"rule {r['name']!r}" for r in cur.fetchall()]
            if name in settings.polling.operator_channels:
                users.append("polling.operator_channels in the file")
            if users:
                raise InUse(f"channel {name!r} is still used by {', '.join(users)}: remove it from them first")
        cur.execute(f"DELETE FROM {table} WHERE name = %s", (name,))
        _audit(cur, actor, "remove", kind, name, _stored_fields(kind, row), None, detail)


def test_channel(name: str, *, config: str | os.PathLike[str] | None = None, database_url: str | None = None,
                 timeout: float | None = None) -> ChannelTest:
    """Send a test message to a channel of either source through the delivery code, and say what happened.

    The channel is read first, the message sent with no transaction open (within ``alerts.send_timeout``,
    or ``timeout``). Never raises for a failed send: ``ok`` is False and ``message`` says why, redacted.
    """
    from newswatch.alerts.delivery import DeliveryError, send_to_channel

    settings = load_settings(config, ui=True, database_url=database_url)
    channel = next((c for c in settings.channels if c.name == name), None)
    if channel is None:
        problem = next((p for p in settings.ui_problems if f"channel {name!r}" in p), None)
        raise NotFound(problem or f"no channel named {name!r}")
    message = TestMessage(channel=name)
    try:
        send_to_channel(channel, message, timeout=timeout or settings.alerts.send_timeout)
    except DeliveryError as exc:
        return ChannelTest(name, False, f"{name}: {exc.kind}: {exc.message}", exc.kind)
    except Exception as exc:  # noqa: BLE001 - a test reports, it never crashes the page or the command
        return ChannelTest(name, False, f"{name}: {type(exc).__name__}", "internal")
    target = "Airflow connection " + repr(channel.connection) if channel.connection else redact_channel(channel.url)
    return ChannelTest(name, True, f"{name}: test message accepted by {target}")


@dataclass(frozen=True)
class TestMessage:
    """The message :func:`test_channel` sends: says what it is, so nobody acts on it."""

    __test__ = False  # not a pytest test class, whatever its name

    channel: str
    idempotency_key: str = field(default_factory=lambda: "test-" + os.urandom(8).hex())

    @property
    def subject(self) -> str:
        return f"[newswatch] test message for channel {self.channel}"

    def text(self) -> str:
        return (f"This is a test message from newswatch for the channel {self.channel!r}: alerts of the rules "
                f"that name it will arrive here. Nothing needs doing.\n\nTest-Id: {self.idempotency_key}")

    def html(self) -> str:
        from html import escape

        return f"<p>{escape(self.text())}</p>"

    def payload(self) -> dict[str, Any]:
        return {"type": "test", "subject": self.subject, "channel": self.channel, "text": self.text(),
                "idempotency_key": self.idempotency_key}


# --- internals --------------------------------------------------------------------------------------------------


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ConfigRefused(f"unknown kind {kind!r}: one of feed, rule, channel")
    return kind  # type: ignore[return-value]


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise ConfigRefused("a change needs an actor (who makes it)")
    return actor[:MAX_ACTOR]


_file_cache: dict[tuple[Any, ...], Settings] = {}


def _file_settings(config: str | os.PathLike[str] | None) -> Settings:
    """The file's settings, read again only when the file or the environment changed (an OPML import adds
    hundreds of feeds, each checked against the file's names)."""
    from newswatch.config import config_path

    path = os.path.abspath(config or config_path())
    try:
        stat = os.stat(path)
        key: tuple[Any, ...] = (path, stat.st_mtime_ns, stat.st_size, hash(frozenset(os.environ.items())))
    except OSError:
        return load_settings(path)  # the ConfigError says why
    settings = _file_cache.get(key)
    if settings is None:
        settings = load_settings(path)
        _file_cache.clear()
        _file_cache[key] = settings
    return settings


def _missing(kind: str, name: str, settings: Settings) -> ConfigRefused:
    """FileManaged when the file declares ``name``, NotFound otherwise."""
    if any(item.name == name for item in getattr(settings, _PLURAL[kind])):
        return FileManaged(f"{kind} {name!r} is declared in the config file: change it there (items of the file "
                           "are read-only here)")
    return NotFound(f"no {kind} named {name!r} was added from the UI")


def validate(kind: Kind, fields: dict[str, Any]) -> Any:
    """The item's model (``Feed``, ``Rule``, ``Channel``) if ``fields`` pass the file's checks, else InvalidItem.

    For a page or an import to check before saving; the add and update functions check again.
    """
    return _validated(_kind(kind), fields)


def _validated(kind: str, fields: dict[str, Any]) -> Any:
    """The item's model, or InvalidItem with every problem; a rule's syntax error also gives its position."""
    fields = {key: value for key, value in fields.items() if value is not None or key in ("enabled", "updates")}
    name = fields.get("name")
    if kind == "rule" and isinstance(fields.get("query"), str):
        check = check_rule_query(fields["query"])
        if not check.ok:
            raise InvalidItem(f"rule {name!r}: invalid query: {check.error}", [f"query: invalid query: {check.error}"],
                              field="query", position=check.position)
    model, problems = validate_ui_item(_PLURAL[kind], fields)
    if model is None:
        first = problems[0] if problems else "invalid"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        located = first.split(":", 1)[0] if ":" in first else None
        raise InvalidItem(f"{kind} {name!r}: {first}{more}", problems,
                          field=located if located in _COLUMNS[kind] else None)
    return model


def _check_references(cur: Any, kind: str, model: Any, settings: Settings) -> None:
    """A rule names existing channels (of the file or the UI), as the file's rules must."""
    if kind != "rule" or not model.channels:
        return
    cur.execute("SELECT name FROM ui_channels")
    known = {row["name"] for row in cur.fetchall()} | {channel.name for channel in settings.channels}
    missing = [name for name in model.channels if name not in known]
    if missing:
        raise InvalidItem(f"rule {model.name!r}: unknown channel(s) {', '.join(map(repr, missing))}",
                          [f"channels: unknown channel {name!r}" for name in missing], field="channels")


def _row_values(kind: str, model: Any) -> dict[str, Any]:
    """The columns of the model's row."""
    values = {}
    for key, column in _COLUMNS[kind].items():
        value = getattr(model, key)
        if key == "digest" and value is not None:
            value = psycopg2.extras.Json(value.model_dump(exclude_none=True))
        values[column] = value
    return values


def _add(kind: Kind, fields: dict[str, Any], actor: str, detail: str | None,
         config: str | os.PathLike[str] | None, database_url: str | None) -> Item:
    actor = _actor(actor)
    model = _validated(kind, fields)
    settings = _file_settings(config)  # the file's names: read before the transaction
    if any(item.name == model.name for item in getattr(settings, _PLURAL[kind])):
        raise NameTaken(f"{kind} name {model.name!r} is taken by the config file: choose another name")
    table = UI_TABLES[_PLURAL[kind]]
    values = _row_values(kind, model)
    columns = [*values, "created_by", "updated_by"]
    with db.transaction(database_url) as cur:
        _check_references(cur, kind, model, settings)
        cur.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
            "ON CONFLICT (name) DO NOTHING RETURNING *",
            (*values.values(), actor, actor))
        row = cur.fetchone()
        if row is None:
            cur.execute(f"SELECT created_by, created_at FROM {table} WHERE name = %s", (model.name,))
            other = cur.fetchone()
            who = f" by {other['created_by']} on {other['created_at']:%Y-%m-%d}" if other else ""
            raise NameTaken(f"{kind} name {model.name!r} is taken: it was added from the UI{who}")
        _audit(cur, actor, "add", kind, model.name, None, _stored_fields(kind, row), detail)
    return _item(kind, _selected(kind, row), None)


def _update(kind: Kind, name: str, changes: dict[str, Any], action: str, actor: str, detail: str | None,
            config: str | os.PathLike[str] | None, database_url: str | None) -> Item:
    kind = _kind(kind)
    actor = _actor(actor)
    settings = _file_settings(config)
    table = UI_TABLES[_PLURAL[kind]]
    with db.transaction(database_url) as cur:
        row = _locked_row(cur, table, kind, name, settings)
        before = _stored_fields(kind, row)
        fields = {**before, **{key: value for key, value in changes.items() if value is not KEEP}}
        if kind == "channel":  # a channel has one target: a new URL replaces a connection and the other way round
            if changes.get("url") not in (KEEP, None) and changes.get("connection") is KEEP:
                fields["connection"] = None
            if changes.get("connection") not in (KEEP, None) and changes.get("url") is KEEP:
                fields["url"] = None
        model = _validated(kind, fields)
        _check_references(cur, kind, model, settings)
        values = _row_values(kind, model)
        values.pop("name")
        cur.execute(
            f"UPDATE {table} SET {', '.join(f'{column} = %s' for column in values)}, updated_by = %s, "
            "updated_at = now() WHERE name = %s RETURNING *", (*values.values(), actor, name))
        row = cur.fetchone()
        after = _stored_fields(kind, row)
        if after != before:
            _audit(cur, actor, action, kind, name, before, after, detail)
    return _item(kind, _selected(kind, row), None)


def _stored_fields(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row's model fields, secrets included (never leaves this module but through _redacted)."""
    return {key: row[column] for key, column in _COLUMNS[kind].items()}


def _selected(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A ``RETURNING *`` row in the shape read_ui_rows gives (model field names plus who and when)."""
    return {**_stored_fields(kind, row), **{key: row[key] for key in ("created_by", "created_at", "updated_by",
                                                                       "updated_at")}}


def _file_fields(kind: str, model: Any) -> dict[str, Any]:
    """An item of the file as its YAML says it (``${VAR}`` expanded), channel URL and secret redacted."""
    fields = model.model_dump(exclude_none=True)
    return _redacted(kind, fields) if kind == "channel" else fields


def _item(kind: Kind, row: dict[str, Any], merged: Settings | None) -> Item:
    plural = _PLURAL[kind]
    fields = ui_fields(plural, row)
    if kind == "channel":
        fields = _redacted(kind, fields)
    if isinstance(fields.get("digest"), dict):
        fields["digest"] = {key: value for key, value in fields["digest"].items() if value is not None}
    problem = None
    if merged is not None:
        problem = merged.ui_problem(plural, row["name"])
    return Item(kind, row["name"], "ui", fields, problem, row.get("created_by"), row.get("created_at"),
                row.get("updated_by"), row.get("updated_at"))


def _redacted(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` safe to show or keep in the audit: URLs redacted, a secret as ``…``."""
    shown = dict(fields)
    if shown.get("url"):
        shown["url"] = redact_channel(shown["url"]) if kind == "channel" else redact(shown["url"])
    if shown.get("secret"):
        shown["secret"] = "…"
    return shown


def _audit(cur: Any, actor: str, action: str, kind: str, name: str, before: dict[str, Any] | None,
           after: dict[str, Any] | None, detail: str | None) -> None:
    """One ``config_audit`` row. A URL or secret that changed where its redacted form did not (a new token, a
    new query string) is marked ``(changed)`` in ``after``, so the change shows without showing the value."""
    def document(fields: dict[str, Any] | None) -> Any:
        if fields is None:
            return None
        return psycopg2.extras.Json(json.loads(json.dumps(fields, default=str)))

    shown_before = _redacted(kind, before) if before is not None else None
    shown_after = _redacted(kind, after) if after is not None else None
    if before is not None and after is not None and shown_before is not None and shown_after is not None:
        for key in ("url", "secret"):
            if before.get(key) != after.get(key) and shown_before.get(key) == shown_after.get(key):
                shown_after[key] = f"{shown_after.get(key)} (changed)"
    before, after = shown_before, shown_after

    cur.execute("INSERT INTO config_audit (actor, action, kind, name, before, after, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (actor, action, kind, name, document(before), document(after), detail))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:79] + "…"

