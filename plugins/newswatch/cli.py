"""The ``newswatch`` command line: run a cycle, check the config, manage the database, look around."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg2
from psycopg2.extras import RealDictCursor

from newswatch import db, metrics, search
from newswatch.config import UI_KINDS, ConfigError, config_path, config_warnings, load_settings, merge_ui, read_ui_rows
from newswatch.output import print_rows

EXIT_OK = 0
EXIT_PROBLEMS_FOUND = 1  # check-config: the file, or the UI-managed part, has problems (listed one per line)
EXIT_BAD_INPUT = 2  # invalid configuration, query or arguments; no database configured
EXIT_DATABASE_UNAVAILABLE = 3  # PostgreSQL could not be reached, or went away during the command
EXIT_CODES = f"""exit codes:
  {EXIT_OK}  done (poll: even when some feeds or deliveries failed; they are recorded and retried)
  {EXIT_PROBLEMS_FOUND}  check-config found problems in the file or in what was added from the UI
  {EXIT_BAD_INPUT}  invalid configuration, query or arguments, or no database configured
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
    for warning in config_warnings(settings):
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
    from newswatch.schedule import humanize

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
    """Show what a configured rule, or a draft query, would have matched in the stored archive."""
    from newswatch.rules import Document, RuleSyntaxError, compile_rule

    query = args.rule
    try:
        settings = load_settings(args.config, ui=True)
        configured = next((rule for rule in settings.rules if rule.name == args.rule), None)
        if configured is not None:
            query = configured.query
    except ConfigError:
        configured = None
    try:
        rule = compile_rule(query)
    except RuleSyntaxError as exc:
        print(f"newswatch: invalid query: {exc}", file=sys.stderr)
        print(f"  {query}\n  {' ' * exc.position}^", file=sys.stderr)
        return EXIT_BAD_INPUT
    since = datetime.now(UTC) - timedelta(days=args.days)
    stories: dict[int, dict] = {}
    scanned = 0
    conn = db.connect()
    try:
        with conn, conn.cursor("rules_test", cursor_factory=RealDictCursor) as cur:  # streamed, not loaded
            cur.itersize = 500
            cur.execute(
                "SELECT id, story_id, title, body, language, feed, fetched_at FROM articles "
                "WHERE fetched_at >= %s ORDER BY fetched_at DESC", (since,))
            for article in cur:
                scanned += 1
                document = Document(article["title"], article["body"], article["language"], article["feed"])
                if not rule.matches(document):
                    continue
                story = stories.setdefault(article["story_id"], {
                    "story": article["story_id"], "articles": 0, "title": article["title"], "feeds": set(),
                    "languages": set(), "last_seen": article["fetched_at"], "matched": rule.explain(document)})
                story["articles"] += 1
                story["feeds"].add(article["feed"])
                story["languages"].add(article["language"] or "?")
    finally:
        conn.close()
    rows = [{**story, "feeds": sorted(story["feeds"]), "languages": sorted(story["languages"])}
            for story in stories.values()][: args.limit]
    source = f"rule {args.rule!r}" if configured else "draft query"
    if not args.json:
        print(f"{source}: {len(stories)} stories ({sum(s['articles'] for s in stories.values())} articles) "
              f"matched among {scanned} articles of the last {args.days} days")
    print_rows(rows, ["story", "articles", "languages", "feeds", "last_seen", "title", "matched"], args.json)
    return 0


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

    for name, func, text in (
        ("feeds", cmd_feeds, "feed health: failing feeds first"),
        ("stories", cmd_stories, "latest stories"),
        ("alerts", cmd_alerts, "latest alerts with delivery status"),
    ):
        listing = sub.add_parser(name, help=text)
        listing.add_argument("--json", action="store_true", help="JSON instead of a table")
        listing.add_argument("--limit", type=int, default=50)
        listing.set_defaults(func=func)
    finder = sub.add_parser("search", help="full-text search of the stored articles, each in its own language")
    search.add_arguments(finder)
    finder.set_defaults(func=search.run_cli)

    rules = sub.add_parser("rules", help="work on alert rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    rules_test = rules_sub.add_parser("test", help="what a rule (by name) or a draft query would have matched")
    rules_test.add_argument("rule", help="a rule name from the config, or a query such as 'syria AND strike*'")
    rules_test.add_argument("--days", type=int, default=7, help="how far back to look (default 7)")
    rules_test.add_argument("--limit", type=int, default=50)
    rules_test.add_argument("--json", action="store_true", help="JSON instead of a table")
    rules_test.add_argument("--config", help="config file (default: $NEWSWATCH_CONFIG or config/newswatch.yaml)")
    rules_test.set_defaults(func=cmd_rules_test)
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
