"""Load and validate the newswatch configuration: the YAML file, and what was added from the UI.

The YAML file is in charge of everything it declares: feeds, rules, channels, network policy and every other
section. Feeds, rules and channels may also be added from the UI or the CLI (``newswatch.configstore``); those
live in the database (``ui_feeds``, ``ui_rules``, ``ui_channels``) and are merged in by
``load_settings(ui=True)``, as Grafana merges provisioned and UI-made dashboards: each item carries its source
(``file`` or ``ui``), names are unique across both, and a UI item whose name the file also declares is left out
and reported (``Settings.ui_problems``), never silently preferred. The file is valid on its own: its rules name
only its own channels, so it can be checked and run without a database.

Both are validated with the same pydantic models, so a broken item gives one clear line per problem (which
key, what is wrong) instead of a traceback in the middle of a DAG run.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

log = logging.getLogger(__name__)

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


def _check_port(url: str, *, numbers_only: bool = False) -> None:
    """A port outside 1-65535 would only fail later, at the first fetch or send: say so now.

    ``numbers_only`` for Apprise URLs, where what follows the host's colon may be a token rather than a port
    (``tgram://123456789:AAbb…/chat``, a Telegram bot token): only a number out of range is refused there.
    """
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?(\[[^\]]*\]|[^/?#:]*)(?::([^/?#]*))?", url)
    port = match.group(2) if match else None
    if numbers_only and port is not None and not port.isdigit():
        return
    if port is not None and port != "" and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"port {port[:20]!r} is out of range: a port is a number 1-65535")


# newswatch's own senders (newswatch.alerts.delivery); every other channel URL is Apprise's.
JSONL_SCHEME = "jsonl://"
WEBHOOK_SCHEMES = ("webhook+http://", "webhook+https://")


def _check_channel_url(url: str) -> None:
    """Refuse a channel URL that no sender can use, with the parser that will send to it.

    ``jsonl://`` and ``webhook+http(s)://`` are newswatch's own senders; everything else goes to Apprise,
    whose plugins know their own URL formats (tokens, required fields). Instantiating one sends nothing.
    """
    import apprise

    if url.startswith((JSONL_SCHEME, *WEBHOOK_SCHEMES)):
        _check_port(url)
        return
    _check_port(url, numbers_only=True)
    scheme = url.split("://", 1)[0]
    with apprise.LogCapture(level=logging.WARNING):  # its complaints would repeat parts of the URL
        usable = apprise.Apprise.instantiate(url) is not None
    if not usable:
        raise ValueError(f"no Apprise plugin can use {scheme}://… (unknown scheme, or a required part such as a "
                         "token, user or host is missing or malformed; see the Apprise wiki for its format)")


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:-]*$"
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]


class Feed(_Strict):
    name: Name = Field(description="Unique id of the feed; its state is kept under this name, so renaming it "
                       "starts afresh")
    url: str = Field(description="http:// or https:// URL of an RSS, Atom, RDF or JSON Feed (1.0 and 1.1) feed")
    enabled: bool = Field(default=True, description="false keeps the feed's history but stops polling it")
    language: str | None = Field(default=None, description="The language the feed is expected to be in: a hint "
                                 "only, each article's language is detected")
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
        _check_port(value)
        return value


_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class Digest(_Strict):
    """Collect a rule's alerts and send one message per period: ``every: 1h`` or ``at: "08:00"``."""

    every: str | None = Field(default=None, description="Period such as 15m, 1h, 1d (aligned to the clock); give "
                              "exactly one of every or at")
    at: str | None = Field(default=None, description="Local time of day HH:MM for a daily digest")
    timezone: str = Field(default="UTC", description="Time zone name (such as Europe/Paris) in which at is read")

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
    name: Name = Field(description="Unique id of the rule, shown in alerts")
    query: str = Field(description="The rule in the query language of docs/rules.md; a syntax error is reported "
                       "with its column")
    channels: list[str] = Field(default_factory=list, description="Names of the channels to alert; each must exist "
                                "in `channels`")
    enabled: bool = Field(default=True, description="false stops matching the rule")
    digest: Digest | None = Field(default=None, description="Send one message per period listing the stories "
                                  "instead of one alert each: `{every: 1h}` or `{at: \"08:00\", timezone: "
                                  "Europe/Paris}`")
    updates: bool = Field(default=True, description="When an alerted story later gains a language or at least two "
                          "sources, send one update (never more)")
    min_similarity: float | None = Field(default=None, ge=0.0, le=1.0, description="Threshold of the rule's meaning "
                                         "terms (`about:`, `like:`): the cosine similarity an article's meaning must "
                                         "reach; default 0.40 (a topic watch: see docs/rules.md for the benchmark's "
                                         "precision at each threshold and how to tune it from the near-misses of "
                                         "`newswatch rules test`)")

    @field_validator("query")
    @classmethod
    def _valid_query(cls, value: str) -> str:
        from newswatch.rules import RuleSyntaxError, compile_rule

        try:
            compile_rule(value)
        except RuleSyntaxError as exc:
            raise ValueError(f"invalid query: {exc}") from None
        return value

    def compiled(self) -> Any:
        """The rule compiled with its threshold (a ``newswatch.rules.Rule``)."""
        from newswatch.rules import compile_rule

        return compile_rule(self.query, self.min_similarity)


class Channel(_Strict):
    name: Name = Field(description="Unique id used by rules")
    url: str | None = Field(default=None, description="An Apprise URL (`mailto://`, `mailtos://`, `slack://` or a "
                            "Slack webhook URL, `msteams://`, `tgram://`, `discord://`, `ntfy://`, `json://` / "
                            "`jsons://` for a webhook with a JSON body, …), `webhook+https://…` (or `webhook+http://`) "
                            "or `jsonl://PATH`, which appends each alert as one JSON line to a local file; checked "
                            "with Apprise's parser when the file is loaded; give exactly one of url or connection")
    connection: str | None = Field(default=None, description="Instead of url: an Airflow connection id holding the "
                                   "URL, so the secret lives in Airflow's secrets backend (type `apprise` with "
                                   "`extra.config.path`, or any type with `extra.url`); checked when used")
    secret: str | None = Field(default=None, description="HMAC-SHA256 key signing webhook+http(s):// bodies")

    @field_validator("url")
    @classmethod
    def _has_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("must be an Apprise URL such as json://host/path or mailto://user:pass@host")
        if value is not None:
            _check_channel_url(value)
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Channel:
        if (self.url is None) == (self.connection is None):
            raise ValueError("give exactly one of url or connection")
        return self


class Network(_Strict):
    allow_networks: list[str] = Field(
        default_factory=list,
        description="Private, loopback or link-local networks (CIDR) that fetching may reach; by default only "
        "public addresses are fetched (the name is resolved once per connection and the connection goes to a "
        "checked address, on every redirect); check-config warns about 0.0.0.0/0 and ::/0, which admit every "
        "address",
    )
    user_agent: str = Field(default="newswatch/0.1 (+https://github.com/newswatch/newswatch)",
                            description="Sent with every request, so site owners can tell who polls them")
    connect_timeout: float = Field(default=5.0, gt=0, le=60, description="Seconds to open one connection")
    read_timeout: float = Field(default=15.0, gt=0, le=300, description="Seconds one read may wait for data")
    total_timeout: float = Field(default=30.0, gt=0, le=600,
                                 description="Seconds for a whole fetch, redirects and body included")
    max_feed_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="Cap in bytes on a feed's "
                                "decompressed body (gzip bombs stop here)")
    max_page_bytes: int = Field(default=5 * 1024 * 1024, gt=0, description="Cap in bytes on an article page's "
                                "decompressed body (gzip bombs stop here)")
    max_redirects: int = Field(default=5, ge=0, le=20, description="Redirect hops followed per fetch")

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
    batch_size: int = Field(
        default=20, ge=1, le=500,
        description="Fewest feeds (and queued articles) per mapped Airflow task: a cycle's feeds, then its pages, "
        "are split into about one batch per pool slot (max_parallel_tasks), each at least this large, so that a "
        "task's start-up is paid once per slot; larger when a backlog would need more tasks than Airflow's [core] "
        "max_map_length",
    )
    feed_workers: int = Field(default=8, ge=1, le=64, description="Concurrent feed fetches inside one task")
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
    max_articles_per_feed: int = Field(
        default=50, ge=1, le=1000,
        description="New entries queued per poll of one feed, newest first; the rest are queued on the following "
        "polls and feed health warns that the feed outran the cap (a document yields at most ten times this many "
        "entries)",
    )
    article_max_attempts: int = Field(
        default=3, ge=1, le=20,
        description="Attempts per page: after the last, a page that could not be fetched is replaced by the feed's "
        "own text, and one that broke its extraction worker every time is given up (`failed`, shown in feed health)",
    )
    article_retry_base_seconds: float = Field(default=120, ge=0, le=86400, description="Seconds before the first "
                                              "retry of a page fetch; doubles per attempt")
    min_interval: int = Field(
        default=300, ge=60, le=86400,
        description="Seconds: no feed is polled more often (politeness floor; also the backoff's first step); at "
        "most max_interval",
    )
    max_interval: int = Field(
        default=6 * 3600, ge=60, le=7 * 86400,
        description="Seconds: a quiet feed is still polled at least this often (server hints may ask for up to 24 h)",
    )
    max_backoff: int = Field(
        default=86400, ge=60, le=7 * 86400,
        description="Seconds: cap of the exponential backoff of a failing feed, which is then probed at that pace; "
        "at least min_interval",
    )
    notify_after_failures: int = Field(
        default=5, ge=1, le=1000,
        description="Consecutive failures before the operator is told (once; and once more on recovery)",
    )
    per_host_concurrency: int = Field(
        default=2, ge=1, le=16,
        description="Requests in flight to one host (name and port) across every process and worker, feeds and "
        "pages alike (slots held as PostgreSQL advisory locks)",
    )
    host_wait_seconds: float = Field(
        default=30, ge=0, le=600,
        description="Seconds a fetch waits for one of its host's slots before giving up as host_busy: the feed or "
        "page is re-queued for the next cycle without counting a failed attempt",
    )
    max_parallel_tasks: int = Field(
        default=4, ge=1, le=1024,
        description="Mapped poll_feeds/fetch_articles tasks running at once across the deployment: the size of "
        "the Airflow pool newswatch_fetch (created when the scheduler starts; `newswatch pool` applies a new size "
        "at once; sizing in docs/operations.md, Concurrency and politeness)",
    )
    operator_channels: list[str] = Field(
        default_factory=list,
        description="Where feed health events (failing, recovered, gone, moved) go: names of `channels` entries "
        "or Apprise URLs (checked like channel URLs); "
        "when empty, events are only logged",
    )

    @field_validator("operator_channels")
    @classmethod
    def _channel_refs(cls, value: list[str]) -> list[str]:
        for item in value:
            if "://" not in item and not re.match(r"^[A-Za-z0-9][A-Za-z0-9 _.:-]*$", item):
                raise ValueError(f"{item!r} is neither a channel name nor an Apprise URL")
            if "://" in item:
                _check_channel_url(item)
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Polling:
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval must not exceed max_interval")
        if self.max_backoff < self.min_interval:
            raise ValueError("max_backoff must not be below min_interval")
        return self


