"""When to poll a feed next: adaptive intervals, server hints, Retry-After and backoff.

Pure functions (no database, no network) so every rule can be read and tested on its own.

After a successful poll (200 or 304) the interval is

1. the feed's configured ``interval`` if set, else an estimate of its publishing rate (the mean gap
   between its recent entries, see :func:`publishing_interval`);
2. clamped to ``polling.min_interval`` .. ``polling.max_interval``;
3. raised to what the server asked for (RSS ``<ttl>``, ``Cache-Control: max-age``, ``Expires``), which
   is honoured even above ``max_interval`` but never above 24 hours, so a hostile or broken header
   cannot silence a feed for longer than a day.

After a failed poll: ``Retry-After`` (seconds or an HTTP date) on 429 and 503, clamped to 60 s–24 h;
otherwise exponential backoff with full jitter (a random delay between ``min_interval`` and
``min_interval * 2**(failures-1)``, the ceiling capped at ``polling.max_backoff``). There is no
give-up: a feed that keeps failing is probed about once per ``max_backoff`` for ever.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from newswatch.config import Polling

DAY = 86400
RETRY_AFTER_MIN = 60
RETRY_AFTER_MAX = DAY
SERVER_HINT_MAX = DAY
# The publishing rate is measured over this window: older entries only say the feed is quiet.
RATE_WINDOW = timedelta(days=7)
# Used when a feed's rate cannot be estimated yet (one entry, no dates, no history).
UNKNOWN_RATE_INTERVAL = 3600
# A success interval is stored as "next poll at start + interval - slack", so a feed whose interval
# equals the DAG's period is not pushed to the following run because its task started a few
# seconds later than last time. Never applied to server hints, Retry-After or backoff.
SCHEDULE_SLACK = 60

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def retry_after_seconds(headers: Mapping[str, str] | None, now: datetime) -> int | None:
    """The server's Retry-After (delta seconds or HTTP date), clamped to 60 s–24 h; None if absent/invalid."""
    value = (headers or {}).get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        moment = _http_date(value)
        if moment is None:
            return None
        seconds = (moment - now).total_seconds()
    return int(clamp(seconds, RETRY_AFTER_MIN, RETRY_AFTER_MAX))


def server_min_interval(headers: Mapping[str, str] | None, ttl_seconds: int | None, now: datetime) -> int:
    """The shortest interval the server asked for (0 when it asked nothing), at most 24 hours.

    ``<ttl>`` comes from the document (kept across 304s), ``Cache-Control: max-age`` wins over
    ``Expires`` as in HTTP caching; ``Expires`` is measured against the server's ``Date`` when given,
    so a skewed server clock does not distort it.
    """
    headers = headers or {}
    asked = [ttl_seconds or 0]
    cache_control = headers.get("cache-control") or ""
    match = _MAX_AGE.search(cache_control)
    if match:
        asked.append(int(match.group(1)[:9]))
    else:
        expires = _http_date(headers.get("expires"))
        if expires is not None:
            reference = _http_date(headers.get("date")) or now
            asked.append(int((expires - reference).total_seconds()))
    return int(clamp(max(asked), 0, SERVER_HINT_MAX))


def publishing_interval(timestamps: Iterable[datetime | None], now: datetime) -> float | None:
    """Mean gap between entries over the last week, from the entries' own dates; None if unknown.

    A feed document holds only its latest entries: a busy feed's 20 entries may span two hours, a
    quiet one's a year. The gap is measured over the time the document covers (at most a week):
    covered time / entries within the week. No entry within the week means a quiet feed (a week).
    """
    times = [moment for moment in timestamps if moment is not None]
    if len(times) < 2:
        return None
    window = RATE_WINDOW.total_seconds()
    covered = clamp((now - min(times)).total_seconds(), 60, window)
    recent = sum(1 for moment in times if (now - moment).total_seconds() <= window)
    if recent == 0:
        return window
    return covered / recent


def history_interval(new_entries: int, observed_seconds: float) -> float | None:
    """Mean gap between new entries seen by our own polls, for feeds whose entries carry no dates."""
    if observed_seconds < 3600:
        return None  # too little history to say anything
    if new_entries <= 0:
        return min(observed_seconds, RATE_WINDOW.total_seconds())
    return observed_seconds / new_entries


def success_interval(
    polling: Polling,
    *,
    configured: int | None,
    estimate: float | None,
    previous: int | None,
    server_floor: int,
) -> int:
    """The interval until the next poll after a successful one (see the module docstring)."""
    if configured:
        base = float(configured)
    elif estimate is not None:
        base = estimate
    else:
        base = float(previous or UNKNOWN_RATE_INTERVAL)
    interval = clamp(base, polling.min_interval, polling.max_interval)
    return int(max(interval, min(server_floor, SERVER_HINT_MAX)))


def success_delay(interval: int, server_floor: int) -> int:
    """Seconds from the poll's start to its next due time: the interval less a little slack."""
    slack = min(SCHEDULE_SLACK, interval // 10)
    return max(interval - slack, server_floor)


def backoff_ceiling(failures: int, polling: Polling) -> float:
    """Upper bound of the backoff delay after ``failures`` consecutive failures (>= 1)."""
    exponent = min(max(failures, 1) - 1, 32)  # 2**32 * 60 s is far above any cap
    return min(float(polling.max_backoff), polling.min_interval * math.pow(2, exponent))


def backoff_delay(failures: int, polling: Polling, rng: random.Random | None = None) -> int:
    """Full jitter: uniform between zero and the ceiling, but never sooner than ``min_interval``."""
    ceiling = backoff_ceiling(failures, polling)
    delay = (rng or random).uniform(0, ceiling)
    return int(clamp(delay, min(polling.min_interval, ceiling), ceiling))


def humanize(seconds: float | None) -> str | None:
    """``90`` → ``1m30s``, ``7200`` → ``2h``: for tables."""
    if seconds is None:
        return None
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", DAY), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return "".join(parts)
