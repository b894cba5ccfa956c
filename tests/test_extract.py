"""Tests for newswatch.ingest.extract and newswatch.ingest.language on the committed seed pages and hostile input."""

from __future__ import annotations

import importlib.util
import json
import sys
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from newswatch.ingest import language
from newswatch.ingest.extract import MAX_HTML_BYTES, ExtractedArticle, decode_html, extract_article, html_to_text
from newswatch.ingest.language import detect_language
from newswatch.urls import canonicalize_url

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
SEED_TITLE = (
    "Contre-attaque américaine en Syrie après que les troupes aient été attaquées par des roquettes "
    "de militants – des explosions ont été entendues."
)
FIRST_PARAGRAPH = (
    "Deux responsables américains, qui ont confirmé l’attaque à Reuters, ont déclaré qu’ils pensaient "
    "que les incidents avaient fait un nombre inconnu de morts parmi les attaquants alignés sur l’Iran. "
    "Les responsables n’ont pas voulu faire de commentaires sur d’éventuelles victimes américaines."
)
LAST_PARAGRAPH = (
    "Les forces américaines sont entrées en Syrie en 2015, soutenant les forces alliées dans leur lutte "
    "contre le groupe État islamique."
)
SITE_A_URL = "http://127.0.0.1/monde/contre-attaque?utm_source=rss&utm_medium=feed"
SITE_A_CANONICAL = "http://127.0.0.1/monde/contre-attaque-americaine-en-syrie"
SITE_A_PUBLISHED = datetime(2022, 8, 24, 19, 5, tzinfo=UTC)
MOJIBAKE = ("Ã©", "Ã¨", "â€™", "Ã‰", "\ufffd")

ENGLISH = [
    "The city council approved the new budget on Tuesday evening after a long debate about public "
    "transport, housing and the renovation of several schools in the northern districts.",
    "Opposition members criticised the plan for raising parking fees, while the mayor said the money "
    "was needed to keep buses running through the winter months.",
    "The budget will be published in full next week, and residents can comment on it online until "
    "the end of the month.",
]
FRENCH = [
    "Le conseil municipal a adopté mardi soir le nouveau budget après un long débat sur les transports "
    "publics, le logement et la rénovation de plusieurs écoles des quartiers nord.",
    "L’opposition a critiqué la hausse des tarifs de stationnement, tandis que le maire a déclaré que "
    "l’argent était nécessaire pour faire rouler les bus pendant l’hiver : « C’est indispensable ».",
    "Le budget sera publié dans son intégralité la semaine prochaine ; les habitants pourront le "
    "commenter en ligne jusqu’à la fin du mois. Coût estimé : 3 millions d’euros.",
]


def seed_page(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def article_page(paragraphs: list[str], *, head: str = "", title: str = "Budget approved") -> str:
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!DOCTYPE html><html><head>{head}<title>{title}</title></head><body>"
        f'<nav><a href="/">Home</a> <a href="/news">News</a></nav>'
        f"<article><h1>{title}</h1>\n{body}\n</article>"
        f"<footer>Copyright The Daily</footer></body></html>"
    )


def paragraphs_of(text: str) -> list[str]:
    return text.split("\n\n")


# --------------------------------------------------------------------------------------------------
# Seed pages


@pytest.fixture(scope="module")
def site_a() -> ExtractedArticle:
    return extract_article(seed_page("seed_site_a.html"), url=SITE_A_URL, content_type="text/html")


def test_site_a_body_is_the_article_with_paragraphs(site_a: ExtractedArticle) -> None:
    paragraphs = paragraphs_of(site_a.body)
    assert paragraphs[0] == FIRST_PARAGRAPH
    assert paragraphs[-1] == LAST_PARAGRAPH
    assert "Armée américaine" in paragraphs  # subheads stay separate paragraphs
    assert len(paragraphs) == 17
    assert site_a.method == "trafilatura"
    assert site_a.is_partial is False


@pytest.mark.parametrize(
    "chrome",
    [
        "Home »",  # breadcrumb
        "MONDE",
        "uses cookies",  # cookie banner
        "Accept",
        "Related Articles",
        "Ukraine : les combats continuent",  # related headlines
        "L'inflation atteint un niveau record",
        "Tour de France",
        "Newsletter",
        "Inscrivez-vous",
        "S'inscrire",
        "Économie",  # nav
        "Culture",
        "Le Journal du Monde",  # header / footer
        "Tous droits réservés",
        "Mentions légales",
        "24 août 2022",  # byline
        SEED_TITLE,  # the headline is the title, not the first paragraph
    ],
)
def test_site_a_body_has_no_page_chrome(site_a: ExtractedArticle, chrome: str) -> None:
    assert chrome not in site_a.body


