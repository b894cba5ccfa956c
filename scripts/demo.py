"""See an alert in one minute, offline: two local "news sites" carry the same French story.

Serves the seed article's two copies (site chrome, a lightly edited rewrite behind a utm_ link) and
their RSS feeds on 127.0.0.1, writes a demo config next to the data folder, runs one full cycle and
prints the stored story and the alert. Run with `make demo`.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "tests" / "fixtures"
TITLE = ("Contre-attaque américaine en Syrie après que les troupes aient été attaquées par des roquettes de "
         "militants – des explosions ont été entendues.")


def _rss(site: str, link: str) -> str:
    published = format_datetime(datetime(2022, 8, 24, 19, 5, tzinfo=UTC))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{site}</title>'
            f"<link>{escape(link)}</link><description>demo</description><item><title>{escape(TITLE)}</title>"
            f"<link>{escape(link)}</link><guid>{escape(link)}</guid><pubDate>{published}</pubDate></item>"
            "</channel></rss>")


def _serve(folder: Path) -> ThreadingHTTPServer:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    from newswatch.config import load_settings
    from newswatch.db import transaction
    from newswatch.pipeline import run_cycle

    data = Path(os.environ.get("NEWSWATCH_DATA_DIR") or ROOT / ".data").resolve()
    site_root = data / "demo-site"
    (site_root / "a").mkdir(parents=True, exist_ok=True)
    (site_root / "b").mkdir(parents=True, exist_ok=True)
    (site_root / "a" / "story.html").write_bytes((PAGES / "seed_site_a.html").read_bytes())
    (site_root / "b" / "story.html").write_bytes((PAGES / "seed_site_b.html").read_bytes())
    server = _serve(site_root)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    (site_root / "a" / "feed.xml").write_text(_rss("Le Journal du Monde", f"{base}/a/story.html"), "utf-8")
    (site_root / "b" / "feed.xml").write_text(
        _rss("Info Express", f"{base}/b/story.html?utm_source=rss&utm_medium=feed"), "utf-8")

    shipped = yaml.safe_load((ROOT / "config" / "newswatch.yaml").read_text("utf-8"))
    alerts_file = data / "demo-alerts.jsonl"
    config = {
        "feeds": [{"name": "journal-du-monde", "url": f"{base}/a/feed.xml"},
                  {"name": "info-express", "url": f"{base}/b/feed.xml"}],
        "rules": [{**rule, "channels": ["demo"]} for rule in shipped["rules"]],
        "channels": [{"name": "demo", "url": f"jsonl://{alerts_file}"}],
        "network": {"allow_networks": ["127.0.0.1/32"]},
    }
    config_file = data / "demo.yaml"
    config_file.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")

    run_cycle(load_settings(config_file), progress=print)
    server.shutdown()
    with transaction() as cur:
        cur.execute("SELECT id, title, article_count, languages, feeds FROM stories ORDER BY id DESC LIMIT 1")
        story = cur.fetchone()
    print(f"\nstory {story['id']}: {story['article_count']} articles from {', '.join(story['feeds'])} "
          f"({', '.join(story['languages'])}): {story['title'][:70]}…")
    if alerts_file.exists():
        last = json.loads(alerts_file.read_text("utf-8").splitlines()[-1])
        print(f"alert in {alerts_file}:\n  {last['subject'][:100]}\n  matched: {', '.join(last['matched_terms'])}")
    print("\nRun `make demo` again: nothing new is stored or sent.")


if __name__ == "__main__":
    main()
