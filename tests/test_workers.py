"""The worker pool: crashes, hangs and memory blow-ups cost only their item; the pool goes on."""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time

import pytest

from newswatch.workers import WorkerFailure, WorkerPool
from tests import drills


def _outcome(future):
    try:
        return future.result(timeout=60)
    except WorkerFailure as exc:
        return exc.kind


def test_results_come_back_and_workers_are_reused():
    with WorkerPool(2, time_limit=30) as pool:
        futures = [pool.submit(drills.square, n) for n in range(20)]
        assert [f.result(timeout=60) for f in futures] == [n * n for n in range(20)]
        pids = {pool.submit(drills.pid, None).result(timeout=60) for _ in range(10)}
        assert len(pids) <= 2 and os.getpid() not in pids


@pytest.mark.parametrize("how", ["kill", "abort", "segfault"])
def test_a_dying_worker_costs_its_item_only(how):
    with WorkerPool(2, time_limit=30) as pool:
        before = [pool.submit(drills.square, n) for n in range(5)]
        doomed = pool.submit(drills.die, how)
        after = [pool.submit(drills.square, n) for n in range(5, 10)]
        assert [f.result(timeout=60) for f in before + after] == [n * n for n in range(10)]
        with pytest.raises(WorkerFailure) as failure:
            doomed.result(timeout=60)
        assert failure.value.kind == "crashed"
        signal_name = {"kill": "SIGKILL", "abort": "SIGABRT", "segfault": "SIGSEGV"}[how]
        assert signal_name in failure.value.message


def test_a_hanging_item_is_stopped_at_its_time_limit():
    with WorkerPool(2, time_limit=1.0) as pool:
        started = time.monotonic()
        hung = pool.submit(drills.sleep, 30)
        quick = [pool.submit(drills.square, n) for n in range(4)]
        assert _outcome(hung) == "timeout"
        assert time.monotonic() - started < 15
        assert [f.result(timeout=60) for f in quick] == [0, 1, 4, 9]
        assert pool.submit(drills.square, 7).result(timeout=60) == 49  # a fresh worker took over


def test_an_item_over_the_memory_limit_fails_alone():
    with WorkerPool(1, time_limit=30, memory_limit_mb=64) as pool:
        assert _outcome(pool.submit(drills.allocate, 512)) == "memory"
        assert pool.submit(drills.allocate, 8).result(timeout=60) == 8 * 1024 * 1024


def test_an_exception_is_reported_with_its_message_and_the_worker_stays():
    with WorkerPool(1, time_limit=30) as pool:
        first = pool.submit(drills.pid, None).result(timeout=60)
        with pytest.raises(WorkerFailure) as failure:
            pool.submit(drills.fail, "bad page").result(timeout=60)
        assert (failure.value.kind, failure.value.message) == ("error", "ValueError: bad page")
        assert pool.submit(drills.pid, None).result(timeout=60) == first


def test_a_worker_killed_from_outside_mid_item():
    """What an operator's kill -9 (or the OOM killer) does to a worker in the middle of an item."""
    with WorkerPool(2, time_limit=60) as pool:
        slow = pool.submit(drills.sleep, 20)
        deadline = time.monotonic() + 30
        while not pool.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        for pid in pool.worker_pids():
            os.kill(pid, signal.SIGKILL)
        assert _outcome(slow) == "crashed"
        assert pool.submit(drills.square, 3).result(timeout=60) == 9


def test_submitting_from_many_threads():
    results: list[int] = []
    with WorkerPool(2, time_limit=30) as pool:
        def work(base: int) -> None:
            results.extend(pool.submit(drills.square, base + n).result(timeout=60) for n in range(10))
        threads = [threading.Thread(target=work, args=(100 * i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == sorted((100 * i + n) ** 2 for i in range(4) for n in range(10))


@pytest.mark.parametrize("library", ["multiprocessing", "billiard"])
def test_a_daemonic_process_starts_its_pool(library):
    """An Airflow task run by a Celery worker is a daemonic process, forked from a pool process that billiard
    (Celery's multiprocessing) made multiprocessing's current process, with billiard's authentication key:
    multiprocessing forbids it children and refuses to send that key to its fork server. The pool starts its
    workers there all the same, and the process stays as it was."""
    context = importlib.import_module(library).get_context("spawn")
    results = context.Queue()
    process = context.Process(target=drills.pool_in_daemon, args=(results,), daemon=True)
    process.start()
    try:
        assert results.get(timeout=120) == ([0, 1, 4, 9], True, True)
        process.join(60)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