def test_site_a_metadata(site_a: ExtractedArticle) -> None:
    assert site_a.title == SEED_TITLE  # " | Le Journal du Monde" cut, " – des explosions" kept
    assert site_a.language == "fr"
    assert site_a.canonical_url == SITE_A_CANONICAL
    assert site_a.published_at == SITE_A_PUBLISHED
    assert site_a.published_at.tzinfo is not None and site_a.published_at.utcoffset() == timedelta(0)
    assert site_a.site_name == "Le Journal du Monde"
    assert site_a.authors == []  # the empty byline must not give an author called "par"
    assert site_a.image_url is None


def test_site_b_template() -> None:
    article = extract_article(seed_page("seed_site_b.html"), url="http://127.0.0.1/2022/08/25/x?ref=home")
    assert article.title == SEED_TITLE  # " - Info Express" cut
    assert article.site_name == "Info Express"
    assert article.canonical_url == "http://127.0.0.1/2022/08/25/syrie-contre-attaque.html"  # og:url
    assert article.language == "fr"
    assert paragraphs_of(article.body)[0] == FIRST_PARAGRAPH
    assert paragraphs_of(article.body)[-1] == LAST_PARAGRAPH
    assert "a indiqué mercredi dans un communiqué" in article.body
    assert "L’Iran n’a pas immédiatement" not in article.body
    for chrome in ("Les plus lus", "Météo", "Partager sur Facebook", "cookies", "S'abonner", "Publié le"):
        assert chrome not in article.body
    assert article.published_at is not None and article.published_at.date().isoformat() == "2022-08-25"


def test_feed_title_and_date_win_over_the_page(site_a: ExtractedArticle) -> None:
    published = datetime(2022, 8, 24, 20, 0, tzinfo=timezone(timedelta(hours=2)))
    article = extract_article(
        seed_page("seed_site_a.html"),
        url=SITE_A_URL,
        feed_title="  Syrie :\n riposte américaine ",
        feed_published=published,
    )
    assert article.title == "Syrie : riposte américaine"
    assert article.published_at == datetime(2022, 8, 24, 18, 0, tzinfo=UTC)
    assert article.body == site_a.body


def test_naive_feed_date_is_taken_as_utc() -> None:
    article = extract_article(None, url="https://example.com/a", feed_published=datetime(2024, 3, 1, 12, 0))
    assert article.published_at == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# Canonical URL


def test_canonical_pointing_to_another_site_is_ignored() -> None:
    html = seed_page("seed_site_a.html").replace(
        b'href="http://127.0.0.1/monde/', b'href="https://other-site.example/monde/'
    )
    article = extract_article(html, url=SITE_A_URL)
    assert article.canonical_url == canonicalize_url(SITE_A_URL) == "http://127.0.0.1/monde/contre-attaque"


def test_og_url_pointing_to_another_site_is_ignored() -> None:
    html = seed_page("seed_site_b.html").replace(b"http://127.0.0.1/2022/", b"https://www.evil.example/2022/")
    article = extract_article(html, url="https://www.news.example/a?utm_campaign=x#top")
    assert article.canonical_url == "https://www.news.example/a"


@pytest.mark.parametrize(
    "href", ["/monde/relative", "javascript:alert(1)", "ftp://127.0.0.1/x", "//127.0.0.1/monde/x"]
)
def test_canonical_must_be_absolute_http(href: str) -> None:
    html = seed_page("seed_site_a.html").replace(SITE_A_CANONICAL.encode(), href.encode())
    article = extract_article(html, url=SITE_A_URL)
    assert article.canonical_url == "http://127.0.0.1/monde/contre-attaque"


def test_same_site_canonical_is_canonicalized() -> None:
    head = '<link rel="canonical" href="HTTPS://Example.com:443/news/budget?utm_source=x&id=3#c">'
    html = article_page(ENGLISH, head=head).encode()
    article = extract_article(html, url="https://www.example.com/amp/budget")
    assert article.canonical_url == "https://example.com/news/budget?id=3"


# --------------------------------------------------------------------------------------------------
# Dates


def test_page_date_in_the_future_is_dropped() -> None:
    now = SITE_A_PUBLISHED - timedelta(hours=2)
    article = extract_article(seed_page("seed_site_a.html"), url=SITE_A_URL, now=now)
    assert article.published_at is None


def test_page_date_within_clock_skew_is_kept() -> None:
    now = SITE_A_PUBLISHED - timedelta(minutes=30)
    article = extract_article(seed_page("seed_site_a.html"), url=SITE_A_URL, now=now)
    assert article.published_at == SITE_A_PUBLISHED


def test_future_feed_date_falls_back_to_the_page_date() -> None:
    now = datetime(2022, 8, 25, 12, 0, tzinfo=UTC)
    article = extract_article(
        seed_page("seed_site_a.html"), url=SITE_A_URL, feed_published=now + timedelta(days=3), now=now
    )
    assert article.published_at == SITE_A_PUBLISHED


def test_future_feed_date_without_page_is_dropped() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    article = extract_article(
        None, url="https://example.com/a", feed_published=now + timedelta(hours=2), now=now
    )
    assert article.published_at is None


# --------------------------------------------------------------------------------------------------
# Feed fallback

