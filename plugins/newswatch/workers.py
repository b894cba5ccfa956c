"""Worker processes for CPU-heavy work on untrusted input: an item's crash, hang or memory blow-up costs that item.

Parsing a stranger's feed, extracting a stranger's page and running the meaning model are CPU work in
C libraries (libxml2, lxml, numpy). Done in threads they share one core (the GIL) and one address space:
a 10 MiB ill-formed feed holds the GIL for a minute, and a ``double free or corruption`` abort in one
extraction kills the whole task with every other entry of its batch. Here each item runs in a worker
process, one item at a time per worker:

* **crash**: a worker that dies (SIGKILL, SIGABRT, SIGSEGV) fails its item with ``crashed``; a fresh
  worker takes the next item;
* **hang**: an item that overruns ``time_limit`` seconds of wall time is stopped by killing its worker
  (``timeout``);
* **memory**: each worker's address space is capped (RLIMIT_AS) at what it used once warmed up plus
  ``memory_limit_mb``; an item that needs more fails with ``memory`` and its worker is replaced.

``concurrent.futures.ProcessPoolExecutor`` cannot do this: one dead worker breaks the whole pool
(every pending future fails), and a running item cannot be stopped. Workers start once per pool and are
reused; what a task loads (the embedding model) is loaded once per worker. They are forked from a
fork server that has imported the task modules, so starting one costs milliseconds, not an import.

Use: ``with WorkerPool(time_limit=60, memory_limit_mb=1024, warm=("newswatch.ingest.extract",)) as pool:``
then ``pool.submit(function, argument)`` from any thread returns a ``concurrent.futures.Future``; its
exception is a :class:`WorkerFailure` when the item was lost. ``function`` must be a module-level
function (it is sent to the worker by name) and its argument and result picklable. ``shared_pool``
gives a process one pool per purpose for its whole life (an Airflow task, a CLI run, a test session):
the workers and what they loaded are reused by every stage of the process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import os
import queue
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from newswatch.config import Settings

log = logging.getLogger(__name__)

_STOP = None
_MAX_START_FAILURES = 3
_M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)


class Expected(Exception):  # noqa: N818 - a wrapper, not an error of its own
    """Raised in a worker around an exception the caller handles (a parse error of the document): the future
    fails with that exception itself, not with a WorkerFailure. The wrapped exception must pickle."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class WorkerFailure(Exception):
    """An item lost to its worker: ``kind`` is ``crashed``, ``timeout``, ``memory`` or ``error``."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def default_size() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _virtual_memory() -> int:
    """This process's address-space size in bytes (what RLIMIT_AS limits)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[0]) * resource.getpagesize()


def _map_large_allocations() -> None:
    """Have glibc serve every allocation above 128 KiB with its own mapping, whatever sizes came before.

    Its default threshold rises with each large block freed, after which big buffers come from free heap
    space that the address-space cap does not see: how much of a page's memory counted against the limit
    then depended on the items before it. Mapped blocks count, and go back to the system when freed.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the cap still holds, less exactly
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


def _worker_main(connection: Connection, warm: tuple[str, ...], memory_limit_mb: int) -> None:
    """Run items sent over ``connection`` until told to stop. Runs in the worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    for name in warm:
        module = importlib.import_module(name)
        warm_up = getattr(module, "warm_up", None)
        if callable(warm_up):
            warm_up()  # load models now, so that they count in the baseline, not against the item
    if memory_limit_mb > 0:
        _map_large_allocations()
        try:
            limit = _virtual_memory() + memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (OSError, ValueError):
            log.warning("could not cap worker memory", exc_info=True)
    connection.send(("ready", os.getpid()))  # the items' clocks start only now
    functions: dict[str, Callable[[Any], Any]] = {}
    while True:
        try:
            message = connection.recv()
        except MemoryError:  # the item itself does not fit: say so, then make way for a fresh worker
            with contextlib.suppress(Exception):
                connection.send(("memory", "the item did not fit in the worker's memory limit"))
            return
        except (EOFError, OSError):
            return
        if message is _STOP:
            return
        name, argument = message
        try:
            function = functions.get(name)
            if function is None:
                module_name, _, attribute = name.rpartition(".")
                function = functions[name] = getattr(importlib.import_module(module_name), attribute)
            reply = ("ok", function(argument))
        except Expected as exc:  # the item's own answer ("not a feed"): raised again in the caller
            reply = ("raise", exc.error)
        except MemoryError:
            reply = ("memory", "the item needed more than the worker's memory limit")
        except BaseException as exc:  # noqa: BLE001 - report any failure of the item, keep the worker
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            connection.send(reply)
        except MemoryError:
            connection.send(("memory", "the item's result did not fit in the worker's memory limit"))
        if reply[0] == "memory":
            return  # a worker that ran out of memory may be in a bad state: a fresh one takes over


