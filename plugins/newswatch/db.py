"""PostgreSQL access: connection, schema migrations and the embedded development server.

Migrations are plain SQL files in ``migrations/`` applied in order under a transaction-level advisory
lock, so two processes starting at once (scheduler, worker, CLI) never apply the same one twice.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from newswatch.text import without_controls

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "NEWSWATCH_DATABASE_URL"
DEFAULT_DATA_DIR = Path(".data")
_MIGRATION_LOCK = 0x6E657773  # "news"


class DatabaseNotConfigured(RuntimeError):
    """Neither NEWSWATCH_DATABASE_URL nor a running embedded server is available, or the server lacks
    something the schema needs (the pgvector extension)."""


# Extensions the migrations create, with what to do when the server does not have them.
_EXTENSIONS = {
    "vector": "install pgvector (Debian/Ubuntu: postgresql-16-pgvector; Docker: the pgvector/pgvector image; "
              "the embedded development server has it)",
}


def data_dir() -> Path:
    return Path(os.environ.get("NEWSWATCH_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


def database_url() -> str:
    """The news database URL: ``$NEWSWATCH_DATABASE_URL``, else the embedded server's, if started."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    url_file = data_dir() / "database_url"
    if url_file.exists():
        return url_file.read_text().strip()
    raise DatabaseNotConfigured(
        f"set {DATABASE_URL_ENV}, or start the embedded server with `newswatch db start` (make run does)"
    )


def connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` means the server is gone or unreachable, not that it refused one statement.

    Such an error ends the whole run (every later step would fail the same way), where a refused value
    is recorded against its one feed or entry and the run goes on.
    """
    if isinstance(exc, psycopg2.InterfaceError):  # "connection already closed"
        return True
    if isinstance(exc, psycopg2.OperationalError):
        # No SQLSTATE: the client lost or never had the connection; 08xxx connection exceptions;
        # 57P0x the server is shutting down or starting (57014, a cancelled query, is not one of them).
        return exc.pgcode is None or exc.pgcode.startswith(("08", "57P"))
    return False


def first_line(exc: BaseException) -> str:
    """The first line of a driver error: psycopg2 adds hints and context on further lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connect(url: str | None = None) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(url or database_url(), application_name="newswatch")
    conn.set_session(autocommit=False)
    return conn


class _ConnectionPool:
    """The connections of one process to one database, reused from transaction to transaction.

    At most ``size`` are open; a thread asking for one more waits for one to be returned. A connection
    that failed (server restart, network) is closed instead of returned.
    """

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self._idle: list[psycopg2.extensions.connection] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()

    def get(self) -> psycopg2.extensions.connection:
        self._slots.acquire()
        try:
            with self._lock:
                while self._idle:
                    conn = self._idle.pop()
                    if not conn.closed:
                        return conn
            return connect(self.url)
        except BaseException:
            self._slots.release()
            raise

    def close(self) -> None:
        """Close the idle connections (those in use close when they come back)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def put(self, conn: psycopg2.extensions.connection, *, broken: bool) -> None:
        try:
            if broken or conn.closed or conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)
        finally:
            self._slots.release()


POOL_SIZE = 16
_pools: dict[tuple[int, str], _ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(url: str) -> _ConnectionPool:
    key = (os.getpid(), url)  # a forked child never shares its parent's connections
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = _ConnectionPool(url, POOL_SIZE)
        return pool


def close_pools(url: str | None = None) -> None:
    """Close this process's idle connections (to ``url``, else to every database): before a database is
    dropped or used as a template, which needs it to have no sessions."""
    with _pools_lock:
        pools = [pool for (pid, pool_url), pool in _pools.items() if url is None or pool_url == url]
    for pool in pools:
        pool.close()


@contextmanager
def transaction(url: str | None = None) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor inside one transaction: committed on success, rolled back on any exception.

    The connection comes from the process's pool for that database and goes back to it afterwards.
    """
    pool = _pool(url or database_url())
    conn = pool.get()
    broken = False
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            yield cur
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        broken = True
        raise
    finally:
        pool.put(conn, broken=broken)


def clean_text(value: object) -> object:
    """Text as stored: without control characters (tab and line breaks stay); other values unchanged.

    PostgreSQL text cannot hold NUL and psycopg2 raises on it, which would lose a batch; ESC, BEL and the
    other controls carry no meaning in news text and would reach operators' terminals (``newswatch stories``)
    and every other reader of the tables as escape sequences.
    """
    return without_controls(value) if isinstance(value, str) else value


def _migrations() -> list[tuple[int, str, str]]:
    files = resources.files("newswatch").joinpath("migrations")
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(url: str | None = None) -> list[str]:
    """Apply pending migrations; returns the names of those applied (empty when up to date)."""
    applied: list[str] = []
    with transaction(url) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row["version"] for row in cur.fetchall()}
        for version, name, sql in _migrations():
            if version in done:
                continue
            _require_extensions(cur, name, sql)
            log.info("applying migration %s", name)
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied.append(name)
    return applied


def _require_extensions(cur, name: str, sql: str) -> None:
    """A migration that creates an extension the server does not ship fails with one clear line."""
    for extension, remedy in _EXTENSIONS.items():
        if f"CREATE EXTENSION IF NOT EXISTS {extension}" not in sql:
            continue
        cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (extension,))
        if cur.fetchone() is None:
            raise DatabaseNotConfigured(
                f"migration {name} needs the PostgreSQL extension {extension!r}, which this server lacks: {remedy}")


def start_embedded(directory: Path | None = None) -> str:
    """Start (or reuse) the embedded PostgreSQL under the data folder and return its URL.

    pgserver ships PostgreSQL binaries inside a wheel, so a fresh machine needs no system packages.
    The server keeps running after this process exits; ``stop_embedded`` stops it.
    """
    import pgserver

    folder = (directory or data_dir()) / "postgres"
    folder.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode=None)
    server.ensure_postgres_running()  # pgserver hands back its handle of a server stopped since: start it again
    server.psql("SELECT 1")
    exists = server.psql("SELECT 1 FROM pg_database WHERE datname = 'newswatch'")
    if "1 row" not in exists:
        server.psql("CREATE DATABASE newswatch")
    url = server.get_uri("newswatch")
    (folder.parent / "database_url").write_text(url + "\n")
    return url


def stop_embedded(directory: Path | None = None) -> bool:
    """Stop the embedded server if it runs; True when one was stopped.

    A fast shutdown (clients disconnected, a checkpoint written) is tried first; a server that has not stopped
    after it (pg_ctl gives up after a minute on a very busy machine) is stopped at once (``immediate``: it
    recovers from its log on the next start). Either way the server is down when this returns True.
    """
    import subprocess

    folder = (directory or data_dir()) / "postgres"
    if not (folder / "postmaster.pid").exists():
        return False
    import pgserver

    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    owner = folder.owner()
    for mode in ("fast", "immediate"):
        command = [str(pg_ctl), "-D", str(folder), "-m", mode, "-w", "stop"]
        if os.geteuid() == 0 and owner != "root":
            command = ["su", owner, "-s", "/bin/sh", "-c", " ".join(command)]
        if subprocess.run(command, check=False, capture_output=True).returncode == 0:
            break
        log.warning("pg_ctl stop -m %s did not stop the embedded server in %s", mode, folder)
    (folder.parent / "database_url").unlink(missing_ok=True)
    return not (folder / "postmaster.pid").exists()
