"""The ``newswatch`` command line: run a cycle, check the config, manage the database, look around, and add,
change or remove the feeds, rules and channels that are not in the config file (``newswatch.configstore``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

import psycopg2

from newswatch import db, metrics, search
from newswatch.config import (
    UI_KINDS,
    ConfigError,
    Settings,
    config_path,
    config_warnings,
    load_settings,
    merge_ui,
    read_ui_rows,
)
from newswatch.output import print_json, print_rows, print_table
from newswatch.urls import redact

EXIT_OK = 0
EXIT_PROBLEMS_FOUND = 1  # check-config: the file, or the UI-managed part, has problems (listed one per line)
EXIT_BAD_INPUT = 2  # invalid configuration, query or arguments; no database configured
EXIT_DATABASE_UNAVAILABLE = 3  # PostgreSQL could not be reached, or went away during the command
EXIT_CODES = f"""exit codes:
  {EXIT_OK}  done (poll: even when some feeds or deliveries failed; they are recorded and retried)
  {EXIT_PROBLEMS_FOUND}  check-config found problems in the file or in what was added from the UI
  {EXIT_BAD_INPUT}  invalid configuration, query or arguments, a change refused (such as one to an item of the
     file), or no database configured
  {EXIT_DATABASE_UNAVAILABLE}  the database (for pool: Airflow's) could not be reached or went away; run again
"""


def cmd_check_config(args: argparse.Namespace) -> int:
    """Check the file, then what was added from the UI against it (when a database is configured)."""
    path = args.config or str(config_path())
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"{exc.path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_PROBLEMS_FOUND
    for warning in config_warnings(settings) + _description_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{path}: OK ({len(settings.enabled_feeds)} enabled feeds, {len(settings.rules)} rules, "
          f"{len(settings.channels)} channels)")
    try:
        rows = read_ui_rows()
    except db.DatabaseNotConfigured:
        print("warning: what was added from the UI is not checked: no database configured (set "
              f"{db.DATABASE_URL_ENV}, or start the embedded one with `newswatch db start`)", file=sys.stderr)
        return 0
    merged = merge_ui(settings, rows)
    meaning_problems = _check_meaning_terms(merged)
    if meaning_problems:
        print(f"meaning terms: {len(meaning_problems)} problem(s)", file=sys.stderr)
        for problem in meaning_problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_PROBLEMS_FOUND
    if merged.ui_problems:
        print(f"UI-managed part (database): {len(merged.ui_problems)} problem(s)", file=sys.stderr)
        for problem in merged.ui_problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_PROBLEMS_FOUND
    added = {kind: sum(1 for item in getattr(merged, kind) if merged.source(kind, item.name) == "ui")
             for kind in UI_KINDS}
    print(f"UI-managed part (database): OK ({added['feeds']} feeds, {added['rules']} rules, "
          f"{added['channels']} channels added from the UI)")
    return 0


def _description_warnings(settings: Settings) -> list[str]:
    """About-terms written in a language the meaning model does not read: they would match nothing."""
    from newswatch.ingest.language import detect_language
    from newswatch.stories.meaning import LANGUAGES

    warnings = []
    for rule in settings.rules:
        for term in rule.compiled().meanings:
            language = detect_language(term.value) if term.kind == "about" else None
            if language is not None and language not in LANGUAGES:
                known = ", ".join(sorted(LANGUAGES))
                warnings.append(f"rules: {rule.name!r}: {term.label} reads as {language!r}, a language the meaning "
                                f"model does not read: describe the story in one it does ({known})")
    return warnings


def _check_meaning_terms(settings: Settings) -> list[str]:
    """Meaning terms against the archive: a like: must name a story or article that has a meaning; an about:
    description not embedded yet is only noted (the next cluster_stories run embeds it)."""
    from newswatch.alerts import watches

    rules = [(rule.name, rule.compiled()) for rule in settings.rules if rule.enabled]
    with db.transaction() as cur:
        vectors = watches.vectors(cur, watches.terms_of(compiled for _, compiled in rules))
    problems = []
    for name, compiled in rules:
        for term in compiled.meanings:
            if term.key not in vectors.missing:
                continue
            if term.kind == "like":
                problems.append(f"rule {name!r}: {term.label} names no story or article with a meaning in the archive "
                                "(a story id of `newswatch stories`, or the URL of a fetched article in a language "
                                "the model reads)")
            else:
                print(f"note: rule {name!r}: {term.label} is embedded by the next cluster_stories run (until then "
                      "the rule holds the articles it cannot judge)", file=sys.stderr)
    return problems


def cmd_poll(args: argparse.Namespace) -> int:
    from newswatch.pipeline import run_cycle

    try:
        settings = load_settings(args.config, ui=True)
    except ConfigError as exc:
        return _config_failure(exc)
    # With --json, stdout carries only the JSON document; progress goes to stderr.
    stream = sys.stderr if args.json else sys.stdout
    totals = run_cycle(settings, progress=lambda line: print(line, file=stream), force=not args.due)
    if args.json:
        print(json.dumps(totals, indent=2, sort_keys=True))
    return 0


def _config_failure(exc: ConfigError) -> int:
    print(f"{exc.path}: invalid configuration", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = db.migrate()
    print("applied: " + ", ".join(applied) if applied else "schema up to date")
    return 0


def cmd_pool(args: argparse.Namespace) -> int:
    """Create or resize the Airflow pool of the mapped tasks to ``polling.max_parallel_tasks``."""
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _config_failure(exc)
    slots = settings.polling.max_parallel_tasks
    try:
        from newswatch.airflow_pool import POOL, ensure_pool

        before, after = ensure_pool(slots)
    except Exception as exc:  # noqa: BLE001 - Airflow missing, not migrated or unreachable: one line
        print(f"newswatch: cannot set the Airflow pool (is Airflow configured and its database migrated?): "
              f"{type(exc).__name__}: {db.first_line(exc)[:300]}", file=sys.stderr)
        return EXIT_DATABASE_UNAVAILABLE
    change = "created" if before is None else ("unchanged" if before == after else f"resized from {before}")
    print(f"Airflow pool {POOL}: {after} slots ({change})")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    if args.action == "start":
        url = db.start_embedded()
        db.migrate(url)
        print(url)
    elif args.action == "stop":
        print("stopped" if db.stop_embedded() else "not running")
    else:
        print(db.database_url())
    return 0


def cmd_feeds(args: argparse.Namespace) -> int:
    """Feed health, failing feeds first: state, failures, last error, last success, next poll, interval."""
    from newswatch.ingest.schedule import humanize

    with db.transaction() as cur:
        cur.execute(
            """
            SELECT id, name,
                   CASE WHEN NOT enabled THEN 'disabled (config)'
                        WHEN disabled_reason IS NOT NULL THEN 'disabled (' || disabled_reason || ')'
                        WHEN consecutive_failures > 0 THEN 'failing'
                        WHEN last_success_at IS NULL THEN 'new' ELSE 'ok' END AS state,
                   consecutive_failures AS failures, last_error_kind AS error_kind, last_error AS error,
                   last_success_at AS last_success, last_polled_at AS last_polled,
                   CASE WHEN enabled AND disabled_reason IS NULL THEN next_poll_at END AS next_poll,
                   interval_seconds, server_min_interval, last_status, url, config_url,
                   permanent_redirect_url, redirect_count, disabled_reason, disabled_at
            FROM feeds
            ORDER BY CASE WHEN NOT enabled OR disabled_reason IS NOT NULL THEN 3
                          WHEN consecutive_failures > 0 THEN 0
                          WHEN last_success_at IS NULL THEN 1 ELSE 2 END,
                     consecutive_failures DESC, name
            """
        )
        rows = cur.fetchall()
        failures = metrics.entry_failures(cur)
    for row in rows:
        row["interval"] = humanize(row["interval_seconds"])
        entries = failures.get(row.pop("id"), {})
        row["articles_failed"], row["article_error"] = entries.get("failed", 0), entries.get("error")
    print_rows(rows, ["name", "state", "failures", "error_kind", "error", "articles_failed", "article_error",
                      "last_success", "next_poll", "interval", "url"], args.json)
    return 0


def cmd_stories(args: argparse.Namespace) -> int:
    with db.transaction() as cur:
        cur.execute(
            "SELECT id, title, article_count AS articles, languages, feeds, first_seen_at AS first_seen, "
            "last_seen_at AS last_seen FROM stories ORDER BY last_seen_at DESC LIMIT %s",
            (args.limit,),
        )
        rows = cur.fetchall()
    print_rows(rows, ["id", "articles", "languages", "feeds", "last_seen", "title"], args.json)
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    with db.transaction() as cur:
        cur.execute(
            "SELECT a.id, a.rule, a.story_id AS story, a.channel, a.status, a.attempts, a.created_at AS created, "
            "a.sent_at AS sent, a.last_error AS error, s.title FROM alerts a JOIN stories s ON s.id = a.story_id "
            "ORDER BY a.created_at DESC LIMIT %s",
            (args.limit,),
        )
        rows = cur.fetchall()
    print_rows(rows, ["id", "rule", "story", "channel", "status", "attempts", "created", "sent", "error", "title"],
            args.json)
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    """Show what a configured rule (of the file or the UI), or a draft query, would have matched in the archive,
    with the similarity of each meaning match and the near-misses just below the threshold."""
    from newswatch.configstore import InvalidItem, preview_rule

    query, settings, min_similarity = args.rule, None, args.min_similarity
    try:
        settings = load_settings(args.config, ui=True)
        configured = next((rule for rule in settings.rules if rule.name == args.rule), None)
        if configured is not None:
            query = configured.query
            if min_similarity is None:
                min_similarity = configured.min_similarity
    except ConfigError:
        configured = None
    try:
        preview = preview_rule(query, days=args.days, limit=args.limit, min_similarity=min_similarity,
                               settings=settings)
    except InvalidItem as exc:
        print(f"newswatch: {exc}", file=sys.stderr)
        print(f"  {query}\n  {' ' * (exc.position or 0)}^", file=sys.stderr)
        return EXIT_BAD_INPUT
    for term in preview.unresolved:
        print(f"warning: {term} has no vector, so it matches nothing (see docs/rules.md)", file=sys.stderr)
    source = f"rule {args.rule!r}" if configured else "draft query"
    if args.json:  # the matched stories, then the near-misses marked as such
        print_json([*preview.stories, *({**row, "near_miss": True} for row in preview.near_misses)])
        return 0
    print(f"{source}: {preview.matched_stories} stories ({preview.matched_articles} articles) "
          f"matched among {preview.scanned} articles of the last {args.days} days"
          + (f" (meaning terms at min_similarity {preview.min_similarity:.2f})"
             if preview.min_similarity is not None else ""))
    print_rows(preview.stories, ["story", "articles", "languages", "feeds", "last_seen", "title", "matched"], False)
    if preview.near_misses:
        print(f"\nnear-misses (within {preview.near_miss:.2f} below the threshold; "
              "lower min_similarity to include them):")
        print_rows(preview.near_misses, ["story", "language", "title", "near"], False)
    return 0


# --- the configuration added from the UI: feeds, rules, channels (newswatch.configstore) -------------------------

CONFIG_HELP = "config file (default: $NEWSWATCH_CONFIG or config/newswatch.yaml)"


def _actor() -> str:
    """Who makes a change from the command line, for the audit: the system user, marked as the CLI."""
    import getpass

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (a container without passwd entry)
        user = f"uid {os.getuid()}"
    return f"{user} (cli)"


def _managing(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A configuration command: schema up to date first, and a refusal or a broken file as one line and exit 2."""
    from newswatch.configstore import ConfigRefused
    from newswatch.opml import OpmlError

    def run(args: argparse.Namespace) -> int:
        try:
            db.migrate()
            return command(args)
        except ConfigRefused as exc:
            print(f"newswatch: {exc}", file=sys.stderr)
            query = getattr(args, "query", None)
            if exc.position is not None and isinstance(query, str):
                print(f"  {query}\n  {' ' * exc.position}^", file=sys.stderr)
            return EXIT_BAD_INPUT
        except ConfigError as exc:
            return _config_failure(exc)
        except OpmlError as exc:
            print(f"newswatch: {getattr(args, 'file', 'OPML')}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as exc:
            print(f"newswatch: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_BAD_INPUT

    return run


def _print_items(kind: str, args: argparse.Namespace, columns: list[str]) -> int:
    from newswatch import configstore

    rows = [item.public() for item in configstore.list_items(kind, config=args.config)]
    print_rows(rows, columns, args.json)
    return 0


def cmd_feeds_list(args: argparse.Namespace) -> int:
    return _print_items("feed", args, ["name", "source", "enabled", "language", "interval", "url", "created_by",
                                       "problem"])


def cmd_feeds_add(args: argparse.Namespace) -> int:
    """Check the URL on the spot (or find the site's feed), show what it holds, then add it."""
    from newswatch import configstore
    from newswatch.ingest import discovery

    url, title = args.url, ""
    if not args.no_check:
        check = discovery.check_feed(args.url, load_settings(args.config).network)
        if not check.ok:
            print(f"newswatch: {check.summary()} (add it anyway with --no-check)", file=sys.stderr)
            return EXIT_BAD_INPUT
        url, title = check.url or args.url, check.title
        print(check.summary())
        for entry in check.entries:
            when = entry.published.strftime("%Y-%m-%d") if entry.published else "no date"
            print(f"  {when}  {_one_line(entry.title)}")
        others = [candidate.url for candidate in check.candidates if candidate.url != url]
        if others:
            print("the page also advertises: " + ", ".join(redact(other) for other in others))
    taken = [item.name for item in configstore.list_items("feed", config=args.config)]
    name = args.name or configstore.suggest_name(title, url, taken)
    item = configstore.add_feed(name, url, language=args.language, interval=args.interval,
                                enabled=not args.disabled, actor=_actor(), config=args.config)
    print(f"added feed {item.name!r}: {redact(url)}" + ("" if item.enabled else " (disabled)"))
    return 0


def cmd_feeds_edit(args: argparse.Namespace) -> int:
    from newswatch import configstore
    from newswatch.configstore import KEEP

    language = None if args.clear_language else (args.language if args.language is not None else KEEP)
    interval = None if args.clear_interval else (args.interval if args.interval is not None else KEEP)
    item = configstore.update_feed(args.name, url=args.url if args.url is not None else KEEP, language=language,
                                   interval=interval, actor=_actor(), config=args.config)
    print(f"feed {item.name!r}: {_describe(item.public(), ['url', 'language', 'interval', 'enabled'])}")
    return 0


def _switch(kind: str, enabled: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from newswatch import configstore

        configstore.set_enabled(kind, args.name, enabled, actor=_actor(), config=args.config)
        print(f"{kind} {args.name!r} {'enabled' if enabled else 'disabled'}")
        return 0

    return run


def _remover(kind: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from newswatch import configstore

        configstore.remove(kind, args.name, actor=_actor(), config=args.config)
        kept = " (its articles and history stay)" if kind == "feed" else ""
        print(f"removed {kind} {args.name!r}{kept}")
        return 0

    return run


def cmd_feeds_import(args: argparse.Namespace) -> int:
    """Add the feeds of an OPML file; one line per outline: added, skipped or refused, and why."""
    from pathlib import Path

    from newswatch import opml

    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    source = "stdin" if args.file == "-" else Path(args.file).name
    report = opml.import_opml(data, actor=_actor(), source=source, dry_run=args.dry_run, config=args.config)
    if args.json:
        print_json({"title": report.title, "dry_run": report.dry_run,
                    "outlines": [vars(line) for line in report.lines]})
        return 0
    for line in report.lines:
        print(_one_line(str(line)))
    print(f"{source}: {report.summary()}")
    return 0


def cmd_feeds_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from newswatch import opml

    settings = load_settings(args.config, ui=True)
    feeds = opml.configured_feeds(settings, args.source)
    data = opml.export_opml(feeds)
    if args.file in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(args.file).write_bytes(data)
        print(f"wrote {len(feeds)} feeds to {args.file}", file=sys.stderr)
    return 0


def cmd_rules_list(args: argparse.Namespace) -> int:
    return _print_items("rule", args, ["name", "source", "enabled", "channels", "query", "created_by", "problem"])


def _digest(args: argparse.Namespace) -> dict | None:
    if getattr(args, "digest_every", None):
        return {"every": args.digest_every}
    if getattr(args, "digest_at", None):
        return {"at": args.digest_at, "timezone": args.timezone or "UTC"}
    return None


def cmd_rules_add(args: argparse.Namespace) -> int:
    from newswatch import configstore

    item = configstore.add_rule(args.name, args.query, channels=args.channel or [], enabled=not args.disabled,
                                digest=_digest(args), updates=not args.no_updates, actor=_actor(),
                                config=args.config)
    print(f"added rule {item.name!r}" + (f" alerting {', '.join(item.fields['channels'])}"
                                          if item.fields.get("channels") else " (no channel: it alerts nobody)"))
    return 0


def cmd_rules_edit(args: argparse.Namespace) -> int:
    from newswatch import configstore
    from newswatch.configstore import KEEP

    channels = [] if args.no_channels else (args.channel if args.channel else KEEP)
    digest = None if args.no_digest else (_digest(args) or KEEP)
    updates = KEEP if args.updates is None else args.updates == "on"
    item = configstore.update_rule(args.name, query=args.query if args.query is not None else KEEP,
                                   channels=channels, digest=digest, updates=updates, actor=_actor(),
                                   config=args.config)
    print(f"rule {item.name!r}: {_describe(item.public(), ['query', 'channels', 'digest', 'updates', 'enabled'])}")
    return 0


def cmd_channels_list(args: argparse.Namespace) -> int:
    return _print_items("channel", args, ["name", "source", "url", "connection", "secret", "created_by",
                                          "problem"])


def _secret_input(value: str | None, what: str) -> str | None:
    """``-`` reads the value from the first line of stdin, so it stays out of the shell history and ``ps``."""
    if value != "-":
        return value
    line = sys.stdin.readline().strip()
    if not line:
        raise OSError(f"no {what} on standard input")
    return line


def cmd_channels_add(args: argparse.Namespace) -> int:
    from newswatch import configstore

    secret = os.environ.get(args.secret_env) if args.secret_env else None
    if args.secret_env and secret is None:
        print(f"newswatch: environment variable {args.secret_env} is not set", file=sys.stderr)
        return EXIT_BAD_INPUT
    item = configstore.add_channel(args.name, url=_secret_input(args.url, "channel URL"),
                                   connection=args.connection, secret=secret, actor=_actor(), config=args.config)
    target = item.fields.get("url") or f"Airflow connection {item.fields.get('connection')!r}"
    print(f"added channel {item.name!r}: {target}")
    return 0


def cmd_channels_test(args: argparse.Namespace) -> int:
    """Send a test message through the delivery code; exit 1 when the channel did not take it."""
    from newswatch import configstore

    outcome = configstore.test_channel(args.name, config=args.config)
    print(outcome.message, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else EXIT_PROBLEMS_FOUND


def cmd_config_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from newswatch import configstore

    text = configstore.export_yaml()
    if args.file in (None, "-"):
        print(text, end="")
    else:
        Path(args.file).write_text(text, encoding="utf-8")
        print(f"wrote the UI-managed part to {args.file}", file=sys.stderr)
    return 0


def cmd_config_audit(args: argparse.Namespace) -> int:
    from newswatch import configstore

    entries = configstore.audit_log(limit=args.limit, kind=args.kind, name=args.name)
    if args.json:
        print_json([entry.public() for entry in entries])
        return 0
    rows = [{"at": entry.at, "actor": entry.actor, "action": entry.action, "kind": entry.kind, "name": entry.name,
             "changes": "; ".join(entry.changes()) if entry.action in ("update",) else (entry.detail or "")}
            for entry in entries]
    print_table(rows, ["at", "actor", "action", "kind", "name", "changes"], max_width=100)
    return 0


def _describe(fields: dict, keys: list[str]) -> str:
    return ", ".join(f"{key} {fields.get(key) if fields.get(key) not in (None, []) else '-'}" for key in keys)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def _add_management_parsers(sub: argparse._SubParsersAction, feeds: argparse.ArgumentParser,
                            rules_sub: argparse._SubParsersAction) -> None:
    """``feeds …``, ``rules …``, ``channels …`` and ``config …``: the part of the configuration kept in the
    database. Items of the config file are read-only here."""
    feeds_sub = feeds.add_subparsers(dest="feeds_command", metavar="{list,add,edit,remove,enable,disable,"
                                     "import-opml,export-opml}", help="without one: feed health")

    def command(parent, name: str, func, text: str, *, json_output: bool = False) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=text)
        parser.add_argument("--config", help=CONFIG_HELP)
        if json_output:
            parser.add_argument("--json", action="store_true", help="JSON instead of a table")
        parser.set_defaults(func=_managing(func))
        return parser

    command(feeds_sub, "list", cmd_feeds_list, "configured feeds, of the file and added from the UI",
            json_output=True)
    add = command(feeds_sub, "add", cmd_feeds_add, "add a feed by its URL or a site's URL, checked on the spot")
    add.add_argument("url", help="the feed's URL, or a site's page that advertises its feed")
    add.add_argument("--name", help="default: from the feed's title")
    add.add_argument("--language", help="the language the feed is expected in (a hint: en, fr, …)")
    add.add_argument("--interval", type=int, help="seconds between polls instead of the adaptive estimate")
    add.add_argument("--disabled", action="store_true", help="add it without polling it yet")
    add.add_argument("--no-check", action="store_true", help="add it without fetching it first")
    edit = command(feeds_sub, "edit", cmd_feeds_edit, "change a feed added from the UI")
    edit.add_argument("name")
    edit.add_argument("--url")
    edit.add_argument("--language")
    edit.add_argument("--clear-language", action="store_true")
    edit.add_argument("--interval", type=int)
    edit.add_argument("--clear-interval", action="store_true", help="back to the adaptive estimate")
    for name, func, text in (("remove", _remover("feed"), "remove a feed added from the UI (history stays)"),
                             ("enable", _switch("feed", True), "poll a feed added from the UI again"),
                             ("disable", _switch("feed", False), "stop polling a feed added from the UI")):
        command(feeds_sub, name, func, text).add_argument("name")
    importer = command(feeds_sub, "import-opml", cmd_feeds_import, "add the feeds of an OPML file (one report "
                       "line per outline)", json_output=True)
    importer.add_argument("file", help="the OPML file, or - for standard input")
    importer.add_argument("--dry-run", action="store_true", help="report what would happen, change nothing")
    exporter = command(feeds_sub, "export-opml", cmd_feeds_export, "write the configured feeds as OPML 2.0")
    exporter.add_argument("file", nargs="?", help="default: standard output")
    exporter.add_argument("--source", choices=["all", "file", "ui"], default="all",
                          help="the feeds of both sources (default), of the file, or added from the UI")

    command(rules_sub, "list", cmd_rules_list, "configured rules, of the file and added from the UI",
            json_output=True)
    for name, func, text in (("add", cmd_rules_add, "add a rule (checked like the file's)"),
                             ("edit", cmd_rules_edit, "change a rule added from the UI")):
        parser = command(rules_sub, name, func, text)
        parser.add_argument("name")
        if name == "add":
            parser.add_argument("query", help="the rule, in the language of docs/rules.md")
            parser.add_argument("--disabled", action="store_true")
            parser.add_argument("--no-updates", action="store_true", help="no update when the story grows")
        else:
            parser.add_argument("--query")
            parser.add_argument("--no-channels", action="store_true", help="alert nobody (keep the rule)")
            parser.add_argument("--no-digest", action="store_true", help="one alert per story again")
            parser.add_argument("--updates", choices=["on", "off"])
        parser.add_argument("--channel", action="append", help="a channel to alert (repeat for several)")
        schedule = parser.add_mutually_exclusive_group()
        schedule.add_argument("--digest-every", metavar="PERIOD", help="one digest per period: 15m, 1h, 1d")
        schedule.add_argument("--digest-at", metavar="HH:MM", help="one digest a day at this time")
        parser.add_argument("--timezone", help="of --digest-at (default UTC)")
    for name, func, text in (("remove", _remover("rule"), "remove a rule added from the UI"),
                             ("enable", _switch("rule", True), "match a rule added from the UI again"),
                             ("disable", _switch("rule", False), "stop matching a rule added from the UI")):
        command(rules_sub, name, func, text).add_argument("name")

    channels = sub.add_parser("channels", help="where alerts go: list, add, remove, test")
    channels_sub = channels.add_subparsers(dest="channels_command", required=True)
    command(channels_sub, "list", cmd_channels_list, "configured channels (URLs redacted)", json_output=True)
    add = command(channels_sub, "add", cmd_channels_add, "add a channel: an Apprise URL, webhook+https://… or "
                  "jsonl://PATH, or an Airflow connection")
    add.add_argument("name")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("url", nargs="?", help="the URL, or - to read it from standard input (keeps tokens out of "
                        "the shell history)")
    target.add_argument("--connection", help="an Airflow connection id holding the URL")
    add.add_argument("--secret-env", metavar="VAR", help="HMAC key of a webhook+https:// channel, read from this "
                     "environment variable")
    command(channels_sub, "remove", _remover("channel"), "remove a channel added from the UI").add_argument("name")
    command(channels_sub, "test", cmd_channels_test, "send a test message to a channel (exit 1 if refused)"
            ).add_argument("name")

    config = sub.add_parser("config", help="the part of the configuration added from the UI")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    export = command(config_sub, "export", cmd_config_export, "write the UI-managed part as YAML for the file")
    export.add_argument("file", nargs="?", help="default: standard output")
    audit = command(config_sub, "audit", cmd_config_audit, "recent changes: who, when, what", json_output=True)
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--kind", choices=["feed", "rule", "channel"])
    audit.add_argument("--name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newswatch", description="Scheduled news monitoring.", epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    poll = sub.add_parser("poll", help="run one full cycle now over all enabled feeds")
    poll.add_argument("--config", help="config file (default: $NEWSWATCH_CONFIG or config/newswatch.yaml)")
    poll.add_argument("--json", action="store_true", help="print the run's counts as JSON")
    poll.add_argument("--due", action="store_true",
                      help="poll only the feeds that are due, as the scheduled DAG does (default: all enabled feeds)")
    poll.set_defaults(func=cmd_poll)

    check = sub.add_parser("check-config", help="validate the config and print every problem")
    check.add_argument("config", nargs="?", help="config file (default: $NEWSWATCH_CONFIG or config/newswatch.yaml)")
    check.set_defaults(func=cmd_check_config)

    migrate = sub.add_parser("migrate", help="apply pending schema migrations")
    migrate.set_defaults(func=cmd_migrate)

    pool = sub.add_parser("pool", help="create or resize the Airflow pool newswatch_fetch to "
                                       "polling.max_parallel_tasks (needs Airflow's metadata database)")
    pool.add_argument("--config", help="config file (default: $NEWSWATCH_CONFIG or config/newswatch.yaml)")
    pool.set_defaults(func=cmd_pool)

    database = sub.add_parser("db", help="the embedded PostgreSQL for development")
    database.add_argument("action", choices=["start", "stop", "url"])
    database.set_defaults(func=cmd_db)

    listings = {}
    for name, func, text in (
        ("feeds", cmd_feeds, "feed health, failing feeds first; and the feed list: list, add, edit, remove, "
                             "enable, disable, import-opml, export-opml"),
        ("stories", cmd_stories, "latest stories"),
        ("alerts", cmd_alerts, "latest alerts with delivery status"),
    ):
        listing = listings[name] = sub.add_parser(name, help=text)
        listing.add_argument("--json", action="store_true", help="JSON instead of a table")
        listing.add_argument("--limit", type=int, default=50)
        listing.set_defaults(func=func)
    finder = sub.add_parser("search", help="full-text search of the stored articles, each in its own language")
    search.add_arguments(finder)
    finder.set_defaults(func=search.run_cli)

    rules = sub.add_parser("rules", help="alert rules: test, list, add, edit, remove, enable, disable")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    rules_test = rules_sub.add_parser("test", help="what a rule (by name) or a draft query would have matched")
    rules_test.add_argument("rule", help="a rule name from the config, or a query such as 'syria AND strike*'")
    rules_test.add_argument("--days", type=int, default=7, help="how far back to look (default 7)")
    rules_test.add_argument("--limit", type=int, default=50)
    rules_test.add_argument("--min-similarity", type=float, default=None,
                            help="threshold of about:/like: terms (default: the rule's min_similarity, else 0.40)")
    rules_test.add_argument("--json", action="store_true", help="JSON instead of a table")
    rules_test.add_argument("--config", help="config file (default: $NEWSWATCH_CONFIG or config/newswatch.yaml)")
    rules_test.set_defaults(func=cmd_rules_test)
    _add_management_parsers(sub, listings["feeds"], rules_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except db.DatabaseNotConfigured as exc:
        print(f"newswatch: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        if not db.connection_lost(exc):
            raise
        # The server stopped, restarted or cannot be reached: nothing half-done is committed (every stage
        # writes in short transactions keyed on content), so the next run takes over where this one stopped.
        print(f"newswatch: the database is unavailable: {db.first_line(exc)}", file=sys.stderr)
        return EXIT_DATABASE_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