@dataclass
class _Task:
    name: str
    argument: Any
    future: Future
    label: str = ""


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: Connection
    task: _Task | None = None
    deadline: float = 0.0
    pid: int = field(default=0)
    ready: bool = False  # warmed up (models loaded): takes items from now on


class WorkerPool:
    """A fixed number of worker processes fed one item at a time; see the module docstring."""

    def __init__(self, size: int | None = None, *, time_limit: float, memory_limit_mb: int = 0,
                 warm: Iterable[str] = ()) -> None:
        self.size = size or default_size()
        self.time_limit = time_limit
        self.memory_limit_mb = memory_limit_mb
        self.warm = tuple(warm)
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["newswatch.workers", *self.warm])
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._wakeup_read, self._wakeup_write = self._context.Pipe(duplex=False)
        self._workers: list[_Worker] = []
        self._closed = False
        self._lock = threading.Lock()
        self._dispatcher = threading.Thread(target=self._dispatch, name="worker-pool", daemon=True)
        self._started = False
        self._start_failures = 0  # workers that died before they were ready, in a row
        self._broken = False

    # -- public -----------------------------------------------------------------------------------
    def submit(self, function: Callable[[Any], Any], argument: Any, label: str = "") -> Future:
        """Run ``function(argument)`` in a worker; the future fails with WorkerFailure if the item is lost.

        ``label`` names the item in ``running()`` (a URL, say).
        """
        future: Future = Future()
        name = f"{function.__module__}.{function.__qualname__}"
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if self._broken:
                future.set_exception(WorkerFailure("crashed", "the worker pool stopped on an error (see the log)"))
                return future
            if not self._started:
                self._dispatcher.start()
                self._started = True
            self._tasks.put(_Task(name, argument, future, label))
            self._wakeup_write.send_bytes(b"")
        return future

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (for operators and fault drills)."""
        return [worker.pid for worker in list(self._workers) if worker.process.is_alive()]

    def running(self) -> list[tuple[int, str]]:
        """(worker pid, item label) of the items being worked on now."""
        return [(worker.pid, task.label) for worker in list(self._workers) if (task := worker.task) is not None]

    def close(self) -> None:
        """Finish the submitted items, then stop the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._tasks.put(_STOP)
            if self._started:
                self._wakeup_write.send_bytes(b"")
        if self._started:
            self._dispatcher.join()
        self._wakeup_read.close()
        self._wakeup_write.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- dispatcher thread ------------------------------------------------------------------------
    def _start_workers(self, wanted: int) -> None:
        while len(self._workers) < wanted:
            try:
                self._workers.append(self._start_worker())  # takes items once it says it is ready
            except Exception:  # noqa: BLE001 - e.g. no fork server: counted, and the items fail, not hang
                log.exception("could not start a worker process")
                self._start_failures += 1
                return

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe()
        with _main_module_hidden(), _children_allowed():  # the process copies the flags it is made with
            process = self._context.Process(target=_worker_main, args=(child, self.warm, self.memory_limit_mb),
                                            name="newswatch-worker", daemon=True)
            process.start()
        child.close()
        return _Worker(process, parent, pid=process.pid or 0)

    def _dispatch(self) -> None:
        pending: list[_Task] = []
        stopping = False
        try:
            while True:
                while True:  # take what was submitted
                    try:
                        task = self._tasks.get_nowait()
                    except queue.Empty:
                        break
                    if task is _STOP:
                        stopping = True
                    else:
                        pending.append(task)
                busy = [worker for worker in self._workers if worker.task is not None]
                if stopping and not pending and not busy:
                    return
                if self._start_failures >= _MAX_START_FAILURES:  # a broken install: fail the items, not hang
                    self._start_failures = 0
                    while pending:
                        pending.pop(0).future.set_exception(
                            WorkerFailure("crashed", "worker processes die while starting (see the log)"))
                self._assign(pending)
                self._collect()
        except Exception:
            log.exception("the worker pool stopped on an error")
            raise
        finally:
            with self._lock:
                self._broken = True  # later submissions fail at once instead of waiting for nobody
            self._stop_workers()
            while True:
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if task is not _STOP:
                    pending.append(task)
            for task in pending:
                task.future.set_exception(WorkerFailure("crashed", "the worker pool stopped"))

    def _assign(self, pending: list[_Task]) -> None:
        self._start_workers(min(self.size, len(pending) + self._busy()))
        while pending:
            idle = next((worker for worker in self._workers if worker.ready and worker.task is None), None)
            if idle is None:
                return
            task = pending.pop(0)
            if not task.future.set_running_or_notify_cancel():
                continue
            try:
                idle.connection.send((task.name, task.argument))
            except (OSError, ValueError) as exc:  # the worker died while idle, or while taking this item
                failure = self._handover_failure(idle, exc)
                self._replace(idle)
                task.future.set_exception(failure)
                continue
            idle.task, idle.deadline = task, time.monotonic() + self.time_limit

    @staticmethod
    def _handover_failure(worker: _Worker, error: Exception) -> WorkerFailure:
        """Why an item could not be handed over: the worker's own last word if it left one (an item too big
        for its memory limit), else a crash."""
        with contextlib.suppress(Exception):
            if worker.connection.poll(0):
                kind, message = worker.connection.recv()
                if kind == "memory":
                    return WorkerFailure("memory", message)
        return WorkerFailure("crashed", f"could not hand the item over: {error}")

    def _busy(self) -> int:
        return sum(1 for worker in self._workers if worker.task is not None)

    def _collect(self) -> None:
        busy = [worker for worker in self._workers if worker.task is not None]
        starting = [worker for worker in self._workers if not worker.ready]
        timeout = max(0.0, min((w.deadline for w in busy), default=time.monotonic() + 1) - time.monotonic())
        ready = wait([self._wakeup_read, *(w.connection for w in busy + starting)], timeout=min(timeout, 1.0))
        if self._wakeup_read in ready:
            while self._wakeup_read.poll():
                self._wakeup_read.recv_bytes()
        for worker in starting:
            if worker.connection in ready:
                try:
                    worker.connection.recv()  # ("ready", pid)
                    worker.ready = True
                    self._start_failures = 0
                except (EOFError, OSError):  # died while starting (an import or a model load failed)
                    worker.process.join(timeout=5)
                    log.error("a worker process failed to start (%s)", _describe_exit(worker.process))
                    self._replace(worker)
                    self._start_failures += 1
        for worker in busy:
            task = worker.task
            if worker.connection in ready:
                try:
                    kind, payload = worker.connection.recv()
                except (EOFError, OSError):
                    worker.process.join(timeout=5)
                    self._fail(worker, "crashed", f"the worker process died ({_describe_exit(worker.process)})")
                    continue
                worker.task = None
                if kind == "ok":
                    task.future.set_result(payload)
                elif kind == "raise":
                    task.future.set_exception(payload)
                else:
                    task.future.set_exception(WorkerFailure(kind, payload))
                    if kind == "memory":
                        self._replace(worker)
            elif time.monotonic() >= worker.deadline:
                self._fail(worker, "timeout", f"the item took longer than {self.time_limit:g} s")

    def _fail(self, worker: _Worker, kind: str, message: str) -> None:
        task = worker.task
        worker.task = None
        log.warning("worker %s lost an item: %s: %s", worker.pid, kind, message)
        self._replace(worker)
        if task is not None:
            task.future.set_exception(WorkerFailure(kind, message))

    def _replace(self, worker: _Worker) -> None:
        """Stop a worker for good; a new one starts when there is work for it."""
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.connection.close()
        self._workers.remove(worker)

    def _stop_workers(self) -> None:
        for worker in list(self._workers):
            with contextlib.suppress(OSError, ValueError):  # already gone
                worker.connection.send(_STOP)
        for worker in list(self._workers):
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.connection.close()
        self._workers.clear()


