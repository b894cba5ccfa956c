"""Feed polling at scale, politely: scheduling, failure handling, redirects, per-host limits, deadlines.

Every test polls real loopback servers and records into the real database. Time is never waited
for: a test asserts on the stored ``next_poll_at``, or moves ``next_poll_at`` into the past (our own
clock in our own table) to make a feed due again.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

import pytest

from newswatch.alerts.operator_events import deliver_operator_events
from newswatch.cli import main
from newswatch.config import Settings
from newswatch.ingest import schedule
from newswatch.ingest.poller import poll_feeds, sync_feeds
from tests.servers import LoopbackServer, Route

XML = {"Content-Type": "application/rss+xml"}


def rss(items: int, *, gap: timedelta = timedelta(hours=1), latest: timedelta = timedelta(minutes=1),
        ttl: int | None = None, prefix: str = "item", oldest_first: bool = False, dated: bool = True) -> bytes:
    """An RSS document with ``items`` entries, the newest ``latest`` ago, each ``gap`` older than the previous.

    Entry ``item/0`` is the newest; the document lists it first unless ``oldest_first``."""
    now = datetime.now(UTC)
    parts = ['<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
             "<link>http://127.0.0.1/</link><description>d</description>"]
    if ttl is not None:
        parts.append(f"<ttl>{ttl}</ttl>")
    for index in reversed(range(items)) if oldest_first else range(items):
        published = format_datetime(now - latest - gap * index, usegmt=True)
        link = f"http://127.0.0.1/{prefix}/{index}"
        date = f"<pubDate>{published}</pubDate>" if dated else ""
        parts.append(f"<item><title>{prefix} {index}</title><link>{escape(link)}</link><guid>{escape(link)}</guid>"
                     f"{date}<description>text</description></item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def make_settings(feeds: list[dict], *, allow: tuple[str, ...] = ("127.0.0.1/32",), channels=(), network=None,
                  **polling) -> Settings:
    return Settings.model_validate({
        "feeds": feeds,
        "channels": list(channels),
        "network": {"allow_networks": list(allow), "connect_timeout": 2, "read_timeout": 2, "total_timeout": 4,
                    **(network or {})},
        "polling": polling,
    })


def poll(settings: Settings, *, force: bool = False) -> dict[str, int]:
    return poll_feeds(sync_feeds(settings, force=force), settings)


def feed_row(query, name: str) -> dict:
    return query("SELECT * FROM feeds WHERE name = %s", (name,))[0]


def make_due(query, *names: str) -> None:
    query("UPDATE feeds SET next_poll_at = now() - interval '1 second' WHERE name = ANY(%s)", (list(names),))


def seconds_until(moment: datetime) -> float:
    return (moment - datetime.now(UTC)).total_seconds()


def events(query, kind: str | None = None) -> list[dict]:
    rows = query("SELECT * FROM operator_events ORDER BY id")
    return [row for row in rows if kind is None or row["kind"] == kind]


# --- conditional GET -------------------------------------------------------------------------------


def test_not_modified_costs_no_parse_and_new_etag_brings_new_entries(site, query):
    site.routes["/feed"] = Route(200, rss(2), XML, etag='"v1"')
    settings = make_settings([{"name": "f", "url": site.url("/feed")}])

    assert poll(settings) == {"feeds": 1, "failed": 0, "not_modified": 0, "new_entries": 2}
    assert feed_row(query, "f")["etag"] == '"v1"'

    make_due(query, "f")
    assert poll(settings)["not_modified"] == 1
    assert site.requests[-1].headers["if-none-match"] == '"v1"'
    # A 304 has an empty body: had it been parsed, the poll would be an "empty document" error.
    last = query("SELECT outcome, error_kind, entries FROM feed_polls ORDER BY id DESC LIMIT 1")[0]
    assert last == {"outcome": "not_modified", "error_kind": None, "entries": 0}
    row = feed_row(query, "f")
    assert row["consecutive_failures"] == 0 and row["last_status"] == 304
    assert len(query("SELECT id FROM feed_entries")) == 2

    site.routes["/feed"] = Route(200, rss(3), XML, etag='"v2"')
    make_due(query, "f")
    assert poll(settings)["new_entries"] == 1
    assert feed_row(query, "f")["etag"] == '"v2"'
    assert len(query("SELECT id FROM feed_entries")) == 3
    assert all("newswatch" in request.headers["user-agent"] for request in site.requests)


# --- scheduling ------------------------------------------------------------------------------------


def test_sync_returns_only_due_feeds_and_force_returns_all(site, query):
    for path in ("/a", "/b", "/c"):
        site.routes[path] = Route(200, rss(2), XML)
    config = [{"name": "a", "url": site.url("/a")}, {"name": "b", "url": site.url("/b")},
              {"name": "c", "url": site.url("/c"), "enabled": False}]
    settings = make_settings(config)
    ids = sync_feeds(settings)
    by_name = {row["name"]: row["id"] for row in query("SELECT id, name FROM feeds")}
    assert sorted(ids) == sorted([by_name["a"], by_name["b"]])  # new feeds are due at once

    poll_feeds(ids, settings)
    assert seconds_until(feed_row(query, "a")["next_poll_at"]) > 60
    assert sync_feeds(settings) == []  # just polled: nothing is due
    assert sorted(sync_feeds(settings, force=True)) == sorted(ids)  # --all: every enabled feed
    make_due(query, "b")
    assert sync_feeds(settings) == [by_name["b"]]

    # A feed added to the config is due at once; a re-enabled one too.
    settings = make_settings(config[:2] + [{"name": "c", "url": site.url("/c")}, {"name": "d", "url": site.url("/a")}])
    due = sync_feeds(settings)
    by_name = {row["name"]: row["id"] for row in query("SELECT id, name FROM feeds")}
    assert sorted(due) == sorted([by_name["b"], by_name["c"], by_name["d"]])


def test_adaptive_interval_busy_feed_sooner_than_quiet_one_within_bounds(site, query):
    site.routes["/busy"] = Route(200, rss(20, gap=timedelta(minutes=6)), XML)  # ~10 an hour
    site.routes["/quiet"] = Route(200, rss(10, gap=timedelta(days=3), latest=timedelta(days=1)), XML)
    config = [{"name": "busy", "url": site.url("/busy")}, {"name": "quiet", "url": site.url("/quiet")}]

    poll(make_settings(config, min_interval=120, max_interval=21600))
    busy, quiet = feed_row(query, "busy"), feed_row(query, "quiet")
    assert 300 <= busy["interval_seconds"] <= 420  # one entry every ~6 minutes
    assert quiet["interval_seconds"] == 21600  # one every 3 days: clamped to max_interval
    for row in (busy, quiet):
        delay = seconds_until(row["next_poll_at"])
        assert row["interval_seconds"] - 65 <= delay <= row["interval_seconds"] + 5

    make_due(query, "busy", "quiet")
    poll(make_settings(config, min_interval=900, max_interval=7200))
    assert feed_row(query, "busy")["interval_seconds"] == 900
    assert feed_row(query, "quiet")["interval_seconds"] == 7200

    # A configured interval replaces the estimate, still within the bounds.
    make_due(query, "busy", "quiet")
    poll(make_settings([{**config[0], "interval": 3600}, {**config[1], "interval": 60}],
                       min_interval=300, max_interval=7200))
    assert feed_row(query, "busy")["interval_seconds"] == 3600
    assert feed_row(query, "quiet")["interval_seconds"] == 300


def test_server_hints_lengthen_the_interval(site, query):
    busy = rss(20, gap=timedelta(minutes=6))
    now = datetime.now(UTC)
    site.routes["/ttl"] = Route(200, rss(20, gap=timedelta(minutes=6), ttl=60), XML)
    site.routes["/max-age"] = Route(200, busy, {**XML, "Cache-Control": "public, max-age=1800"})
    site.routes["/expires"] = Route(200, busy, {**XML, "Expires": format_datetime(now + timedelta(hours=2),
                                                                                  usegmt=True)})
    site.routes["/huge"] = Route(200, busy, {**XML, "Cache-Control": "max-age=31536000"})
    site.routes["/plain"] = Route(200, busy, XML)
    names = ["ttl", "max-age", "expires", "huge", "plain"]
    poll(make_settings([{"name": name, "url": site.url(f"/{name}")} for name in names],
                       min_interval=300, max_interval=21600))
    rows = {name: feed_row(query, name) for name in names}
    assert rows["plain"]["interval_seconds"] < 600
    assert rows["ttl"]["interval_seconds"] == 3600 and rows["ttl"]["ttl_seconds"] == 3600
    assert rows["max-age"]["interval_seconds"] == 1800
    assert 7100 <= rows["expires"]["interval_seconds"] <= 7200
    assert rows["huge"]["interval_seconds"] == 86400  # a server may slow us down, but for a day at most
    # Server hints are not cut by the scheduling slack.
    assert seconds_until(rows["ttl"]["next_poll_at"]) >= 3600 - 5

    # <ttl> is remembered across 304 answers, which carry no document.
    site.routes["/ttl"] = Route(200, rss(20, gap=timedelta(minutes=6), ttl=60), XML, etag='"t"')
    make_due(query, "ttl")
    poll(make_settings([{"name": "ttl", "url": site.url("/ttl")}]))
    make_due(query, "ttl")
    assert poll(make_settings([{"name": "ttl", "url": site.url("/ttl")}]))["not_modified"] == 1
    assert feed_row(query, "ttl")["interval_seconds"] == 3600


# --- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "retry_after", "expected"), [
    (429, "120", 120),
    (429, "5", 60),  # clamped up to a minute
    (503, "99999999", 86400),  # and down to a day
])
def test_retry_after_seconds_is_honoured_and_clamped(site, query, status, retry_after, expected):
    site.routes["/feed"] = Route(status, b"slow down", {"Retry-After": retry_after})
    settings = make_settings([{"name": "f", "url": site.url("/feed")}], min_interval=300)
    assert poll(settings)["failed"] == 1
    row = feed_row(query, "f")
    assert expected - 5 <= seconds_until(row["next_poll_at"]) <= expected + 1
    assert row["last_status"] == status and "retry after" in row["last_error"]
    assert sync_feeds(settings) == []


def test_retry_after_http_date_on_503(site, query):
    later = datetime.now(UTC) + timedelta(hours=1)
    site.routes["/feed"] = Route(503, b"maintenance", {"Retry-After": format_datetime(later, usegmt=True)})
    poll(make_settings([{"name": "f", "url": site.url("/feed")}]))
    assert 3600 - 10 <= seconds_until(feed_row(query, "f")["next_poll_at"]) <= 3600 + 1


def test_backoff_grows_with_full_jitter_is_bounded_and_never_gives_up(site, query):
    site.routes["/feed"] = Route(500, b"broken")
    settings = make_settings([{"name": "f", "url": site.url("/feed")}], min_interval=60, max_backoff=3600)
    delays = []
    for failures in range(1, 13):
        make_due(query, "f")
        assert poll(settings)["failed"] == 1
        row = feed_row(query, "f")
        assert row["consecutive_failures"] == failures
        delay = seconds_until(row["next_poll_at"])
        ceiling = min(3600, 60 * 2 ** (failures - 1))
        assert 60 - 5 <= delay <= ceiling + 1, (failures, delay)
        delays.append(delay)
    assert max(delays[6:]) > 240  # the ceiling grew (all of these at or below 4 min: odds ~1e-8)
    assert len({round(delay) for delay in delays[6:]}) > 1  # jittered, not a fixed step
    assert max(delays) <= 3600 + 1
    make_due(query, "f")
    assert len(sync_feeds(settings)) == 1  # still probed after 12 failures
    assert feed_row(query, "f")["disabled_reason"] is None


def test_gone_disables_the_feed_with_a_reason_and_it_is_not_polled_again(site, query, capsys):
    site.routes["/gone"] = Route(410, b"gone")
    settings = make_settings([{"name": "gone", "url": site.url("/gone")}])
    assert poll(settings)["failed"] == 1
    row = feed_row(query, "gone")
    assert row["disabled_reason"] == "HTTP 410 Gone" and row["enabled"] is True
    assert [event["kind"] for event in events(query)] == ["disabled"]

    make_due(query, "gone")
    assert sync_feeds(settings) == [] and sync_feeds(settings, force=True) == []
    assert poll_feeds([row["id"]], settings)["feeds"] == 0
    assert len(site.hits("/gone")) == 1

    assert main(["feeds"]) == 0
    assert "disabled (HTTP 410 Gone)" in capsys.readouterr().out

    # A new URL in the config brings it back.
    site.routes["/new"] = Route(200, rss(1), XML)
    assert sync_feeds(make_settings([{"name": "gone", "url": site.url("/new")}])) == [row["id"]]
    assert feed_row(query, "gone")["disabled_reason"] is None


def test_failing_then_recovered_notifies_the_operator_once_each(site, query, webhook, tmp_path):
    site.routes["/feed"] = Route(500, b"broken")
    log_file = tmp_path / "operator.jsonl"
    settings = make_settings(
        [{"name": "f", "url": site.url("/feed")}],
        channels=[{"name": "ops", "url": f"json://127.0.0.1:{webhook.server_address[1]}/ops"}],
        notify_after_failures=2, operator_channels=["ops", f"jsonl://{log_file}"],
    )
    for _ in range(4):
        make_due(query, "f")
        poll(settings)
    assert feed_row(query, "f")["consecutive_failures"] == 4
    failing = events(query, "failing")
    assert len(failing) == 1 and "f" in failing[0]["message"] and "HTTP 500" in failing[0]["message"]

    site.routes["/feed"] = Route(200, rss(2), XML)
    for _ in range(2):
        make_due(query, "f")
        poll(settings)
    row = feed_row(query, "f")
    assert row["consecutive_failures"] == 0 and row["failure_notified_at"] is None
    assert [event["kind"] for event in events(query)] == ["failing", "recovered"]

    # One failure is below the threshold: no event.
    site.routes["/feed"] = Route(500, b"broken")
    make_due(query, "f")
    poll(settings)
    assert len(events(query)) == 2

    # Delivery: the webhook is down at first; the file channel gets each event once, whatever the retries.
    webhook.status = 500
    assert deliver_operator_events(settings) == {"sent": 0, "failed": 2, "logged": 0, "deferred": 0}
    webhook.status = 200
    assert deliver_operator_events(settings) == {"sent": 2, "failed": 0, "logged": 0, "deferred": 0}
    assert deliver_operator_events(settings) == {"sent": 0, "failed": 0, "logged": 0, "deferred": 0}
    assert [payload["title"] for payload in webhook.received] == ["[newswatch] feed f: failing",
                                                                  "[newswatch] feed f: recovered"]
    assert all("Event-Id: newswatch-operator-event-" in payload["message"] for payload in webhook.received)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["failing", "recovered"]
    assert all(event["delivered_at"] is not None for event in events(query))


def test_an_operator_channel_that_trickles_is_cut_at_the_send_deadline(query, tmp_path):
    """The operator's channels share the alerts' send deadline: a receiver answering one byte a second is cut
    at ``alerts.send_timeout`` and the event retried later, while the other channel takes it at once. The
    slow channel is asked once per run: the later events reach the other channel and wait for it, with no
    attempt counted, instead of costing one deadline each."""
    from tests.servers import TricklingReceiver

    slow = TricklingReceiver().start()
    log_file = tmp_path / "operator.jsonl"
    try:
        settings = Settings.model_validate({
            "channels": [{"name": "ops", "url": f"webhook+http://127.0.0.1:{slow.port}/ops"}],
            "polling": {"operator_channels": ["ops", f"jsonl://{log_file}"]},
            "alerts": {"send_timeout": 1},
        })
        for feed in ("f", "g", "h"):
            query(f"INSERT INTO operator_events (kind, message) VALUES ('failing', 'feed {feed} failed 3 times')")
        assert deliver_operator_events(settings) == {"sent": 0, "failed": 1, "logged": 0, "deferred": 2}
    finally:
        slow.stop()
    first, *later = sorted(events(query), key=lambda event: event["id"])
    assert len(slow.requests) == 1 and slow.bytes_sent < len(TricklingReceiver.ANSWER)
    for event in (first, *later):
        assert event["delivered_at"] is None and [key[:4] for key in event["delivered_to"]] == ["url:"]  # the file
    assert first["last_error"].startswith("ops: timeout: ") and first["attempts"] == 1
    assert [(event["last_error"], event["attempts"]) for event in later] == [(None, 0), (None, 0)]
    assert [json.loads(line)["kind"] for line in log_file.read_text().splitlines()] == ["failing"] * 3


@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirect_moves_the_url_only_when_seen_twice_in_a_row(site, query, status):
    site.routes["/old"] = Route(status, b"", {"Location": "/new"})
    site.routes["/new"] = Route(200, rss(2), XML)
    config = [{"name": "f", "url": site.url("/old")}]
    settings = make_settings(config)

    poll(settings)
    row = feed_row(query, "f")
    assert row["url"] == site.url("/old")  # once is not enough
    assert (row["permanent_redirect_url"], row["redirect_count"]) == (site.url("/new"), 1)

    site.routes["/old"] = Route(200, rss(2), XML)  # the redirect was a one-off
    make_due(query, "f")
    poll(settings)
    row = feed_row(query, "f")
    assert row["url"] == site.url("/old") and row["redirect_count"] == 0

    site.routes["/old"] = Route(status, b"", {"Location": "/new"})
    for _ in range(2):
        make_due(query, "f")
        poll(settings)
    row = feed_row(query, "f")
    assert row["url"] == site.url("/new") and row["config_url"] == site.url("/old")
    assert [event["kind"] for event in events(query)] == ["moved"]

    old_hits = len(site.hits("/old"))
    sync_feeds(settings)  # the same config must not move it back
    make_due(query, "f")
    poll(settings)
    assert feed_row(query, "f")["url"] == site.url("/new") and len(site.hits("/old")) == old_hits


def test_temporary_redirect_never_moves_the_url(site, query):
    site.routes["/old"] = Route(302, b"", {"Location": "/new"})
    site.routes["/new"] = Route(200, rss(2), XML)
    settings = make_settings([{"name": "f", "url": site.url("/old")}])
    for _ in range(3):
        make_due(query, "f")
        poll(settings)
    row = feed_row(query, "f")
    assert row["url"] == site.url("/old") and row["redirect_count"] == 0


# --- concurrency and safety ------------------------------------------------------------------------


class _Concurrency:
    def __init__(self, delay: float):
        self.delay = delay
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def __call__(self, request) -> Route:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        return Route(200, rss(1, prefix=request.path.strip("/")), XML)


def test_per_host_limit_caps_concurrent_requests_to_one_host(site, query):
    counter = _Concurrency(0.3)
    for index in range(8):
        site.routes[f"/f{index}"] = counter
    settings = make_settings([{"name": f"f{index}", "url": site.url(f"/f{index}")} for index in range(8)],
                             feed_workers=8, per_host_concurrency=2)
    started = time.monotonic()
    assert poll(settings)["failed"] == 0
    assert counter.peak == 2  # never more than the limit, and the limit is used
    assert time.monotonic() - started >= 4 * 0.3 - 0.05


def test_per_host_limit_does_not_serialize_other_hosts(site, query):
    other = LoopbackServer(host="127.0.0.2").start()
    try:
        first, second = _Concurrency(0.3), _Concurrency(0.3)
        feeds = []
        for index in range(4):
            site.routes[f"/a{index}"] = first
            other.routes[f"/b{index}"] = second
            feeds += [{"name": f"a{index}", "url": site.url(f"/a{index}")},
                      {"name": f"b{index}", "url": other.url(f"/b{index}")}]
        settings = make_settings(feeds, allow=("127.0.0.1/32", "127.0.0.2/32"), feed_workers=8,
                                 per_host_concurrency=1)
        started = time.monotonic()
        assert poll(settings)["failed"] == 0
        assert first.peak == 1 and second.peak == 1
        assert time.monotonic() - started < 8 * 0.3  # both hosts were polled side by side
    finally:
        other.stop()


@pytest.mark.slow  # a fault drill that waits out real deadlines or time limits
def test_waiting_for_a_host_slot_does_not_count_against_the_deadline(site, query):
    counter = _Concurrency(1.0)
    for index in range(3):
        site.routes[f"/f{index}"] = counter
    settings = make_settings([{"name": f"f{index}", "url": site.url(f"/f{index}")} for index in range(3)],
                             network={"total_timeout": 1.5}, feed_workers=3, per_host_concurrency=1)
    # The last feed waits ~2 s for its slot, longer than the 1.5 s deadline of its own request.
    assert poll(settings)["failed"] == 0
    assert counter.peak == 1


def _drip_server(body_bytes: int, every: float) -> tuple[socket.socket, threading.Event]:
    """A raw server that sends headers, then one body byte every ``every`` seconds."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                         b"Content-Length: %d\r\n\r\n" % body_bytes)
            for _ in range(body_bytes):
                if stop.is_set():
                    break
                conn.sendall(b" ")
                time.sleep(every)
        except OSError:
            pass
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server, stop


