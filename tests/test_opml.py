"""OPML import and export: the exports of Miniflux, FreshRSS, Feedly and Inoreader (tests/fixtures/opml, written
from their documented formats) import with one report line per outline; hostile files are one line each; an
export re-imports to the same feeds."""

from __future__ import annotations

import pytest

from newswatch import configstore, opml
from newswatch.config import load_settings
from newswatch.opml import OpmlError, export_opml, import_opml, parse_opml
from tests.conftest import FIXTURES
from tests.test_configstore import write_config

OPML = FIXTURES / "opml"
ACTOR = "alice"


@pytest.fixture
def config(tmp_path, database_url, monkeypatch):
    path = write_config(tmp_path / "newswatch.yaml",
                        feeds=[{"name": "bbc-world", "url": "https://feeds.bbci.co.uk/news/world/rss.xml"}])
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(path))
    return path


def lines(report) -> list[tuple[int, str, str]]:
    return [(line.outline, line.status, line.reason) for line in report.lines]


def test_miniflux_export(config):
    report = import_opml((OPML / "miniflux.opml").read_bytes(), actor=ACTOR, source="miniflux.opml")
    assert report.title == "Miniflux"
    assert lines(report) == [
        (2, "added", "as 'Miniflux'"),
        (3, "added", "as 'Le Monde.fr - Actualites et Infos en France et dans le monde'"),
        (5, "skipped", "already configured as feed 'bbc-world' (in the file)"),
        (6, "added", "as 'Al Jazeera - Breaking News World News and Video from Al Jazeera'"),
        (7, "added", "as 'tagesschau.de - die erste Adresse fur Nachrichten und Information'"),  # no htmlUrl
    ]
    assert report.summary() == "4 added, 1 skipped, 0 refused (of 5 outlines)"
    assert [line.category for line in report.lines] == ["All", "All", "World", "World", "World"]
    settings = load_settings(ui=True)
    assert len(settings.feeds) == 5 and settings.source("feeds", "Miniflux") == "ui"
    audit = configstore.audit_log()
    assert len(audit) == 4 and {entry.detail for entry in audit} == {"OPML import (miniflux.opml)"}


def test_freshrss_export(config):
    report = import_opml((OPML / "freshrss.opml").read_bytes(), actor=ACTOR)
    assert lines(report) == [
        (2, "added", "as 'FreshRSS releases'"),
        (4, "added", "as 'The Guardian - World'"),
        (5, "added", "as 'Deutsche Welle', disabled (muted in the exporting reader)"),
        (6, "refused", "a FreshRSS HTML+XPath source (a scraped page, not a feed): newswatch polls RSS, Atom, RDF "
                       "and JSON Feed only"),
        (7, "added", "as 'Daring Fireball'"),
    ]
    feeds = {feed.name: feed for feed in load_settings(ui=True).feeds}
    assert feeds["The Guardian - World"].interval == 1800  # frss:ttl, in seconds
    assert not feeds["Deutsche Welle"].enabled and feeds["Deutsche Welle"].interval is None


def test_feedly_export_lists_a_feed_under_two_categories(config):
    report = import_opml((OPML / "feedly.opml").read_bytes(), actor=ACTOR)
    assert lines(report) == [
        (2, "added", "as 'Reuters World News'"),
        (3, "added", "as 'Middle East Eye'"),
        (4, "added", "as 'France 24 - Moyen-Orient'"),
        (6, "skipped", "same feed as outline #2 (Reuters World News)"),
        (7, "added", "as 'NPR News'"),
    ]
    assert str(report.lines[3]) == "#6 Reuters World News [Must read]: skipped: same feed as outline #2 " \
                                   "(Reuters World News)"
    feeds = {feed.name: feed.url for feed in load_settings(ui=True).feeds}
    assert feeds["Reuters World News"] == ("https://www.reutersagency.com/feed/?best-topics=political-general"
                                           "&post_type=best")  # the query string is part of the feed


def test_inoreader_export_with_nested_folders_notes_and_a_bad_url(config):
    report = import_opml((OPML / "inoreader.opml").read_bytes(), actor=ACTOR)
    assert lines(report) == [
        (1, "added", "as 'Teng Xun CDC'"),  # transliterated: names are ASCII
        (3, "added", "as 'AP Top News'"),
        (5, "added", "as 'Euronews'"),
        (6, "added", "as 'El Pais Internacional'"),  # markup in text is reduced to text
        (7, "skipped", "not a feed (no xmlUrl)"),
        (8, "refused", "url: must be an http:// or https:// URL"),
    ]
    assert report.lines[3].category == "Wires/Europe" and report.lines[3].line == 16


