"""Match rules against newly clustered articles and deliver the resulting alerts.

Matching writes the alert outbox: one row per (rule, story, channel, kind), inserted in the same
transaction that marks the article as matched, under a unique key. A retried task, a re-run of the
DAG or a later copy of the same story therefore finds the row already there and adds nothing. The
one exception is by design: when a story that already alerted gains a language or several sources,
a single ``update`` alert is recorded (the unique key stops any second one).

Delivery leases due rows one at a time (``newswatch.alerts.outbox``), sends outside any transaction, and
records the outcome and the attempt in another short one; a failed send is retried on later cycles
with exponential backoff. Channels are sent side by side, one lane each, and a lane stops at its first
timeout: a hung channel costs one deadline per run and delays no other. Digest rules park their alerts
until the digest is due, then one message per (rule, channel, due time) lists them.

Delivery is at least once. A message is repeated in two cases: a crash between the send and the record,
and a receiver that took the message but answered after ``alerts.send_timeout`` (the attempt is recorded
as ``timeout: …`` in ``delivery_attempts``, and the retry is a second attempt there, so such repeats can be
counted). Every message carries an idempotency key, the same on every retry: ``Alert-Id``/``Digest-Id`` in
the text, ``idempotency_key`` in JSON bodies and the ``Idempotency-Key`` header of every webhook
(``webhook+https://`` and Apprise's ``json://``, ``xml://``, ``form://``). Receivers drop a repeat by it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from newswatch import db
from newswatch.alerts import outbox, watches
from newswatch.alerts.delivery import AlertMessage, DeliveryError, DigestMessage, Message, send_to_channel
from newswatch.config import Rule as RuleConfig
from newswatch.config import Settings
from newswatch.rules import Document, Rule, RuleSet

log = logging.getLogger(__name__)

_MATCH_BATCH = 200
_MAX_BACKOFF = timedelta(hours=6)
_UPDATE_MIN_NEW_SOURCES = 2
# Channels sent to at once; each lane holds a database connection only between sends.
_MAX_LANES = 8


def idempotency_key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()[:32]


def compiled_rules(settings: Settings) -> list[tuple[RuleConfig, Rule]]:
    return [(rule, rule.compiled()) for rule in settings.rules if rule.enabled]


def match_rules(settings: Settings) -> dict[str, int]:
    """Match every clustered, not yet matched article; returns counts for logs and XCom.

    Rules are evaluated outside any transaction (it is CPU work: a lock held meanwhile would stall story
    merges of those articles); the alerts are then recorded, and the articles marked, in one short
    transaction over the rows still unmatched, so that a concurrent or retried run adds nothing twice.
    Meaning terms (``about:``, ``like:``) get each article's similarities from PostgreSQL
    (``newswatch.alerts.watches``); a rule whose description has no vector yet keeps the articles it could
    not judge in a backlog, judged first thing once the vector is there.
    """
    rules = compiled_rules(settings)
    ruleset = RuleSet(rule for _, rule in rules)  # evaluates only rules whose required terms occur
    counts = {"articles": 0, "matches": 0, "new_alerts": 0, "updates": 0, "held": 0, "from_backlog": 0}
    terms = watches.terms_of(rule for _, rule in rules)
    at_least = watches.floor(rule for _, rule in rules)
    with db.transaction() as cur:
        vectors = watches.vectors(cur, terms)
    waiting = [config.name for config, rule in rules
               if any(term.key in vectors.missing and term.kind == "about" for term in rule.meanings)]
    if vectors.missing:
        log.warning("meaning terms without a vector yet: %s (rules %s judge new articles without them and "
                    "hold those articles until it is there)",
                    ", ".join(term.label for term in vectors.missing.values()), ", ".join(waiting) or "none")
    if terms:
        _match_backlog(rules, vectors, waiting, at_least, counts)
    after = 0
    while True:
        with db.transaction() as cur:
            cur.execute(
                """
                SELECT id, title, body, language, feed, canonical_url FROM articles
                WHERE matched_at IS NULL AND story_id IS NOT NULL AND id > %s ORDER BY id LIMIT %s
                """,
                (after, _MATCH_BATCH),
            )
            articles = cur.fetchall()
            meanings = watches.similarities(cur, [article["id"] for article in articles], vectors, at_least)
        if not articles:
            return counts
        after = articles[-1]["id"]
        matches: dict[int, list[tuple[RuleConfig, list[str]]]] = {}
        for article in articles:
            document = _document(article, meanings)
            found = [(config, rule.explain(document))
                     for config, rule in (rules[index] for index in ruleset.matching_indices(document))]
            if found:
                matches[article["id"]] = found
        counts["articles"] += _record_matches([article["id"] for article in articles], matches, counts, waiting)
        if len(articles) < _MATCH_BATCH:
            return counts


def _document(article: dict, meanings: dict[int, tuple[tuple[str, float], ...]]) -> Document:
    return Document(title=article["title"], body=article["body"], language=article["language"],
                    feed=article["feed"], site=article["canonical_url"], meanings=meanings.get(article["id"], ()))


def _match_backlog(rules: list[tuple[RuleConfig, Rule]], vectors: watches.Vectors, waiting: list[str],
                   at_least: float, counts: dict[str, int]) -> None:
    """Judge the articles held for rules whose descriptions now have their vectors, by those rules only."""
    with db.transaction() as cur:
        held = watches.backlog(cur, [config.name for config, _ in rules])
    for config, rule in rules:
        ids = held.get(config.name)
        if not ids or config.name in waiting:
            continue
        for start in range(0, len(ids), _MATCH_BATCH):
            chunk = ids[start:start + _MATCH_BATCH]
            with db.transaction() as cur:
                cur.execute("SELECT id, title, body, language, feed, canonical_url FROM articles WHERE id = ANY(%s)",
                            (chunk,))
                articles = cur.fetchall()
                meanings = watches.similarities(cur, chunk, vectors, at_least)
            matches = {}
            for article in articles:
                terms = rule.explain(_document(article, meanings))
                if terms:
                    matches[article["id"]] = [(config, terms)]
            _record_matches(chunk, matches, counts, [], backlog_of=config.name)
            counts["from_backlog"] += len(chunk)


def _record_matches(ids: list[int], matches: dict[int, list[tuple[RuleConfig, list[str]]]],
                    counts: dict[str, int], waiting: list[str], backlog_of: str | None = None) -> int:
    """Record the alerts of the articles among ``ids`` still unmatched and mark them, holding them for the
    ``waiting`` rules; returns how many. ``backlog_of``: the articles were held for that rule, and are
    already marked; their alerts are recorded and they leave the backlog."""
    now = datetime.now(UTC)
    with db.transaction() as cur:
        cur.execute(
            f"""
            SELECT a.id, a.story_id, s.languages AS story_languages, cardinality(s.feeds) AS story_sources
            FROM articles a JOIN stories s ON s.id = a.story_id
            WHERE a.id = ANY(%s) {"" if backlog_of else "AND a.matched_at IS NULL"}
            ORDER BY a.id FOR UPDATE OF a SKIP LOCKED
            """,
            (ids,),
        )
        owned = cur.fetchall()  # the story as it is now: it may have merged while the rules ran
        # Copies of one story in the batch share its languages and sources (read above): once its first article
        # has been recorded for a rule and channel, the others would find that alert, or its update, and add
        # nothing. They are not sent to the server at all (a burst of wire copies: one story, hundreds of rows).
        recorded: set[tuple[str, int, str]] = set()
        for article in owned:
            for config, terms in matches.get(article["id"], ()):
                counts["matches"] += 1
                for channel in config.channels:
                    key = (config.name, article["story_id"], channel)
                    if key in recorded:
                        continue
                    recorded.add(key)
                    new, update = _record_alert(cur, config, channel, article, terms, now)
                    counts["new_alerts"] += new
                    counts["updates"] += update
        owned_ids = [article["id"] for article in owned]
        if backlog_of:
            watches.release(cur, backlog_of, owned_ids)
        elif owned:
            cur.execute("UPDATE articles SET matched_at = now() WHERE id = ANY(%s)", (owned_ids,))
            counts["held"] += watches.hold(cur, waiting, owned_ids)
    return len(owned)


def _record_alert(cur, rule: RuleConfig, channel: str, article: dict, terms: list[str], now: datetime
                  ) -> tuple[bool, bool]:
    """Insert the story's alert for this rule and channel, or its one update; (new?, update?)."""
    digest_due = rule.digest.next_due(now) if rule.digest else None
    story = article["story_id"]
    values = (rule.name, story, article["id"], channel, terms, article["story_languages"], article["story_sources"],
              digest_due)
    cur.execute(
        """
        INSERT INTO alerts (rule, story_id, article_id, channel, matched_terms, story_languages, story_sources,
                            digest_due_at, kind, idempotency_key)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'new', %s)
        ON CONFLICT DO NOTHING RETURNING id
        """,
        (*values, idempotency_key(rule.name, story, channel)),
    )
    if cur.fetchone() is not None:
        return True, False
    if not rule.updates:
        return False, False
    cur.execute("SELECT story_languages, story_sources FROM alerts "
                "WHERE rule = %s AND story_id = %s AND channel = %s AND kind = 'new'", (rule.name, story, channel))
    first = cur.fetchone()
    new_language = not set(article["story_languages"]) <= set(first["story_languages"])
    more_sources = article["story_sources"] >= first["story_sources"] + _UPDATE_MIN_NEW_SOURCES
    if not (new_language or more_sources):
        return False, False
    cur.execute(
        """
        INSERT INTO alerts (rule, story_id, article_id, channel, matched_terms, story_languages, story_sources,
                            digest_due_at, kind, idempotency_key)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'update', %s)
        ON CONFLICT DO NOTHING RETURNING id
        """,
        (*values, idempotency_key(rule.name, story, channel, "update")),
    )
    return False, cur.fetchone() is not None


