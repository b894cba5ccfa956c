"""Per-host request slots shared by every process and worker: PostgreSQL session-level advisory locks.

At most ``polling.per_host_concurrency`` requests are in flight to one (host, port) across every task
process, Celery worker and ``newswatch poll``, feeds and article pages alike. Slot ``i`` of a host is the
advisory lock ``(hash of "host:port", i)``; a request holds one slot for as long as it talks to the host.

* The locks live on one dedicated connection per process, in autocommit: it sits idle while the request is
  on its way, so no transaction is ever open across the network. A process that dies (SIGKILL, a lost
  worker) loses its connection and PostgreSQL releases its slots at once: nothing to expire or clean up.
* Inside a process a condition variable lets at most N threads per host ask the server for a slot, so
  threads queued behind a busy host wait locally instead of polling the database.
* A thread finding every slot taken sleeps with full jitter (50 ms doubling up to 250 ms) and tries again,
  for at most ``polling.host_wait_seconds``; then it gives up with :class:`HostBusy` (a FetchError of kind
  ``host_busy``), and the caller re-queues the feed or entry without counting a failed attempt.

Advisory locks with two int4 keys never collide with the single-bigint locks used elsewhere (migrations,
story grouping): PostgreSQL keeps the two key spaces apart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import psycopg2
import psycopg2.extensions

from newswatch.ingest.fetcher import FetchError

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_FIRST_PAUSE = 0.05
_MAX_PAUSE = 0.25  # a slot freed in another process is found within this, at a few cheap queries per second


class HostBusy(FetchError):
    """Every slot of the host stayed taken for the whole wait: not the server's fault, try again later."""

    def __init__(self, host: str, waited: float):
        super().__init__("host_busy", f"{host}: every request slot stayed busy for {waited:g} s")


def host_key(url: str) -> str:
    """``host:port`` of a URL, lower-case, default port filled in: the unit the limit applies to."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = (parts.hostname or "").lower().rstrip(".")
    return f"{host}:{port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)}"


def in_host_turns(rows: list[dict], url: str = "url") -> list[dict]:
    """The rows with their hosts taken in turn (round-robin; each host's rows in their order), so that the
    threads working down the list ask different hosts at once instead of queueing for one host's slots."""
    by_host: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_host[host_key(row[url])].append(row)
    queues = list(by_host.values())
    return [queue[index] for index in range(max(map(len, queues), default=0)) for queue in queues
            if index < len(queue)]


def _lock_id(key: str) -> int:
    """A stable signed 32-bit number for a host key (the first advisory-lock key)."""
    return int.from_bytes(hashlib.blake2b(f"newswatch-host:{key}".encode(), digest_size=4).digest(), "big",
                          signed=True)


class HostSlots:
    """``limit`` slots per (host, port), shared through PostgreSQL by every process using the same database."""

    def __init__(self, url: str, limit: int, wait_seconds: float) -> None:
        self.url, self.limit, self.wait_seconds = url, limit, wait_seconds
        self._cond = threading.Condition()
        self._held: dict[str, set[int]] = defaultdict(set)  # slots this process holds, per host key
        self._conn: psycopg2.extensions.connection | None = None

    # -- public -----------------------------------------------------------------------------------
    @contextmanager
    def slot(self, url: str) -> Iterator[None]:
        """Hold one of the URL's host slots for the duration of the block (HostBusy after the wait)."""
        key = host_key(url)
        number = self.acquire(key)
        try:
            yield
        finally:
            self.release(key, number)

    def acquire(self, key: str) -> int:
        """Take a free slot of ``key`` (``host:port``); returns its number. Raises HostBusy after the wait."""
        deadline = time.monotonic() + self.wait_seconds
        pause = _FIRST_PAUSE
        while True:
            with self._cond:
                while len(self._held[key]) >= self.limit:  # this process already uses every slot: wait here
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise HostBusy(key, self.wait_seconds)
                    self._cond.wait(remaining)
                number = self._try(key, [n for n in range(self.limit) if n not in self._held[key]])
                if number is not None:
                    self._held[key].add(number)
                    return number
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostBusy(key, self.wait_seconds)
            time.sleep(min(random.uniform(0, pause), remaining))  # full jitter: waiters do not move in step
            pause = min(pause * 2, _MAX_PAUSE)

    def release(self, key: str, number: int) -> None:
        with self._cond:
            self._held[key].discard(number)
            self._cond.notify_all()
            try:
                self._execute("SELECT pg_advisory_unlock(%s, %s)", (_lock_id(key), number))
            except psycopg2.Error as exc:  # the connection is gone, and with it every lock it held: nothing to do
                log.debug("releasing the host slot of %s: %s", key, exc)
                self._drop_connection()

    def close(self) -> None:
        """Close the connection: PostgreSQL releases whatever it still held."""
        with self._cond:
            self._drop_connection()

    # -- database (called under self._cond) ---------------------------------------------------------
    def _try(self, key: str, candidates: list[int]) -> int | None:
        lock_id = _lock_id(key)
        for number in candidates:
            row = self._execute("SELECT pg_try_advisory_lock(%s, %s)", (lock_id, number))
            if row and row[0]:
                return number
        return None

    def _execute(self, sql: str, params: tuple) -> tuple | None:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(self.url, application_name="newswatch host slots")
            self._conn.autocommit = True  # idle between statements: no transaction across a request
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone()
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self._drop_connection()
            raise

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None


_shared: dict[tuple, HostSlots] = {}
_shared_lock = threading.Lock()


def host_slots(limit: int, wait_seconds: float, url: str | None = None) -> HostSlots:
    """This process's slots for the news database (``url``, else the configured one) and these settings."""
    from newswatch import db

    url = url or db.database_url()
    key = (os.getpid(), url, limit, wait_seconds)  # a forked child opens its own connection
    with _shared_lock:
        slots = _shared.get(key)
        if slots is None:
            slots = _shared[key] = HostSlots(url, limit, wait_seconds)
        return slots
