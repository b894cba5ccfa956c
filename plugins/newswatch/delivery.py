"""Send alert messages to channels: any Apprise URL, plus ``jsonl://PATH`` for a local file.

Apprise never raises and Airflow's AppriseHook drops its result, so every send checks the result
itself and raises DeliveryError: the outbox row then records the failure and is retried next cycle.
``jsonl://`` appends one JSON object per alert to a file, which gives a newcomer an alert to look at
before any real channel is configured.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

JSONL_SCHEME = "jsonl://"


class DeliveryError(Exception):
    """A channel did not accept the message."""


@dataclass(frozen=True)
class AlertMessage:
    idempotency_key: str
    rule: str
    story_id: int
    title: str
    url: str
    language: str | None
    feed: str
    published_at: str | None
    matched_terms: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def subject(self) -> str:
        return f"[newswatch] {self.rule}: {self.title}"[:250]

    def text(self) -> str:
        """A plain-text body: no markup, so feed text cannot become Slack mentions or HTML."""
        lines = [
            self.title,
            self.url,
            "",
            f"Rule: {self.rule}",
            f"Matched: {', '.join(self.matched_terms) or '-'}",
            f"Language: {self.language or 'unknown'}",
            f"Sources: {', '.join(self.sources) or self.feed}",
            f"Published: {self.published_at or 'unknown'}",
        ]
        if self.summary:
            lines += ["", self.summary[:600]]
        lines += ["", f"Alert-Id: {self.idempotency_key}"]
        return "\n".join(lines)


def redact_channel(url: str) -> str:
    """A channel URL safe to log: Apprise's own privacy rendering, or the scheme alone."""
    if url.startswith(JSONL_SCHEME):
        return url
    try:
        import apprise

        instance = apprise.Apprise.instantiate(url)
        if instance:
            return instance.url(privacy=True)
    except Exception:  # noqa: BLE001 - redaction must never fail a delivery report
        pass
    return url.split("://", 1)[0] + "://…"


def send(channel_url: str, message: AlertMessage) -> None:
    """Deliver ``message`` to one channel or raise DeliveryError."""
    if channel_url.startswith(JSONL_SCHEME):
        _append_jsonl(Path(channel_url[len(JSONL_SCHEME):]), message)
        return
    import apprise

    sender = apprise.Apprise()
    if not sender.add(channel_url):
        raise DeliveryError(f"not a valid Apprise URL: {redact_channel(channel_url)}")
    result = sender.notify(
        title=message.subject,
        body=message.text(),
        body_format=apprise.NotifyFormat.TEXT,
        notify_type=apprise.NotifyType.INFO,
    )
    if not result:
        raise DeliveryError(f"{redact_channel(channel_url)} did not accept the message ({result!r})")


def _append_jsonl(path: Path, message: AlertMessage) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"subject": message.subject, **asdict(message)}, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise DeliveryError(f"cannot write {path}: {exc.strerror}") from None
