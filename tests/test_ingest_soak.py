"""Soak: a few hundred real news pages, two `newswatch poll` processes at a time, on a loaded machine, twice.

No process may abort (the threaded extraction once died with ``double free or corruption``), no page may be
lost and none stored twice: every entry ends done or a duplicate of a stored article, one article per page.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, SHARED
from tests.scenario import rss
from tests.servers import Route

pytestmark = pytest.mark.slow  # a soak: hundreds of pages through `newswatch poll` processes
PAGES = SHARED / "data" / "extraction-benchmark" / "html"
COPIES = 3
# The pages name their canonical URL: copies must not, or they would all be one article.
_CANONICAL = re.compile(rb"canonical|og:url", re.IGNORECASE)


def _poll(config: Path, database_url: str, data: Path) -> subprocess.Popen:
    env = {**os.environ, "NEWSWATCH_CONFIG": str(config), "NEWSWATCH_DATABASE_URL": database_url,
           "NEWSWATCH_DATA_DIR": str(data)}
    return subprocess.Popen([sys.executable, "-m", "newswatch.cli", "poll"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_polls_at_a_time_on_a_loaded_machine_lose_no_page(tmp_path, site, query, database_url):
    if not PAGES.exists():
        pytest.skip(f"extraction benchmark pages not found at {PAGES}")
    documents = [gzip.decompress(path.read_bytes()) for path in sorted(PAGES.glob("*.html.gz"))]
    html = {"Content-Type": "text/html; charset=utf-8"}
    feeds = []
    for copy in range(COPIES):
        items = []
        for index, document in enumerate(documents):
            path = f"/copy{copy}/page{index}"
            site.routes[path] = Route(200, _CANONICAL.sub(b"x-ignored", document), html)
            items.append({"title": f"Page {index} ({copy})", "link": site.url(path)})
        for start in range(0, len(items), 50):
            path = f"/copy{copy}/feed{start}.xml"
            site.routes[path] = Route(200, rss(f"copy {copy}", items[start:start + 50]),
                                      {"Content-Type": "application/rss+xml"})
            feeds.append({"name": f"copy{copy}-{start}", "url": site.url(path)})
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a loaded machine
    try:
        for round_, feed_slice in enumerate((feeds[: len(feeds) // 2], feeds)):
            config = tmp_path / f"round{round_}.yaml"
            config.write_text(yaml.safe_dump({"feeds": feed_slice, "network": {"allow_networks": ["127.0.0.1/32"]},
                                              "polling": {"max_articles_per_feed": 50}}), encoding="utf-8")
            polls = [_poll(config, database_url, tmp_path / f"data{n}") for n in range(2)]
            for poll in polls:
                out, err = poll.communicate(timeout=900)
                assert poll.returncode == 0, f"exit {poll.returncode}:\n{out[-2000:]}\n{err[-4000:]}"
    finally:
        burner.kill()
        burner.wait()

    entries = query("SELECT status, count(*) AS n FROM feed_entries GROUP BY status")
    assert {row["status"]: row["n"] for row in entries} == {"done": COPIES * len(documents)}
    articles = query("SELECT count(*) AS n, count(DISTINCT canonical_url) AS urls, "
                     "count(*) FILTER (WHERE story_id IS NULL) AS ungrouped FROM articles")[0]
    assert articles == {"n": COPIES * len(documents), "urls": COPIES * len(documents), "ungrouped": 0}