def deliver_alerts(settings: Settings) -> dict[str, int]:
    """Send every due instant alert and every due digest once; returns counts for logs and XCom.

    Each channel is a lane of its own, and the lanes run side by side: a slow or hung channel costs its own
    messages their deadline (``alerts.send_timeout``), never another channel's. A lane stops at its first
    timeout: a channel that did not answer in time is not asked again in this run, and its other messages
    wait, untouched (no attempt counted), for the next run.
    """
    counts = {"sent": 0, "failed": 0, "gave_up": 0, "digests_sent": 0, "gone": 0, "deferred": 0}
    _open_due_digests()
    channels = _due_channels()
    if not channels:
        return counts
    with ThreadPoolExecutor(max_workers=min(len(channels), _MAX_LANES), thread_name_prefix="newswatch-lane") as lanes:
        for lane in lanes.map(lambda channel: _deliver_channel(settings, channel), channels):
            for key, value in lane.items():
                counts[key] += value
    return counts


def _due_channels() -> list[str]:
    with db.transaction() as cur:
        cur.execute(f"SELECT channel FROM alerts WHERE {_DUE_ALERT} UNION SELECT channel FROM digests "
                    f"WHERE {_DUE_DIGEST} ORDER BY 1")
        return [row["channel"] for row in cur.fetchall()]