@pytest.mark.slow  # a fault drill that waits out real deadlines or time limits
def test_slow_drip_body_is_cut_by_the_total_deadline(query):
    # 24 bytes at 2 per second: each read gets data well within read_timeout, so only a total
    # deadline stops it; without one the poll would take 12 s.
    server, stop = _drip_server(24, 0.5)
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/feed"
        settings = make_settings([{"name": "drip", "url": url}])  # total_timeout 4 s, read_timeout 2 s
        started = time.monotonic()
        assert poll(settings)["failed"] == 1
        assert time.monotonic() - started < 6
        row = feed_row(query, "drip")
        assert row["last_error_kind"] == "timeout" and "deadline" in row["last_error"]
    finally:
        stop.set()
        server.close()


def _pathological_feed(items: int) -> bytes:
    """Ill-formed RSS (an undefined entity, crossed tags): feedparser falls back to its lenient parser, whose time
    grows with the size (about 8 s per MiB here; a 10 MiB one took a minute)."""
    item = ("<item><title>Title &bogus; {i}</title><link>http://127.0.0.1/a/{i}</link><description>"
            + "<p>word <b>bold</i> more</p>" * 20 + "</description></item>")
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            + "".join(item.format(i=i) for i in range(items)) + "</channel></rss>").encode()


