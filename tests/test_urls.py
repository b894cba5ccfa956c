"""Tests for newswatch.urls: one spelling per article URL, and who may claim which URL."""

from __future__ import annotations

import pytest

from newswatch.urls import TRACKING_PARAMS, canonicalize_url, is_same_site, redact, redact_channel


def test_utm_parameters_are_stripped_in_any_case() -> None:
    url = "https://example.com/a?utm_source=rss&UTM_Medium=feed&Utm_Campaign=x&utm_content="
    assert canonicalize_url(url) == "https://example.com/a"


def test_other_parameters_are_kept_in_their_original_order() -> None:
    url = "https://example.com/story?z=3&utm_source=rss&id=42&a=1&fbclid=abc&page=2"
    assert canonicalize_url(url) == "https://example.com/story?z=3&id=42&a=1&page=2"


@pytest.mark.parametrize(
    "param",
    [
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "igshid",
        "yclid", "_ga", "ref_src", "cmpid", "ocid", "at_medium", "at_campaign", "xtor",
        "__twitter_impression", "FBCLID",
    ],
)  # fmt: skip
def test_known_tracking_parameters_are_dropped(param: str) -> None:
    assert canonicalize_url(f"https://example.com/a?id=7&{param}=xyz") == "https://example.com/a?id=7"


def test_tracking_set_is_lowercase_so_case_insensitive_matching_works() -> None:
    assert all(name == name.lower() for name in TRACKING_PARAMS)


@pytest.mark.parametrize("param", ["id", "page", "ref", "q", "p", "article", "utm"])
def test_ordinary_parameters_are_not_mistaken_for_trackers(param: str) -> None:
    assert canonicalize_url(f"https://example.com/a?{param}=1") == f"https://example.com/a?{param}=1"


def test_parameter_values_are_not_reencoded() -> None:
    url = "https://example.com/search?q=caf%C3%A9+cr%c3%a8me&tag=a%2Fb"
    assert canonicalize_url(url) == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("http://[2001:db8::1]:80/a", "http://[2001:db8::1]/a"),
    ],
)
def test_only_the_default_port_is_dropped(url: str, expected: str) -> None:
    assert canonicalize_url(url) == expected


def test_fragment_is_dropped() -> None:
    assert canonicalize_url("https://example.com/a?id=1#comments") == "https://example.com/a?id=1"
    assert canonicalize_url("https://example.com/a#top") == "https://example.com/a"


def test_scheme_and_host_are_lowercased_but_not_the_path() -> None:
    assert (
        canonicalize_url("HTTPS://News.Example.COM/World/Story-1") == "https://news.example.com/World/Story-1"
    )


def test_empty_query_marker_is_removed() -> None:
    assert canonicalize_url("https://example.com/a?") == "https://example.com/a"
    assert canonicalize_url("https://example.com/a?utm_source=x") == "https://example.com/a"
    assert canonicalize_url("https://example.com/a?&&id=1&") == "https://example.com/a?id=1"


def test_percent_escapes_in_the_path_are_uppercased() -> None:
    assert canonicalize_url("https://example.com/caf%c3%a9/a%2fb") == "https://example.com/caf%C3%A9/a%2Fb"


def test_trailing_slash_is_kept_as_is() -> None:
    assert canonicalize_url("https://example.com/section/") == "https://example.com/section/"
    assert canonicalize_url("https://example.com/section") == "https://example.com/section"


def test_bare_host_gets_root_path() -> None:
    assert canonicalize_url("https://Example.com") == "https://example.com/"


URLS = [
    "HTTPS://WWW.Example.com:443/caf%c3%a9/?b=2&utm_source=x&a=1#frag",
    "http://example.com:80?",
    "https://example.com/a?&&x=%2f&UTM_medium=y&",
    "http://user:Pass@Example.com:8080/p?q#f",
    "http://[2001:DB8::1]:80/a?fbclid=1",
    "https://example.com/a%2fb/",
]


@pytest.mark.parametrize("url", URLS)
def test_canonicalize_is_idempotent(url: str) -> None:
    once = canonicalize_url(url)
    assert canonicalize_url(once) == once
    assert once != url  # each example needs some normalising, so the check above is meaningful


def test_user_info_is_preserved() -> None:
    assert canonicalize_url("http://user:Pass@Example.com:8080/p") == "http://user:Pass@example.com:8080/p"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://www.example.com/a", "https://example.com/b"),
        ("http://example.com/a", "https://example.com:8443/b"),
        ("https://EXAMPLE.com/a", "https://example.COM./b"),
        ("http://127.0.0.1/monde/x", "http://127.0.0.1/y"),
    ],
)
def test_same_site(a: str, b: str) -> None:
    assert is_same_site(a, b)
    assert is_same_site(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://example.com/a", "https://example.org/a"),
        ("https://news.example.com/a", "https://example.com/a"),
        ("https://example.com.evil.net/a", "https://example.com/a"),
        ("https://example.com@evil.net/a", "https://example.com/a"),
        ("https://wwwexample.com/a", "https://example.com/a"),
        ("/relative/path", "/relative/path"),
        ("", ""),
    ],
)
def test_not_same_site(a: str, b: str) -> None:
    assert not is_same_site(a, b)
    assert not is_same_site(b, a)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # Apprise keeps tokens in the host and path, and request headers in the query.
        ("tgram://123456789:AAbbCCddEEff/987654", "tgram://1...f/987654/"),
        ("discord://1234/abcdefsecret", "discord://1...4/a...t/"),
        ("https://hooks.slack.com/services/T00/B00/XXXXSECRET", "slack://T...0/B...0/X...T//"),
        ("json://user:pass@host:8080/path?+Authorization=Bearer%20xyz", "json://user:****@host:8080/path?…"),
        ("mailto://user:pass@gmail.com", "mailtos://user:****@gmail.com/"),
        # newswatch's own senders: a signed webhook as a feed URL is redacted, a local file as it is.
        ("webhook+https://u:p@hooks.example.org/in?token=abc", "webhook+https://hooks.example.org/in?…"),
        ("jsonl:///var/lib/newswatch/alerts.jsonl", "jsonl:///var/lib/newswatch/alerts.jsonl"),
        # What Apprise cannot read shows its scheme only.
        ("foo://secret-token@bar/baz", "foo://…"),
        ("no scheme at all", "…"),
    ],
)
def test_channel_urls_are_shown_without_their_secrets(url: str, shown: str) -> None:
    assert redact_channel(url) == shown


def test_redact_survives_a_port_that_is_not_a_number() -> None:
    assert redact("http://host:abc/feed") == "<invalid url>"