def test_importing_twice_adds_nothing_and_a_dry_run_writes_nothing(config, query):
    data = (OPML / "feedly.opml").read_bytes()
    dry = import_opml(data, actor=ACTOR, dry_run=True)
    assert dry.summary() == "4 would be added, 1 skipped, 0 refused (of 5 outlines)"
    assert query("SELECT count(*) AS n FROM ui_feeds")[0]["n"] == 0
    import_opml(data, actor=ACTOR)
    again = import_opml(data, actor=ACTOR)
    assert again.count("added") == 0 and again.count("skipped") == 5
    assert again.lines[0].reason == "already configured as feed 'Reuters World News' (in the UI)"


def test_a_taken_name_gets_a_number(config):
    configstore.add_feed("NPR News", "https://example.org/another-npr.xml", actor=ACTOR)
    report = import_opml((OPML / "feedly.opml").read_bytes(), actor=ACTOR)
    assert report.lines[-1].reason == "as 'NPR News 2'"


def test_an_export_reimports_to_the_same_feeds(config, tmp_path):
    configstore.add_feed("lemonde", "https://www.lemonde.fr/rss/une.xml", language="fr", interval=900, actor=ACTOR)
    configstore.add_feed("paused: co", "https://example.org/p.xml?a=1&b=<2>", enabled=False, actor=ACTOR)
    import_opml((OPML / "inoreader.opml").read_bytes(), actor=ACTOR)
    before = load_settings(ui=True).feeds
    exported = export_opml(opml.configured_feeds(load_settings(ui=True)))
    assert parse_opml(exported).outlines[0].type == "rss"

    # Elsewhere: a newswatch with no feed at all, neither in its file nor from the UI.
    for item in configstore.list_items("feed"):
        if item.source == "ui":
            configstore.remove("feed", item.name, actor=ACTOR)
    write_config(config, feeds=[])
    report = import_opml(exported, actor=ACTOR)
    assert report.count("added") == len(before) and report.count("skipped") == report.count("refused") == 0
    after = load_settings(ui=True).feeds
    assert {feed.model_dump_json() for feed in after} == {feed.model_dump_json() for feed in before}


@pytest.mark.parametrize(("document", "message"), [
    (b"", "the file is empty"),
    (b"<rss version='2.0'><channel/></rss>", "not OPML: the root element is <rss>, not <opml>"),
    (b"<opml version='2.0'><head/></opml>", "not OPML: no <body>"),
    (b"<opml><body><outline text='a'></body></opml>", "not well-formed XML: "),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not well-formed XML: "),
    # XML external entities: a local file read.
    (b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
     b'<opml version="2.0"><body><outline text="&xxe;" xmlUrl="http://x/"/></body></opml>',
     "the file declares a DOCTYPE or entities (refused for safety: OPML needs neither)"),
    # Billion laughs: a few lines of entities standing for gigabytes.
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;">'
     b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;">]><opml><body><outline text="&lol2;"/></body></opml>',
     "the file declares a DOCTYPE or entities"),
    # The same declaration hidden from a byte search by UTF-16.
    ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE opml [<!ENTITY a "b">]><opml><body/></opml>'
     .encode("utf-16"), "the file declares a DOCTYPE or entities"),
    (b"<opml><body>" + b"<outline text='a'>" * 300 + b"</outline>" * 300 + b"</body></opml>",
     "not well-formed XML: "),  # deeper than libxml2 allows without huge_tree
])
def test_hostile_or_broken_files_are_one_line(document, message):
    with pytest.raises(OpmlError) as error:
        parse_opml(document)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_size_and_outline_caps(monkeypatch):
    with pytest.raises(OpmlError, match="larger than 5 MiB"):
        parse_opml(b" " * (opml.MAX_BYTES + 1))
    monkeypatch.setattr(opml, "MAX_OUTLINES", 3)
    with pytest.raises(OpmlError, match="more than 3 outlines"):
        parse_opml(b"<opml><body>" + b"<outline text='a'/>" * 4 + b"</body></opml>")


def test_opml_1_and_odd_attribute_spellings():
    document = parse_opml(b"<opml version='1.1'><body><outline title='Only a title' xmlurl=' https://e.org/f '"
                          b" type='RSS' language='fr'/><outline type='link' text='Site' url='https://e.org'/>"
                          b"<outline type='include' text='More' url='https://e.org/more.opml'/></body></opml>")
    first = document.outlines[0]
    assert (first.text, first.xml_url, first.type, first.language) == ("Only a title", "https://e.org/f", "RSS", "fr")
    assert document.title == ""
