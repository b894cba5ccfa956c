"""The newswatch page as an operator sees it: Debian's Chromium driven by Playwright against a real api-server.

Logs in through Airflow's login form, opens Browse → newswatch, checks the seeded stories inside the iframe,
searches, opens a story, and checks that a browser without the login gets 401. Then an editor and a reader
open Settings → Feeds and a form page (``tests/web_probe.py``): the editor saves through the form, the
reader sees no form and a forged change is refused. Then issue 14's acceptance, as a new user would: an OPML of
20 loopback feeds imported, one more feed added by its site's URL, the ``syria-strikes`` rule written from
scratch (a slip pointed at, then its preview), a webhook channel added and tested, the poll DAG run
(``dag.test()`` on the same databases) and the alert received; a reader sees it all and may change none of it.
Screenshots of every step go
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


# --- issue 14: configuring newswatch from the pages, as a new user would ---------------------------------

OPML_FEEDS = 20


def _opml_body(site) -> str:
    """Twenty small feeds on the loopback site, and the body of an OPML file listing them in two categories (one
    twice, as readers' exports do)."""
    from xml.sax.saxutils import quoteattr

    from tests.scenario import rss
    from tests.servers import Route

    outlines = {"World": [], "Regional": []}
    for n in range(1, OPML_FEEDS + 1):
        path = f"/opml/{n}/rss"
        site.routes[path] = Route(200, rss(f"Wire {n}", []), {"Content-Type": "application/rss+xml"})
        outlines["World" if n <= 10 else "Regional"].append(
            f"<outline type='rss' text='Wire {n}' title='Wire {n}' xmlUrl={quoteattr(site.url(path))}/>")
    again = quoteattr(site.url("/opml/1/rss"))
    outlines["Regional"].append(f"<outline type='rss' text='Wire 1 again' xmlUrl={again}/>")
    return "".join(f"<outline text='{category}'>{''.join(items)}</outline>" for category, items in outlines.items())


def _history(query) -> None:
    """Yesterday's archive, already matched: what a new rule's preview searches (two Syria strikes, a fire)."""
    from datetime import UTC, datetime, timedelta

    from tests.scenario import STORY_FIXTURES

    yesterday = datetime.now(UTC) - timedelta(days=1)
    for story, (name, language) in enumerate((("syria-strike-other-event-en.txt", "en"),
                                               ("syria-strikes-de.txt", "de"), ("port-fire-en.txt", "en")), 501):
        title, _, body = (STORY_FIXTURES / name).read_text(encoding="utf-8").strip().partition("\n")
        query("INSERT INTO stories (id, title, article_count, languages, feeds, first_seen_at, last_seen_at) "
              "VALUES (%s, %s, 1, %s, '{archive}', %s, %s)", (story, title, [language], yesterday, yesterday))
        query("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash, "
              "story_id, dedup_reason, fetched_at, matched_at) VALUES (%s, %s, %s, %s, %s, 'archive', 'test', %s, "
              "%s, 'new_story', %s, %s)",
              (f"https://archive.example/{story}", f"https://archive.example/{story}", title, body, language,
               name, story, yesterday, yesterday))


def test_a_new_user_configures_feeds_a_rule_and_a_channel_and_gets_the_alert(
        browser, shots, airflow_db, tmp_path, database_url, query, site, webhook, monkeypatch):
    """Issue 14, done when: OPML of 20 feeds, one more by a site's URL, the syria-strikes rule written from scratch
    with its preview, a webhook channel tested, the DAG run and the alert received; a reader refused all of it."""
    import re

    import yaml
    from airflow.dag_processing.dagbag import DagBag
    from playwright.sync_api import expect

    from tests.scenario import SEED_TITLE, serve_seed_sites, shipped_rule
    from tests.servers import Route

    expect.set_options(timeout=TIMEOUT_MS)
    serve_seed_sites(site)  # the seed story's site: its feed at /a/feed.xml, its article page
    site.routes["/a/"] = Route(200, b'<!doctype html><html><head><title>Le Journal du Monde</title>'
                                    b'<link rel="alternate" type="application/rss+xml" title="Toute l\'actu" '
                                    b'href="feed.xml"></head><body><h1>Le Journal du Monde</h1></body></html>',
                               {"Content-Type": "text/html; charset=utf-8"})
    site.routes["/file/rss"] = Route(200, b'<?xml version="1.0"?><rss version="2.0"><channel><title>File wire'
                                          b"</title></channel></rss>", {"Content-Type": "application/rss+xml"})
    opml = tmp_path / "my-subscriptions.opml"
    opml.write_text("<?xml version='1.0' encoding='UTF-8'?><opml version='2.0'><head><title>My reader</title>"
                    f"</head><body>{_opml_body(site)}</body></opml>", encoding="utf-8")
    config = tmp_path / "newswatch.yaml"  # the file declares one feed only: everything else comes from the pages
    config.write_text(yaml.safe_dump({"feeds": [{"name": "file-wire", "url": site.url("/file/rss")}],
                                      "network": {"allow_networks": ["127.0.0.1/32"]},
                                      "alerts": {"retry_base_seconds": 0}}), encoding="utf-8")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(config))
    _history(query)
    hook = f"webhook+http://127.0.0.1:{webhook.server_address[1]}/desk?token=HOOK-SECRET"
    users = {"admin": ("admin", PASSWORD), "reader": ("viewer", "reader-password")}

    with running_api_server(tmp_path, database_url, users=users) as base:
        context, page, dialogs = log_in(browser, base, "admin", PASSWORD)
        page.goto(f"{base}/plugin/newswatch")
        frame = page.frame_locator("iframe")
        frame.get_by_role("link", name="Settings").click()
        expect(frame.get_by_role("heading", name="Feed settings")).to_be_visible()
        expect(frame.get_by_role("row", name=re.compile("file-wire")).get_by_text("edit in the file")).to_be_visible()
        shots(page, "10-settings-feeds-new-user")

        # 1. The OPML of 20 feeds: a report line per outline.
        frame.get_by_label("OPML file").set_input_files(opml)
        frame.get_by_role("button", name="Import OPML").click()
        expect(frame.get_by_text("20 added, 1 skipped, 0 refused (of 21 outlines)")).to_be_visible()
        expect(frame.get_by_role("cell", name="same feed as outline #2 (Wire 1)")).to_be_visible()
        shots(page, "11-opml-imported")

        # 2. One more feed by the site's URL: found through <link rel="alternate">, its entries shown, then added.
        frame.get_by_label("Feed or site URL").fill(site.url("/a/"))
        frame.get_by_role("button", name="Check").click()
        expect(frame.get_by_text("Found: Le Journal du Monde")).to_be_visible()
        expect(frame.get_by_role("link", name=SEED_TITLE)).to_be_visible()
        shots(page, "12-feed-found-by-site-url")
        frame.get_by_role("button", name="Add feed").click()
        expect(frame.get_by_text("Feed 'Le Journal du Monde' added.")).to_be_visible()
        shots(page, "13-feed-added")
        assert query("SELECT count(*) AS n FROM ui_feeds") == [{"n": OPML_FEEDS + 1}]
        with page.expect_download() as download:  # the OPML download, from inside the Airflow UI's iframe
            frame.get_by_role("link", name="Download OPML").click()
        from newswatch import opml as opml_module

        exported = opml_module.parse_opml(Path(download.value.path()).read_bytes())
        assert len(exported.outlines) == OPML_FEEDS + 2  # the file's feed, the 20 imported, the one added

        # 3. A webhook channel: its URL never shown again in clear; a test message, and its outcome.
        frame.get_by_role("link", name="Channels").click()
        frame.get_by_label("Name").fill("desk-hook")
        frame.get_by_label("Apprise URL").fill(hook)
        frame.get_by_label("Signing secret").fill("SIGNING-SECRET")
        frame.get_by_role("button", name="Add channel").click()
        expect(frame.get_by_text("Channel 'desk-hook' added.")).to_be_visible()
        row = frame.get_by_role("row", name=re.compile("desk-hook"))
        expect(row.get_by_text(f"webhook+http://127.0.0.1:{webhook.server_address[1]}/desk?…")).to_be_visible()
        assert "HOOK-SECRET" not in frame.locator("main").inner_html()
        row.get_by_role("button", name="Send test").click()
        expect(frame.get_by_text("Test message sent: desk-hook: test message accepted by")).to_be_visible()
        assert [payload["type"] for payload in webhook.received] == ["test"]
        shots(page, "14-channel-tested")

        # 4. The syria-strikes rule from scratch: a slip pointed at, then the preview per language, then saved.
        frame.get_by_role("link", name="Rules").click()
        frame.get_by_role("link", name="New rule").click()
        frame.get_by_label("Name").fill("syria-strikes")
        frame.locator("#rule-query").fill(shipped_rule()[:-1])  # the last parenthesis forgotten
        frame.get_by_role("button", name="Preview").click()
        expect(frame.get_by_text("expected ')' to close '('")).to_be_visible()
        expect(frame.locator(".caret")).to_have_text(re.compile(r"^\s*\^$"))
        shots(page, "15-rule-syntax-error")
        frame.locator("#rule-query").fill(shipped_rule())
        frame.get_by_role("checkbox", name=re.compile("desk-hook")).check()
        frame.get_by_role("button", name="Preview").click()
        expect(frame.get_by_text("2 stories")).to_be_visible()
        expect(frame.get_by_text("would have matched, among 3 articles")).to_be_visible()
        expect(frame.locator(".chips")).to_have_text(re.compile(r"de\s*1.*en\s*1"))
        shots(page, "16-rule-preview")
        frame.get_by_role("button", name="Save rule").click()
        expect(frame.get_by_text("Rule 'syria-strikes' added.")).to_be_visible()
        shots(page, "17-rule-saved")
        stolen = frame.locator("input[name=csrf_token]").first.get_attribute("value")

        # 5. The DAG runs what was configured (dag.test() on the same databases): the alert reaches the webhook.
        run = DagBag(dag_folder=str(ROOT / "dags")).get_dag("newswatch_poll").test()
        assert run.state == "success"
        alerts = [payload for payload in webhook.received if payload.get("type") != "test"]
        assert [payload["rule"] for payload in alerts] == ["syria-strikes"]
        assert query("SELECT rule, channel, status FROM alerts") == [
            {"rule": "syria-strikes", "channel": "desk-hook", "status": "sent"}]
        frame.get_by_role("link", name="Alerts").click()
        expect(frame.get_by_role("cell", name="desk-hook")).to_be_visible()
        shots(page, "18-alert-sent")
        frame.get_by_role("link", name="Settings").click()
        frame.get_by_role("link", name="Changes").click()
        expect(frame.get_by_role("cell", name="admin").first).to_be_visible()
        shots(page, "19-changes")
        assert dialogs == []
        context.close()

        # The reader: every page, no control; every change refused, even with the editor's token.
        changes = query("SELECT count(*) AS n FROM config_audit")
        context, page, dialogs = log_in(browser, base, "reader", "reader-password")
        page.goto(f"{base}/plugin/newswatch")
        frame = page.frame_locator("iframe")
        frame.get_by_role("link", name="Settings").click()
        expect(frame.get_by_text("Read-only: your Airflow role")).to_be_visible()
        expect(frame.get_by_text("Le Journal du Monde").first).to_be_visible()
        for control in ("Check", "Import OPML", "Disable"):
            expect(frame.get_by_role("button", name=control)).to_have_count(0)
        expect(frame.get_by_role("link", name="Download OPML")).to_have_count(0)
        shots(page, "20-reader-feeds")
        frame.get_by_role("link", name="Rules").click()
        expect(frame.get_by_role("link", name="New rule")).to_have_count(0)
        frame.get_by_role("link", name="Preview syria-strikes").click()  # reading what a rule matches is allowed
        expect(frame.get_by_text("would have matched")).to_be_visible()
        shots(page, "21-reader-rule-preview")
        frame.get_by_role("link", name="Channels").click()
        expect(frame.get_by_role("button", name="Send test")).to_have_count(0)
        expect(frame.get_by_role("button", name="Add channel")).to_have_count(0)
        assert "HOOK-SECRET" not in frame.locator("main").inner_html()
        frame.get_by_role("link", name="Changes").click()
        expect(frame.get_by_role("cell", name="admin").first).to_be_visible()
        shots(page, "22-reader-changes")
        forged = [("feeds/check", {"url": site.url("/a/")}), ("feeds/add", {"url": site.url("/b/rss"), "name": "x"}),
                  ("feeds/enabled", {"name": "Le Journal du Monde", "enabled": "false"}),
                  ("feeds/edit", {"name": "Wire 1", "interval": "600"}), ("feeds/remove", {"name": "Wire 2"}),
                  ("rules/save", {"name": "x", "query": "syria", "do": "save"}),
                  ("rules/enabled", {"name": "syria-strikes", "enabled": "false"}),
                  ("rules/remove", {"name": "syria-strikes"}), ("channels/add", {"name": "x", "url": "json://x/y"}),
                  ("channels/test", {"name": "desk-hook"}), ("channels/edit", {"name": "desk-hook", "url": "json://x/"}),
                  ("channels/remove", {"name": "desk-hook"})]
        for action, form in forged:
            for token in (None, stolen):
                answer = context.request.post(f"{base}/newswatch/settings/{action}",
                                              form={**form, **({"csrf_token": token} if token else {})})
                assert answer.status == 403 and "not change it" in answer.text(), action
        upload = context.request.post(f"{base}/newswatch/settings/feeds/import", multipart={
            "csrf_token": stolen, "file": {"name": "x.opml", "mimeType": "text/x-opml", "buffer": opml.read_bytes()}})
        assert upload.status == 403
        assert context.request.get(f"{base}/newswatch/settings/feeds/export.opml").status == 403
        assert query("SELECT count(*) AS n FROM config_audit") == changes
        assert len([payload for payload in webhook.received if payload.get("type") == "test"]) == 1
        assert dialogs == []
        context.close()