@pytest.mark.slow  # a fault drill that waits out real deadlines or time limits
@pytest.mark.parametrize("items", [1500, 14_000], ids=["1MiB", "9MiB"])
def test_a_feed_that_parses_for_ever_costs_its_own_poll_only(site, query, capsys, items):
    """Parsing runs in a worker process with a time limit: the pathological feed is stopped and recorded as
    such (feed health shows it), the other feed of the same batch is read as usual. The larger one is just
    under the 10 MiB feed cap, where feedparser's lenient parser would take about a minute."""
    document = _pathological_feed(items)
    assert len(document) < Settings().network.max_feed_bytes
    site.routes["/pathological"] = Route(200, document, XML)
    site.routes["/fine"] = Route(200, rss(3), XML)
    settings = make_settings([{"name": "pathological", "url": site.url("/pathological")},
                              {"name": "fine", "url": site.url("/fine")}], item_time_limit=1)
    counts = poll(settings)
    assert counts["failed"] == 1 and counts["new_entries"] == 3
    row = feed_row(query, "pathological")
    assert row["last_error_kind"] == "parser_timeout" and "longer than 1 s" in row["last_error"]
    assert row["next_poll_at"] is not None  # retried later, with backoff
    assert main(["feeds", "--json"]) == 0
    health = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert health["pathological"]["state"] == "failing" and health["pathological"]["error_kind"] == "parser_timeout"
    assert health["fine"]["state"] == "ok"


