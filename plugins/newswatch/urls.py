"""URL canonicalisation, so that one article reached through different links is stored once."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["TRACKING_PARAMS", "TRACKING_PREFIXES", "canonicalize_url", "is_same_site", "redact", "redact_channel",
           "site_of"]

# Query parameters that only identify the campaign or click that led to a page, never the page
# itself. Matched case-insensitively on the decoded parameter name. Anything not listed is kept:
# dropping a parameter the site needs (an article id, a page number) would merge distinct pages.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        # Ad-click identifiers: Meta, Google, DoubleClick, Microsoft, Yandex, TikTok, X, LinkedIn
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid",
        "ttclid", "twclid", "li_fat_id", "epik", "rb_clickid", "srsltid",
        # Google Analytics cross-domain linker
        "_ga", "_gl",
        # Mailchimp, HubSpot, Marketo, Omeda, Vero
        "mc_cid", "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id",
        "vero_id", "vero_conv",
        # Instagram / Facebook share and action markers
        "igshid", "igsh", "fb_action_ids", "fb_action_types", "fb_source", "fb_ref",
        "__twitter_impression",
        # Twitter/X embeds ("ref_src=twsrc^tfw")
        "ref_src", "ref_url",
        # Publisher campaign codes: Guardian/Adobe (cmpid, cmp), Microsoft Start (ocid),
        # AT Internet (at_*), Xiti (xtor), NYT (smid, smtyp), Yahoo/HuffPost (ncid), Adobe (s_cid),
        # Webtrends (wt.mc_id), BBC comScore (ns_*), Matomo/Piwik campaigns (pk_*, mtm_*)
        "cmpid", "cmp", "ocid", "xtor", "smid", "smtyp", "ncid", "s_cid", "wt.mc_id", "wt_mc_id",
        "at_medium", "at_campaign", "at_platform", "at_creation", "at_variant", "at_send_date",
        "at_recipient_id", "at_recipient_list", "at_link", "at_type", "at_format", "at_general_placement",
        "at_detail_placement", "at_emailtype", "at_ptr_name", "at_xtor",
        "ns_source", "ns_mchannel", "ns_campaign", "ns_linkname", "ns_fee",
        "pk_campaign", "pk_kwd", "pk_keyword", "pk_source", "pk_medium", "pk_content",
        "mtm_campaign", "mtm_kwd", "mtm_source", "mtm_medium", "mtm_content", "mtm_cid",
        "mtm_group", "mtm_placement",
    }
)  # fmt: skip

# Whole families of campaign parameters (Google's utm_source, utm_medium, utm_campaign, ...).
TRACKING_PREFIXES: tuple[str, ...] = ("utm_",)

_DEFAULT_PORTS = {"http": "80", "https": "443"}
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")


def _is_tracking(param: str) -> bool:
    name = unquote_plus(param.partition("=")[0]).strip().lower()
    return name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES)


def _normalise_netloc(scheme: str, netloc: str) -> str:
    """Lowercase the host and drop the scheme's default port; user info is left untouched."""
    userinfo, at, hostport = netloc.rpartition("@")
    if hostport.startswith("["):  # IPv6 literal: "[::1]:8080"
        end = hostport.find("]")
        host, port = (hostport[: end + 1], hostport[end + 2 :]) if end != -1 else (hostport, "")
    else:
        host, _, port = hostport.partition(":")
    host = host.lower()
    if port and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{userinfo}{at}{host}"


def canonicalize_url(url: str) -> str:
    """Return one spelling per page: lowercase scheme/host, no default port, fragment or trackers.

    Kept parameters stay in their original order and spelling (some CMSes depend on order).
    The path keeps its trailing slash or lack of one; only the case of percent-escapes changes.
    Applying it twice gives the same result.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    netloc = _normalise_netloc(scheme, parts.netloc)
    path = _PERCENT_ESCAPE.sub(lambda m: m.group(0).upper(), parts.path)
    if not path and netloc and scheme in _DEFAULT_PORTS:
        path = "/"  # "http://host" and "http://host/" are the same resource
    query = "&".join(p for p in parts.query.split("&") if p and not _is_tracking(p))
    return urlunsplit((scheme, netloc, path, query, ""))


def _site_host(url: str) -> str:
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    host = host.rstrip(".")
    return host.removeprefix("www.")


def site_of(url: str) -> str:
    """The site a URL belongs to: its lowercased host without a leading "www." ("" when hostless).

    The key of per-site state (boilerplate learning); the same notion of site as is_same_site.
    """
    return _site_host(url)


def is_same_site(a: str, b: str) -> bool:
    """True when both URLs have the same host, ignoring a leading "www.".

    Used before trusting a page's rel=canonical: a page must not be able to claim another
    site's URL. Subdomains other than www count as different sites; so do hostless URLs.
    """
    host_a, host_b = _site_host(a), _site_host(b)
    return bool(host_a) and host_a == host_b


def redact(url: str) -> str:
    """The URL without query string or credentials, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))


# The prefixes of newswatch.config.JSONL_SCHEME and WEBHOOK_SCHEMES, repeated: this module imports no other.
_JSONL_SCHEME = "jsonl://"
_WEBHOOK_PREFIX = "webhook+"


def redact_channel(url: str) -> str:
    """A channel URL safe to show: in pages, commands, the audit and delivery errors.

    A channel URL is not a feed URL: Apprise keeps its tokens in the host and path (``tgram://TOKEN/chat``,
    ``discord://id/TOKEN``, a Slack ``https://hooks.slack.com/services/…/TOKEN`` URL) and request headers in
    the query (``json://host/?+Authorization=…``). So: ``jsonl://PATH`` is shown as it is (a local file);
    ``webhook+http(s)://`` as :func:`redact` shows it (no credentials, no query); any other URL as Apprise's
    privacy rendering (``tgram://1...Z/chat``, passwords as ``****``) without its query string; and when
    Apprise cannot read it, the scheme alone.
    """
    if url.startswith(_JSONL_SCHEME):
        return url
    if url.startswith(_WEBHOOK_PREFIX):
        return _WEBHOOK_PREFIX + redact(url.removeprefix(_WEBHOOK_PREFIX))
    scheme = url.split("://", 1)[0] if "://" in url else ""
    try:
        import apprise

        instance = apprise.Apprise.instantiate(url)  # its log lines about a URL it cannot read show the scheme only
        if instance:
            private = instance.url(privacy=True)
            return private.split("?", 1)[0] + ("?…" if "?" in url else "")
    except Exception:  # noqa: BLE001 - redacting must never fail the report it is part of
        pass
    return f"{scheme}://…" if scheme else "…"
