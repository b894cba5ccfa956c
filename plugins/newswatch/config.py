"""Load and validate the newswatch YAML configuration.

The YAML file is the single source of truth for feeds, rules, channels and network policy. It is
validated with pydantic so that a broken file gives one clear line per problem (which key, what is
wrong) instead of a traceback in the middle of a DAG run.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_PATH = Path("config/newswatch.yaml")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one readable line per mistake."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:-]*$")]


class Feed(_Strict):
    name: Name
    url: str
    enabled: bool = True
    language: str | None = Field(default=None, description="Expected language, a hint only")
    interval: int | None = Field(
        default=None, ge=60, le=7 * 86400,
        description="Seconds between polls of this feed, instead of the adaptive estimate; still clamped to "
        "polling.min_interval..max_interval and raised to what the server asks (ttl, max-age, Retry-After)",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value, re.IGNORECASE):
            raise ValueError("must be an http:// or https:// URL")
        return value


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class Digest(_Strict):
    """Collect a rule's alerts and send one message per period: ``every: 1h`` or ``at: "08:00"``."""

    every: str | None = Field(default=None, description="Period such as 15m, 1h, 1d (aligned to the clock)")
    at: str | None = Field(default=None, description="Local time of day HH:MM for a daily digest")
    timezone: str = "UTC"

    @field_validator("every")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None:
            match = _DURATION.match(value)
            if not match or int(match.group(1)) == 0:
                raise ValueError("must be a duration such as 15m, 1h or 1d")
        return value

    @field_validator("at")
    @classmethod
    def _clock(cls, value: str | None) -> str | None:
        if value is not None and not _CLOCK.match(value):
            raise ValueError("must be a time of day such as 08:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use a name such as Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> Digest:
        if (self.every is None) == (self.at is None):
            raise ValueError("give exactly one of every (a period) or at (a time of day)")
        return self

    def next_due(self, after: datetime) -> datetime:
        """The first digest time strictly after ``after`` (an aware datetime), in UTC."""
        from zoneinfo import ZoneInfo

        if self.every is not None:
            match = _DURATION.match(self.every)
            assert match is not None
            period = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
            epoch = int(after.timestamp())
            return datetime.fromtimestamp((epoch // period + 1) * period, tz=UTC)
        assert self.at is not None
        hour, minute = (int(part) for part in self.at.split(":"))
        local = after.astimezone(ZoneInfo(self.timezone))
        due = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if due <= local:
            due = (local + timedelta(days=1)).replace(hour=hour, minute=minute, second=0, microsecond=0)
        return due.astimezone(UTC)


class Rule(_Strict):
    name: Name
    query: str
    channels: list[str] = Field(default_factory=list)
    enabled: bool = True
    digest: Digest | None = Field(default=None, description="Send a digest per period instead of instant alerts")
    updates: bool = Field(default=True, description="Send one update when an alerted story gains a language "
                          "or sources")

    @field_validator("query")
    @classmethod
    def _valid_query(cls, value: str) -> str:
        from newswatch.rules import RuleSyntaxError, compile_rule

        try:
            compile_rule(value)
        except RuleSyntaxError as exc:
            raise ValueError(f"invalid query: {exc}") from None
        return value


class Channel(_Strict):
    name: Name
    url: str | None = Field(default=None, description="An Apprise URL, webhook+https://… or jsonl://PATH; "
                            "${ENV} references are expanded at load time")
    connection: str | None = Field(default=None, description="Airflow connection id holding the URL instead")
    secret: str | None = Field(default=None, description="HMAC-SHA256 key signing webhook+http(s):// bodies")

    @field_validator("url")
    @classmethod
    def _has_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("must be an Apprise URL such as json://host/path or mailto://user:pass@host")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Channel:
        if (self.url is None) == (self.connection is None):
            raise ValueError("give exactly one of url or connection")
        return self


class Network(_Strict):
    allow_networks: list[str] = Field(
        default_factory=list,
        description="Private, loopback or link-local networks that fetching may reach (CIDR)",
    )
    user_agent: str = "newswatch/0.1 (+https://github.com/newswatch/newswatch)"
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    read_timeout: float = Field(default=15.0, gt=0, le=300)
    total_timeout: float = Field(default=30.0, gt=0, le=600)
    max_feed_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_page_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_redirects: int = Field(default=5, ge=0, le=20)

    @field_validator("allow_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR network such as 127.0.0.1/32") from None
        return value


class Polling(_Strict):
    batch_size: int = Field(default=20, ge=1, le=500, description="Feeds per mapped Airflow task")
    feed_workers: int = Field(default=8, ge=1, le=64, description="Concurrent feed fetches per task")
    article_workers: int = Field(
        default=16, ge=1, le=64,
        description="Pages fetched at once per task (threads: they wait on the network, the CPU work is in worker "
        "processes)",
    )
    worker_processes: int = Field(
        default=0, ge=0, le=64,
        description="Worker processes per task for feed parsing, extraction and the meaning model; 0: one per core",
    )
    item_time_limit: float = Field(
        default=60, gt=0, le=3600,
        description="Seconds one feed or page may take in a worker process before it is stopped (and retried)",
    )
    item_memory_mb: int = Field(
        default=1024, ge=0, le=65536,
        description="MiB of memory one feed or page may add to a worker process before it is stopped; 0: no limit",
    )
    max_articles_per_feed: int = Field(default=50, ge=1, le=1000)
    article_max_attempts: int = Field(default=3, ge=1, le=20)
    article_retry_base_seconds: float = Field(default=120, ge=0, le=86400, description="Doubles per attempt")
    min_interval: int = Field(
        default=300, ge=60, le=86400,
        description="Seconds: no feed is polled more often (politeness floor; also the backoff's first step)",
    )
    max_interval: int = Field(
        default=6 * 3600, ge=60, le=7 * 86400,
        description="Seconds: a quiet feed is still polled at least this often (server hints may ask for up to 24 h)",
    )
    max_backoff: int = Field(
        default=86400, ge=60, le=7 * 86400,
        description="Seconds: cap of the exponential backoff of a failing feed, which is then probed at that pace",
    )
    notify_after_failures: int = Field(
        default=5, ge=1, le=1000,
        description="Consecutive failures before the operator is told (once; and once more on recovery)",
    )
    per_host_concurrency: int = Field(
        default=2, ge=1, le=16, description="Concurrent requests to one host from one process",
    )
    operator_channels: list[str] = Field(
        default_factory=list,
        description="Where feed health events go: names of `channels` entries or Apprise URLs; "
        "when empty, events are only logged",
    )

    @field_validator("operator_channels")
    @classmethod
    def _channel_refs(cls, value: list[str]) -> list[str]:
        for item in value:
            if "://" not in item and not re.match(r"^[A-Za-z0-9][A-Za-z0-9 _.:-]*$", item):
                raise ValueError(f"{item!r} is neither a channel name nor an Apprise URL")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Polling:
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval must not exceed max_interval")
        if self.max_backoff < self.min_interval:
            raise ValueError("max_backoff must not be below min_interval")
        return self


class Dedup(_Strict):
    near_duplicate_threshold: float = Field(default=0.5, gt=0, le=1)
    min_tokens: int = Field(default=40, ge=5, description="Texts shorter than this are never compared")
    window_days: int = Field(
        default=7, ge=1, le=365,
        description="Days between publications within which articles can be one story; a story that gains no "
        "article for this long is closed",
    )
    meaning_threshold: float = Field(
        default=0.64, gt=0, le=1,
        description="Mean cosine similarity of an article's meaning to a story's members at which it joins the "
        "story on meaning alone (also the bar for merging two stories)",
    )
    corroborated_threshold: float = Field(
        default=0.54, gt=0, le=1,
        description="Lower similarity at which an article joins when names, places, numbers and dates agree with "
        "most of the story's members",
    )
    cross_language_allowance: float = Field(
        default=0.06, ge=0, le=0.3,
        description="Added to the similarity for each member in another language, as a share of the members "
        "(translations sit a little further apart than same-language copies)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Dedup:
        if self.corroborated_threshold > self.meaning_threshold:
            raise ValueError("corroborated_threshold must not exceed meaning_threshold")
        return self


class Alerts(_Strict):
    max_attempts: int = Field(default=10, ge=1, le=100)
    retry_base_seconds: float = Field(default=60, ge=0, le=3600, description="First retry delay; doubles")
    send_timeout: float = Field(default=30, gt=0, le=240, description="Seconds one send may take, answer included; "
                                "less than the outbox lease (5 min)")


class Settings(_Strict):
    feeds: list[Feed] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)
    network: Network = Field(default_factory=Network)
    polling: Polling = Field(default_factory=Polling)
    dedup: Dedup = Field(default_factory=Dedup)
    alerts: Alerts = Field(default_factory=Alerts)
    retention: dict[str, Any] | None = Field(default=None, description="Retention of old data (maintenance DAG)")

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from newswatch.maintenance import RetentionConfigError, parse_retention

        try:
            parse_retention(value, env={})
        except RetentionConfigError as exc:
            raise ValueError("\n".join(exc.problems)) from None
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        problems: list[str] = []
        for kind, items in (("feeds", self.feeds), ("rules", self.rules), ("channels", self.channels)):
            seen: set[str] = set()
            for index, item in enumerate(items):
                if item.name in seen:
                    problems.append(f"{kind}[{index}].name: duplicate name {item.name!r}")
                seen.add(item.name)
        channel_names = {channel.name for channel in self.channels}
        for index, rule in enumerate(self.rules):
            for channel in rule.channels:
                if channel not in channel_names:
                    problems.append(f"rules[{index}].channels: unknown channel {channel!r}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def enabled_feeds(self) -> list[Feed]:
        return [feed for feed in self.feeds if feed.enabled]

    def channel(self, name: str) -> Channel:
        return next(channel for channel in self.channels if channel.name == name)


def config_path() -> Path:
    """The config file in use: ``$NEWSWATCH_CONFIG`` or ``config/newswatch.yaml``."""
    return Path(os.environ.get("NEWSWATCH_CONFIG") or DEFAULT_CONFIG_PATH)


def _interpolate(value: Any, where: str, problems: list[str]) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string, so secrets stay out of the file."""
    if isinstance(value, dict):
        return {key: _interpolate(item, f"{where}.{key}" if where else str(key), problems)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, f"{where}[{index}]", problems) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(f"{where}: environment variable {name} is not set")
        return ""

    return _ENV_REF.sub(substitute, value)


def _format_error(error: dict[str, Any]) -> list[str]:
    location = ""
    for part in error["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if not location:
        return message.splitlines()
    return [f"{location}: {line}" for line in message.splitlines()]


def parse_settings(text: str, path: str = "<config>") -> Settings:
    """Parse YAML text into Settings, raising ConfigError with every problem found."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}".replace("\n", " ")]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, ["the top level must be a mapping with feeds, rules and channels"])
    problems: list[str] = []
    raw = _interpolate(raw, "", problems)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            problems.extend(_format_error(error))
        raise ConfigError(path, problems) from None
    if problems:
        raise ConfigError(path, problems)
    return settings


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate the config file (see :func:`config_path`)."""
    file = Path(path) if path else config_path()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(file), [f"cannot read the file: {exc.strerror}"]) from None
    return parse_settings(text, str(file))
