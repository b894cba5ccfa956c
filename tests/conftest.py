"""Shared fixtures: an embedded PostgreSQL, a fresh database per test, Airflow set up for dag.test().

Airflow reads its configuration at import time, so its environment is set here, before any test
module can import it. Set NEWSWATCH_TEST_DATABASE_URL to a server's maintenance URL (for example
postgresql://postgres@127.0.0.1:5432/postgres) to test against an existing PostgreSQL instead.
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = Path(__file__).parent / "fixtures"
_TMP = Path(tempfile.mkdtemp(prefix="nw-test-"))

os.environ["AIRFLOW_HOME"] = str(_TMP / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_TMP / 'airflow' / 'airflow.db'}"
os.environ["NEWSWATCH_DATA_DIR"] = str(_TMP / "data")
os.environ.pop("NEWSWATCH_DATABASE_URL", None)
os.environ.pop("NEWSWATCH_CONFIG", None)
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

_counter = itertools.count()


def _with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (works for URL and socket forms)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """Maintenance URL of the PostgreSQL used by the tests (embedded unless configured)."""
    configured = os.environ.get("NEWSWATCH_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    import pgserver

    server = pgserver.get_server(_TMP / "pg", cleanup_mode="delete")
    url = server.get_uri("postgres")
    # A throwaway server need not wait for the disk: flushing is most of the time of creating and dropping a
    # database per test and of every commit. Drills that stop PostgreSQL run a server of their own.
    _admin(url, "ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET full_page_writes = off",
           "ALTER SYSTEM SET synchronous_commit = off", "SELECT pg_reload_conf()")
    yield url
    server.cleanup()


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> str:
    """A database with the schema applied, cloned for each test (faster than migrating each time)."""
    from newswatch import db

    name = f"nw_template_{os.getpid()}"
    _admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    url = _with_database(pg_admin_url, name)
    db.migrate(url)
    db.close_pools(url)  # a template must have no sessions
    return name


@pytest.fixture(scope="session")
def _clone_clause(pg_admin_url: str) -> str:
    """How each test's database is cloned: by copying files (PostgreSQL 15+), which for a small template is
    about half the time of the default WAL-logged copy, and the clone is most of a short test's time."""
    conn = psycopg2.connect(pg_admin_url)
    try:
        return " STRATEGY FILE_COPY" if conn.server_version >= 150000 else ""
    finally:
        conn.close()


def _admin(url: str, *statements: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str, _clone_clause: str,
                 monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, migrated database for one test, exported as NEWSWATCH_DATABASE_URL."""
    name = f"nw_test_{os.getpid()}_{next(_counter)}"
    _admin(pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {template_database}{_clone_clause}")
    url = _with_database(pg_admin_url, name)
    monkeypatch.setenv("NEWSWATCH_DATABASE_URL", url)
    yield url
    _admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_query(url: str, sql: str, params: tuple | dict | None = None) -> list[dict]:
    """Run SQL against the database at ``url`` in a transaction of its own and get rows as dicts."""
    import psycopg2.extras

    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture
def query(database_url: str):
    """Run SQL against the test database and get rows as dicts."""
    return functools.partial(run_query, database_url)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database, migrated once per session (dag.test() needs it)."""
    (_TMP / "airflow").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def simple_user(role: str):
    """A user of Airflow's SimpleAuthManager with ``role`` (viewer, user, op, admin), named ``<role>-user``."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return SimpleAuthManagerUser(username=f"{role}-user", role=role)


@pytest.fixture(scope="module")
def auth_manager(airflow_db):
    """Airflow's configured auth manager (SimpleAuthManager here), initialised as the API server does."""
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


@pytest.fixture
def login(auth_manager):
    """A TestClient of ``app`` logged in as a user of ``role`` through Airflow's ``_token`` cookie (None: nobody)."""
    from fastapi.testclient import TestClient

    def client_for(app, role: str | None) -> TestClient:
        client = TestClient(app)
        if role:
            client.cookies.set("_token", auth_manager.generate_jwt(simple_user(role)))
        return client

    return client_for


@pytest.fixture
def site():
    from tests.servers import LoopbackServer

    server = LoopbackServer().start()
    yield server
    server.stop()


@pytest.fixture
def webhook():
    from tests.servers import WebhookReceiver

    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def smtp():
    from tests.servers import SmtpSink

    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def seed_text() -> str:
    path = SHARED / "seed" / "syria-strikes-fr.txt"
    if not path.exists():
        pytest.skip(f"seed article not found at {path}")
    return path.read_text(encoding="utf-8")


def pytest_unconfigure(config: pytest.Config) -> None:
    """pgserver logs from its exit handler, after pytest has closed the streams its log handlers write to: keep
    those lines from turning into "--- Logging error ---" tracebacks at the end of the run."""
    import logging

    logging.raiseExceptions = False
