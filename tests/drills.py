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