# --- more new entries than one poll takes ---------------------------------------------------------


def stored_items(query, name: str) -> list[int]:
    """Item numbers of a feed's stored entries, in the order they were queued (the order articles are fetched)."""
    rows = query("SELECT e.url FROM feed_entries e JOIN feeds f ON f.id = e.feed_id WHERE f.name = %s ORDER BY e.id",
                 (name,))
    return [int(row["url"].rsplit("/", 1)[1]) for row in rows]


def test_a_feed_that_outruns_the_cap_is_queued_newest_first_over_several_polls(site, query, capsys):
    """61 new entries listed oldest first, 50 per poll: the 50 newest now, the other 11 on the next poll, none
    lost and none twice, and feed health says the feed outran the cap while it did. The server's ETag does not
    hide the remainder behind a 304."""
    site.routes["/burst"] = Route(200, rss(61, gap=timedelta(minutes=1), oldest_first=True), XML, etag='"v1"')
    settings = make_settings([{"name": "burst", "url": site.url("/burst")}], max_articles_per_feed=50)

    assert poll(settings)["new_entries"] == 50
    assert stored_items(query, "burst") == list(range(50))  # the newest, newest first
    row = feed_row(query, "burst")
    assert row["last_error_kind"] == "warning" and row["consecutive_failures"] == 0
    assert "outran" in row["last_error"] and "61 new entries" in row["last_error"] and "11" in row["last_error"]
    assert main(["feeds", "--json"]) == 0
    health = json.loads(capsys.readouterr().out)[0]
    assert health["state"] == "ok" and health["error_kind"] == "warning" and "outran" in health["error"]

    make_due(query, "burst")
    assert poll(settings)["new_entries"] == 11
    assert "if-none-match" not in site.requests[-1].headers  # the remainder is in the document we have
    assert sorted(stored_items(query, "burst")) == list(range(61))
    assert len(query("SELECT id FROM feed_entries")) == 61
    row = feed_row(query, "burst")
    assert row["last_error_kind"] is None and row["last_error"] is None and row["etag"] == '"v1"'

    make_due(query, "burst")
    assert poll(settings) == {"feeds": 1, "failed": 0, "not_modified": 1, "new_entries": 0}