def _deliver_channel(settings: Settings, channel: str) -> Counter[str]:
    """One channel's lane: its due alerts, then its due digests, oldest first, until the first timeout."""
    counts: Counter[str] = Counter()
    for alert_id in outbox.due("alerts", f"{_DUE_ALERT} AND channel = %s", (channel,)):
        with db.transaction() as cur:
            cur.execute(f"{_ALERT_SELECT} WHERE al.id = %s", (alert_id,))
            alert = cur.fetchone()
        if alert is None:
            continue  # merged away between the claim and now
        outcome, timed_out = _attempt(settings, "alerts", alert, _message(alert))
        counts[outcome] += 1
        if timed_out:
            return _stalled(channel, counts, ("alerts", alert_id))
    for digest_id in outbox.due("digests", f"{_DUE_DIGEST} AND channel = %s", (channel,)):
        with db.transaction() as cur:
            cur.execute("SELECT * FROM digests WHERE id = %s", (digest_id,))
            digest = cur.fetchone()
            cur.execute(f"{_ALERT_SELECT} WHERE al.digest_id = %s ORDER BY al.id", (digest_id,))
            items = [_message(row) for row in cur.fetchall()]
        message = DigestMessage(digest["idempotency_key"], digest["rule"], digest["due_at"], items)
        outcome, timed_out = _attempt(settings, "digests", digest, message)
        counts["digests_sent" if outcome == "sent" else outcome] += 1
        if timed_out:
            return _stalled(channel, counts, ("digests", digest_id))
    return counts


