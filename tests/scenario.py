"""The seed scenario shared by end-to-end tests: two sites carrying the same French story.

Site A publishes the seed article (with its site chrome) in its RSS feed; site B carries a lightly
edited copy, linked from its feed behind ``utm_`` tracking parameters. A third feed is broken (HTTP
500) and a fourth is an HTML page, so every run also proves that bad feeds do not stop good ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import yaml

from tests.servers import LoopbackServer, Route, SmtpSink, WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SEED_TITLE = ("Contre-attaque américaine en Syrie après que les troupes aient été attaquées par des "
              "roquettes de militants – des explosions ont été entendues.")


def rss(title: str, items: list[dict]) -> bytes:
    """A small RSS 2.0 document; items take link, title, guid, summary and published."""
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>{escape(title)}</title>'
             "<link>http://127.0.0.1/</link><description>test feed</description>"]
    for item in items:
        published = format_datetime(item.get("published", datetime(2022, 8, 24, 19, 5, tzinfo=UTC)))
        parts.append(
            f"<item><title>{escape(item['title'])}</title><link>{escape(item['link'])}</link>"
            f"<guid>{escape(item.get('guid', item['link']))}</guid><pubDate>{published}</pubDate>"
            f"<description>{escape(item.get('summary', ''))}</description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


def shipped_rule(name: str = "syria-strikes") -> str:
    config = yaml.safe_load((ROOT / "config" / "newswatch.yaml").read_text(encoding="utf-8"))
    return next(rule["query"] for rule in config["rules"] if rule["name"] == name)


def serve_seed_sites(site: LoopbackServer) -> None:
    """Routes for both seed sites, their feeds, a failing feed and a non-feed on one loopback server."""
    page_a = (FIXTURES / "seed_site_a.html").read_bytes()
    page_b = (FIXTURES / "seed_site_b.html").read_bytes()
    html = {"Content-Type": "text/html; charset=utf-8"}
    xml = {"Content-Type": "application/rss+xml"}
    site.routes["/monde/contre-attaque-americaine-en-syrie"] = Route(200, page_a, html)
    site.routes["/2022/08/25/syrie-contre-attaque.html"] = Route(200, page_b, html)
    site.routes["/a/feed.xml"] = Route(200, rss("Le Journal du Monde", [{
        "title": SEED_TITLE,
        "link": site.url("/monde/contre-attaque-americaine-en-syrie"),
        "summary": "Deux responsables américains ont confirmé l'attaque à Reuters.",
    }]), xml, etag='"a-1"')
    site.routes["/b/rss"] = Route(200, rss("Info Express", [{
        "title": SEED_TITLE,
        "link": site.url("/2022/08/25/syrie-contre-attaque.html?utm_source=rss&utm_medium=feed&utm_campaign=monde"),
        "published": datetime(2022, 8, 25, 6, 12, tzinfo=UTC),
    }]), xml, etag='"b-1"')
    site.routes["/broken/feed.xml"] = Route(500, b"internal error", {"Content-Type": "text/plain"})
    site.routes["/not-a-feed"] = Route(200, b"<html><body><h1>Welcome</h1></body></html>", html)


def seed_config(path: Path, site: LoopbackServer, webhook: WebhookReceiver, smtp: SmtpSink,
                extra_feeds: list[dict] | None = None) -> Path:
    """Write a config for the seed scenario; alerts go to the webhook receiver and the SMTP sink."""
    config = {
        "feeds": [
            {"name": "journal-du-monde", "url": site.url("/a/feed.xml")},
            {"name": "info-express", "url": site.url("/b/rss")},
            {"name": "broken", "url": site.url("/broken/feed.xml")},
            {"name": "not-a-feed", "url": site.url("/not-a-feed")},
            *(extra_feeds or []),
        ],
        "rules": [
            {"name": "syria-strikes", "query": shipped_rule(), "channels": ["webhook", "email"]},
            {"name": "football", "query": "football OR soccer", "channels": ["webhook"]},
        ],
        "channels": [
            {"name": "webhook", "url": f"json://127.0.0.1:{webhook.server_address[1]}/hook"},
            {"name": "email", "url": f"mailto://127.0.0.1:{smtp.port}?from=newswatch@example.org"
                                     "&to=desk@example.org&mode=insecure"},
        ],
        "network": {"allow_networks": ["127.0.0.1/32"]},
        "alerts": {"retry_base_seconds": 0},
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


STORY_FIXTURES = FIXTURES / "stories"


def article_page(title: str, body: str, language: str) -> bytes:
    """A plain news page: headline and paragraphs (enough for extraction, no site chrome)."""
    paragraphs = "".join(f"<p>{escape(p.strip())}</p>" for p in body.split("\n\n") if p.strip())
    return (f'<!doctype html><html lang="{language}"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"</head><body><article><h1>{escape(title)}</h1>{paragraphs}</article></body></html>").encode()


def serve_other_reports(site: LoopbackServer) -> list[dict]:
    """English and German reports of the seed's event, and a report of the next US strike in Syria a week
    later, each on a site of its own; returns their feed entries for the config."""
    reports = [  # (fixture, language, feed, published)
        ("syria-strikes-en.txt", "en", "wire-en", datetime(2022, 8, 24, 16, 40, tzinfo=UTC)),
        ("syria-strikes-de.txt", "de", "zeitung-de", datetime(2022, 8, 25, 7, 30, tzinfo=UTC)),
        ("syria-strike-other-event-en.txt", "en", "defense-daily", datetime(2022, 8, 30, 9, 15, tzinfo=UTC)),
    ]
    feeds = []
    for name, language, feed, published in reports:
        title, _, body = (STORY_FIXTURES / name).read_text(encoding="utf-8").strip().partition("\n")
        page_path, feed_path = f"/{feed}/{name.removesuffix('.txt')}", f"/{feed}/rss"
        site.routes[page_path] = Route(200, article_page(title.strip(), body, language),
                                       {"Content-Type": "text/html; charset=utf-8"})
        site.routes[feed_path] = Route(200, rss(feed, [{"title": title.strip(), "link": site.url(page_path),
                                                        "published": published}]),
                                       {"Content-Type": "application/rss+xml"})
        feeds.append({"name": feed, "url": site.url(feed_path)})
    return feeds