def test_entries_without_a_date_are_queued_after_dated_ones_in_document_order(site, query):
    dated = rss(3, oldest_first=True).split(b"<item>", 1)[1].rsplit(b"</channel>", 1)[0]  # item/2, item/1, item/0
    undated = rss(4, prefix="undated", dated=False).split(b"<item>", 1)[1].rsplit(b"</channel>", 1)[0]
    head = b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
    # Document order: undated/0, item/2, undated/1, item/1, undated/2, item/0, undated/3.
    dated_items, undated_items = dated.split(b"<item>"), undated.split(b"<item>")
    mixed = [item for pair in zip(undated_items, dated_items, strict=False) for item in pair] + undated_items[3:]
    document = head + b"".join(b"<item>" + item for item in mixed) + b"</channel></rss>"
    site.routes["/mixed"] = Route(200, document, XML)
    settings = make_settings([{"name": "mixed", "url": site.url("/mixed")}], max_articles_per_feed=5)

    assert poll(settings)["new_entries"] == 5
    urls = [row["url"].removeprefix("http://127.0.0.1/") for row in query("SELECT url FROM feed_entries ORDER BY id")]
    assert urls == ["item/0", "item/1", "item/2", "undated/0", "undated/1"]
    make_due(query, "mixed")
    assert poll(settings)["new_entries"] == 2
    assert len(query("SELECT DISTINCT url FROM feed_entries")) == 7