def _stalled(channel: str, counts: Counter[str], timed_out: tuple[str, int]) -> Counter[str]:
    """Count what a channel that timed out leaves for the next run (besides the ``(table, id)`` that timed
    out, already counted as failed), and say so once."""
    alert_id = timed_out[1] if timed_out[0] == "alerts" else 0
    digest_id = timed_out[1] if timed_out[0] == "digests" else 0
    with db.transaction() as cur:
        cur.execute(f"SELECT (SELECT count(*) FROM alerts WHERE {_DUE_ALERT} AND channel = %s AND id <> %s) "
                    f"+ (SELECT count(*) FROM digests WHERE {_DUE_DIGEST} AND channel = %s AND id <> %s) AS waiting",
                    (channel, alert_id, channel, digest_id))
        counts["deferred"] += cur.fetchone()["waiting"]
    if counts["deferred"]:
        log.warning("channel %s timed out: its %d other due message(s) wait for the next run",
                    channel, counts["deferred"])
    return counts


_DUE_ALERT = "status = 'pending' AND digest_due_at IS NULL AND next_attempt_at <= now()"
_DUE_DIGEST = "status = 'pending' AND next_attempt_at <= now()"
_ALERT_SELECT = """
    SELECT al.id, al.rule, al.story_id, al.channel, al.matched_terms, al.attempts, al.kind,
           al.idempotency_key, ar.title, ar.canonical_url, ar.language, ar.feed, ar.summary,
           ar.published_at, s.feeds AS sources, s.languages
    FROM alerts al
    JOIN stories s ON s.id = al.story_id
    LEFT JOIN articles ar ON ar.id = COALESCE(al.article_id, s.representative_article)
"""


def _open_due_digests() -> None:
    """Gather parked alerts whose digest time has come into one digest row per (rule, channel, due)."""
    with db.transaction() as cur:
        cur.execute(
            """
            SELECT DISTINCT rule, channel, digest_due_at FROM alerts
            WHERE status = 'pending' AND digest_id IS NULL AND digest_due_at <= now()
            """
        )
        for group in cur.fetchall():
            key = idempotency_key(group["rule"], group["channel"], group["digest_due_at"].isoformat(), "digest")
            cur.execute(
                """
                INSERT INTO digests (rule, channel, due_at, idempotency_key) VALUES (%s, %s, %s, %s)
                ON CONFLICT (rule, channel, due_at) DO UPDATE SET rule = EXCLUDED.rule RETURNING id, status
                """,
                (group["rule"], group["channel"], group["digest_due_at"], key),
            )
            digest = cur.fetchone()
            if digest["status"] != "pending":
                continue  # already sent: alerts parked for it after the send wait for the next period
            cur.execute(
                "UPDATE alerts SET digest_id = %s WHERE status = 'pending' AND digest_id IS NULL "
                "AND rule = %s AND channel = %s AND digest_due_at = %s",
                (digest["id"], group["rule"], group["channel"], group["digest_due_at"]),
            )