SUMMARY_HTML = (
    "<p>The council approved the budget on Tuesday after a long debate about transport, housing and schools "
    "in the northern districts of the city.</p><p>Parking fees will rise; the mayor says buses need the "
    "money.<br><br>Residents can comment until the end of the month.</p><script>alert('x')</script>"
)
SUMMARY_TEXT = (
    "The council approved the budget on Tuesday after a long debate about transport, housing and schools "
    "in the northern districts of the city.\n\nParking fees will rise; the mayor says buses need the money."
    "\n\nResidents can comment until the end of the month."
)


def test_paywalled_page_falls_back_to_the_feed_summary() -> None:
    html = article_page(["Subscribe to read the full story. Already a subscriber? Log in."]).encode()
    article = extract_article(
        html, url="https://example.com/a", feed_title="Budget approved", feed_summary=SUMMARY_HTML
    )
    assert article.body == SUMMARY_TEXT
    assert article.is_partial is True
    assert article.method == "feed"
    assert article.title == "Budget approved"
    assert article.language == "en"


def test_script_only_page_falls_back_to_the_feed_summary() -> None:
    html = (
        b"<html><head><title>App</title></head><body><div id=root></div><script>boot()</script></body></html>"
    )
    article = extract_article(html, url="https://example.com/a", feed_summary=SUMMARY_HTML)
    assert (article.body, article.method, article.is_partial) == (SUMMARY_TEXT, "feed", True)
    assert article.title == "App"


def test_page_text_shorter_than_the_summary_is_not_used() -> None:
    html = article_page(ENGLISH[:2]).encode()
    summary = "<p>" + " ".join(ENGLISH * 2) + "</p>"
    article = extract_article(html, url="https://example.com/a", feed_summary=summary)
    assert article.method == "feed"
    assert article.body == " ".join(ENGLISH * 2)


def test_full_page_beats_a_short_summary() -> None:
    article = extract_article(
        article_page(ENGLISH).encode(), url="https://example.com/a", feed_summary="Teaser."
    )
    assert article.method == "trafilatura"
    assert article.is_partial is False
    assert paragraphs_of(article.body) == ENGLISH


def test_no_content_uses_the_feed_entry() -> None:
    article = extract_article(
        None, url="HTTPS://Example.com/a?utm_source=x", feed_title="T", feed_summary="Plain <b>summary</b>."
    )
    assert (article.title, article.body, article.method, article.is_partial) == (
        "T",
        "Plain summary.",
        "feed",
        True,
    )
    assert article.canonical_url == "https://example.com/a"
    assert article.language is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff\xfe\x00garbage\x00" * 50,
        b"<<<<>>>><!--",
        b"<?xml version='1.0' encoding='utf-8'?><html><body><p>x</p></body></html>",
        b"<html>" + b"<div>" * 5000 + b"deep" + b"</div>" * 5000 + b"</html>",
        bytes(range(256)) * 20,
    ],
)
def test_unparseable_pages_never_raise(content: bytes) -> None:
    article = extract_article(content, url="https://example.com/a", feed_summary=SUMMARY_HTML)
    assert article.body == SUMMARY_TEXT
    assert article.method == "feed"
    assert "\x00" not in article.title


def test_parser_crash_gives_the_feed_fallback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("parser exploded")

    monkeypatch.setattr("newswatch.ingest.extract.trafilatura.bare_extraction", boom)
    url = "http://127.0.0.1/monde/contre-attaque?token=SECRET"
    article = extract_article(seed_page("seed_site_a.html"), url=url, feed_summary=SUMMARY_HTML)
    assert (article.body, article.method) == (SUMMARY_TEXT, "feed")
    assert article.canonical_url == "http://127.0.0.1/monde/contre-attaque?token=SECRET"
    assert "http://127.0.0.1/monde/contre-attaque" in caplog.text
    assert "SECRET" not in caplog.text  # query strings can carry credentials


def test_html_over_the_cap_is_truncated_before_parsing() -> None:
    prefix = article_page(ENGLISH).split("</article>")[0]
    sentinel = (
        "<p>SENTINEL paragraph that sits beyond the two megabyte cap and must never be parsed at all.</p>"
    )
    html = (prefix + "<!--" + "x" * MAX_HTML_BYTES + "-->" + sentinel + "</article></body></html>").encode()
    article = extract_article(html, url="https://example.com/a")
    assert "SENTINEL" not in article.body
    assert paragraphs_of(article.body)[0] == ENGLISH[0]


def test_html_to_text_keeps_paragraphs_and_drops_scripts() -> None:
    assert html_to_text(SUMMARY_HTML) == SUMMARY_TEXT
    assert html_to_text("a &amp; b<ul><li>one</li><li>two</li></ul>") == "a & b\n\none\n\ntwo"
    assert html_to_text("   ") == ""


# --------------------------------------------------------------------------------------------------
# Title, authors, site name, image


