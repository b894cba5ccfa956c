"""Adding a feed by a site's address: the feed found through <link rel="alternate">, fetched through the poller's
fetcher (same address policy and caps) and parsed by its parser, checked before it is saved."""

from __future__ import annotations

import json

from newswatch.config import Network
from newswatch.discovery import advertised_feeds, check_feed
from tests.scenario import rss
from tests.servers import Route

LOOPBACK = Network(allow_networks=["127.0.0.1/32"])
HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml"}


def page(head: str) -> bytes:
    return f"<!doctype html><html><head><title>Site</title>{head}</head><body><p>Hello</p></body></html>".encode()


def test_a_feed_url_is_checked_with_one_fetch(site):
    site.routes["/feed.xml"] = Route(200, rss("Le Journal", [
        {"title": f"Article {n}", "link": site.url(f"/a/{n}")} for n in range(8)]), RSS)
    check = check_feed(site.url("/feed.xml"), LOOPBACK, entries=3)
    assert check.ok and check.url == site.url("/feed.xml") and check.title == "Le Journal"
    assert [entry.title for entry in check.entries] == ["Article 0", "Article 1", "Article 2"]
    assert check.entries[0].url == site.url("/a/0") and check.entries[0].published is not None
    assert len(site.requests) == 1 and check.candidates == ()
    assert check.summary() == f"{site.url('/feed.xml')}: Le Journal, 3 entries shown"


def test_a_site_url_leads_to_the_feed_it_advertises(site):
    site.routes["/"] = Route(200, page(
        '<link rel="stylesheet" href="/s.css">'
        '<link rel="alternate" type="application/rss+xml" title="All news" href="/rss/all.xml">'
        '<LINK REL="Alternate Feed" TYPE="application/atom+xml" HREF="atom.xml">'
        '<link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/2">'  # WordPress API, no feed
        '<link rel="alternate" hreflang="fr" href="/fr/">'), HTML)
    site.routes["/rss/all.xml"] = Route(200, rss("All news", [{"title": "One", "link": site.url("/1")}]), RSS)
    check = check_feed(site.url("/"), LOOPBACK)
    assert check.ok and check.url == site.url("/rss/all.xml") and check.title == "All news"
    assert [(c.url, c.type, c.title) for c in check.candidates] == [
        (site.url("/rss/all.xml"), "rss", "All news"), (site.url("/atom.xml"), "atom", "")]
    assert check.summary().endswith(f"(found on {site.url('/')}): All news, 1 entries shown")


def test_the_first_advertised_feed_that_works_is_chosen(site):
    site.routes["/news/"] = Route(200, page(
        '<base href="/feeds/">'
        '<link rel="alternate" type="application/rss+xml" href="gone.xml">'
        '<link rel="alternate" type="application/feed+json" href="feed.json">'), HTML)
    site.routes["/feeds/feed.json"] = Route(200, json.dumps({
        "version": "https://jsonfeed.org/version/1.1", "title": "JSON news",
        "items": [{"id": "1", "url": site.url("/j/1"), "title": "Jay"}]}).encode(),
        {"Content-Type": "application/feed+json"})
    check = check_feed(site.url("/news/"), LOOPBACK)
    assert check.ok and check.url == site.url("/feeds/feed.json") and check.title == "JSON news"
    assert [entry.title for entry in check.entries] == ["Jay"]


def test_failures_are_one_line(site):
    site.routes["/plain"] = Route(200, page(""), HTML)
    site.routes["/broken"] = Route(200, page('<link rel="alternate" type="application/rss+xml" href="/x.xml">'), HTML)
    site.routes["/text"] = Route(200, b"just text", {"Content-Type": "text/plain"})
    cases = {
        "/plain": "an HTML page that advertises no feed",
        "/broken": f"the feeds the page advertises do not work: {site.url('/x.xml')}: http_error: HTTP 404",
        "/text": "not_a_feed: ",
        "/missing": "http_error: HTTP 404",
    }
    for path, error in cases.items():
        check = check_feed(site.url(path), LOOPBACK)
        assert not check.ok and check.error.startswith(error), (path, check.error)
        assert "\n" not in check.summary()
    assert check_feed("ftp://example.org/feed", LOOPBACK).error == "not an http:// or https:// URL"
    assert check_feed("https://", LOOPBACK).error == "not an http:// or https:// URL"
    assert check_feed("http://example.org:99999/", LOOPBACK).error == "invalid_url: Port out of range 0-65535"


def test_the_poller_address_policy_and_size_cap_apply(site):
    site.routes["/feed.xml"] = Route(200, rss("Local", [{"title": "x", "link": site.url("/x")}]), RSS)
    check = check_feed(site.url("/feed.xml"), Network())  # loopback not allowed: as for polling
    assert not check.ok and check.error.startswith("blocked_address: 127.0.0.1 resolves to 127.0.0.1")
    assert site.requests == []
    site.routes["/big.xml"] = Route(200, b"<rss>" + b" " * 5000 + b"</rss>", RSS)
    check = check_feed(site.url("/big.xml"), Network(allow_networks=["127.0.0.1/32"], max_feed_bytes=1000))
    assert check.error == "too_large: body larger than 1000 bytes (after decompression)"


def test_a_permanent_redirect_is_followed_a_temporary_one_kept(site):
    feed = Route(200, rss("Moved", [{"title": "x", "link": site.url("/x")}]), RSS)
    site.routes["/new.xml"] = feed
    site.routes["/old.xml"] = Route(301, b"", {"Location": "/new.xml"})
    site.routes["/today.xml"] = Route(302, b"", {"Location": "/new.xml"})
    assert check_feed(site.url("/old.xml"), LOOPBACK).url == site.url("/new.xml")
    assert check_feed(site.url("/today.xml"), LOOPBACK).url == site.url("/today.xml")


def test_links_are_resolved_and_only_http_kept():
    found = advertised_feeds(
        b'<html><head><link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">'
        b'<link rel="alternate" type="application/rss+xml" href="//cdn.example.org/f.xml">'
        b'<link rel="alternate" type="application/rss+xml" href="//cdn.example.org/f.xml">'
        b'<link rel="alternate" type="application/atom+xml; charset=utf-8" href="../up.atom" title="Caf\xc3\xa9">',
        "https://example.org/a/b/", "text/html; charset=utf-8")
    assert [(c.url, c.title) for c in found] == [("https://cdn.example.org/f.xml", ""),
                                                 ("https://example.org/a/up.atom", "Café")]
