"""The newswatch page as an operator sees it: Debian's Chromium driven by Playwright against a real api-server.

Logs in through Airflow's login form, opens Browse → newswatch, checks the seeded stories inside the iframe,
searches, opens a story, and checks that a browser without the login gets 401. Then an editor and a reader
open Settings → Feeds and a form page (``tests/web_probe.py``): the editor saves through the form, the
reader sees no form and a forged change is refused. Screenshots of every step go
to ``artefacts/web-browser/`` (gitignored). No browser is downloaded: Playwright drives /usr/bin/chromium
(installed by .ci/run); the test is skipped with a clear message when neither is available.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_web_plugin import PASSWORD, running_api_server, seed_newsroom
from tests.web_probe import PLUGIN_SOURCE, PREFIX

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


@pytest.fixture(scope="module")
def shots():
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTEFACTS.glob("*.png"):  # once per run: every test of the module adds its own
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


def log_in(browser, base: str, name: str, password: str):
    """A fresh browser context logged in through Airflow's login form; returns (context, page, dialogs)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{base}/")
    page.wait_for_url("**/auth/login**")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return context, page, dialogs


def test_editor_changes_through_a_form_and_a_reader_cannot(browser, shots, airflow_db, tmp_path, database_url):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    from newswatch import configstore

    configstore.add_feed("added-from-ui", "https://ui.example/feed?key=SECRET", language="de", actor="alice",
                         config=ROOT / "config" / "newswatch.yaml", database_url=database_url)
    users = {"admin": ("admin", PASSWORD), "reader": ("viewer", "reader-password")}
    with running_api_server(tmp_path, database_url, users=users,
                            extra_plugins={"newswatch_probe_plugin.py": PLUGIN_SOURCE}) as base:
        # The editor: Settings → Feeds inside the Airflow UI, every file feed read-only; then a form saves.
        context, page, dialogs = log_in(browser, base, "admin", PASSWORD)
        page.goto(f"{base}/plugin/newswatch")
        frame = page.frame_locator("iframe")
        frame.get_by_role("link", name="Settings").click()
        expect(frame.get_by_role("heading", name="Feed settings")).to_be_visible()
        expect(frame.get_by_text("bbc-world")).to_be_visible()
        expect(frame.get_by_text("file · read-only").first).to_be_visible()
        expect(frame.get_by_text("https://ui.example/feed?…")).to_be_visible()  # added from the UI, redacted
        expect(frame.get_by_text("by alice,")).to_be_visible()
        expect(frame.get_by_role("columnheader", name="Actions")).to_be_visible()
        expect(frame.get_by_text("Read-only: your Airflow role")).to_have_count(0)
        shots(page, "06-settings-feeds-editor")
        page.goto(f"{base}{PREFIX}/note")
        page.get_by_label("Note").fill("hello <b>there</b>")
        page.get_by_role("button", name="Save note").click()
        expect(page.get_by_text("Saved: hello <b>there</b>")).to_be_visible()
        shots(page, "07-form-saved-by-editor")
        page.goto(f"{base}{PREFIX}/note")
        stolen = page.locator("input[name=csrf_token]").get_attribute("value")
        assert dialogs == []
        context.close()

        # The reader: the same pages read-only, no form, and a forged change refused even with a stolen token.
        context, page, dialogs = log_in(browser, base, "reader", "reader-password")
        page.goto(f"{base}/plugin/newswatch")
        frame = page.frame_locator("iframe")
        frame.get_by_role("link", name="Settings").click()
        expect(frame.get_by_text("Read-only: your Airflow role")).to_be_visible()
        expect(frame.get_by_role("columnheader", name="Actions")).to_have_count(0)
        shots(page, "08-settings-feeds-reader")
        page.goto(f"{base}{PREFIX}/note")
        expect(page.get_by_text("Read-only: your Airflow role")).to_be_visible()
        expect(page.get_by_role("button", name="Save note")).to_have_count(0)
        shots(page, "09-form-hidden-from-reader")
        for form in ({"note": "forged"}, {"note": "forged", "csrf_token": stolen}):
            answer = context.request.post(f"{base}{PREFIX}/note", form=form)
            assert answer.status == 403 and "not change it" in answer.text()
        assert dialogs == []
        context.close()