def test_title_suffix_cut_when_it_is_the_site_name() -> None:
    head = '<meta property="og:site_name" content="The Daily">'
    html = article_page(ENGLISH, head=head, title="Budget approved - The Daily").replace(
        "<h1>Budget approved - The Daily</h1>", "<h1>Council votes</h1>"
    )
    article = extract_article(html.encode(), url="https://example.com/a")
    assert article.title == "Budget approved"
    assert article.site_name == "The Daily"


def test_title_with_a_dash_but_no_confirmation_stays_whole() -> None:
    title = "Budget approved – but parking fees rise"
    html = article_page(ENGLISH, title=title).replace(f"<h1>{title}</h1>", "<h1>Council votes</h1>")
    article = extract_article(html.encode(), url="https://example.com/a")
    assert article.title == title
    assert article.site_name is None


def test_authors_image_and_site_name_from_meta() -> None:
    head = (
        '<meta name="author" content="Jane Doe, John Smith">'
        '<meta property="og:site_name" content="The Daily">'
        '<meta property="og:image" content="/img/budget.jpg">'
    )
    article = extract_article(article_page(ENGLISH, head=head).encode(), url="https://www.example.com/news/1")
    assert article.authors == ["Jane Doe", "John Smith"]
    assert article.site_name == "The Daily"
    assert article.image_url == "https://www.example.com/img/budget.jpg"


def test_non_http_image_is_ignored() -> None:
    head = '<meta property="og:image" content="javascript:alert(1)">'
    article = extract_article(article_page(ENGLISH, head=head).encode(), url="https://example.com/a")
    assert article.image_url is None


# --------------------------------------------------------------------------------------------------
# Character sets


def french_page(meta: str = "") -> str:
    return article_page(FRENCH, head=meta, title="Budget adopté – « enfin » l’été")


def assert_clean_french(text: str) -> None:
    for bad in MOJIBAKE:
        assert bad not in text
    assert "Le conseil municipal a adopté mardi soir" in text
    assert "« C’est indispensable »" in text


def test_windows_1252_meta_without_header_charset() -> None:
    html = french_page('<meta charset="windows-1252">').encode("cp1252")
    assert_clean_french(decode_html(html, "text/html"))
    article = extract_article(html, url="https://example.com/a", content_type="text/html")
    assert_clean_french(article.body)
    assert article.title == "Budget adopté – « enfin » l’été"
    assert article.language == "fr"


def test_http_equiv_meta_is_honoured() -> None:
    html = french_page('<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">')
    assert_clean_french(decode_html(html.encode("cp1252"), None))


def test_iso_8859_1_header_is_decoded_as_windows_1252() -> None:
    # ’ « » – and € only exist in windows-1252; a strict latin-1 decode gives C1 control characters.
    text = french_page() + "<p>Prix : 5 €</p>"
    decoded = decode_html(text.encode("cp1252"), "text/html; charset=ISO-8859-1")
    assert decoded == text
    assert_clean_french(decoded)


@pytest.mark.parametrize("label", ["latin-1", "us-ascii", "Latin1", '"iso-8859-1"'])
def test_latin1_family_labels_map_to_windows_1252(label: str) -> None:
    assert decode_html("l’été – 5 €".encode("cp1252"), f"text/html; charset={label}") == "l’été – 5 €"


@pytest.mark.parametrize("label", ["foo", "utf-7", "base64", "rot13", "unicode_escape", "x-bogus-1252"])
def test_bogus_header_charset_falls_through_to_meta(label: str) -> None:
    html = french_page('<meta charset="utf-8">').encode("utf-8")
    assert decode_html(html, f"text/html; charset={label}") == french_page('<meta charset="utf-8">')


def test_bogus_header_charset_and_no_meta_falls_through_to_detection() -> None:
    html = french_page().encode("utf-8")
    decoded = decode_html(html, "text/html; charset=foo")
    assert_clean_french(decoded)
    article = extract_article(html, url="https://example.com/a", content_type="text/html; charset=foo")
    assert_clean_french(article.body)


def test_bogus_meta_charset_falls_through_to_the_next_meta() -> None:
    meta = (
        '<meta charset="nonsense"><meta http-equiv="content-type" content="text/html; charset=windows-1252">'
    )
    assert_clean_french(decode_html(french_page(meta).encode("cp1252"), None))


def test_header_charset_wins_over_meta() -> None:
    html = french_page('<meta charset="iso-8859-5">').encode("utf-8")
    assert_clean_french(decode_html(html, "text/html; charset=UTF-8"))


def test_meta_beyond_the_first_4kb_is_not_trusted() -> None:
    padding = "<!-- " + "x" * 5000 + " -->"
    html = french_page(padding + '<meta charset="koi8-r">').encode("utf-8")
    assert_clean_french(decode_html(html, None))  # koi8-r would turn every é into mojibake


def test_utf8_bom_wins_and_is_removed() -> None:
    html = b"\xef\xbb\xbf" + french_page().encode("utf-8")
    decoded = decode_html(html, "text/html; charset=iso-8859-1")
    assert not decoded.startswith("\ufeff")
    assert_clean_french(decoded)
    assert_clean_french(extract_article(html, url="https://example.com/a").body)


