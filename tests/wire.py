"""A latency-bound news workload with a known outcome: wire stories copied into feeds on many loopback hosts.

Each host is a :class:`tests.servers.LoopbackServer` of its own (one (host, port) for the per-host limit) that
waits its own latency before every answer and counts the requests it is answering at once. Feed ``i`` lives on
host ``i % hosts`` and lists ``entries`` pages on that host; page ``j`` of feed ``i`` is a verbatim copy of wire
story ``(i * entries + j) % len(STORIES)`` under a URL of its own. So the truth is known before anything runs:

* articles: one per page (``feeds * entries``), since every page has its own URL;
* stories: one per wire story used, since the copies are identical and the stories are about different things;
* alerts: one per (rule, story, channel) for the rules below, each of which names a word only its story has.

Used by the distributed test (``tests/test_distributed.py``) and the scale-out benchmark (``bench/scaleout.py``).
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.scenario import STORY_FIXTURES, article_page, rss, shipped_rule
from tests.servers import LoopbackServer, Request, Route, WebhookReceiver

HTML = {"Content-Type": "text/html; charset=utf-8"}
XML = {"Content-Type": "application/rss+xml"}


@dataclass(frozen=True)
class Story:
    slug: str
    title: str
    body: str


def _fixture(name: str, slug: str) -> Story:
    title, _, body = (STORY_FIXTURES / name).read_text(encoding="utf-8").strip().partition("\n")
    return Story(slug, title.strip(), body.strip())


_FOOTBALL = Story("cup-final", "Harlow Rovers win the northern cup final on penalties", """\
Harlow Rovers won the northern cup final on Saturday, beating Brackton Athletic 5-4 on penalties after a 1-1 draw \
in front of 31,000 supporters at the Millbeck stadium. It is the club's first football trophy in nineteen years.

Brackton went ahead just before half-time through a header from captain Owen Tilly. Rovers levelled in the 78th \
minute when substitute Jonah Pike curled a free kick into the top corner.

In the shoot-out, goalkeeper Sam Ferreira saved the fifth kick from Brackton defender Luca Brandt, and midfielder \
Eli Norcott scored the winning penalty. Manager Greta Holm said the players had earned every minute of the \
celebration and that the squad would parade the cup through the town centre on Sunday afternoon.""")

_COMET = Story("calder-comet", "Calder observatory astronomers discover a bright new comet", """\
Astronomers at the Calder mountain observatory have discovered a new comet that could become visible to the \
naked eye next spring, the observatory announced on Thursday.

The comet, catalogued as C/2026 K3, was first spotted on images taken with the observatory's 1.8-metre \
telescope by research student Mira Okafor. Follow-up observations from two other sites confirmed its orbit.

According to Professor Anton Wessel, the icy body will pass about 70 million kilometres from the Sun in April \
and may brighten sharply as it warms. Amateur observers are encouraged to follow it with binoculars from \
February, when it should appear low in the western sky after sunset.""")

_RATES = Story("norland-rates", "Norland central bank raises its main interest rate to 4.5 percent", """\
The central bank of Norland raised its main interest rate by half a percentage point to 4.5 percent on \
Wednesday, its third increase this year, citing stubborn inflation in services and wages.

Governor Helena Marsk told reporters in Aldport that consumer prices rose 5.2 percent in the year to October, \
well above the bank's 2 percent target, and that the board was ready to act again if needed.

