"""Operator notifications for failed Airflow tasks, through the same channels as everything else.

An Airflow notifier (``on_failure_callback``) so a newswatch task that failed for good reaches the
operator where feed health events go: ``polling.operator_channels``. When the configuration itself
cannot be read (often the very reason the task failed), ``$NEWSWATCH_OPERATOR_URL`` (one Apprise,
``webhook+https://`` or ``jsonl://`` URL) is used instead. Kept import-light: DAG files import it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

OPERATOR_URL_ENV = "NEWSWATCH_OPERATOR_URL"


@dataclass(frozen=True)
class TaskFailureMessage:
    idempotency_key: str
    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    error: str

    @property
    def subject(self) -> str:
        return f"[newswatch] task failed: {self.dag_id}.{self.task_id}"

    def text(self) -> str:
        return (f"Task {self.task_id} of {self.dag_id} failed (run {self.run_id}, try {self.try_number}).\n\n"
                f"{self.error}\n\nEvent-Id: {self.idempotency_key}")

    def payload(self) -> dict[str, Any]:
        return {"type": "task_failed", "subject": self.subject, "dag_id": self.dag_id, "task_id": self.task_id,
                "run_id": self.run_id, "try_number": self.try_number, "error": self.error,
                "idempotency_key": self.idempotency_key}


class OperatorNotifier(BaseNotifier):
    """Tell the operator channels that a task failed after its last retry."""

    template_fields = ()

    def notify(self, context: dict[str, Any]) -> None:
        from newswatch import delivery
        from newswatch.config import ConfigError, load_settings

        ti = context["ti"]
        run_id = getattr(context.get("dag_run"), "run_id", None) or ti.run_id
        task = ti.task_id if getattr(ti, "map_index", -1) in (-1, None) else f"{ti.task_id}[{ti.map_index}]"
        error = str(context.get("exception") or "no exception recorded")[:2000]
        key = hashlib.sha256(f"{ti.dag_id}\x1f{task}\x1f{run_id}\x1f{ti.try_number}".encode()).hexdigest()[:32]
        message = TaskFailureMessage(key, ti.dag_id, task, run_id, ti.try_number, error)
        try:
            settings = load_settings()
            # An operator channel may be one added from the UI; the database may also be why the task failed,
            # and then the file's channels are what there is.
            with contextlib.suppress(Exception):
                settings = load_settings(ui=True)
            targets = delivery.operator_targets(settings)
        except ConfigError:
            targets = []
        if not targets and os.environ.get(OPERATOR_URL_ENV):
            url = os.environ[OPERATOR_URL_ENV]
            targets = [("env", lambda m: delivery.send(url, m))]
        if not targets:
            log.warning("%s (no operator channel configured)", message.subject)
            return
        for name, send in targets:
            try:
                send(message)
            except Exception as exc:  # noqa: BLE001 - a callback must never raise into Airflow
                log.error("could not tell operator channel %s that %s failed: %s", name, task, exc)