def test_utf16_bom() -> None:
    text = french_page()
    assert decode_html(text.encode("utf-16"), None) == text


RUSSIAN = (
    "<html><head><title>Новости</title></head><body><p>Лидеры стран встретились в Москве во вторник, "
    "чтобы обсудить экономическое сотрудничество и вопросы безопасности в регионе.</p></body></html>"
)
JAPANESE = (
    "<html><head><title>ニュース</title></head><body><p>東京で新しい政策が発表されました。"
    "経済への影響が懸念されています。政府は来週、詳細を説明する予定です。</p></body></html>"
)


@pytest.mark.parametrize(
    ("text", "encoding"), [(RUSSIAN, "koi8-r"), (RUSSIAN, "cp1251"), (JAPANESE, "shift_jis")]
)
def test_undeclared_charset_is_detected(text: str, encoding: str) -> None:
    decoded = decode_html(text.encode(encoding), "text/html")
    assert decoded == text


def test_short_undeclared_western_page_is_not_decoded_as_a_dos_code_page() -> None:
    # charset-normalizer ranks cp775 (Baltic DOS) first for this text
    text = (
        "<html><body><p>Le président a déclaré mercredi que les frappes étaient nécessaires. "
        "« Élysée » à côté.</p></body></html>"
    )
    assert decode_html(text.encode("cp1252"), None) == text


def test_invalid_utf8_with_utf8_header_gets_replacement_not_an_error() -> None:
    assert decode_html(b"caf\xc3\xa9 \xff\xfe ok", "text/html; charset=utf-8") == "café \ufffd\ufffd ok"


def test_undeclared_western_tie_goes_to_windows_1252() -> None:
    # charset-normalizer scores cp1250 and cp1252 equal here and lists cp1250 first: "España" -> "Espańa"
    text = (
        "<html><body><p>El gobierno de España anunció el martes nuevas medidas económicas para el año "
        "que viene. «Es difícil», dijo el ministro.</p></body></html>"
    )
    assert decode_html(text.encode("cp1252"), None) == text


@pytest.mark.parametrize("text", ["“Yes”", "a’b"])
def test_short_undeclared_utf8_is_utf8(text: str) -> None:
    # charset-normalizer alone calls these cp1125 and cp932
    assert decode_html(text.encode("utf-8"), None) == text


def test_utf8_cut_inside_a_character_is_still_utf8() -> None:
    # what the 2 MB cap can do to a page; charset-normalizer calls this cp932
    data = "<p>l’été</p>".encode() + "é".encode()[:1]
    assert decode_html(data, None) == "<p>l’été</p>\ufffd"


def test_meta_declaring_utf16_means_utf8() -> None:
    html = french_page('<meta charset="utf-16">')
    assert decode_html(html.encode("utf-8"), None) == html


# --------------------------------------------------------------------------------------------------
# Language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The government announced new measures on Tuesday.", "en"),
        ("Die Regierung hat am Dienstag neue Maßnahmen angekündigt.", "de"),
        ("Le gouvernement a annoncé mardi de nouvelles mesures.", "fr"),
        ("El gobierno anunció el martes nuevas medidas económicas.", "es"),
    ],
)
def test_detect_language_short_texts(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello world",  # too few letters: the model says Fulah
        "Das ist gut",  # too few letters, although the model is 97% sure
        "Le gouvernement",
        "1234 5678 !!!! .... 2024-01-01 12:00",
        "ok ok ok ok ok ok ok ok ok ok",  # low confidence
        "asdf qwer zxcv uiop hjkl bnm",  # the model says "zxx" (no language): not an ISO 639-1 code
    ],
)
def test_detect_language_returns_none_when_unsure(text: str) -> None:
    assert detect_language(text) is None


def test_detect_language_restriction() -> None:
    text = "El gobierno anunció el martes nuevas medidas económicas."
    assert detect_language(text, languages={"es", "en"}) == "es"
    assert detect_language(text, languages={"de"}) == "de"  # restricted: the only answer allowed
    assert detect_language(text) == "es"  # the shared model was not modified


def test_language_model_is_loaded_once() -> None:
    assert language._get_identifier() is language._get_identifier()


# --------------------------------------------------------------------------------------------------
# Main text: tables, quoted social posts, captions, cross-links, headline, Unicode


def test_data_tables_keep_their_rows_and_cells() -> None:
    table = (
        "<table><tr><th>Pos.</th><th>Driver</th><th>Points</th></tr>"
        "<tr><td>1</td><td>Kyle Busch</td><td>5040</td></tr><tr><td>2</td><td>Martin Truex Jr.</td><td>5035</td></tr>"
        "</table>"
    )
    html = article_page(ENGLISH).replace("</article>", table + "</article>")
    body = extract_article(html.encode(), url="https://example.com/a").body
    assert "Pos. Driver Points\n1 Kyle Busch 5040\n2 Martin Truex Jr. 5035" in body


