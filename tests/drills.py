"""Items for worker-pool drills: module-level functions a worker process can run by name."""

from __future__ import annotations

import os
import signal
import time


def echo(value):
    return value


def square(value: int) -> int:
    return value * value


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def pid(_: object) -> int:
    return os.getpid()


def die(how: str) -> None:
    """Lose the worker the way C code does: SIGKILL, an abort() (double free), a segfault."""
    {"kill": lambda: os.kill(os.getpid(), signal.SIGKILL),
     "abort": os.abort,
     "segfault": lambda: os.kill(os.getpid(), signal.SIGSEGV)}[how]()


def allocate(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def fail(message: str) -> None:
    raise ValueError(message)


def pool_in_daemon(results) -> None:
    """Run a worker pool from a daemonic process (what an Airflow task under a Celery worker is); report its
    answers and whether the process is still daemonic, with the same key, afterwards."""
    import multiprocessing

    from newswatch.workers import WorkerPool

    me = multiprocessing.current_process()
    key = (type(me.authkey), bytes(me.authkey))
    with WorkerPool(2, time_limit=30) as pool:
        answers = [pool.submit(square, n).result(timeout=60) for n in range(4)]
    results.put((answers, me.daemon, (type(me.authkey), bytes(me.authkey)) == key))
