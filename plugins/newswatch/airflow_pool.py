"""The Airflow pool that bounds newswatch's mapped tasks, sized from the config.

``poll_feeds`` and ``fetch_articles`` run in the pool ``newswatch_fetch``; its slots
(``polling.max_parallel_tasks``) are how many of them run at once across the whole deployment, whatever the
number of workers. Airflow never schedules a task whose pool does not exist (the run would wait for ever),
so the pool is created, or resized to the config, idempotently:

* when an Airflow component with metadata access starts (scheduler, DAG processor, triggerer): this module is
  a listener of the newswatch plugin, called by Airflow on every job start (``on_starting``). A config that
  cannot be read there still gets the pool, with the default size (an existing pool is left as it is);
* by ``newswatch pool`` (``make run`` and the compose ``airflow-init`` call it), to apply a new size at once.

Task processes cannot do it: in Airflow 3 they have no access to the metadata database. They call the listener
too (with a ``TaskRunnerMarker``), and it returns at once there.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl

POOL = "newswatch_fetch"
DESCRIPTION = "newswatch poll_feeds and fetch_articles tasks running at once (polling.max_parallel_tasks)"

log = logging.getLogger(__name__)


def ensure_pool(slots: int, *, resize: bool = True) -> tuple[int | None, int]:
    """Create the pool with ``slots``, or resize it (unless ``resize`` is false); returns (before, after).

    ``before`` is None when the pool did not exist. Needs Airflow's metadata database.
    """
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    for _ in range(2):  # two components starting at once may both create it: the loser sees it exists
        try:
            with create_session() as session:
                existing = session.scalar(select(Pool).where(Pool.pool == POOL))
                before = existing.slots if existing is not None else None
                if existing is not None and (not resize or existing.slots == slots):
                    return before, before
                Pool.create_or_update_pool(POOL, slots, DESCRIPTION, include_deferred=False, session=session)
                return before, slots
        except IntegrityError:
            continue
    raise RuntimeError(f"could not create the Airflow pool {POOL}")


def _is_job(component: object) -> bool:
    """Whether ``on_starting`` was called by an Airflow job (scheduler, DAG processor, triggerer), the components
    with metadata access. A task process calls it too, with a ``TaskRunnerMarker``, in every task a Celery
    worker (or any executor) runs: it has no metadata access, and must not pay for the config. The class is
    looked at by name, so that a task process does not import Airflow's job machinery to tell."""
    return any(cls.__name__ == "Job" and cls.__module__ == "airflow.jobs.job" for cls in type(component).__mro__)


@hookimpl
def on_starting(component: object) -> None:
    """An Airflow job starts (scheduler, DAG processor, triggerer): make sure the pool exists, sized from the
    config. Anything else that starts (a task process) is left alone. Never raises: a component must start
    whatever happens here."""
    if not _is_job(component):
        return
    from newswatch.config import ConfigError, Polling, load_settings

    try:
        try:
            slots, resize = load_settings().polling.max_parallel_tasks, True
        except ConfigError as exc:
            slots, resize = Polling().max_parallel_tasks, False
            log.warning("newswatch config unreadable (%s); pool %s kept, or created with %d slots",
                        "; ".join(exc.problems)[:300], POOL, slots)
        before, after = ensure_pool(slots, resize=resize)
        if before != after:
            log.info("Airflow pool %s: %s -> %d slots", POOL, "created" if before is None else before, after)
    except Exception:  # noqa: BLE001 - never stop a component from starting
        log.exception("could not create or resize the Airflow pool %s", POOL)