def test_quoted_social_post_is_kept_and_captions_are_dropped() -> None:
    tweet = (
        '<div class="social-media-embed"><blockquote class="twitter-tweet"><p lang="en">Yes this is real and '
        'the state spent half a million dollars on it</p>— Jane Roe (@janeroe) <a href="https://x.test/s/1">'
        "November 18, 2019</a></blockquote></div>"
    )
    figure = '<figure><img src="/a.jpg"><figcaption>The mayor at the council meeting. Photo: AP</figcaption></figure>'
    html = article_page(ENGLISH).replace(f"<p>{ENGLISH[1]}</p>", figure + f"<p>{ENGLISH[1]}</p>" + tweet)
    body = extract_article(html.encode(), url="https://example.com/a").body
    assert "Yes this is real and the state spent half a million dollars on it" in body
    assert "— Jane Roe (@janeroe) November 18, 2019" in body
    assert "The mayor at the council meeting" not in body
    assert body.startswith(ENGLISH[0]) and body.endswith(ENGLISH[2])


def test_cross_links_inside_the_body_are_dropped() -> None:
    related = (
        '<p>Related: <a href="/news/2">Council to vote on the school renovation plan next month</a></p>'
        "<p>DON'T MISS</p>"
        '<p><a href="/news/3">Bus drivers threaten to strike over the winter timetable</a></p>'
        '<p><a href="/news/4">Parking fees: what changes for residents of the centre</a></p>'
    )
    html = article_page(ENGLISH).replace(f"<p>{ENGLISH[2]}</p>", related + f"<p>{ENGLISH[2]}</p>")
    assert paragraphs_of(extract_article(html.encode(), url="https://example.com/a").body) == ENGLISH


def test_only_runs_of_link_lines_count_as_cross_links() -> None:
    from lxml import etree

    from newswatch.ingest.extract import _assemble_body, _Marks

    marks = _Marks("⟦", "⟧")
    body = etree.fromstring(
        "<body><p>Intro text of the story, long enough to be a paragraph of its own.</p>"
        "<p>⟦The full budget proposal was published by the city on Monday.⟧</p>"  # one link line: text
        "<p>More text of the story with ⟦a link⟧ inside a sentence that goes on.</p>"
        "<list><item>⟦Headline one elsewhere⟧</item><item>⟦Headline two elsewhere⟧</item></list>"
        "<p>Closing paragraph.</p><p>⟦Other story one⟧</p><p>⟦Other story two⟧</p></body>"
    )
    assert paragraphs_of(_assemble_body(body, (), marks)) == [
        "Intro text of the story, long enough to be a paragraph of its own.",
        "The full budget proposal was published by the city on Monday.",
        "More text of the story with a link inside a sentence that goes on.",
        "Closing paragraph.",
    ]


def test_link_marks_never_reach_the_text() -> None:
    text = "Prices rose ⟦sharply⟧ in the centre, the council said on Tuesday after a long debate."
    html = article_page([*ENGLISH, text]).replace("the mayor", '<a href="/mayor">the mayor</a>')
    body = extract_article(html.encode(), url="https://example.com/a").body
    assert text in body  # the page's own brackets are kept (another mark pair is used)
    assert "the mayor said" in body and "⦃" not in body and "⦄" not in body


def test_body_is_nfc_normalised_and_matching_form_is_the_shared_normalize_text() -> None:
    decomposed = [p.replace("é", "e\u0301") for p in FRENCH]
    article = extract_article(article_page(decomposed, title="Budget adopte\u0301").encode(), url="https://e.com/a")
    assert "e\u0301" not in article.body and "Le conseil municipal a adopté mardi soir" in article.body
    assert article.title == "Budget adopté"
    from newswatch.ingest.extract import normalize_for_matching
    from newswatch.text import normalize_text

    assert normalize_for_matching("L’Été  « chaud »") == normalize_text("L’Été  « chaud »") == "l'ete \" chaud \""


def test_script_only_page_with_json_ld_article_body_uses_it() -> None:
    data = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": "Budget approved",
        "articleBody": "\n".join(ENGLISH),
        "datePublished": "2024-03-01T10:00:00+01:00",
    }
    html = (
        '<html><head><title>Budget approved</title><script type="application/ld+json">'
        + json.dumps(data)
        + '</script></head><body><div id="root"></div><script>boot()</script></body></html>'
    )
    article = extract_article(html.encode(), url="https://example.com/a", feed_summary="Teaser.")
    assert paragraphs_of(article.body) == ENGLISH
    assert (article.method, article.is_partial) == ("jsonld", False)
    assert article.published_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def test_paywall_teaser_with_a_real_lead_falls_back_to_the_longer_feed_summary() -> None:
    teaser = [
        ENGLISH[0],
        "This article is for subscribers only. Subscribe now for unlimited access, or log in to continue.",
    ]
    summary = "<p>" + " ".join(ENGLISH) + "</p><p>" + " ".join(ENGLISH[:2]) + "</p>"
    article = extract_article(article_page(teaser).encode(), url="https://example.com/a", feed_summary=summary)
    assert (article.method, article.is_partial) == ("feed", True)
    assert article.body.startswith(ENGLISH[0])


