"""Send messages to channels: any Apprise URL, signed JSON webhooks, and ``jsonl://PATH`` files.

Apprise never raises and Airflow's AppriseHook drops its result, so every send checks the outcome
itself and raises DeliveryError (``kind: message``): the outbox row then records the failure and is
retried later.

Every send has one overall deadline (``alerts.send_timeout``), the answer included: requests, Apprise
and smtplib only bound each read, so a receiver trickling its answer a byte at a time would otherwise
hold delivery for minutes. A webhook's socket is shut down at the deadline; an Apprise send still
running then is left behind (its thread ends with Apprise's own timeouts) and reported as ``timeout``.
A ``timeout`` means the request may have arrived: the retry repeats it, with the same idempotency key.

- ``webhook+https://host/path`` (or ``webhook+http://``) POSTs the message as JSON with an
  ``Idempotency-Key`` header and, when the channel has a ``secret``, an ``X-Newswatch-Signature:
  sha256=<hex>`` HMAC of ``<timestamp>.<body>`` (timestamp in ``X-Newswatch-Timestamp``), so
  receivers can verify the sender and drop repeats.
- ``mailto://`` and ``mailtos://`` get an HTML body (with Apprise's plain-text alternative); every
  feed-derived string is escaped.
- Other Apprise URLs get plain text: no markup, so a feed title cannot become a Slack ``<!channel>``;
  chats (every Apprise URL but email and the ``json://``/``xml://``/``form://`` webhooks) get their
  mentions neutralised too (:func:`neutralise_mentions`), so ``@everyone`` in a title pings nobody.
- ``jsonl://PATH`` appends one JSON object per message to a local file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from newswatch.config import JSONL_SCHEME, WEBHOOK_SCHEMES, Channel, Settings
from newswatch.urls import redact_channel  # the one channel redactor (no secret of a URL in a report)

log = logging.getLogger(__name__)

_EMAIL_SCHEMES = ("mailto://", "mailtos://")
# Apprise's generic webhooks: they take extra request headers as ``+Name=value`` URL parameters.
_APPRISE_WEBHOOK_SCHEMES = ("json://", "jsons://", "xml://", "xmls://", "form://", "forms://")
_WEBHOOK_TIMEOUT = (5, 15)
SEND_TIMEOUT = 30.0  # seconds a send may take, answer included (alerts.send_timeout)
# A webhook's own deadline cuts its socket; the thread waiting on it allows this much more, so that
# the webhook reports why it stopped.
_WEBHOOK_GRACE = 1.0


class DeliveryError(Exception):
    """A channel did not accept the message; ``kind`` is a short stable label, as for feeds' FetchError.

    Kinds: ``config`` (unknown channel, missing connection, invalid URL), ``connection`` (never reached),
    ``http_error`` and ``refused`` (answered no), ``timeout`` (sent, but no complete answer before the
    deadline: the receiver may have it), ``request`` (any other HTTP failure), ``file`` (``jsonl://``).
    """

    def __init__(self, kind: str, message: str):
        self.kind = kind
        self.message = message
        super().__init__(f"{kind}: {message}")


class Message(Protocol):
    subject: str
    idempotency_key: str  # the same on every retry: receivers drop a repeat by it

    def text(self) -> str: ...


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
    kind: str = "new"  # "update": the story gained languages or sources since its first alert
    languages: list[str] = field(default_factory=list)

    @property
    def subject(self) -> str:
        prefix = "[newswatch] update: " if self.kind == "update" else "[newswatch] "
        return f"{prefix}{self.rule}: {self.title}"[:250]

    def text(self) -> str:
        """A plain-text body: no markup, so feed text cannot become Slack mentions or HTML."""
        lines = [self.title, self.url, ""]
        if self.kind == "update":
            lines += ["This story has grown since its first alert.", ""]
        lines += [
            f"Rule: {self.rule}",
            f"Matched: {', '.join(self.matched_terms) or '-'}",
            f"Language: {', '.join(self.languages) or self.language or 'unknown'}",
            f"Sources: {', '.join(self.sources) or self.feed}",
            f"Published: {self.published_at or 'unknown'}",
        ]
        if self.summary:
            lines += ["", self.summary[:600]]
        lines += ["", f"Alert-Id: {self.idempotency_key}"]
        return "\n".join(lines)

    def html(self) -> str:
        rows = [("Rule", self.rule), ("Matched", ", ".join(self.matched_terms) or "-"),
                ("Language", ", ".join(self.languages) or self.language or "unknown"),
                ("Sources", ", ".join(self.sources) or self.feed), ("Published", self.published_at or "unknown")]
        note = "<p><em>This story has grown since its first alert.</em></p>" if self.kind == "update" else ""
        summary = f"<p>{escape(self.summary[:600])}</p>" if self.summary else ""
        return (f"<h2>{_html_link(self.url, self.title)}</h2>{note}<table>"
                + "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
                + f"</table>{summary}<p style='color:#888'>Alert-Id: {escape(self.idempotency_key)}</p>")

    def payload(self) -> dict[str, Any]:
        return {"type": "alert", "subject": self.subject, "kind": self.kind, "rule": self.rule,
                "story_id": self.story_id, "title": self.title, "url": self.url, "language": self.language,
                "languages": self.languages, "feed": self.feed, "sources": self.sources,
                "published_at": self.published_at, "matched_terms": self.matched_terms, "summary": self.summary,
                "idempotency_key": self.idempotency_key}


@dataclass(frozen=True)
class DigestMessage:
    idempotency_key: str
    rule: str
    due_at: datetime
    items: list[AlertMessage]

    @property
    def subject(self) -> str:
        count = len(self.items)
        return f"[newswatch] {self.rule}: {count} {'story' if count == 1 else 'stories'} (digest)"

    def text(self) -> str:
        lines = [f"{self.subject} — {self.due_at:%Y-%m-%d %H:%M} UTC", ""]
        for item in self.items:
            marker = " (update)" if item.kind == "update" else ""
            lines += [f"- {item.title}{marker}", f"  {item.url}",
                      f"  {', '.join(item.languages) or item.language or '?'} · {', '.join(item.sources) or item.feed}"]
        lines += ["", f"Digest-Id: {self.idempotency_key}"]
        return "\n".join(lines)

    def html(self) -> str:
        rows = "".join(
            f"<tr><td>{_html_link(item.url, item.title)}{' (update)' if item.kind == 'update' else ''}</td>"
            f"<td>{escape(', '.join(item.languages) or item.language or '?')}</td>"
            f"<td>{escape(', '.join(item.sources) or item.feed)}</td></tr>" for item in self.items)
        return (f"<h2>{escape(self.subject)}</h2><table><tr><th>Story</th><th>Languages</th><th>Sources</th></tr>"
                f"{rows}</table><p style='color:#888'>Digest-Id: {escape(self.idempotency_key)}</p>")

    def payload(self) -> dict[str, Any]:
        return {"type": "digest", "subject": self.subject, "rule": self.rule, "due_at": self.due_at.isoformat(),
                "idempotency_key": self.idempotency_key, "items": [item.payload() for item in self.items]}


def _html_link(url: str, text: str) -> str:
    if url.startswith(("http://", "https://")):
        return f'<a href="{escape(url)}">{escape(text)}</a>'
    return escape(text)


def channel_targets(channel: Channel) -> list[str]:
    """The URL(s) behind a channel: its ``url``, or those stored in its Airflow connection.

    A connection of type ``apprise`` keeps its URL(s) in ``extra.config.path`` (the Apprise provider's
    format); any other type may keep one in ``extra.url``. Secrets then live in Airflow's secrets
    backend instead of the YAML file.
    """
    if channel.url is not None:
        return [channel.url]
    try:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(channel.connection)
    except Exception as exc:  # noqa: BLE001 - missing connections must be reported, not crash delivery
        raise DeliveryError("config", f"Airflow connection {channel.connection!r} not found: {exc}") from None
    extra = connection.extra_dejson
    config = extra.get("config")
    entries = config if isinstance(config, list) else [config] if config else []
    urls = [entry["path"] for entry in entries if isinstance(entry, dict) and entry.get("path")]
    if not urls and extra.get("url"):
        urls = [extra["url"]]
    if not urls:
        raise DeliveryError("config",
                            f"Airflow connection {channel.connection!r} has no URL (extra.config.path or extra.url)")
    return urls


def operator_targets(settings: Settings) -> list[tuple[str, Callable[[Message], None]]]:
    """(key, sender) per entry of ``polling.operator_channels``: a channel name or an Apprise URL.

    The key identifies the target in ``operator_events.delivered_to``; for a URL it is a hash, never
    the URL itself, which may hold credentials. An unknown channel name fails at send time, so the
    mistake is recorded and visible rather than silently dropped.
    """
    def unknown(name: str) -> Callable[[Message], None]:
        def fail(message: Message) -> None:
            raise DeliveryError("config", f"operator channel {name!r} is not in the configuration")
        return fail

    timeout = settings.alerts.send_timeout
    targets: list[tuple[str, Callable[[Message], None]]] = []
    for item in settings.polling.operator_channels:
        if "://" in item:
            targets.append(("url:" + hashlib.sha256(item.encode()).hexdigest()[:16],
                            lambda message, url=item: send(url, message, timeout=timeout)))
            continue
        channel = next((c for c in settings.channels if c.name == item), None)
        if channel is None:
            targets.append((item, unknown(item)))
        else:
            targets.append((item, lambda message, channel=channel: send_to_channel(channel, message, timeout=timeout)))
    return targets


def send_to_channel(channel: Channel, message: Message, *, timeout: float = SEND_TIMEOUT) -> None:
    """Deliver ``message`` to every URL of ``channel`` (each within ``timeout`` seconds) or raise DeliveryError."""
    for url in channel_targets(channel):
        send(url, message, secret=channel.secret, timeout=timeout)


def send(channel_url: str, message: Message, *, secret: str | None = None, timeout: float = SEND_TIMEOUT) -> None:
    """Deliver ``message`` to one URL within ``timeout`` seconds, answer included, or raise DeliveryError."""
    if channel_url.startswith(JSONL_SCHEME):
        _append_jsonl(Path(channel_url[len(JSONL_SCHEME):]), message)
    elif channel_url.startswith(WEBHOOK_SCHEMES):
        _within(timeout + _WEBHOOK_GRACE, channel_url,
                lambda: _post_webhook(channel_url.removeprefix("webhook+"), message, secret, timeout))
    else:
        _within(timeout, channel_url, lambda: _send_apprise(channel_url, message))


def _within(seconds: float, channel_url: str, deliver: Callable[[], None]) -> None:
    """Run ``deliver`` in a helper thread and wait for it at most ``seconds``; past that, a ``timeout``.

    A send still running is left to finish or fail on its own: nothing waits for it, and its outcome is
    ignored (the row is retried, with the same idempotency key).
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            deliver()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=run, name="newswatch-send", daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise DeliveryError("timeout", _unanswered(channel_url, seconds))
    if outcome[0] is not None:
        raise outcome[0]


def _unanswered(channel_url: str, seconds: float) -> str:
    return (f"{redact_channel(channel_url)} gave no complete answer within {seconds:g} s; it may have received "
            "the message, and the retry carries the same idempotency key")


def _payload(message: Message) -> dict[str, Any]:
    builder = getattr(message, "payload", None)
    return builder() if builder else {"subject": message.subject, "text": message.text()}


def _send_apprise(channel_url: str, message: Message) -> None:
    import apprise

    sender = apprise.Apprise()
    if not sender.add(_with_idempotency_header(channel_url, message.idempotency_key)):
        raise DeliveryError("config", f"not a valid Apprise URL: {redact_channel(channel_url)}")
    html = getattr(message, "html", None)
    title = message.subject
    if channel_url.startswith(_EMAIL_SCHEMES) and html is not None:
        body, body_format = html(), apprise.NotifyFormat.HTML
    elif channel_url.startswith(_APPRISE_WEBHOOK_SCHEMES + _EMAIL_SCHEMES):
        body, body_format = message.text(), apprise.NotifyFormat.TEXT
    else:  # a chat: Discord, Slack, Mattermost, Teams, Telegram, ntfy, …
        title, body, body_format = neutralise_mentions(title), neutralise_mentions(message.text()), \
            apprise.NotifyFormat.TEXT
    result = sender.notify(title=title, body=body, body_format=body_format, notify_type=apprise.NotifyType.INFO)
    if not result:
        raise DeliveryError("refused", f"{redact_channel(channel_url)} did not accept the message ({result!r})")


_ZERO_WIDTH_SPACE = "\u200b"
_URL = re.compile(r"(https?://\S+)")
_BRACKET_MENTION = re.compile(r"<([@#!])")  # <@id> <@!id> <@&id> <#id> <!channel> <!here> <!everyone> <!subteam^id>
_AT_MENTION = re.compile(r"@(?=\w)")  # @everyone @here @channel @all @name
_MASS_MENTION = re.compile(r"@(?=(?:everyone|here|channel|all)\b)")


def neutralise_mentions(text: str) -> str:
    """Chat text that reads the same but pings nobody: a zero-width space after each mention's ``@``/``<!``.

    Feed titles are written by strangers; Discord turns ``@everyone`` into a ping of the whole server and
    Slack ``<!channel>`` into one of the whole channel. Inside links only the mass mentions are broken, so
    ``https://social.example/@name`` still opens. Email (escaped HTML) and webhooks (JSON, XML and form
    bodies, ``jsonl://`` files) carry the text as data, which pings nobody: they get it unchanged.
    """
    text = _BRACKET_MENTION.sub(lambda match: f"<{match.group(1)}{_ZERO_WIDTH_SPACE}", text)
    return "".join(_MASS_MENTION.sub("@" + _ZERO_WIDTH_SPACE, part) if index % 2
                   else _AT_MENTION.sub("@" + _ZERO_WIDTH_SPACE, part)
                   for index, part in enumerate(_URL.split(text)))


def _with_idempotency_header(channel_url: str, key: str) -> str:
    """An Apprise webhook URL that also sends ``Idempotency-Key: <key>``, like ``webhook+https://`` does."""
    if not channel_url.startswith(_APPRISE_WEBHOOK_SCHEMES):
        return channel_url
    base, _, fragment = channel_url.partition("#")
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{quote('+Idempotency-Key')}={quote(key)}" + (f"#{fragment}" if fragment else "")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Newswatch-Signature`` value: HMAC-SHA256 over ``timestamp.body``, like Stripe's scheme."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _post_webhook(url: str, message: Message, secret: str | None, timeout: float) -> None:
    """POST the JSON payload; the fetcher's watchdog shuts the socket down when ``timeout`` has passed."""
    import requests

    from newswatch.fetcher import deadline, watched_session

    body = json.dumps(_payload(message), ensure_ascii=False, default=str).encode("utf-8")
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "newswatch",
               "X-Newswatch-Timestamp": timestamp, "Idempotency-Key": message.idempotency_key}
    if secret:
        headers["X-Newswatch-Signature"] = signature(secret, timestamp, body)
    target = redact_channel("webhook+" + url)
    connect, read = _WEBHOOK_TIMEOUT
    with watched_session() as session, deadline(timeout) as watchdog:
        try:
            response = session.post(url, data=body, headers=headers, allow_redirects=False,
                                    timeout=(min(connect, timeout), min(read, timeout)))
        except requests.RequestException as exc:
            if watchdog.expired or isinstance(exc, requests.ReadTimeout):
                raise DeliveryError("timeout", _unanswered("webhook+" + url, timeout)) from None
            kind = "connection" if isinstance(exc, requests.ConnectionError) else "request"
            raise DeliveryError(kind, f"{target}: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError("http_error", f"{target} answered HTTP {response.status_code}")


def _append_jsonl(path: Path, message: Message) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(_payload(message), ensure_ascii=False, default=str) + "\n")
    except OSError as exc:
        raise DeliveryError("file", f"cannot write {path}: {exc.strerror}") from None