# --- visibility ------------------------------------------------------------------------------------


def test_feeds_command_shows_state_failing_first(site, query, capsys):
    site.routes["/ok"] = Route(200, rss(2), XML)
    site.routes["/broken"] = Route(500, b"broken")
    site.routes["/gone"] = Route(410, b"gone")
    config = [{"name": name, "url": site.url(f"/{name}")} for name in ("ok", "broken", "gone")]
    poll(make_settings(config))
    sync_feeds(make_settings(config + [{"name": "fresh", "url": site.url("/ok")},
                                       {"name": "off", "url": site.url("/ok"), "enabled": False}]))

    assert main(["feeds", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(row["name"], row["state"]) for row in rows] == [
        ("broken", "failing"), ("fresh", "new"), ("ok", "ok"),
        ("gone", "disabled (HTTP 410 Gone)"), ("off", "disabled (config)"),
    ]
    broken = rows[0]
    assert broken["failures"] == 1 and broken["error_kind"] == "http_error" and broken["error"] == "HTTP 500"
    assert broken["next_poll"] is not None and broken["last_success"] is None
    ok = rows[2]
    assert ok["last_success"] is not None and ok["interval"] and ok["interval_seconds"] > 0

    assert main(["feeds"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:10] == ["NAME", "STATE", "FAILURES", "ERROR_KIND", "ERROR", "ARTICLES_FAILED",
                                     "ARTICLE_ERROR", "LAST_SUCCESS", "NEXT_POLL", "INTERVAL"]
    assert table[1].startswith("broken") and "HTTP 500" in table[1]


def test_schedule_backoff_ceiling_doubles_up_to_the_cap():
    polling = Settings.model_validate({"polling": {"min_interval": 300, "max_backoff": 86400}}).polling
    ceilings = [schedule.backoff_ceiling(failures, polling) for failures in range(1, 12)]
    assert ceilings[:5] == [300, 600, 1200, 2400, 4800]
    assert ceilings[-1] == 86400 and all(b >= a for a, b in zip(ceilings, ceilings[1:], strict=False))
    assert schedule.backoff_ceiling(10_000, polling) == 86400


def test_control_characters_in_a_feed_never_reach_its_entries_or_the_operators_terminal(site, query, capsys):
    """ESC sequences, BEL and C1 controls in a feed's entries and in a feed's error are dropped on the way in:
    ``poll`` stores clean entries (the other entry of the feed too), and ``newswatch feeds``, ``search`` and
    their JSON print no control character."""
    from newswatch.cli import main

    hostile = "Harbour\x1b[2J budget\x07 vote\u009b31m in Velmora"
    document = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t\x1b]0;owned\x07</title>'
                "<link>http://127.0.0.1/</link><description>d</description>"
                f"<item><title>{hostile}</title><link>http://127.0.0.1/x/1</link><guid>g\x1b[1</guid>"
                f"<description>{hostile} text</description></item>"
                "<item><title>plain</title><link>http://127.0.0.1/x/2</link><guid>g2</guid></item>"
                "</channel></rss>").encode()
    site.routes["/ctl"] = Route(200, document, XML)
    site.routes["/err"] = Route(200, b"<html><head><title>Error\x1b[31m page\x07</title></head></html>",
                                {"Content-Type": "text/html\x1b[2J"})
    poll(make_settings([{"name": "ctl", "url": site.url("/ctl")}, {"name": "err", "url": site.url("/err")}]))
    control = [chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), *range(0x7F, 0xA0)]]
    entries = query("SELECT guid, title, summary FROM feed_entries ORDER BY guid")
    titles = sorted(entry["title"] for entry in entries)  # (feedparser reads a C1 byte as windows-1252, as browsers do)
    assert titles[0].startswith("Harbour[2J budget vote") and titles[0].endswith("31m in Velmora")
    assert titles[1] == "plain"
    for entry in entries:
        assert not any(ch in str(value) for value in entry.values() for ch in control), entry
    assert not any(ch in (feed_row(query, "err")["last_error"] or "") for ch in control)
    capsys.readouterr()
    for argv in (["feeds"], ["feeds", "--json"], ["search", "velmora"], ["search", "velmora", "--json"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert not any(ch in out for ch in control if ch != "\n"), (argv, out)


def test_work_is_split_into_about_one_batch_per_pool_slot():
    """A mapped task pays its start-up once: a cycle's feeds or pages go into about one batch per slot of the
    Airflow pool, each of at least polling.batch_size, and never more than Airflow maps."""
    from newswatch.pipeline import task_batches

    settings = Settings.model_validate({"polling": {"batch_size": 20, "max_parallel_tasks": 4}})
    sizes = lambda items, **kw: [len(batch) for batch in task_batches(list(range(items)), settings, **kw)]  # noqa: E731
    assert sizes(0) == []
    assert sizes(10) == [10]
    assert sizes(50) == [17, 17, 16]  # fewer items than slots x batch_size: batches of at most batch_size
    assert sizes(1000) == [250] * 4  # a backlog: one batch per slot
    assert sizes(1000, max_batches=2) == [500, 500]  # [core] max_map_length
    assert sum(sizes(1001)) == 1001 and len(sizes(1001)) == 4


def test_batches_side_by_side_ask_different_hosts_at_once():
    """Queued pages come with their hosts taken in turn, and batches are dealt from that list, not cut from it:
    the mapped tasks running side by side (and the threads inside each) ask different hosts at the same moment.
    Cut in runs, every batch of a list cycling through 60 hosts started on the same host as the others and
    walked in step with them, each waiting for the others' slots."""
    from newswatch.ingest.hostslots import host_key, in_host_turns
    from newswatch.pipeline import task_batches

    # A feed's pages are queued together: 8 pages per feed, 3 feeds per host, 60 hosts.
    rows = [{"id": n, "url": f"http://h{(n // 8) % 60}.example:8080/p{n}"} for n in range(60 * 3 * 8)]
    ordered = in_host_turns(rows)
    assert sorted(row["id"] for row in ordered) == list(range(len(rows)))
    assert len({host_key(row["url"]) for row in ordered[:60]}) == 60
    url_of = {row["id"]: row["url"] for row in rows}
    settings = Settings.model_validate({"polling": {"batch_size": 20, "max_parallel_tasks": 4}})
    batches = task_batches([row["id"] for row in ordered], settings)
    assert len(batches) == 4 and sorted(sum(batches, [])) == list(range(len(rows)))
    for position in range(0, 360, 7):  # the tasks at the same point of their batches
        hosts = [host_key(url_of[batch[position]]) for batch in batches]
        assert len(set(hosts)) == 4, (position, hosts)
    for batch in batches:  # and the threads inside one task, taking its next pages
        assert all(len({host_key(url_of[i]) for i in batch[start:start + 8]}) == 8 for start in range(0, 352, 8))
