"""The guarded HTTP client against real loopback servers."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest

from newswatch.config import Network
from newswatch.ingest.fetcher import AddressPolicy, Fetcher, FetchError, ThreadFetchers
from newswatch.urls import redact
from tests.servers import LoopbackServer, Route

LOOPBACK_ONLY = Network(allow_networks=["127.0.0.1/32"], connect_timeout=2, read_timeout=1, total_timeout=3)


def fetch(url: str, network: Network = LOOPBACK_ONLY, **kwargs):
    with Fetcher(network) as fetcher:
        return fetcher.get(url, **kwargs)


def test_a_thread_keeps_its_client_and_nothing_else_from_one_request_to_the_next(site):
    """A run's thread reuses its client (no session built per request), another thread has its own (sessions are
    not thread-safe). No cookie carries over from one request to the next (a metered paywall would count it; a
    shared parent domain would pass it to another site), though it does along one request's redirects; nor does
    an idle connection (a socket the server dropped meanwhile would fail the next request)."""
    site.routes["/consent"] = Route(302, b"", {"Location": "/page", "Set-Cookie": "consent=yes; Path=/"})
    site.routes["/page"] = Route(200, b"<p>page</p>" * 500, {"Content-Type": "text/html",
                                                           "Set-Cookie": "metered=1; Path=/"})
    with ThreadFetchers(LOOPBACK_ONLY) as fetchers:
        mine = fetchers.get()
        assert mine.get(site.url("/consent")).url == site.url("/page")
        for _ in range(2):
            assert fetchers.get().get(site.url("/page")).status == 200
        assert fetchers.get() is mine
        theirs: list[Fetcher] = []
        helper = threading.Thread(target=lambda: theirs.append(fetchers.get()))
        helper.start()
        helper.join(10)
    assert theirs and theirs[0] is not mine
    pages = site.hits("/page")
    assert [request.headers.get("cookie") for request in pages] == ["consent=yes", None, None]
    clients = [request.client for request in site.requests]  # the redirect's hops share one connection
    assert len(clients) == 4 and clients[0] == clients[1] and len(set(clients)) == 3, clients


def test_plain_get_and_conditional_get(site):
    site.routes["/feed"] = Route(200, b"<rss/>", {"Content-Type": "application/rss+xml",
                                                  "Last-Modified": "Wed, 24 Aug 2022 19:05:00 GMT"}, etag='"v1"')
    first = fetch(site.url("/feed"))
    assert first.status == 200 and first.content == b"<rss/>"
    assert first.headers["etag"] == '"v1"'
    assert "newswatch" in site.requests[-1].headers["user-agent"]
    second = fetch(site.url("/feed"), etag='"v1"', last_modified=first.headers["last-modified"])
    assert second.not_modified and second.content == b""
    assert site.requests[-1].headers["if-none-match"] == '"v1"'
    assert site.requests[-1].headers["if-modified-since"] == "Wed, 24 Aug 2022 19:05:00 GMT"


def test_loopback_refused_without_allowlist(site):
    site.routes["/feed"] = Route(200, b"secret")
    with pytest.raises(FetchError) as error:
        fetch(site.url("/feed"), Network())
    assert error.value.kind == "blocked_address"
    assert site.requests == []  # refused before any byte was sent


def test_redirect_to_refused_address_is_not_followed(site):
    other = LoopbackServer(host="127.0.0.2").start()
    try:
        other.routes["/internal"] = Route(200, b"internal")
        site.routes["/feed"] = Route(302, b"", {"Location": other.url("/internal")})
        with pytest.raises(FetchError) as error:
            fetch(site.url("/feed"))
        assert error.value.kind == "blocked_address"
        assert other.requests == []
    finally:
        other.stop()


def test_permanent_redirect_reports_new_url(site):
    site.routes["/old"] = Route(301, b"", {"Location": "/new"})
    site.routes["/new"] = Route(200, b"<rss/>")
    result = fetch(site.url("/old"))
    assert result.url == site.url("/new") and result.permanent_url == site.url("/new")
    site.routes["/temp"] = Route(302, b"", {"Location": "/new"})
    assert fetch(site.url("/temp")).permanent_url is None


def test_redirect_loop_and_limit(site):
    site.routes["/a"] = Route(302, b"", {"Location": "/b"})
    site.routes["/b"] = Route(302, b"", {"Location": "/a"})
    with pytest.raises(FetchError) as error:
        fetch(site.url("/a"))
    assert error.value.kind == "redirect_loop"
    for index in range(10):
        site.routes[f"/hop{index}"] = Route(302, b"", {"Location": f"/hop{index + 1}"})
    with pytest.raises(FetchError) as error:
        fetch(site.url("/hop0"), Network(allow_networks=["127.0.0.1/32"], max_redirects=3))
    assert error.value.kind == "too_many_redirects"


def test_size_cap_and_gzip_bomb(site):
    site.routes["/big"] = Route(200, b"x" * 300_000)
    with pytest.raises(FetchError) as error:
        fetch(site.url("/big"), max_bytes=100_000)
    assert error.value.kind == "too_large"
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    site.routes["/bomb"] = Route(200, bomb, {"Content-Encoding": "gzip"})
    with pytest.raises(FetchError) as error:
        fetch(site.url("/bomb"), max_bytes=1_000_000)
    assert error.value.kind == "too_large"


def test_silent_server_times_out(site):
    def slow(request):
        time.sleep(3)
        return Route(200, b"late")

    site.routes["/slow"] = slow
    started = time.monotonic()
    with pytest.raises(FetchError) as error:
        fetch(site.url("/slow"))
    assert error.value.kind == "timeout"
    assert time.monotonic() - started < 2.5


@pytest.mark.slow  # a fault drill that waits out real deadlines or time limits
def test_headers_dripped_byte_by_byte_are_cut_by_the_total_deadline():
    """Each byte arrives well within read_timeout, so only the total deadline (3 s) can stop it."""
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\n"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            for byte in response:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.25)  # the whole header would take about 20 s

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as error:
            fetch(f"http://127.0.0.1:{server.getsockname()[1]}/")
        assert error.value.kind == "timeout"
        assert time.monotonic() - started < 4.5
    finally:
        stop.set()
        server.close()


def test_endless_body_is_cut_at_the_size_cap():
    """A server that never ends its (unsized) body: the cap stops the read after max_bytes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    sent = []

    def endless() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n\r\n")
            chunk = b"<item>" + b"x" * 8186 + b"</item>"
            for _ in range(20_000):  # bounded: 160 MB at most, far past the cap
                try:
                    conn.sendall(chunk)
                except OSError:
                    return
                sent.append(len(chunk))

    threading.Thread(target=endless, daemon=True).start()
    try:
        with pytest.raises(FetchError) as error:
            fetch(f"http://127.0.0.1:{server.getsockname()[1]}/", max_bytes=1_000_000)
        assert error.value.kind == "too_large"
        assert sum(sent) < 20_000 * 8198  # the client hung up long before the server ran out
    finally:
        server.close()