class Dedup(_Strict):
    near_duplicate_threshold: float = Field(
        default=0.5, gt=0, le=1,
        description="Estimated Jaccard similarity of word 5-gram shingles above which two same-language articles "
        "are one story",
    )
    min_tokens: int = Field(default=40, ge=5, description="Texts with fewer words are never compared (empty or "
                            "paywalled extractions would all look alike)")
    window_days: int = Field(
        default=7, ge=1, le=365,
        description="Days between publications within which articles can be one story; a story that gains no "
        "article for this long is closed (no longer joined by meaning)",
    )
    meaning_threshold: float = Field(
        default=0.64, gt=0, le=1,
        description="Mean cosine similarity of an article's meaning (title and lead, any of 16 languages) to a "
        "story's members at which it joins the "
        "story on meaning alone (also the bar for merging two stories)",
    )
    corroborated_threshold: float = Field(
        default=0.54, gt=0, le=1,
        description="Lower similarity at which an article joins when names, places, numbers and dates agree with "
        "most of the story's recent members; at most meaning_threshold",
    )
    follow_up_days: int = Field(
        default=0, ge=0, le=365,
        description="Days after a story's last article within which a later report still joins it, on meaning "
        "alone and only at follow_up_threshold (the next stage of the same event: a deadline, a verdict); 0 (the "
        "default) turns follow-ups off. Stories stay open this long",
    )
    follow_up_threshold: float = Field(
        default=0.74, gt=0, le=1,
        description="Mean cosine similarity a report needs to join a story whose articles are all more than "
        "window_days away from it: a stricter bar than meaning_threshold, as look-alike events recur",
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
        if self.follow_up_threshold < self.meaning_threshold:
            raise ValueError("follow_up_threshold must not be below meaning_threshold")
        return self


class Alerts(_Strict):
    max_attempts: int = Field(default=10, ge=1, le=100, description="Delivery attempts before an alert is marked "
                              "`failed`")
    retry_base_seconds: float = Field(default=60, ge=0, le=3600, description="Seconds before the first retry; "
                                      "doubles per attempt, at most 6 h")
    send_timeout: float = Field(default=30, gt=0, le=240, description="Seconds one send may take, answer included "
                                "(less than the outbox lease, 5 min); a channel that answers slower is cut, recorded "
                                "as `timeout: …` and retried, and holds up no other channel")


Source = Literal["file", "ui"]


class Settings(_Strict):
    feeds: list[Feed] = Field(default_factory=list, description="The feeds to poll")
    rules: list[Rule] = Field(default_factory=list, description="Alert rules, matched against every new article")
    channels: list[Channel] = Field(default_factory=list, description="Where alerts are sent")
    network: Network = Field(default_factory=Network, description="What fetching feeds and article pages may do: "
                             "feeds come from strangers, these bounds protect the machine that polls them")
    polling: Polling = Field(default_factory=Polling, description="How often feeds are polled, and how much work one "
                             "task does at once")
    dedup: Dedup = Field(default_factory=Dedup, description="When two articles are one story")
    alerts: Alerts = Field(default_factory=Alerts, description="Delivery of alerts: attempts, retries, time limits")
    retention: dict[str, Any] | None = Field(
        default=None,
        description="Retention of old data, applied by the daily `newswatch_maintenance` DAG; checked by "
        "`newswatch.retention.parse_retention`, since every key may also be set with a `NEWSWATCH_RETENTION_*` "
        "environment variable, which wins",
    )

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from newswatch.retention import RetentionConfigError, parse_retention

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

    # Set by merge_ui (not fields: they are not keys of the file, and the settings reference skips them).
    _sources: dict[tuple[str, str], Source] = PrivateAttr(default_factory=dict)
    _ui_problems: list[tuple[str, str, str]] = PrivateAttr(default_factory=list)  # (kind, name, line)

    @property
    def enabled_feeds(self) -> list[Feed]:
        return [feed for feed in self.feeds if feed.enabled]

    def source(self, kind: str, name: str) -> Source:
        """Where the item ``name`` of ``kind`` (``feeds``, ``rules``, ``channels``) comes from."""
        return self._sources.get((kind, name), "file")

    @property
    def ui_problems(self) -> list[str]:
        """UI-managed items left out, or run with a reference dropped, one line each (empty for the file alone)."""
        return [line for _, _, line in self._ui_problems]

    def ui_problem(self, kind: str, name: str) -> str | None:
        """What is wrong with the UI item ``name`` of ``kind`` (``feeds``, ``rules``, ``channels``), if anything."""
        return "; ".join(line for k, n, line in self._ui_problems if (k, n) == (kind, name)) or None

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
    if error["type"] == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == NAME_PATTERN:
        message = "a name holds letters, digits, spaces and _ . : - only, and starts with a letter or digit"
    if not location:
        return message.splitlines()
    return [f"{location}: {line}" for line in message.splitlines()]


class _DocumentError(Exception):
    """A YAML document newswatch will not read, with the line of the offending node."""

    def __init__(self, message: str, mark: yaml.Mark | None = None) -> None:
        super().__init__(f"line {mark.line + 1}: {message}" if mark else message)


MAX_NESTING = 64  # a real config nests 4 deep; Python's recursion limit is about 1,000
MAX_VALUES = 100_000  # values after expanding aliases: anchors used as "billion laughs" stop here


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader made strict: a duplicate key or deep nesting is an error with its line,
    instead of a silently dropped value or a RecursionError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self._depth >= MAX_NESTING:
            raise _DocumentError(f"nested more than {MAX_NESTING} levels deep", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden by the keys written next to it
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:
                continue  # an unhashable key: PyYAML reports it
            if seen is not None:
                raise _DocumentError(f"duplicate key {key!r} (first at line {seen}): the first value would be lost",
                                     key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse what aliases would make of the document: a value containing itself, nesting deeper than
    MAX_NESTING once expanded, or more than MAX_VALUES values (a few lines of anchors can stand for billions)."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height) once expanded
    open_nodes: set[int] = set()

    def visit(node: yaml.Node, depth: int) -> tuple[int, int]:
        if id(node) in open_nodes:
            raise _DocumentError("this value contains itself through an alias (a recursive alias)", node.start_mark)
        known = sizes.get(id(node))
        if known is None:
            if depth >= MAX_NESTING:
                raise _DocumentError(f"nested more than {MAX_NESTING} levels deep once aliases are expanded",
                                     node.start_mark)
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            open_nodes.add(id(node))
            measured = [visit(child, depth + 1) for child in children]
            open_nodes.discard(id(node))
            known = sizes[id(node)] = (min(1 + sum(size for size, _ in measured), MAX_VALUES + 1),
                                       1 + max((height for _, height in measured), default=0))
        if depth + known[1] > MAX_NESTING:
            raise _DocumentError(f"nested more than {MAX_NESTING} levels deep once aliases are expanded",
                                 node.start_mark)
        return known

    if visit(root, 0)[0] > MAX_VALUES:
        raise _DocumentError(f"aliases expand the file to more than {MAX_VALUES} values")


def read_document(text: str, path: str = "<config>") -> dict[str, Any]:
    """The YAML text as a mapping, before ``${VAR}`` expansion; ConfigError for anything unreadable.

    This is the one reader of the config file: settings and retention both come through it.
    """
    loader = _ConfigLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_expansion(root)
        raw = loader.construct_document(root) if root is not None else None
    except _DocumentError as exc:
        raise ConfigError(path, [str(exc)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}".replace("\n", " ")]) from None
    finally:
        loader.dispose()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, ["the top level must be a mapping with feeds, rules and channels"])
    return raw


def interpolate(value: Any, where: str = "") -> tuple[Any, list[str]]:
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` expanded, and one line per variable that is not set."""
    problems: list[str] = []
    return _interpolate(value, where, problems), problems


def parse_settings(text: str, path: str = "<config>") -> Settings:
    """Parse YAML text into Settings, raising ConfigError with every problem found."""
    raw, problems = interpolate(read_document(text, path))
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            problems.extend(_format_error(error))
        raise ConfigError(path, problems) from None
    if problems:
        raise ConfigError(path, problems)
    return settings


def read_config_text(path: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """(text, path) of the config file (see :func:`config_path`); ConfigError when it cannot be read as UTF-8."""
    file = Path(path) if path else config_path()
    try:
        return file.read_text(encoding="utf-8"), str(file)
    except OSError as exc:
        raise ConfigError(str(file), [f"cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), [f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start} "
                                      "(save the file as UTF-8)"]) from None


def load_settings(path: str | os.PathLike[str] | None = None, *, ui: bool = False,
                  database_url: str | None = None) -> Settings:
    """Read and validate the config file (see :func:`config_path`); with ``ui``, merge in the UI-managed part.

    ``ui`` reads ``ui_feeds``, ``ui_rules`` and ``ui_channels`` from the database (``database_url``, else
    :func:`newswatch.db.database_url`) in one short read-only transaction: every task and command that acts
    on the configuration passes it, so a feed added from the UI is polled. A broken file is a ConfigError as
    ever; a UI item that no longer fits is left out and reported in ``Settings.ui_problems`` (and logged),
    so one stale row never stops the pipeline. Without the migration that creates the tables, the UI part is
    empty.
    """
    text, name = read_config_text(path)
    settings = parse_settings(text, name)
    if not ui:
        return settings
    merged = merge_ui(settings, read_ui_rows(database_url))
    for problem in merged.ui_problems:
        log.warning("UI-managed configuration: %s", problem)
    return merged


# --- the UI-managed part -------------------------------------------------------------------------------------

UI_KINDS = ("feeds", "rules", "channels")
UI_TABLES = {"feeds": "ui_feeds", "rules": "ui_rules", "channels": "ui_channels"}
UI_MODELS: dict[str, type[_Strict]] = {"feeds": Feed, "rules": Rule, "channels": Channel}
_UI_COLUMNS = {
    "feeds": "name, url, enabled, language, interval_seconds AS interval",
    "rules": "name, query, channels, enabled, digest, updates, min_similarity",
    "channels": "name, url, connection, secret",
}
_UI_META = "created_by, created_at, updated_by, updated_at"


def ui_fields(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """The model fields of a ``ui_*`` row (as selected by :func:`read_ui_rows`): what the YAML item would say,
    without the keys left at their defaults."""
    model = UI_MODELS[kind]
    return {key: value for key, value in row.items()
            if key in model.model_fields and not (value is None and model.model_fields[key].default is None)}


def read_ui_rows(database_url: str | None = None, cursor: Any = None) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``ui_feeds``, ``ui_rules`` and ``ui_channels`` by kind, oldest first, with who and when.

    Reads with ``cursor`` when given (a caller's transaction), else in a short transaction of its own.
    """
    if cursor is None:
        from newswatch import db

        with db.transaction(database_url) as cur:
            return read_ui_rows(cursor=cur)
    cursor.execute("SELECT to_regclass('ui_feeds') IS NOT NULL AS present")
    if not cursor.fetchone()["present"]:
        return {kind: [] for kind in UI_KINDS}  # before migration 0009: nothing added from the UI yet
    rows: dict[str, list[dict[str, Any]]] = {}
    for kind in UI_KINDS:
        cursor.execute(f"SELECT {_UI_COLUMNS[kind]}, {_UI_META} FROM {UI_TABLES[kind]} ORDER BY created_at, name")
        rows[kind] = [dict(row) for row in cursor.fetchall()]
    return rows


def _who(row: dict[str, Any]) -> str:
    when = row.get("created_at")
    return f"added by {row.get('created_by')}" + (f" on {when:%Y-%m-%d %H:%M} UTC" if isinstance(when, datetime)
                                                  else "")


def validate_ui_item(kind: str, fields: dict[str, Any]) -> tuple[_Strict | None, list[str]]:
    """The model of one UI item, or None and one line per problem, located like the file's (``url: …``)."""
    try:
        return UI_MODELS[kind].model_validate(fields), []
    except ValidationError as exc:
        return None, [line for error in exc.errors() for line in _format_error(error)]


def merge_ui(settings: Settings, rows: dict[str, list[dict[str, Any]]]) -> Settings:
    """``settings`` (the file's) with the UI-managed items added, each marked with its source.

    The file wins every name conflict: its item is used, the UI one left out and reported, with who added
    it, so that the people concerned remove or rename one of them. A UI item that fails its model (the
    rules language changed, a row edited by hand) is left out and reported; a UI rule naming a channel
    that no longer exists runs with the channels that do, and that is reported too.
    """
    problems: list[tuple[str, str, str]] = []
    sources: dict[tuple[str, str], Source] = {}
    merged: dict[str, list[Any]] = {}
    for kind in UI_KINDS:
        items = list(getattr(settings, kind))
        sources.update({(kind, item.name): "file" for item in items})
        singular = kind[:-1]
        for row in rows.get(kind, []):
            name = row["name"]
            if (kind, name) in sources:
                problems.append((kind, name, f"{singular} {name!r} ({_who(row)}) has the name of a {singular} "
                                 "declared in the file: the file's is used and the UI one ignored; remove or rename "
                                 "one of them"))
                continue
            model, errors = validate_ui_item(kind, ui_fields(kind, row))
            if model is None:
                problems.extend((kind, name, f"{singular} {name!r} ({_who(row)}) is left out: {error}")
                                for error in errors)
                continue
            items.append(model)
            sources[(kind, name)] = "ui"
        merged[kind] = items
    channel_names = {channel.name for channel in merged["channels"]}
    for index, rule in enumerate(merged["rules"]):
        missing = [name for name in rule.channels if name not in channel_names]
        if missing and sources[("rules", rule.name)] == "ui":
            problems.append(("rules", rule.name, f"rule {rule.name!r} names channel(s) that do not exist: "
                             f"{', '.join(map(repr, missing))}; it alerts the others only"))
            merged["rules"][index] = rule.model_copy(
                update={"channels": [name for name in rule.channels if name in channel_names]})
    result = settings.model_copy(update=merged)
    result._sources = sources
    result._ui_problems = problems
    return result


def config_warnings(settings: Settings) -> list[str]:
    """Settings that are valid but probably not meant: one line each, shown by ``check-config``."""
    warnings: list[str] = []
    for cidr in settings.network.allow_networks:
        if ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
            warnings.append(f"network.allow_networks: {cidr!r} admits every address, so feeds and the pages they "
                            "link to can reach this machine's private services; list only the networks needed")
    for rule in settings.rules:
        if rule.min_similarity is not None and not rule.compiled().meanings:
            warnings.append(f"rules: {rule.name!r} sets min_similarity but has no about: or like: term, so it "
                            "has no effect")
    return warnings