_main_lock = threading.Lock()


@contextlib.contextmanager
def _main_module_hidden():
    """Start a worker without the parent's ``__main__``: multiprocessing would run the parent's main script
    again in each worker (as ``__mp_main__``), and an Airflow task's main script is Airflow's CLI, which
    sets itself up from an environment the worker does not need. Workers need only our modules."""
    main = sys.modules.get("__main__")
    with _main_lock:
        saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if main and key in main.__dict__}
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__spec__ = None
        try:
            yield
        finally:
            if main is not None:
                main.__dict__.pop("__spec__", None)
                main.__dict__.update(saved)


_daemon_lock = threading.Lock()


@contextlib.contextmanager
def _children_allowed():
    """Let this process start the pool's workers when it is itself a Celery worker's task (or any daemonic process).

    An Airflow task run by a Celery worker is forked from the worker's pool process, which billiard (Celery's
    fork of multiprocessing) made multiprocessing's current process: a daemonic one, with billiard's own
    authentication key. ``multiprocessing`` refuses to start children from a daemonic process ("daemonic
    processes are not allowed to have children", because it could not wait for them at exit) and to pickle
    an authentication key of another library's type for the fork server ("Pickling an AuthenticationString
    object is disallowed"). Neither reason holds here: ``close()`` stops the workers, they are daemonic
    themselves (multiprocessing ends them when this process exits) and a worker whose parent died sees its
    pipe close and stops. So, while a worker starts, one start at a time, the current process is not daemonic
    and its key is multiprocessing's type (the same bytes); both are put back afterwards.
    """
    config = multiprocessing.current_process()._config  # noqa: SLF001 - what Process.start() checks and sends
    with _daemon_lock:
        saved = dict(config)
        config["daemon"] = False
        key = config.get("authkey")
        if key is not None and not isinstance(key, multiprocessing.process.AuthenticationString):
            config["authkey"] = multiprocessing.process.AuthenticationString(bytes(key))
        try:
            yield
        finally:
            config.clear()
            config.update(saved)


