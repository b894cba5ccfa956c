"""The newswatch page as an operator sees it: Debian's Chromium driven by Playwright against a real api-server.

Logs in through Airflow's login form, opens Browse → newswatch, checks the seeded stories inside the iframe,
searches, opens a story, and checks that a browser without the login gets 401. Screenshots of every step go
to ``artefacts/web-browser/`` (gitignored). No browser is downloaded: Playwright drives /usr/bin/chromium
(installed by .ci/run); the test is skipped with a clear message when neither is available.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_web_plugin import PASSWORD, running_api_server, seed_newsroom

pytestmark = pytest.mark.slow  # a browser against a real airflow api-server
CHROMIUM = os.environ.get("NEWSWATCH_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = ROOT / "artefacts" / "web-browser"
# Headless, no sandbox (root in CI), and no background traffic: this machine's network is closed.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: `apt-get install chromium` (.ci/run does), "
                    "or set NEWSWATCH_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: install requirements-dev.txt")
    with sync_playwright() as playwright:  # each launch gets a fresh, empty profile (--user-data-dir) of its own
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def shots():
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTEFACTS.glob("*.png"):
        old.unlink()

    def take(page, name: str) -> None:
        page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)

    return take


def test_operator_logs_in_opens_newswatch_searches_and_reads_a_story(browser, shots, airflow_db, tmp_path,
                                                                       database_url, query):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    seed_newsroom(query)
    with running_api_server(tmp_path, database_url) as base:
        # Without the login: the plugin's pages answer 401, whatever the browser asks.
        anonymous = browser.new_context()
        refused = anonymous.new_page().goto(f"{base}/newswatch/")
        assert refused is not None and refused.status == 401
        assert anonymous.request.get(f"{base}/newswatch/stories/7").status == 401
        anonymous.close()

        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        dialogs: list[str] = []  # an alert() from injected markup would show up here
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"{base}/")
        page.wait_for_url("**/auth/login**")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        shots(page, "01-login")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)

        # Browse → newswatch, the external view registered by the plugin.
        page.get_by_role("button", name="Browse").click()
        item = page.get_by_role("menuitem", name="newswatch")
        expect(item).to_be_visible()
        shots(page, "02-browse-menu")
        item.click()
        page.wait_for_url("**/plugin/newswatch")
        frame = page.frame_locator("iframe")
        expect(frame.get_by_role("heading", name="Latest stories")).to_be_visible()
        expect(frame.get_by_text("Frappes en Syrie <script>alert(1)</script>").first).to_be_visible()
        expect(frame.get_by_text("syria-strikes").first).to_be_visible()
        expect(frame.get_by_text("2 failing of 4")).to_be_visible()
        shots(page, "03-newswatch-overview")

        # A search inside the iframe: French stemming, highlighted words.
        frame.get_by_role("searchbox", name="Search articles").fill("frappes")
        frame.get_by_role("button", name="Search").click()
        expect(frame.get_by_text("Results 1–3 for")).to_be_visible()
        expect(frame.locator("mark").first).to_be_visible()
        shots(page, "04-search")

        # The story page: every article with its feed, language and grouping reason.
        frame.get_by_role("link", name="Frappes en Syrie <script>alert(1)</script>").first.click()
        expect(frame.get_by_role("heading", name="Articles")).to_be_visible()
        expect(frame.get_by_text("near_duplicate of")).to_be_visible()
        expect(frame.get_by_text("connection refused")).to_be_hidden()  # attempts are folded
        frame.get_by_text("3 attempts").click()
        expect(frame.get_by_text("connection refused")).to_be_visible()
        shots(page, "05-story")

        # The Airflow UI mirrors the iframe's page in its own URL: a reload (or a shared link) reopens the story.
        page.wait_for_url("**/plugin/newswatch/newswatch/stories/7")
        page.reload()
        expect(page.frame_locator("iframe").get_by_role("heading", name="Articles")).to_be_visible()
        # The feed's hostile markup never ran: no dialog on any page visited.
        assert dialogs == []
        context.close()