def test_http_errors_carry_status_and_headers(site):
    site.routes["/busy"] = Route(429, b"slow down", {"Retry-After": "120"})
    with pytest.raises(FetchError) as error:
        fetch(site.url("/busy"))
    assert (error.value.status, error.value.headers["retry-after"]) == (429, "120")


def test_http_errors_carry_status(site):
    site.routes["/gone"] = Route(410, b"gone")
    with pytest.raises(FetchError) as error:
        fetch(site.url("/gone"))
    assert (error.value.kind, error.value.status) == ("http_error", 410)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "100.64.0.1",
                                     "224.0.0.1", "0.0.0.0", "::1", "::ffff:127.0.0.1", "fe80::1", "fc00::1"])
def test_policy_refuses_non_public_addresses(address):
    assert not AddressPolicy().permits(address)


def test_policy_allows_public_and_allowlisted():
    assert AddressPolicy().permits("93.184.216.34")
    assert AddressPolicy(["127.0.0.1/32"]).permits("127.0.0.1")
    assert not AddressPolicy(["127.0.0.1/32"]).permits("127.0.0.2")


def test_redact_hides_query_and_credentials():
    assert redact("https://user:pw@example.org/feed?token=SECRET#x") == "https://example.org/feed?…"


def _resolver(monkeypatch, host: str, answers: list[tuple[str, int]]) -> list[str]:
    """Make ``host`` (a made-up name) resolve to each of ``answers`` in turn, the last one from then on;
    every other name resolves as usual. Returns the log of answers given."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(name, port, *args, **kwargs):
        if name != host:
            return real(name, port, *args, **kwargs)
        address, answer_port = answers[min(len(given), len(answers) - 1)]
        given.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, answer_port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def test_dns_rebinding_cannot_reach_a_refused_address(site, monkeypatch):
    """The name answers a permitted address first and 127.0.0.1 (refused) the second time: the fetch must
    connect to the address it checked, so no request reaches the loopback server. 127.0.0.2, admitted by
    allow_networks, stands in for a public address (no traffic may leave the machine)."""
    public = LoopbackServer(host="127.0.0.2").start()
    try:
        public.routes["/feed"] = Route(200, b"<rss>public</rss>")
        site.routes["/feed"] = Route(200, b"<rss>internal</rss>")
        given = _resolver(monkeypatch, "feeds.rebind.test",
                          [("127.0.0.2", public.server_address[1]), ("127.0.0.1", site.server_address[1])])
        network = Network(allow_networks=["127.0.0.2/32"], connect_timeout=2, read_timeout=2, total_timeout=5)
        result = fetch(f"http://feeds.rebind.test:{public.server_address[1]}/feed", network)
        assert site.requests == []  # not one byte reached the refused address
        assert result.content == b"<rss>public</rss>" and given == ["127.0.0.2"]  # resolved once, used as checked
        assert public.requests[0].headers["host"] == f"feeds.rebind.test:{public.server_address[1]}"
    finally:
        public.stop()


def test_a_name_resolving_to_a_refused_address_sends_nothing(site, monkeypatch):
    site.routes["/feed"] = Route(200, b"internal")
    _resolver(monkeypatch, "internal.rebind.test", [("127.0.0.1", site.server_address[1])])
    with pytest.raises(FetchError) as error:
        fetch(f"http://internal.rebind.test:{site.server_address[1]}/feed", Network())
    assert error.value.kind == "blocked_address"
    assert site.requests == []


def _tls_files(tmp_path, name: str) -> tuple[str, str, str]:
    """A throwaway CA and a certificate it signed for ``name``: (ca.pem, cert.pem, key.pem)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
        now = datetime.now(UTC)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
                critical=True).add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("newswatch test CA", ca_key, "newswatch test CA", ca_key, ca=True)
    server_cert = certificate(name, server_key, "newswatch test CA", ca_key, ca=False)
    paths = [tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"]
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return tuple(str(path) for path in paths)  # type: ignore[return-value]


def test_tls_still_checks_the_host_name_on_the_checked_address(tmp_path, monkeypatch):
    """Connecting to the checked address keeps TLS whole: the name is sent as SNI and in the Host header,
    and the certificate is checked against it (a certificate for another name is refused)."""
    import ssl

    ca, cert, key = _tls_files(tmp_path, "feeds.tls.test")
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda connection, name, _: server_names.append(name)
    server = LoopbackServer()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.routes["/feed"] = Route(200, b"<rss>tls</rss>")
    server.start()
    try:
        port = server.server_address[1]
        _resolver(monkeypatch, "feeds.tls.test", [("127.0.0.1", port)])
        with Fetcher(LOOPBACK_ONLY) as fetcher:
            fetcher.session.verify = ca
            result = fetcher.get(f"https://feeds.tls.test:{port}/feed")
        assert result.content == b"<rss>tls</rss>"
        assert server_names == ["feeds.tls.test"]
        assert server.requests[0].headers["host"] == f"feeds.tls.test:{port}"

        _resolver(monkeypatch, "other.tls.test", [("127.0.0.1", port)])
        with Fetcher(LOOPBACK_ONLY) as fetcher, pytest.raises(FetchError) as error:
            fetcher.session.verify = ca
            fetcher.get(f"https://other.tls.test:{port}/feed")
        assert error.value.kind == "connection" and "certificate" in error.value.message.lower()
        assert len(server.requests) == 1
    finally:
        server.stop()


def test_dns_rebinding_after_a_redirect_cannot_reach_a_refused_address_through_poll(site, query, monkeypatch):
    """The same attack on the full path: ``poll`` follows a redirect to a second name that answers a permitted
    address when checked and 127.0.0.1 (refused) afterwards. Not one request reaches the refused server and
    the feed is read from the address that was checked."""
    from newswatch.config import Settings
    from newswatch.ingest.poller import poll_feeds, sync_feeds

    public = LoopbackServer(host="127.0.0.2").start()
    try:
        port = public.server_address[1]
        public.routes["/feed"] = Route(302, b"", {"Location": f"http://hop.rebind.test:{port}/moved"})
        feed = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>p</title><item><title>public story</title>'
                b"<link>http://127.0.0.2/story</link></item></channel></rss>")
        public.routes["/moved"] = Route(200, feed, {"Content-Type": "application/rss+xml"})
        site.routes["/moved"] = Route(200, feed.replace(b"public", b"internal"),
                                      {"Content-Type": "application/rss+xml"})
        _resolver(monkeypatch, "feeds.rebind.test", [("127.0.0.2", port)])
        given = _resolver(monkeypatch, "hop.rebind.test",  # resolvers chain: each patches the one before
                          [("127.0.0.2", port), ("127.0.0.1", site.server_address[1])])
        settings = Settings.model_validate({
            "feeds": [{"name": "rebind", "url": f"http://feeds.rebind.test:{port}/feed"}],
            "network": {"allow_networks": ["127.0.0.2/32"], "connect_timeout": 2, "read_timeout": 2,
                        "total_timeout": 5}})
        counts = poll_feeds(sync_feeds(settings), settings)
    finally:
        public.stop()
    assert site.requests == [] and given[:1] == ["127.0.0.2"]
    assert counts["failed"] == 0
    assert [row["title"] for row in query("SELECT title FROM feed_entries")] == ["public story"]