def _describe_exit(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


_shared: dict[tuple, WorkerPool] = {}
_shared_lock = threading.Lock()


def shared_pool(size: int | None, *, time_limit: float, memory_limit_mb: int, warm: tuple[str, ...]) -> WorkerPool:
    """This process's pool for these settings, started on first use and closed when the process exits."""
    key = (os.getpid(), size, time_limit, memory_limit_mb, warm)
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None:
            pool = _shared[key] = WorkerPool(size, time_limit=time_limit, memory_limit_mb=memory_limit_mb,
                                             warm=warm)
            if len(_shared) == 1:
                atexit.register(close_shared)
        return pool


def close_shared() -> None:
    """Stop this process's shared pools (at exit; tests call it to start the next drill afresh)."""
    with _shared_lock:
        pools = [(key, pool) for key, pool in _shared.items() if key[0] == os.getpid()]
        _shared.clear()
    for _, pool in pools:
        pool.close()


def feed_pool(settings: Settings) -> WorkerPool:
    """The process's workers for feed parsing alone (``poll_feeds``): they load and warm up only the feed parsers.

    A ``poll_feeds`` task is a process of its own; starting the extraction stack there too (trafilatura, lxml,
    numpy, and a warm-up extraction in every worker) cost seconds of CPU per task for nothing it does.
    """
    polling = settings.polling
    return shared_pool(polling.worker_processes or None, time_limit=polling.item_time_limit,
                       memory_limit_mb=polling.item_memory_mb, warm=("newswatch.ingest.feeds",))


_DOCUMENT_WARM = ("newswatch.ingest.extract", "newswatch.ingest.feeds", "newswatch.ingest.articles",
                  "newswatch.stories.meaning")


def document_pool(settings: Settings) -> WorkerPool:
    """The process's workers for strangers' pages and what is computed from their text: extraction, feed
    parsing (when a process does both) and the meaning model, loaded once in each worker before its memory
    is capped. One pool for all of them: the pages a task extracts are analysed on the same cores, by
    processes that are already warm, and no second set of processes holds a second copy of the model."""
    polling = settings.polling
    return shared_pool(polling.worker_processes or None, time_limit=polling.item_time_limit,
                       memory_limit_mb=polling.item_memory_mb,
                       warm=_DOCUMENT_WARM)


def meaning_pool(settings: Settings) -> WorkerPool:
    """The process's workers for the meaning model: its document pool when it has started one (a fetch task,
    ``newswatch poll``: the model is warm there already, no second copy), else workers that load the model
    alone (``cluster_stories``, the rules preview), without the extraction stack they would not use."""
    polling = settings.polling
    size, time_limit, memory = polling.worker_processes or None, polling.item_time_limit, polling.item_memory_mb
    with _shared_lock:
        documents = _shared.get((os.getpid(), size, time_limit, memory, _DOCUMENT_WARM))
    if documents is not None:
        return documents
    return shared_pool(size, time_limit=time_limit, memory_limit_mb=memory, warm=("newswatch.stories.meaning",))
