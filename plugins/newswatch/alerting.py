"""Match rules against newly clustered articles and deliver the resulting alerts.

Matching writes the alert outbox: one row per (rule, story, channel), inserted in the same
transaction that marks the article as matched, under a unique key. A retried task, a re-run of the
DAG or a later copy of the same story therefore finds the row already there and adds nothing.
Delivery claims due rows one at a time (``FOR UPDATE SKIP LOCKED``), sends, and records the outcome
in the same transaction; a failed send is retried on later cycles with exponential backoff. Delivery
is at-least-once (a crash between send and commit repeats one message), so every message carries an
idempotency key (``Alert-Id``) for receivers that deduplicate.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

from newswatch import db
from newswatch.config import Settings
from newswatch.delivery import AlertMessage, DeliveryError, redact_channel, send
from newswatch.rules import Document, Rule, compile_rule

log = logging.getLogger(__name__)

_MATCH_BATCH = 200
_MAX_BACKOFF = timedelta(hours=6)


def idempotency_key(rule: str, story_id: int, channel: str) -> str:
    return hashlib.sha256(f"{rule}\x1f{story_id}\x1f{channel}".encode()).hexdigest()[:32]


def compiled_rules(settings: Settings) -> list[tuple[str, Rule, list[str]]]:
    return [(rule.name, compile_rule(rule.query), rule.channels) for rule in settings.rules if rule.enabled]


def match_rules(settings: Settings) -> dict[str, int]:
    """Match every clustered, not yet matched article; returns counts for logs and XCom."""
    rules = compiled_rules(settings)
    counts = {"articles": 0, "matches": 0, "new_alerts": 0}
    while True:
        with db.transaction() as cur:
            cur.execute(
                """
                SELECT id, story_id, title, body, language, feed FROM articles
                WHERE matched_at IS NULL AND story_id IS NOT NULL
                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
                """,
                (_MATCH_BATCH,),
            )
            articles = cur.fetchall()
            for article in articles:
                document = Document(title=article["title"], body=article["body"],
                                    language=article["language"], feed=article["feed"])
                for name, rule, channels in rules:
                    if not rule.matches(document):
                        continue
                    counts["matches"] += 1
                    terms = rule.explain(document)
                    for channel in channels:
                        cur.execute(
                            """
                            INSERT INTO alerts (rule, story_id, article_id, channel, matched_terms, idempotency_key)
                            VALUES (%s, %s, %s, %s, %s, %s)
                            ON CONFLICT DO NOTHING RETURNING id
                            """,
                            (name, article["story_id"], article["id"], channel, terms,
                             idempotency_key(name, article["story_id"], channel)),
                        )
                        counts["new_alerts"] += cur.fetchone() is not None
            if articles:
                cur.execute("UPDATE articles SET matched_at = now() WHERE id = ANY(%s)",
                            ([article["id"] for article in articles],))
            counts["articles"] += len(articles)
        if len(articles) < _MATCH_BATCH:
            return counts


def deliver_alerts(settings: Settings) -> dict[str, int]:
    """Send every due alert once; returns counts for logs and XCom."""
    counts = {"sent": 0, "failed": 0, "gave_up": 0}
    attempted: set[int] = set()
    while True:
        with db.transaction() as cur:
            cur.execute(
                """
                SELECT al.id, al.rule, al.story_id, al.channel, al.matched_terms, al.attempts,
                       al.idempotency_key, ar.title, ar.canonical_url, ar.language, ar.feed, ar.summary,
                       ar.published_at, s.feeds AS sources
                FROM alerts al
                JOIN stories s ON s.id = al.story_id
                LEFT JOIN articles ar ON ar.id = COALESCE(al.article_id, s.representative_article)
                WHERE al.status = 'pending' AND al.next_attempt_at <= now() AND NOT (al.id = ANY(%s))
                ORDER BY al.id LIMIT 1
                FOR UPDATE OF al SKIP LOCKED
                """,
                (list(attempted),),
            )
            alert = cur.fetchone()
            if alert is None:
                return counts
            attempted.add(alert["id"])
            outcome = _deliver_one(cur, alert, settings)
            counts[outcome] += 1


def _deliver_one(cur, alert: dict, settings: Settings) -> str:
    attempts = alert["attempts"] + 1
    channel = next((c for c in settings.channels if c.name == alert["channel"]), None)
    try:
        if channel is None:
            raise DeliveryError(f"channel {alert['channel']!r} is no longer in the configuration")
        send(channel.url, _message(alert))
    except DeliveryError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken channel must not block the others
        error = f"{type(exc).__name__}: {exc}"
    else:
        cur.execute(
            "UPDATE alerts SET status = 'sent', attempts = %s, sent_at = now(), last_error = NULL WHERE id = %s",
            (attempts, alert["id"]),
        )
        log.info("alert %s (%s) sent to %s", alert["id"], alert["rule"], redact_channel(channel.url))
        return "sent"
    gave_up = attempts >= settings.alerts.max_attempts
    delay = min(timedelta(seconds=settings.alerts.retry_base_seconds * 2 ** (attempts - 1)), _MAX_BACKOFF)
    cur.execute(
        "UPDATE alerts SET status = %s, attempts = %s, last_error = %s, next_attempt_at = %s WHERE id = %s",
        ("failed" if gave_up else "pending", attempts, error[:1000], datetime.now(UTC) + delay, alert["id"]),
    )
    log.warning("alert %s to channel %s failed (attempt %d): %s", alert["id"], alert["channel"], attempts, error)
    return "gave_up" if gave_up else "failed"


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
    )
