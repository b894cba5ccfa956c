"""newswatch deployed as compose deploys it, on loopback processes: Redis, PostgreSQL, Airflow's API server,
scheduler and DAG processor, and Celery workers, for the distributed test and the scale-out benchmark.

* Redis: Debian's ``redis-server`` on a free port of 127.0.0.1, in a folder of its own, nothing saved.
* PostgreSQL: one embedded server (pgserver, unix socket) with two databases, ``airflow`` (Airflow's metadata
  and the Celery result backend) and ``news`` (newswatch's data), ``max_connections`` raised for the workers.
* Airflow: the CeleryExecutor, ``[api] workers`` 1, the same JWT secret, API secret key and Fernet key in every
  component, examples off, the DAG paused until :meth:`Cluster.trigger` unpauses it, on a yearly schedule,
  ``[scheduler] task_instance_heartbeat_timeout`` short so that a lost worker's tasks are retried soon, a small
  Celery visibility timeout. Every component runs in a process group of its own; its output goes to
  ``<folder>/logs/<name>.log``.
* Celery workers: ``airflow celery worker -H <name>@%h -c <concurrency>``; their task instances report
  ``<name>`` as their host name (``[core] hostname_callable``), since all of them run on this one machine.

The API is used as an operator would, over HTTP; the simple auth manager lets every request in as admin.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
DAG_ID = "newswatch_poll"
WORKER_NAME_ENV = "NEWSWATCH_CELERY_WORKER"


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the workers: the worker's name (they all share this machine's name)."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ClusterError(RuntimeError):
    pass


class Cluster:
    """Start with :meth:`start`, stop with :meth:`stop` (also on failure: every process group it started)."""

    def __init__(self, folder: Path, config: Path, *, concurrency: int = 2, heartbeat_timeout: int = 30,
                 visibility_timeout: int = 300, env: dict[str, str] | None = None) -> None:
        self.folder, self.config = Path(folder), Path(config)
        self.concurrency, self.heartbeat_timeout, self.visibility_timeout = (concurrency, heartbeat_timeout,
                                                                             visibility_timeout)
        self.extra_env = env or {}
        self.logs = self.folder / "logs"
        self.processes: dict[str, subprocess.Popen] = {}
        self._redis: subprocess.Popen | None = None
        self._postgres = None
        self.api_port = free_port()
        self.news_url = ""
        self.env: dict[str, str] = {}

    # -- start and stop ------------------------------------------------------------------------------------------
    def start(self, workers: list[str]) -> Cluster:
        redis = shutil.which("redis-server")
        if redis is None:
            raise ClusterError("redis-server not found: install Debian's redis-server (apt-get install redis-server; "
                               ".ci/run does)")
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self._start_redis(redis)
            self._start_postgres()
            self.env = self._environment()
            self._run("airflow-db-migrate", [str(BIN / "airflow"), "db", "migrate"], timeout=300)
            self._run("newswatch-migrate", [str(BIN / "newswatch"), "migrate"], timeout=120)
            self._run("newswatch-pool", [str(BIN / "newswatch"), "pool"], timeout=120)
            self._spawn("api-server", [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1",
                                       "--port", str(self.api_port)])
            self._spawn("scheduler", [str(BIN / "airflow"), "scheduler"])
            self._spawn("dag-processor", [str(BIN / "airflow"), "dag-processor"])
            self._wait(lambda: self._get("/api/v2/version") is not None, 180, "the API server to answer")
            for name in workers:
                self.start_worker(name)
            self._wait(lambda: self._get(f"/api/v2/dags/{DAG_ID}") is not None, 180, f"{DAG_ID} to be parsed")
            for name in workers:
                self.wait_for_worker(name)
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, name: str) -> None:
        env = {**self.env, WORKER_NAME_ENV: name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.cluster.worker_hostname"}
        self._spawn(f"worker-{name}", [str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h",
                                       "--concurrency", str(self.concurrency), "--queues", "default",
                                       "--skip-serve-logs", "--without-gossip", "--without-mingle"], env=env)

    def wait_for_worker(self, name: str, timeout: float = 180) -> None:
        log = self.logs / f"worker-{name}.log"
        self._wait(lambda: log.exists() and f"{name}@" in log.read_text(errors="replace")
                   and " ready." in log.read_text(errors="replace"), timeout, f"Celery worker {name} to be ready")

    def stop(self) -> None:
        """Stop every process group started here (TERM, then KILL), then Redis and PostgreSQL."""
        for name in reversed(list(self.processes)):
            self._stop_group(self.processes.pop(name))
        if self._redis is not None:
            self._stop_group(self._redis)
            self._redis = None
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- workers -------------------------------------------------------------------------------------------------
    def worker_tree(self, name: str) -> set[int]:
        """Process ids of a worker and everything under it (its pool, task processes, their worker processes)."""
        process = self.processes.get(f"worker-{name}")
        return self.process_tree(process) if process is not None and process.poll() is None else set()

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and every process under it, as when its machine is lost."""
        process = self.processes.pop(f"worker-{name}")
        tree = self.process_tree(process)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)

    @staticmethod
    def process_tree(process: subprocess.Popen) -> set[int]:
        import psutil

        try:
            root = psutil.Process(process.pid)
            return {root.pid, *(child.pid for child in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    # -- Airflow's REST API --------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        answer = requests.request(method, self.base_url + path, timeout=60, **kwargs)
        if not answer.ok:
            raise ClusterError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def _get(self, path: str) -> Any:
        import requests

        try:
            answer = requests.get(self.base_url + path, timeout=10)
        except requests.RequestException:
            return None
        return answer.json() if answer.ok else None

    def trigger(self, timeout: float = 120) -> str:
        """Start a run; returns its id. The DAG is paused at creation: unpausing it makes the scheduler start its
        one scheduled run (a yearly schedule, none other is due); once unpaused, a run is triggered."""
        if not self.api("GET", f"/api/v2/dags/{DAG_ID}")["is_paused"]:
            return self.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None})["dag_run_id"]
        self.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        runs: list[dict] = []

        def started() -> bool:
            runs[:] = self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
            return bool(runs)

        self._wait(started, timeout, "the scheduler to start a run")
        return runs[0]["dag_run_id"]

    def warm_up(self, timeout: float = 300) -> None:
        """One run of ``newswatch_maintenance`` (quick on an empty archive), paused again afterwards: the API
        server answers its first task calls and the workers' pool processes import Airflow's task machinery
        once, as in a deployment that has been up for a while, before anything is measured."""
        dag = "newswatch_maintenance"
        self._wait(lambda: self._get(f"/api/v2/dags/{dag}") is not None, 180, f"{dag} to be parsed")
        self.api("PATCH", f"/api/v2/dags/{dag}", json={"is_paused": False})
        run_id = self.api("POST", f"/api/v2/dags/{dag}/dagRuns", json={"logical_date": None})["dag_run_id"]
        path = f"/api/v2/dags/{dag}/dagRuns/{quote(run_id, safe='')}"
        self._wait(lambda: (self._get(path) or {}).get("state") in ("success", "failed"), timeout, f"{dag} to run")
        self.api("PATCH", f"/api/v2/dags/{dag}", json={"is_paused": True})

    def run(self, run_id: str) -> dict:
        return self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")

    def wait_for_run(self, run_id: str, timeout: float) -> dict:
        """The run once it finished (success or failed); ClusterError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                run = self.run(run_id)
            except Exception:  # noqa: BLE001 - a busy API server answers the next time
                run = {}
            if run.get("state") in ("success", "failed"):
                return run
            time.sleep(2)
        raise ClusterError(f"run {run_id} not finished after {timeout:g} s: {self.run(run_id)}")

    def task_instances(self, run_id: str) -> list[dict]:
        """The run's task instances (mapped ones one by one): state, hostname, try_number, dates."""
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self.api("GET", path, params={"limit": 1000})["task_instances"]

    def tries(self, run_id: str, task_id: str, map_index: int) -> list[dict]:
        """Every try of one task instance, earlier ones included (with the host each ran on)."""
        path = (f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/{map_index}"
                "/tries")
        return self.api("GET", path, params={"limit": 100})["task_instances"]

    # -- internals -----------------------------------------------------------------------------------------------
    def _start_redis(self, redis: str) -> None:
        port = free_port()
        folder = self.folder / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "redis.log", "w") as log:
            self._redis = subprocess.Popen(
                [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(folder), "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.redis_url = f"redis://127.0.0.1:{port}/0"

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                    conn.sendall(b"PING\r\n")
                    return conn.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        self._wait(answers, 30, "Redis to answer")

    def _start_postgres(self) -> None:
        import pgserver

        server = self._postgres = pgserver.get_server(self.folder / "pg", cleanup_mode="delete")
        # Two workers with their task processes (17 news connections each at most) and Airflow's components.
        server.psql("ALTER SYSTEM SET max_connections = 400; ALTER SYSTEM SET fsync = off; "
                    "ALTER SYSTEM SET synchronous_commit = off; ALTER SYSTEM SET full_page_writes = off;")
        pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        server.psql("CREATE DATABASE airflow; CREATE DATABASE news;")
        self.socket_dir = server.get_uri().split("host=", 1)[1]
        self.news_url = server.get_uri("news")

    def _environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "NEWSWATCH_"))}
        metadata = f"postgres:@/airflow?host={self.socket_dir}"
        fernet = urlsafe_b64encode(secrets.token_bytes(32)).decode()
        env.update({
            "PATH": f"{BIN}:{env.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),  # tests.cluster.worker_hostname
            "AIRFLOW_HOME": str(self.folder / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": fernet,
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{metadata}",
            "AIRFLOW__CELERY__BROKER_URL": self.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{metadata}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(self.heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.folder / "airflow" / "logs"),
            "NEWSWATCH_DATABASE_URL": self.news_url,
            "NEWSWATCH_CONFIG": str(self.config),
            "NEWSWATCH_DATA_DIR": str(self.folder / "data"),
            "NEWSWATCH_POLL_SCHEDULE": "0 0 1 1 *",  # one run when unpaused (see trigger), no other one soon
            "PYTHONWARNINGS": "ignore",
        })
        env.update(self.extra_env)
        return env

    def _run(self, name: str, command: list[str], timeout: float) -> None:
        with open(self.logs / f"{name}.log", "w") as log:
            result = subprocess.run(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                    cwd=self.folder)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(command[:4])} failed:\n{self.tail(name)}")

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.logs / f"{name}.log", "w") as log:
            self.processes[name] = subprocess.Popen(command, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True, cwd=self.folder)

    def _wait(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise ClusterError(f"{name} exited ({process.returncode}) while waiting for {what}:\n"
                                       f"{self.tail(name)}")
            time.sleep(1)
        raise ClusterError(f"timed out after {timeout:g} s waiting for {what}")

    def diagnostics(self, lines: int = 30) -> str:
        """The end of every component's log and the error lines of the task logs: what a failed test prints."""
        parts = [f"--- {path.stem} ---\n{self.tail(path.stem, lines)}" for path in sorted(self.logs.glob("*.log"))]
        for path in sorted((self.folder / "airflow" / "logs").glob("dag_id=*/**/*.log")):
            errors = [line[:400] for line in path.read_text(errors="replace").splitlines()
                      if '"level":"error"' in line or '"level":"warning"' in line]
            if errors:
                parts.append(f"--- {path.relative_to(self.folder)} ---\n" + "\n".join(errors[-10:]))
        return "\n".join(parts)

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _stop_group(self, process: subprocess.Popen, timeout: float = 20) -> None:
        tree = self.process_tree(process)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        for pid in tree:  # what left the group (a task process in a session of its own) goes too
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


if __name__ == "__main__":  # pragma: no cover - python -m tests.cluster CONFIG: a cluster to look at by hand
    import tempfile

    with Cluster(Path(tempfile.mkdtemp(prefix="nw-cluster-")), Path(sys.argv[1])) as cluster:
        cluster.start(["w1", "w2"])
        print(f"up: {cluster.base_url} (logs in {cluster.logs}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
