"""The outboxes' claim: alerts, digests and operator events are leased for sending, never locked across a send.

A message row is written in the transaction that decides it (so it exists exactly once). To send it, a
sender leases one due row (``lease_until``) in a short transaction, sends outside any transaction (a slow
or hung channel holds no lock and no connection), and records the outcome in another short transaction.
A sender killed mid-send leaves a lease that runs out; the row is then due again and sent again: delivery
is at least once, and every message carries an idempotency key so that receivers can drop a repeat. The
same holds for a send cut at its deadline (``alerts.send_timeout``) after the receiver took the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta

from newswatch import db

# Longer than any send may take (alerts.send_timeout is at most 4 min).
LEASE = timedelta(minutes=5)
TABLES = ("alerts", "digests", "operator_events")


def claim(table: str, due: str, skip: Iterable[int] = (), params: Sequence[object] = ()) -> int | None:
    """Lease the oldest due row of ``table`` (``due``: its SQL condition, with ``params`` for its
    placeholders) not in ``skip``; its id, or None."""
    if table not in TABLES:
        raise ValueError(f"not an outbox table: {table}")
    with db.transaction() as cur:
        cur.execute(
            f"""
            UPDATE {table} SET lease_until = now() + %s
            WHERE id = (SELECT id FROM {table}
                        WHERE ({due}) AND (lease_until IS NULL OR lease_until < now()) AND NOT (id = ANY(%s))
                        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,
            (LEASE, *params, sorted(skip)),
        )
        row = cur.fetchone()
        return row["id"] if row else None


def due(table: str, condition: str, params: Sequence[object] = ()) -> Iterator[int]:
    """Claim the due rows of ``table`` one by one, each at most once per call: the one sending loop of every
    outbox (the caller sends and records each id before asking for the next)."""
    attempted: set[int] = set()
    while (row_id := claim(table, condition, attempted, params)) is not None:
        attempted.add(row_id)
        yield row_id


def release(table: str, row_id: int) -> None:
    """Give a claimed row back unsent (no attempt counted): it is due again at once, for the next run."""
    if table not in TABLES:
        raise ValueError(f"not an outbox table: {table}")
    with db.transaction() as cur:
        cur.execute(f"UPDATE {table} SET lease_until = NULL WHERE id = %s", (row_id,))