# --------------------------------------------------------------------------------------------------
# Dates, authors, site name


def jsonld_page(data: dict, *, head: str = "") -> bytes:
    script = f'<script type="application/ld+json">{json.dumps(data)}</script>'
    return article_page(ENGLISH, head=script + head).encode()


def test_published_and_updated_from_json_ld() -> None:
    data = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebSite", "name": "Ignored"},
            {
                "@type": ["NewsArticle"],
                "datePublished": "2024-03-01T10:00:00+01:00",
                "dateModified": "2024-03-02T08:30:00Z",
                "author": [{"@type": "Person", "name": "Jane Doe"}, {"@type": "Person", "name": "By John Smith"}],
                "publisher": {"@type": "Organization", "name": "The Daily"},
            },
        ],
    }
    article = extract_article(jsonld_page(data), url="https://example.com/news/budget")
    assert article.published_at == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    assert article.updated_at == datetime(2024, 3, 2, 8, 30, tzinfo=UTC)
    assert article.authors == ["Jane Doe", "John Smith"]
    assert article.site_name == "The Daily"


def test_updated_from_open_graph_meta_and_never_in_the_future_or_before_publication() -> None:
    head = (
        '<meta property="article:published_time" content="2024-03-01T10:00:00Z">'
        '<meta property="article:modified_time" content="2024-03-05T10:00:00Z">'
    )
    html = article_page(ENGLISH, head=head).encode()
    article = extract_article(html, url="https://example.com/a", now=datetime(2024, 3, 10, tzinfo=UTC))
    assert (article.published_at, article.updated_at) == (
        datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
        datetime(2024, 3, 5, 10, 0, tzinfo=UTC),
    )
    early = extract_article(html, url="https://example.com/a", now=datetime(2024, 3, 3, tzinfo=UTC))
    assert early.published_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC) and early.updated_at is None
    stale = html.replace(b"2024-03-05", b"2024-02-20")  # "modified" before publication: meaningless
    assert extract_article(stale, url="https://example.com/a").updated_at is None


def test_feed_updated_date_is_used() -> None:
    article = extract_article(
        None,
        url="https://example.com/a",
        feed_published=datetime(2024, 3, 1, tzinfo=UTC),
        feed_updated=datetime(2024, 3, 2, tzinfo=UTC),
    )
    assert article.updated_at == datetime(2024, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/2022/08/25/budget-approved/", datetime(2022, 8, 25, tzinfo=UTC)),
        ("https://example.com/news/2022-08-25-budget-approved", datetime(2022, 8, 25, tzinfo=UTC)),
        ("https://example.com/news/20220825/budget", datetime(2022, 8, 25, tzinfo=UTC)),
        ("https://example.com/2022/13/45/budget/", None),
        ("https://example.com/2099/01/01/budget/", None),  # in the future
        ("https://example.com/news/budget-approved", None),
    ],
)
def test_date_in_the_url_is_the_last_resort(url: str, expected: datetime | None) -> None:
    article = extract_article(article_page(ENGLISH).encode(), url=url, now=datetime(2024, 1, 1, tzinfo=UTC))
    assert article.published_at == expected