def _attempt(settings: Settings, table: str, row: dict, message: Message) -> tuple[str, bool]:
    """Send one claimed alert or digest (outside any transaction), then record the attempt and its outcome.

    Returns the outcome (sent, failed, gave_up, or gone: the row was merged away while it was being sent)
    and whether the send was cut at its deadline.
    """
    attempts = row["attempts"] + 1
    channel = next((c for c in settings.channels if c.name == row["channel"]), None)
    started = time.monotonic()
    try:
        if channel is None:
            raise DeliveryError("config", f"channel {row['channel']!r} is no longer in the configuration")
        send_to_channel(channel, message, timeout=settings.alerts.send_timeout)
    except DeliveryError as exc:
        error, timed_out = str(exc), exc.kind == "timeout"
    except Exception as exc:  # noqa: BLE001 - a broken channel must not block the others
        error, timed_out = f"{type(exc).__name__}: {exc}", False
    else:
        error, timed_out = None, False
    elapsed = int((time.monotonic() - started) * 1000)
    gave_up = error is not None and attempts >= settings.alerts.max_attempts
    delay = min(timedelta(seconds=settings.alerts.retry_base_seconds * 2 ** (attempts - 1)), _MAX_BACKOFF)
    with db.transaction() as cur:
        if error is None:
            cur.execute(f"UPDATE {table} SET status = 'sent', attempts = %s, sent_at = now(), last_error = NULL, "
                        "lease_until = NULL WHERE id = %s", (attempts, row["id"]))
        else:
            cur.execute(f"UPDATE {table} SET status = %s, attempts = %s, last_error = %s, next_attempt_at = %s, "
                        "lease_until = NULL WHERE id = %s",
                        ("failed" if gave_up else "pending", attempts, error[:1000], datetime.now(UTC) + delay,
                         row["id"]))
        if cur.rowcount == 0:
            log.warning("%s %s (%s) was merged into another story while it was being sent to %s",
                        table[:-1], row["id"], row["rule"], row["channel"])
            return "gone", timed_out
        owner = "alert_id" if table == "alerts" else "digest_id"
        cur.execute(
            f"INSERT INTO delivery_attempts ({owner}, channel, outcome, error, duration_ms) "
            "VALUES (%s, %s, %s, %s, %s)",
            (row["id"], row["channel"], "failed" if error else "sent", error and error[:1000], elapsed),
        )
        if table == "digests" and error is None:
            cur.execute("UPDATE alerts SET status = 'sent', sent_at = now(), attempts = attempts + 1 "
                        "WHERE digest_id = %s", (row["id"],))
    if error is None:
        log.info("%s %s (%s) sent to %s", table[:-1], row["id"], row["rule"], row["channel"])
        return "sent", False
    log.warning("%s %s to channel %s failed (attempt %d): %s", table[:-1], row["id"], row["channel"], attempts, error)
    return ("gave_up" if gave_up else "failed"), timed_out


def _message(alert: dict) -> AlertMessage:
    published = alert["published_at"]
    return AlertMessage(
        idempotency_key=alert["idempotency_key"],
        rule=alert["rule"],
        story_id=alert["story_id"],
        title=alert["title"] or "(untitled)",
        url=alert["canonical_url"] or "",
        language=alert["language"],
        feed=alert["feed"] or "",
        published_at=published.astimezone(UTC).isoformat() if published else None,
        matched_terms=list(alert["matched_terms"] or []),
        sources=list(alert["sources"] or []),
        summary=alert["summary"] or "",
        kind=alert["kind"],
        languages=list(alert["languages"] or []),
    )
