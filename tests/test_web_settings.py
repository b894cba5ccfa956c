"""The Settings pages (feeds, rules, channels, changes), route by route, with Airflow's real login.

As in ``test_web_security.py``, users are SimpleAuthManager's own (tokens it signed, its permissions): an
``admin`` changes things through the forms with the page's CSRF token, a ``viewer`` reads the same pages
without a form and gets 403 for any change, nobody gets 401. Feeds are checked against real loopback sites,
channels tested against a real webhook receiver; every refusal is one line on the page it came from.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURES
from tests.conftest import simple_user as user
from tests.scenario import rss, shipped_rule
from tests.servers import Route
from tests.test_web_security import _token

FILE_FEED_URL = "https://reader:pw-SECRET@file.example/rss?token=TOKEN-SECRET"


@pytest.fixture
def config(tmp_path, database_url, monkeypatch) -> Path:
    """A config file with a feed, a rule and a channel of its own; loopback fetches allowed."""
    path = tmp_path / "newswatch.yaml"
    path.write_text(yaml.safe_dump({
        "feeds": [{"name": "file-wire", "url": FILE_FEED_URL, "language": "en"}],
        "rules": [{"name": "file-rule", "query": "earthquake OR séisme", "channels": ["file-desk"]}],
        "channels": [{"name": "file-desk", "url": f"jsonl://{tmp_path / 'desk.jsonl'}"}],
        "network": {"allow_networks": ["127.0.0.1/32"]},
    }, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(path))
    return path


@pytest.fixture
def admin(login, config):
    from newswatch.web.app import app

    return login(app, "admin")


@pytest.fixture
def viewer(login, config):
    from newswatch.web.app import app

    return login(app, "viewer")


def post(client, page: str, action: str, data: dict, files: dict | None = None):
    """Submit a form of ``page`` the way a browser does: with the token that page carries."""
    token = _token(client.get(page).text)
    return client.post(action, data={**data, "csrf_token": token}, files=files, follow_redirects=False)


def text_of(html: str) -> str:
    return html.replace("&#39;", "'").replace("&#34;", '"').replace("&quot;", '"')


def _no_unsafe_markup(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), "inline event handler in markup"


# --- feeds --------------------------------------------------------------------------------------------


def serve_site(site) -> None:
    """A site whose home page advertises its feed (seven entries), and a page with no feed."""
    site.routes["/"] = Route(200, b'<!doctype html><html><head><title>Wire</title><link rel="alternate" '
                                  b'type="application/rss+xml" title="Wire news" href="/news/feed.xml"></head>'
                                  b"<body>news</body></html>", {"Content-Type": "text/html; charset=utf-8"})
    site.routes["/news/feed.xml"] = Route(200, rss("Wire & Co", [
        {"title": f"Story {n} & more", "link": site.url(f"/news/{n}")} for n in range(7)]),
        {"Content-Type": "application/rss+xml"})
    site.routes["/plain"] = Route(200, b"<html><body>no feed here</body></html>", {"Content-Type": "text/html"})


def test_a_feed_is_added_by_a_sites_url_checked_first_then_confirmed(admin, site, query, monkeypatch):
    from newswatch import db
    from newswatch.ingest import discovery

    serve_site(site)
    open_transactions = []
    real_transaction, real_check = db.transaction, discovery.check_feed

    @contextlib.contextmanager
    def counted(*args, **kwargs):
        open_transactions.append(1)
        try:
            with real_transaction(*args, **kwargs) as cur:
                yield cur
        finally:
            open_transactions.pop()

    def check_outside_transactions(*args, **kwargs):
        assert not open_transactions, "discovery ran inside a transaction"
        return real_check(*args, **kwargs)

    monkeypatch.setattr(db, "transaction", counted)
    monkeypatch.setattr(discovery, "check_feed", check_outside_transactions)

    checked = post(admin, "/settings/feeds", "/settings/feeds/check", {"url": site.url("/")})
    assert checked.status_code == 200
    html = checked.text
    _no_unsafe_markup(html)
    assert "Found: <b>Wire &amp; Co</b>" in html
    assert f"{site.url('/news/feed.xml')} <span class='muted small'>(advertised by {site.url('/')})" in html
    assert html.count("Story ") == 5 and ">Story 0 &amp; more</a>" in html  # the first five entries
    assert f'<input type="hidden" name="url" value="{site.url("/news/feed.xml")}">' in html
    assert 'name="name" value="Wire Co"' in html  # suggested from the title
    assert query("SELECT * FROM ui_feeds") == []  # nothing saved by a check

    added = post(admin, "/settings/feeds", "/settings/feeds/add",
                 {"url": site.url("/news/feed.xml"), "name": "wire", "language": "en", "interval": "900"})
    assert added.status_code == 303 and added.headers["location"] == "../../settings/feeds?done=added&name=wire"
    page = admin.get("/settings/feeds?done=added&name=wire").text
    assert "Feed &#39;wire&#39; added." in page and "by admin-user," in page
    [row] = query("SELECT name, url, language, interval_seconds, created_by FROM ui_feeds")
    assert row == {"name": "wire", "url": site.url("/news/feed.xml"), "language": "en", "interval_seconds": 900,
                   "created_by": "admin-user"}
    assert query("SELECT actor, action, kind, name FROM config_audit") == [
        {"actor": "admin-user", "action": "add", "kind": "feed", "name": "wire"}]

    # The same name again, or one of the file's: refused in one line, the confirmation form kept.
    again = post(admin, "/settings/feeds", "/settings/feeds/add", {"url": site.url("/news/feed.xml"), "name": "wire"})
    assert again.status_code == 409 and "feed name &#39;wire&#39; is taken" in again.text
    assert 'value="wire"' in again.text and ">Add feed</button>" in again.text
    taken = post(admin, "/settings/feeds", "/settings/feeds/add", {"url": site.url("/x"), "name": "file-wire"})
    assert taken.status_code == 409 and "taken by the config file" in taken.text
    bad = post(admin, "/settings/feeds", "/settings/feeds/add", {"url": site.url("/x"), "name": "n", "interval": "5m"})
    assert bad.status_code == 400 and "interval: must be a whole number of seconds" in bad.text

    # A check that finds nothing says why in one line, and keeps what was typed.
    for url, line in ((site.url("/plain"), "an HTML page that advertises no feed"),
                      (site.url("/missing"), "http_error"),
                      ("http://169.254.169.254/latest/meta-data", "169.254.169.254, which is not a public address"),
                      ("ftp://example.org/feed", "not an http:// or https:// URL")):
        answer = post(admin, "/settings/feeds", "/settings/feeds/check", {"url": url})
        assert answer.status_code == 200, url
        error = re.search(r"<p class='error' role='alert'>([^<]*)</p>", answer.text)
        assert error and line in text_of(error.group(1)), (url, error and error.group(1))
        assert ">Add feed</button>" not in answer.text


def test_ui_feeds_are_edited_disabled_and_removed_and_the_files_are_read_only(admin, viewer, query, config):
    from newswatch import configstore

    configstore.add_feed("ui-feed", "https://ui.example/feed", actor="alice")
    listing = admin.get("/settings/feeds").text
    assert '<a href="edit?name=ui-feed" aria-label="Edit ui-feed">Edit</a>' in listing or \
        'href="../settings/feeds/edit?name=ui-feed"' in listing
    assert "edit in the file" in listing

    edit = admin.get("/settings/feeds/edit", params={"name": "ui-feed"})
    assert edit.status_code == 200 and ">Save</button>" in edit.text and "Remove feed ui-feed" in edit.text
    saved = post(admin, "/settings/feeds/edit?name=ui-feed", "/settings/feeds/edit",
                 {"name": "ui-feed", "language": "fr", "interval": "600"})
    assert saved.status_code == 303 and "done=updated" in saved.headers["location"]
    assert query("SELECT language, interval_seconds FROM ui_feeds") == [{"language": "fr", "interval_seconds": 600}]
    short = post(admin, "/settings/feeds/edit?name=ui-feed", "/settings/feeds/edit",
                 {"name": "ui-feed", "interval": "10"})
    assert short.status_code == 400 and "interval" in short.text and 'value="10"' in short.text
    cleared = post(admin, "/settings/feeds/edit?name=ui-feed", "/settings/feeds/edit",
                   {"name": "ui-feed", "language": "", "interval": ""})
    assert cleared.status_code == 303
    assert query("SELECT language, interval_seconds FROM ui_feeds") == [{"language": None, "interval_seconds": None}]

    off = post(admin, "/settings/feeds", "/settings/feeds/enabled", {"name": "ui-feed", "enabled": "false"})
    assert off.status_code == 303 and "done=disabled" in off.headers["location"]
    assert query("SELECT enabled FROM ui_feeds") == [{"enabled": False}]
    assert ">Enable</button>" in admin.get("/settings/feeds").text
    on = post(admin, "/settings/feeds", "/settings/feeds/enabled", {"name": "ui-feed", "enabled": "true"})
    assert on.status_code == 303 and query("SELECT enabled FROM ui_feeds") == [{"enabled": True}]

    # The file's feed: shown with its note, no form; every change refused in one line (409).
    file_page = admin.get("/settings/feeds/edit", params={"name": "file-wire"})
    assert file_page.status_code == 200 and "comes from the config file" in file_page.text
    assert ">Save</button>" not in file_page.text and "SECRET" not in file_page.text
    for action, data in (("/settings/feeds/edit", {"name": "file-wire", "interval": "600"}),
                         ("/settings/feeds/enabled", {"name": "file-wire", "enabled": "false"}),
                         ("/settings/feeds/remove", {"name": "file-wire"})):
        refused = post(admin, "/settings/feeds", action, data)
        assert refused.status_code == 409, action
        assert "is declared in the config file: change it there" in text_of(refused.text), action
    assert admin.get("/settings/feeds/edit", params={"name": "nothing"}).status_code == 404
    assert post(admin, "/settings/feeds", "/settings/feeds/remove", {"name": "nothing"}).status_code == 404

    # A reader sees the feed's page without a form.
    read = viewer.get("/settings/feeds/edit", params={"name": "ui-feed"})
    assert read.status_code == 200 and "<form class=\"edit\" method=\"post\"" not in read.text

    removed = post(admin, "/settings/feeds", "/settings/feeds/remove", {"name": "ui-feed"})
    assert removed.status_code == 303 and "done=removed" in removed.headers["location"]
    assert query("SELECT * FROM ui_feeds") == []
    assert [row["action"] for row in query("SELECT action FROM config_audit ORDER BY id")] == [
        "add", "update", "update", "disable", "enable", "remove"]


def test_opml_is_imported_with_a_line_per_outline_and_downloaded_by_editors(admin, viewer, query):
    data = (FIXTURES / "opml" / "freshrss.opml").read_bytes()
    dry = post(admin, "/settings/feeds", "/settings/feeds/import", {"dry_run": "1"},
               files={"file": ("freshrss.opml", data, "text/x-opml")})
    assert dry.status_code == 200 and "would be added" in dry.text and query("SELECT * FROM ui_feeds") == []

    imported = post(admin, "/settings/feeds", "/settings/feeds/import", {},
                    files={"file": ("freshrss.opml", data, "text/x-opml")})
    assert imported.status_code == 200
    html = text_of(imported.text)
    _no_unsafe_markup(imported.text)
    from newswatch import opml

    report = opml.import_opml(data, actor="x", dry_run=True)  # what the page must show, line by line
    added = query("SELECT name, created_by FROM ui_feeds")
    assert added and {row["created_by"] for row in added} == {"admin-user"}
    summary = re.search(r"<p role='status'><b>([^<]*)</b>", html).group(1)
    assert summary.startswith(f"{len(added)} added, ")
    rows = re.findall(r"<tr><td class=\"n\">(\d+)</td><td>([^<]*)</td><td>([^<]*)</td><td><span class=\"(\w+)\">"
                      r"(added|skipped|refused)</span></td><td>([^<]*)</td></tr>", html)
    assert len(rows) == len(report.lines)
    assert {status for *_, status, _ in rows} >= {"added", "refused"}
    assert any("scraped page" in reason for *_, reason in rows)  # FreshRSS's XPath source, refused with why
    assert {detail["detail"] for detail in query("SELECT detail FROM config_audit")} == {"OPML import (freshrss.opml)"}

    again = post(admin, "/settings/feeds", "/settings/feeds/import", {},
                 files={"file": ("freshrss.opml", data, "text/x-opml")})
    assert "0 added" in again.text and "already configured as feed" in text_of(again.text)

    hostile = b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY x "y">]><opml version="2.0"><body/></opml>'
    refused = post(admin, "/settings/feeds", "/settings/feeds/import", {},
                   files={"file": ("evil.opml", hostile, "text/xml")})
    assert refused.status_code == 400 and "evil.opml: " in refused.text and "DOCTYPE" in refused.text

    exported = admin.get("/settings/feeds/export.opml")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/x-opml")
    assert "attachment" in exported.headers["content-disposition"]
    assert FILE_FEED_URL.replace("&", "&amp;") in exported.text  # full URLs: why readers may not download it
    back = opml.parse_opml(admin.get("/settings/feeds/export.opml", params={"source": "ui"}).content)
    assert sorted(o.text for o in back.outlines) == sorted(row["name"] for row in added)
    assert viewer.get("/settings/feeds/export.opml").status_code == 403
    assert "Download OPML" not in viewer.get("/settings/feeds").text


# --- rules --------------------------------------------------------------------------------------------


def test_a_rule_is_written_previewed_saved_and_its_syntax_errors_pointed_at(admin, viewer, query):
    from newswatch import configstore
    from tests.test_web_plugin import seed_newsroom

    seed_newsroom(query)  # French articles about an air strike in Syria, fetched two hours ago
    configstore.add_channel("desk-hook", url="json://127.0.0.1:9/hook", actor="alice")
    new = admin.get("/settings/rules/edit")
    assert new.status_code == 200 and ">Save rule</button>" in new.text and 'value="desk-hook"' in new.text

    preview = post(admin, "/settings/rules/edit", "/settings/rules/save",
                   {"name": "syria-strikes", "query": shipped_rule(), "do": "preview", "days": "7",
                    "language": ""})
    assert preview.status_code == 200
    html = preview.text
    _no_unsafe_markup(html)
    assert "<b>1 story</b> (2 articles) would have matched, among 3 articles" in html
    assert "fr <b>2</b>" in html and "href='../../stories/7'" in html
    assert "Frappes en Syrie" in html or "Une frappe américaine en Syrie" in html
    assert query("SELECT * FROM ui_rules") == []  # a preview saves nothing
    assert "frappe aérienne" in html  # the matched terms

    broken = "(syria OR syrie)\r\nAND (strike OR frappe"  # as a browser sends a textarea: CRLF
    for do in ("preview", "save"):
        answer = post(admin, "/settings/rules/edit", "/settings/rules/save",
                      {"name": "broken", "query": broken, "do": do})
        assert answer.status_code == 400, do
        page = answer.text
        assert 'aria-invalid="true"' in page and "Line 2, column 22:" in page, do
        assert "<span class='caret'>" + " " * 21 + "^</span>" in page
        assert "invalid query: col 38:" in text_of(page)
        assert f">{broken.replace(chr(13), '')}</textarea>" in page  # what was typed is kept
    assert query("SELECT * FROM ui_rules") == []

    unknown = post(admin, "/settings/rules/edit", "/settings/rules/save",
                   {"name": "r", "query": "syria", "channels": ["nope"], "do": "save"})
    assert unknown.status_code == 400 and "unknown channel(s) &#39;nope&#39;" in unknown.text

    saved = post(admin, "/settings/rules/edit", "/settings/rules/save",
                 {"name": "syria-strikes", "query": shipped_rule(), "channels": ["desk-hook"], "do": "save"})
    assert saved.status_code == 303
    assert saved.headers["location"] == "../../settings/rules?done=added&name=syria-strikes"
    assert query("SELECT name, channels, created_by FROM ui_rules") == [
        {"name": "syria-strikes", "channels": ["desk-hook"], "created_by": "admin-user"}]
    listing = admin.get("/settings/rules?done=added&name=syria-strikes").text
    assert "Rule &#39;syria-strikes&#39; added." in listing and "file-rule" in listing

    edit = admin.get("/settings/rules/edit", params={"name": "syria-strikes"})
    assert 'name="name" value="syria-strikes" required maxlength="100" readonly' in edit.text
    assert 'value="desk-hook" checked' in edit.text
    updated = post(admin, "/settings/rules/edit?name=syria-strikes", "/settings/rules/save",
                   {"original": "syria-strikes", "name": "ignored", "query": "syria\r\nAND frappe*", "do": "save"})
    assert updated.status_code == 303 and "done=updated&name=syria-strikes" in updated.headers["location"]
    # A textarea's CRLF is stored as the file's line break.
    assert query("SELECT query, channels FROM ui_rules") == [{"query": "syria\nAND frappe*", "channels": []}]

    off = post(admin, "/settings/rules", "/settings/rules/enabled", {"name": "syria-strikes", "enabled": "false"})
    assert off.status_code == 303 and query("SELECT enabled FROM ui_rules") == [{"enabled": False}]

    # The file's rule: read-only, every change refused in one line.
    file_rule = admin.get("/settings/rules/edit", params={"name": "file-rule"})
    assert "comes from the config file" in file_rule.text and ">Save rule</button>" not in file_rule.text
    for action, data in (("/settings/rules/save", {"original": "file-rule", "query": "x", "do": "save"}),
                         ("/settings/rules/enabled", {"name": "file-rule", "enabled": "false"}),
                         ("/settings/rules/remove", {"name": "file-rule"})):
        refused = post(admin, "/settings/rules", action, data)
        assert refused.status_code == 409 and "declared in the config file" in refused.text, action
    taken = post(admin, "/settings/rules/edit", "/settings/rules/save",
                 {"name": "file-rule", "query": "x", "do": "save"})
    assert taken.status_code == 409 and "taken by the config file" in taken.text
    assert admin.get("/settings/rules/edit", params={"name": "nothing"}).status_code == 404

    # Readers preview any rule, or a draft, without a form that changes anything.
    read = viewer.get("/settings/rules/preview", params={"name": "file-rule", "days": 30})
    assert read.status_code == 200 and "<b>0 stories</b>" in read.text and "csrf_token" not in read.text
    draft = viewer.get("/settings/rules/preview", params={"query": "syrie AND frappe", "language": "fr"})
    assert "<b>1 story</b>" in draft.text and "language fr" in draft.text
    bad = viewer.get("/settings/rules/preview", params={"query": "syria AND ("})
    assert bad.status_code == 400 and "<span class='caret'>" + " " * 11 + "^</span>" in bad.text
    assert viewer.get("/settings/rules/preview", params={"query": "x", "days": 0}).status_code == 422
    assert ">Save rule</button>" not in viewer.get("/settings/rules/edit", params={"name": "syria-strikes"}).text

    removed = post(admin, "/settings/rules", "/settings/rules/remove", {"name": "syria-strikes"})
    assert removed.status_code == 303 and query("SELECT * FROM ui_rules") == []


def test_a_meaning_rule_shows_its_min_similarity_each_matchs_similarity_and_the_near_misses(
        admin, viewer, seed_text, query):
    """The Rules pages say what ``newswatch rules test`` says: the threshold, each match's similarity, the
    stories just below it (the seed story in three languages; a rail strike and Syrian peace talks)."""
    from newswatch import configstore
    from newswatch.config import Settings
    from newswatch.stories.grouping import assign_stories
    from tests.test_watches import store_archive

    archive = store_archive(seed_text)
    assign_stories(Settings())
    seed = query("SELECT story_id FROM articles WHERE id = %s", (archive["fr"],))[0]["story_id"]
    description = 'about:"US military strikes in Syria"'
    configstore.add_rule("syria-meaning", description, min_similarity=0.55, actor="alice")

    listing = text_of(viewer.get("/settings/rules").text)
    assert "<th>Min. similarity</th>" in listing or ">Min. similarity<" in listing
    row = listing[listing.index("syria-meaning"):]
    assert "<td>0.55</td>" in row[:row.index("</tr>")]
    file_row = listing[listing.index(">file-rule"):]
    assert "<td>–</td>" in file_row[:file_row.index("</tr>")]  # no meaning term: the threshold changes nothing

    # At its own 0.55 the seed story is just below: a near-miss, with its similarity and the threshold.
    page = viewer.get("/settings/rules/preview", params={"name": "syria-meaning"})
    html = text_of(page.text)
    _no_unsafe_markup(page.text)
    assert page.status_code == 200 and "<b>0 stories</b>" in html
    assert "min_similarity 0.55</b>" in html and "Near-misses" in html
    assert f"href='../../stories/{seed}'" in html
    near = re.findall(rf'{re.escape(description)}, similarity (0\.\d\d) \(below 0\.55\)', html)
    assert near and 0.50 <= float(near[0]) < 0.55, near

    # A draft at the default: the story matches, each match with its similarity; nothing is near below.
    draft = text_of(viewer.get("/settings/rules/preview", params={"query": description}).text)
    assert "<b>1 story</b> (3 articles)" in draft and "min_similarity 0.40</b>" in draft
    assert re.search(rf"{re.escape(description)}, similarity 0\.\d\d", draft) and "Near-misses" not in draft

    # The editor previews and saves the threshold typed; blank is the default, a non-number is refused.
    edit = admin.get("/settings/rules/edit", params={"name": "syria-meaning"}).text
    assert 'name="min_similarity" value="0.55"' in edit
    lower = post(admin, "/settings/rules/edit?name=syria-meaning", "/settings/rules/save",
                 {"original": "syria-meaning", "query": description, "min_similarity": "0.45", "do": "preview"})
    assert lower.status_code == 200 and "<b>1 story</b>" in lower.text and "min_similarity 0.45</b>" in lower.text
    assert query("SELECT min_similarity FROM ui_rules")[0]["min_similarity"] == pytest.approx(0.55)
    saved = post(admin, "/settings/rules/edit?name=syria-meaning", "/settings/rules/save",
                 {"original": "syria-meaning", "query": description, "min_similarity": "0.45", "do": "save"})
    assert saved.status_code == 303
    assert query("SELECT min_similarity FROM ui_rules")[0]["min_similarity"] == pytest.approx(0.45)
    for typed, message in (("abc", "is not a number"), ("1.5", "min_similarity")):
        refused = post(admin, "/settings/rules/edit?name=syria-meaning", "/settings/rules/save",
                       {"original": "syria-meaning", "query": description, "min_similarity": typed, "do": "save"})
        assert refused.status_code == 400 and message in text_of(refused.text), typed
        assert f'name="min_similarity" value="{typed}"' in refused.text  # what was typed is kept
    post(admin, "/settings/rules/edit?name=syria-meaning", "/settings/rules/save",
         {"original": "syria-meaning", "query": description, "min_similarity": "", "do": "save"})
    assert query("SELECT min_similarity FROM ui_rules") == [{"min_similarity": None}]
    assert "<td>0.40 (default)</td>" in text_of(viewer.get("/settings/rules").text)


# --- channels -----------------------------------------------------------------------------------------


def test_channels_are_added_redacted_tested_and_removed(admin, viewer, webhook, query):
    port = webhook.server_address[1]
    secret_url = f"json://desk:PW-SECRET@127.0.0.1:{port}/hook"
    added = post(admin, "/settings/channels", "/settings/channels/add",
                 {"name": "desk-hook", "url": secret_url, "secret": "SIGNING-SECRET"})
    assert added.status_code == 303 and "done=added&name=desk-hook" in added.headers["location"]
    for client in (admin, viewer):
        for page in ("/settings/channels", "/settings/channels/edit?name=desk-hook", "/settings/changes",
                     "/settings/rules/edit"):
            text = client.get(page).text
            assert "PW-SECRET" not in text and "SIGNING-SECRET" not in text, page
    listing = admin.get("/settings/channels").text
    assert "<td>set</td>" in listing and f"127.0.0.1:{port}/hook" in listing

    tested = post(admin, "/settings/channels", "/settings/channels/test", {"name": "desk-hook"})
    assert tested.status_code == 200 and "Test message sent: desk-hook: test message accepted by" in tested.text
    assert "PW-SECRET" not in tested.text
    [payload] = webhook.received  # Apprise's JSON: title and message
    assert payload["title"] == "[newswatch] test message for channel desk-hook"
    webhook.status = 503
    failed = post(admin, "/settings/channels", "/settings/channels/test", {"name": "desk-hook"})
    outcome = re.search(r"<p class='notice failed' role='status'>([^<]*)</p>", failed.text)
    assert failed.status_code == 200 and outcome, failed.text[-3000:]
    assert outcome.group(1).startswith("Test message failed: desk-hook: "), outcome.group(1)
    assert post(admin, "/settings/channels", "/settings/channels/test", {"name": "nothing"}).status_code == 404
    file_test = post(admin, "/settings/channels", "/settings/channels/test", {"name": "file-desk"})
    assert "Test message sent: file-desk" in file_test.text  # the file's channels can be tested too

    # Refusals: a URL that is not one, a taken name. The URL typed comes back (it was not saved); the secret not.
    bad = post(admin, "/settings/channels", "/settings/channels/add",
               {"name": "bad", "url": "not a url", "secret": "TYPED-SECRET"})
    assert bad.status_code == 400 and "channel &#39;bad&#39;: url:" in bad.text
    assert 'value="not a url"' in bad.text and "TYPED-SECRET" not in bad.text
    taken = post(admin, "/settings/channels", "/settings/channels/add", {"name": "file-desk", "url": "json://x/y"})
    assert taken.status_code == 409 and "taken by the config file" in taken.text
    both = post(admin, "/settings/channels", "/settings/channels/add", {"name": "both", "url": "", "connection": ""})
    assert both.status_code == 400 and "give exactly one of url or connection" in both.text

    # A new secret replaces the old one without showing either; a blank URL keeps the stored one.
    kept = post(admin, "/settings/channels/edit?name=desk-hook", "/settings/channels/edit",
                {"name": "desk-hook", "url": "", "secret": "NEW-SECRET"})
    assert kept.status_code == 303
    [row] = query("SELECT url, secret FROM ui_channels")
    assert row == {"url": secret_url, "secret": "NEW-SECRET"}
    changes = admin.get("/settings/changes").text
    assert "secret: … -&gt; … (changed)" in changes and "NEW-SECRET" not in changes

    # Removal is refused while a rule alerts the channel; the file's channels are read-only.
    from newswatch import configstore

    configstore.add_rule("uses-it", "syria", channels=["desk-hook"], actor="alice")
    in_use = post(admin, "/settings/channels", "/settings/channels/remove", {"name": "desk-hook"})
    assert in_use.status_code == 409 and "still used by rule &#39;uses-it&#39;" in in_use.text
    assert "uses-it" in admin.get("/settings/channels").text  # "used by"
    assert post(admin, "/settings/channels", "/settings/channels/remove", {"name": "file-desk"}).status_code == 409
    assert "comes from the config file" in admin.get("/settings/channels/edit", params={"name": "file-desk"}).text
    configstore.remove("rule", "uses-it", actor="alice")
    removed = post(admin, "/settings/channels", "/settings/channels/remove", {"name": "desk-hook"})
    assert removed.status_code == 303 and query("SELECT * FROM ui_channels") == []


def test_a_name_both_sources_declare_is_reported_on_each_page(viewer, config):
    """The file later declares names added from the UI: its items are used, the UI ones shown as not used."""
    from newswatch import configstore

    configstore.add_feed("later-feed", "https://ui.example/rss", actor="alice")
    configstore.add_channel("later-hook", url="json://ui.example/hook", actor="alice")
    configstore.add_rule("later-rule", "syria", channels=["later-hook"], actor="alice")
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["feeds"].append({"name": "later-feed", "url": "https://file.example/rss"})
    document["channels"].append({"name": "later-hook", "url": "json://file.example/hook"})
    document["rules"].append({"name": "later-rule", "query": "quake", "channels": ["later-hook"]})
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    for page, kind, name in (("/settings/feeds", "feed", "later-feed"), ("/settings/rules", "rule", "later-rule"),
                             ("/settings/channels", "channel", "later-hook")):
        html = text_of(viewer.get(page).text)
        conflicts = html[html.index("<ul class='error'>"):].split("</ul>")[0]
        assert f"{kind} '{name}' (added by alice" in conflicts, page
        assert "the file's is used and the UI one ignored" in conflicts, page
        assert html.count(f"<td>{name}<div class='error small'>") == 1, page  # the UI copy, marked


# --- changes ------------------------------------------------------------------------------------------


def test_the_change_log_is_visible_to_every_user_filtered_and_paged(admin, viewer, monkeypatch):
    from newswatch import configstore
    from newswatch.web import config_pages

    configstore.add_feed("one", "https://one.example/rss?key=K-SECRET", actor="alice <b>")
    configstore.update_feed("one", interval=900, actor="bob")
    configstore.add_rule("quakes", "earthquake", actor="carol")
    configstore.remove("rule", "quakes", actor="carol")
    page = viewer.get("/settings/changes")
    assert page.status_code == 200 and "K-SECRET" not in page.text
    html = page.text
    _no_unsafe_markup(html)
    assert html.index(">carol<") < html.index(">bob<") < html.index(">alice &lt;b&gt;<")  # newest first
    assert "interval: null -&gt; 900" in html and "url: https://one.example/rss?…" in html
    only_rules = viewer.get("/settings/changes", params={"kind": "rule"}).text
    assert ">bob<" not in only_rules and only_rules.count(">carol<") == 2
    assert ">bob<" in viewer.get("/settings/changes", params={"name": "one"}).text
    assert viewer.get("/settings/changes", params={"kind": "secret"}).status_code == 422

    monkeypatch.setattr(config_pages, "AUDIT_PAGE", 3)
    first = viewer.get("/settings/changes").text
    older = re.search(r'<a href="([^"]+)">Older changes', first).group(1).replace("&amp;", "&")
    second = viewer.get("/settings/" + older.removeprefix("../settings/")).text
    assert ">alice &lt;b&gt;<" in second and ">carol<" not in second and "← Newest" in second


# --- who may change -----------------------------------------------------------------------------------

CHANGES = [  # every route that changes something, with a form that would work for an editor
    ("/settings/feeds/check", {"url": "https://example.org/"}),
    ("/settings/feeds/add", {"url": "https://example.org/rss", "name": "forged"}),
    ("/settings/feeds/enabled", {"name": "ui-feed", "enabled": "false"}),
    ("/settings/feeds/edit", {"name": "ui-feed", "interval": "900"}),
    ("/settings/feeds/remove", {"name": "ui-feed"}),
    ("/settings/feeds/import", {}),
    ("/settings/rules/save", {"name": "forged", "query": "x", "do": "save"}),
    ("/settings/rules/enabled", {"name": "ui-rule", "enabled": "false"}),
    ("/settings/rules/remove", {"name": "ui-rule"}),
    ("/settings/channels/add", {"name": "forged", "url": "json://example.org/x"}),
    ("/settings/channels/test", {"name": "ui-channel"}),
    ("/settings/channels/edit", {"name": "ui-channel", "url": "json://example.org/y"}),
    ("/settings/channels/remove", {"name": "ui-channel"}),
]
OPML = b'<?xml version="1.0"?><opml version="2.0"><body><outline text="x" xmlUrl="https://x.example/rss"/></body></opml>'


@pytest.mark.parametrize(("action", "data"), CHANGES, ids=[action for action, _ in CHANGES])
def test_every_change_needs_login_edit_permission_and_the_page_token(action, data, login, config, query):
    from newswatch import configstore
    from newswatch.web import security
    from newswatch.web.app import app

    configstore.add_feed("ui-feed", "https://ui.example/rss", actor="alice")
    configstore.add_channel("ui-channel", url="json://example.org/hook", actor="alice")
    configstore.add_rule("ui-rule", "syria", actor="alice")
    before = query("SELECT count(*) AS n FROM config_audit")
    files = {"file": ("x.opml", OPML, "text/x-opml")} if action.endswith("/import") else None

    assert login(app, None).post(action, data=data, files=files).status_code == 401
    for role in ("viewer", "user"):  # their own valid token does not make them editors
        answer = login(app, role).post(action, data={**data, "csrf_token": security.csrf_token(user(role))},
                                       files=files)
        assert answer.status_code == 403 and "not change it" in text_of(answer.text), role
    admin = login(app, "admin")
    stolen = _token(admin.get("/settings/feeds").text)
    for role in ("viewer", "op"):  # an admin's token is the admin's only
        answer = login(app, role).post(action, data={**data, "csrf_token": stolen}, files=files)
        assert answer.status_code == 403, role
    assert admin.post(action, data=data, files=files).status_code == 403  # no token
    assert admin.post(action, data={**data, "csrf_token": stolen}, files=files,
                      headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert query("SELECT count(*) AS n FROM config_audit") == before  # nothing changed
    assert admin.post(action, data={**data, "csrf_token": stolen}, files=files,
                      follow_redirects=False).status_code in (200, 303)  # the same form works with its token


@pytest.mark.parametrize("page", ["/settings/feeds", "/settings/feeds/edit?name=ui-feed", "/settings/rules",
                                  "/settings/rules/edit?name=ui-rule", "/settings/rules/edit",
                                  "/settings/rules/preview?name=ui-rule", "/settings/channels",
                                  "/settings/channels/edit?name=ui-channel", "/settings/changes"])
def test_read_only_users_see_every_page_without_edit_controls(page, login, config, query):
    from newswatch import configstore
    from newswatch.web.app import app

    configstore.add_feed("ui-feed", "https://ui.example/rss", actor="alice")
    configstore.add_channel("ui-channel", url="json://example.org/hook", actor="alice")
    configstore.add_rule("ui-rule", "syria", channels=["ui-channel"], actor="alice")
    for role in ("viewer", "user"):
        answer = login(app, role).get(page)
        assert answer.status_code == 200, role
        html = answer.text
        assert "Read-only: your Airflow role" in html
        assert 'method="post"' not in html and "csrf_token" not in html and "<textarea" not in html
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        _no_unsafe_markup(html)
    editor = login(app, "op").get(page)
    assert editor.status_code == 200 and "Read-only" not in editor.text
    if page not in ("/settings/changes", "/settings/rules/preview?name=ui-rule"):
        assert 'method="post"' in editor.text, page
    assert login(app, None).get(page).status_code == 401