Mortgage lenders said they would pass the increase on to borrowers within weeks. The Norland krona \
strengthened against the euro after the announcement, while shares of exporters and home builders fell.""")

STORIES = (
    _fixture("syria-strikes-en.txt", "syria-strikes"),
    _fixture("port-fire-en.txt", "port-fire"),
    _fixture("river-flood-en.txt", "river-flood"),
    _FOOTBALL,
    _COMET,
    _RATES,
)

# (rule, query, channels, the stories it matches): every query names what only its stories say.
RULES = (
    ("syria-strikes", None, ("desk", "wire"), ("syria-strikes",)),  # None: the shipped rule's query
    ("velmora-port", "kestrel", ("desk",), ("port-fire",)),
    ("football", "football OR soccer", ("desk",), ("cup-final",)),
    ("comets", "comet", ("desk",), ("calder-comet",)),
)


@dataclass
class Held:
    """A held page: ``arrived`` is set (and ``client`` is the sender's address) once its request is being
    answered; the answer waits for ``release`` (two minutes at most)."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    client: tuple[str, int] | None = None


class WireSites:
    """``feeds`` feeds of ``entries`` pages each on ``hosts`` loopback hosts, with latency drawn per host from
    ``latency`` (seconds, seeded)."""

    def __init__(self, *, hosts: int, feeds: int, entries: int, latency: tuple[float, float] = (0.1, 0.3),
                 seed: int = 13) -> None:
        rng = random.Random(seed)
        # Stand-ins for remote sites: they must not spend the machine's CPU idling (a busy loop of 60 servers
        # at the default poll interval took 12% of a core, from the pipeline being measured); stopped together.
        self.hosts = [LoopbackServer(poll_interval=0.5) for _ in range(hosts)]
        for server in self.hosts:
            server.delay = rng.uniform(*latency)
        self.feeds, self.entries = feeds, entries
        self.story_of: dict[str, Story] = {}  # page URL -> its wire story
        self.feed_urls: list[str] = []
        self._held: dict[str, Held] = {}
        for feed in range(feeds):
            site = self.hosts[feed % hosts]
            items = []
            for entry in range(entries):
                story = STORIES[(feed * entries + entry) % len(STORIES)]
                path = f"/f{feed}/{entry}-{story.slug}.html"
                site.routes[path] = self._page(path, story)
                self.story_of[site.url(path)] = story
                items.append({"title": story.title, "link": site.url(path), "guid": f"f{feed}-{entry}"})
            site.routes[f"/f{feed}/rss"] = Route(200, rss(f"Wire feed {feed}", items), XML, etag=f'"f{feed}"')
            self.feed_urls.append(site.url(f"/f{feed}/rss"))

    def _page(self, path: str, story: Story):
        page = Route(200, article_page(story.title, story.body, "en"), HTML)

        def answer(request: Request) -> Route:
            held = self._held.pop(path, None)
            if held is not None:  # the first request of a held page waits (counted in flight) until released
                held.client = request.client
                held.arrived.set()
                held.release.wait(120)
            return page

        return answer

    def hold(self, url: str) -> Held:
        """Make the first request for the page at ``url`` wait until ``release`` is set on the returned hold."""
        path = "/" + url.split("/", 3)[3]
        held = self._held[path] = Held()
        return held

    # -- the truth ---------------------------------------------------------------------------------------------
    @property
    def articles(self) -> int:
        return self.feeds * self.entries

    def stories(self) -> set[str]:
        return {story.slug for story in self.story_of.values()}

    def alerts(self) -> set[tuple[str, str, str]]:
        """(rule, story slug, channel) of every alert the workload must give, once each."""
        used = self.stories()
        return {(rule, slug, channel) for rule, _, channels, slugs in RULES for slug in slugs if slug in used
                for channel in channels}

    def peak_in_flight(self) -> int:
        """The most requests one host was answering at once."""
        return max(server.peak_in_flight for server in self.hosts)

    def reset_peaks(self) -> None:
        for server in self.hosts:
            server.peak_in_flight = server.in_flight

    def requests(self) -> int:
        return sum(len(server.requests) for server in self.hosts)

    # -- lifecycle and config ----------------------------------------------------------------------------------
    def start(self) -> WireSites:
        for server in self.hosts:
            server.start()
        return self

    def stop(self) -> None:
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as stopping:
            list(stopping.map(LoopbackServer.stop, self.hosts))

    def config(self, path: Path, webhook: WebhookReceiver, **polling) -> Path:
        """A newswatch config for the workload: alerts to ``webhook`` (``/desk`` and ``/wire``), ``polling``
        settings on top of small-workload defaults."""
        port = webhook.server_address[1]
        config = {
            "feeds": [{"name": f"wire-{index}", "url": url} for index, url in enumerate(self.feed_urls)],
            "rules": [{"name": rule, "query": query or shipped_rule(rule), "channels": list(channels)}
                      for rule, query, channels, _ in RULES],
            "channels": [{"name": name, "url": f"json://127.0.0.1:{port}/{name}"} for name in ("desk", "wire")],
            "network": {"allow_networks": ["127.0.0.1/32"]},
            "alerts": {"retry_base_seconds": 0},
            "polling": {"max_articles_per_feed": max(self.entries, 1), **polling},
        }
        path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path
