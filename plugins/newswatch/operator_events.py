"""Feed health events to the operator: the ``operator_events`` outbox, sent to ``polling.operator_channels``.

The poller writes an event (failing, recovered, gone, moved) in the transaction that changes the feed; this
module sends them, through the same outbox claim as alerts: leased, sent outside any transaction to the
channels that have not accepted it yet, the outcome recorded. Without operator channels an event is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from newswatch import db, delivery, outbox
from newswatch.config import Settings

log = logging.getLogger(__name__)

# An event whose delivery failed this many times is left for the operator to find in the table.
MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class OperatorMessage:
    """A feed health event, in the shape delivery.send expects (``subject``, ``text()``, ``payload()``)."""

    idempotency_key: str
    kind: str
    feed: str
    message: str
    created_at: str

    @property
    def subject(self) -> str:
        return f"[newswatch] feed {self.feed}: {self.kind}"[:250]

    def text(self) -> str:
        return f"{self.message}\n\nEvent-Id: {self.idempotency_key}"

    def payload(self) -> dict[str, str]:
        return {"type": "operator_event", "subject": self.subject, "kind": self.kind, "feed": self.feed,
                "message": self.message, "created_at": self.created_at, "idempotency_key": self.idempotency_key}


def deliver_operator_events(settings: Settings) -> dict[str, int]:
    """Send undelivered operator events to ``polling.operator_channels``; returns counts.

    Each event is leased (``newswatch.outbox``), sent outside any transaction to the channels that have
    not accepted it yet, and the outcome recorded, so a retry after a partial failure sends no
    duplicates. Without operator channels an event is logged (at WARNING) and marked delivered. A target
    that timed out is not asked again in this run (it would cost every later event its deadline): events
    left for it alone are given back, no attempt counted, for the next run.
    """
    counts = {"sent": 0, "failed": 0, "logged": 0, "deferred": 0}
    targets = delivery.operator_targets(settings)
    stalled: set[str] = set()
    for event_id in outbox.due("operator_events", f"delivered_at IS NULL AND attempts < {MAX_ATTEMPTS}"):
        with db.transaction() as cur:
            cur.execute(
                "SELECT e.id, e.kind, e.message, e.created_at, e.delivered_to, e.attempts, f.name AS feed "
                "FROM operator_events e LEFT JOIN feeds f ON f.id = e.feed_id WHERE e.id = %s",
                (event_id,),
            )
            event = cur.fetchone()
        delivered = list(event["delivered_to"])
        errors = []
        pending = [(key, deliver) for key, deliver in targets if key not in delivered and key not in stalled]
        if targets and not pending:
            outbox.release("operator_events", event["id"])  # only stalled targets left
            counts["deferred"] += 1
            continue
        if not targets:
            log.warning("operator event %s (%s): %s", event["id"], event["kind"], event["message"])
            counts["logged"] += 1
        else:
            message = OperatorMessage(
                idempotency_key=f"newswatch-operator-event-{event['id']}",
                kind=event["kind"],
                feed=event["feed"] or "-",
                message=event["message"],
                created_at=event["created_at"].isoformat(),
            )
            for key, deliver in pending:
                try:
                    deliver(message)
                except Exception as exc:  # noqa: BLE001 - Apprise and plugins raise anything; keep the others going
                    if isinstance(exc, delivery.DeliveryError) and exc.kind == "timeout":
                        stalled.add(key)
                    # DeliveryError messages carry redacted URLs; for anything else keep the type only.
                    detail = str(exc) if isinstance(exc, delivery.DeliveryError) else type(exc).__name__
                    errors.append(f"{key if not key.startswith('url:') else 'operator URL ' + key}: {detail}")
                else:
                    delivered.append(key)
        done = all(key in delivered for key, _ in targets)
        counted = bool(targets) and (done or bool(errors))  # not an attempt when only a stalled target is left
        with db.transaction() as cur:
            cur.execute(
                """
                UPDATE operator_events SET delivered_to = %s, attempts = attempts + %s, last_error = %s,
                    delivered_at = CASE WHEN %s THEN now() END, lease_until = NULL
                WHERE id = %s
                """,
                (delivered, int(counted), "; ".join(errors)[:1000] or None, done, event["id"]),
            )
        if targets and done:
            counts["sent"] += 1
        elif targets and not errors:
            counts["deferred"] += 1
        elif targets:
            counts["failed"] += 1
            log.warning("operator event %s not delivered everywhere: %s", event["id"], "; ".join(errors))
    return counts