def test_unreadable_page_dates_are_ignored() -> None:
    head = '<meta property="article:published_time" content="yesterday">'
    html = article_page(ENGLISH, head=head).encode()
    assert extract_article(html, url="https://example.com/news/x").published_at is None
    head = '<meta property="article:published_time" content="Tue, 05 Mar 2024 10:00:00 +0100">'
    html = article_page(ENGLISH, head=head).encode()
    assert extract_article(html, url="https://example.com/x").published_at == datetime(2024, 3, 5, 9, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# The benchmark's scorer (bench/extraction.py): checked on toy texts and 3 real pages


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_extraction", ROOT / "bench" / "extraction.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_benchmark_metric_on_toy_texts() -> None:
    bench = load_bench()
    assert bench.page_counts("a b c d e", "a b c d e") == (1.0, 0.0, 0.0)
    assert bench.page_counts("", "") == (1.0, 0.0, 0.0)
    assert bench.page_precision_recall("a b c d e", "a, b; c d.") == (1.0, 0.5)
    assert bench.page_precision_recall("a b c d", "") == (None, 0.0)  # precision undefined: skipped
    scores = bench.evaluate({"x": "a b c d e", "y": "w x y z"}, {"x": "a b c d", "y": ""})
    assert (scores.precision, scores.recall, scores.accuracy) == (1.0, 0.25, 0.0)
    assert scores.f1 == pytest.approx(0.4)


def test_benchmark_scorer_on_three_pages() -> None:
    data = ROOT.parent / "shared" / "data" / "extraction-benchmark"
    if not (data / "ground-truth.json").exists():
        pytest.skip(f"extraction benchmark not found in {data}")
    bench = load_bench()
    keys = sorted(json.loads((data / "ground-truth.json").read_text(encoding="utf-8")))[:3]
    pages = bench.load_pages(data, keys)
    truth = {p.key: p.body for p in pages}
    assert bench.evaluate(truth, truth).f1 == 1.0
    ours = bench.evaluate(truth, {p.key: bench.newswatch_system(p) for p in pages})
    assert ours.f1 > 0.9


# --------------------------------------------------------------------------------------------------
# End to end: what is stored


def test_no_mojibake_and_nfc_text_are_stored_end_to_end(tmp_path, site, query, monkeypatch) -> None:
    """A windows-1252 page served without any charset and a UTF-8 page in decomposed form (NFD),
    fetched through `newswatch poll`: the database holds clean, NFC-normalised French."""
    import yaml

    from newswatch.cli import main
    from tests.scenario import rss
    from tests.servers import Route

    title = "Budget adopté – « enfin » l’été"
    site.routes["/fr/budget"] = Route(200, french_page().encode("cp1252"), {"Content-Type": "text/html"})
    decomposed = article_page([p.replace("é", "e\u0301") for p in FRENCH[::-1]], title="Budget adopte\u0301")
    site.routes["/fr/nfd"] = Route(200, decomposed.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})
    feed = rss("Le Quotidien", [
        {"title": title, "link": site.url("/fr/budget")},
        {"title": "", "link": site.url("/fr/nfd")},
    ])  # fmt: skip
    site.routes["/feed.xml"] = Route(200, feed, {"Content-Type": "application/rss+xml"})
    config = {"feeds": [{"name": "quotidien", "url": site.url("/feed.xml")}],
              "network": {"allow_networks": ["127.0.0.1/32"]}}  # fmt: skip
    path = tmp_path / "newswatch.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(path))

    assert main(["poll"]) == 0

    rows = query("SELECT url, title, body, language FROM articles ORDER BY url")
    assert len(rows) == 2
    for row in rows:
        assert_clean_french(row["body"])
        assert row["language"] == "fr"
        assert unicodedata.is_normalized("NFC", row["body"]) and unicodedata.is_normalized("NFC", row["title"])
    assert rows[0]["title"] == title
    assert rows[1]["title"] == "Budget adopté"


@pytest.mark.parametrize(
    "script",
    [
        "{not json",
        "[" * 100_000 + "]" * 100_000,  # deep enough to exhaust the parser's stack
        '{"@type": "NewsArticle", "datePublished": 12, "author": {"name": ["x"]}, "publisher": 3}',
        '{"@type": {"a": 1}, "@graph": "x"}',
        '[{"@type": "NewsArticle", "datePublished": "0000-00-00", "dateModified": "9999-99-99T99:99"}]',
    ],
)
def test_hostile_json_ld_is_ignored(script: str) -> None:
    head = f'<script type="application/ld+json">{script}</script>'
    article = extract_article(article_page(ENGLISH, head=head).encode(), url="https://example.com/a")
    assert paragraphs_of(article.body) == ENGLISH
    assert article.published_at is None and article.updated_at is None and article.authors == []


def test_backup_extractors_run_only_when_the_fast_pass_finds_little(monkeypatch, site_a) -> None:
    """trafilatura's backup extractors double its cost: a page whose main text the fast pass finds is read
    once; a page where it finds little gets the full sequence, and balanced mode as well when that finds
    under MIN_BODY_CHARS (the real ones, counted)."""
    import trafilatura


    calls: list[bool] = []
    real = trafilatura.bare_extraction

    def counted(*args, **kwargs):
        calls.append(kwargs["fast"])
        return real(*args, **kwargs)

    monkeypatch.setattr(trafilatura, "bare_extraction", counted)
    long_page = extract_article(seed_page("seed_site_a.html"), url=SITE_A_URL, content_type="text/html")
    assert calls == [True] and long_page.body == site_a.body
    calls.clear()
    extract_article(article_page(ENGLISH[:1]).encode(), url="https://example.com/a")
    assert calls == [True, False, False]


def test_an_article_that_precision_mode_prunes_whole_is_read_in_balanced_mode() -> None:
    """Paragraphs that are each one link read as a link list to trafilatura's precision mode, which then
    keeps nothing and has no rescue pass; balanced mode finds the text, so it is asked before giving up."""
    paragraphs = ["The council approved the new budget on Tuesday after a long debate about school funding.",
                  "Opposition members said the plan cut too deeply into library hours and rural bus services.",
                  "The mayor defended the plan, saying it kept property taxes flat for a third year in a row."]
    links = "".join(f"<div><a href='/budget/{i}'>{text}</a></div>" for i, text in enumerate(paragraphs))
    page = (f"<html><head><title>Budget vote</title></head><body><article><h1>Budget vote</h1>{links}</article>"
            "</body></html>").encode()
    article = extract_article(page, url="https://example.com/budget", content_type="text/html",
                              feed_summary="The council approved the budget.")
    assert not article.is_partial and article.method == "trafilatura"
    assert all(text in article.body for text in paragraphs)
