"""HTTP fetching of untrusted URLs (feeds and the article links they carry).

Feeds are written by strangers, so every request is bounded: connect and read timeouts plus a total
deadline, a size cap enforced on the decompressed stream (gzip bombs stop at the cap), a redirect
limit with each hop checked, and refusal of private, loopback, link-local, multicast and reserved
addresses unless ``network.allow_networks`` admits them. The address is checked after DNS resolution
and again on the socket actually connected, so DNS rebinding cannot slip through.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from newswatch.config import Network

_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
_REDIRECT_CODES = {301, 302, 303, 307, 308}
_PERMANENT_REDIRECTS = {301, 308}


class FetchError(Exception):
    """A fetch that produced no usable response; ``kind`` is a short stable label for reports."""

    def __init__(self, kind: str, message: str, status: int | None = None):
        self.kind = kind
        self.message = message
        self.status = status
        super().__init__(f"{kind}: {message}")


@dataclass
class FetchResult:
    url: str
    status: int
    content: bytes
    headers: dict[str, str]
    permanent_url: str | None = None
    bytes_received: int = 0
    elapsed: float = 0.0
    redirects: list[str] = field(default_factory=list)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def redact(url: str) -> str:
    """The URL without query string or credentials, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "…" if parts.query else "", ""))


class AddressPolicy:
    """Decides which IP addresses a fetch may connect to."""

    def __init__(self, allow_networks: Iterable[str] = ()):
        self.allowed = [ipaddress.ip_network(cidr, strict=False) for cidr in allow_networks]

    def permits(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed):
            return True
        public = ip.is_global and not ip.is_multicast and ip not in _SHARED_ADDRESS_SPACE
        return public and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved)

    def check_host(self, host: str, port: int) -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError("dns", f"cannot resolve {host}: {exc}") from None
        for info in infos:
            address = info[4][0]
            if not self.permits(address):
                raise FetchError(
                    "blocked_address",
                    f"{host} resolves to {address}, which is not a public address "
                    "(add its network to network.allow_networks to allow it)",
                )


class Fetcher:
    """A polite, bounded HTTP client; one per worker thread (requests sessions are not thread-safe)."""

    def __init__(self, network: Network):
        self.network = network
        self.policy = AddressPolicy(network.allow_networks)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or .netrc credentials for untrusted URLs
        self.session.max_redirects = network.max_redirects
        self.session.headers.update({
            "User-Agent": network.user_agent,
            "Accept-Encoding": "gzip, deflate",
        })

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self,
        url: str,
        *,
        accept: str = "*/*",
        etag: str | None = None,
        last_modified: str | None = None,
        max_bytes: int | None = None,
    ) -> FetchResult:
        """GET ``url`` following redirects hop by hop; raises FetchError for anything unusable."""
        deadline = time.monotonic() + self.network.total_timeout
        limit = max_bytes or self.network.max_page_bytes
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        started = time.monotonic()
        current = url
        redirects: list[str] = []
        permanent_url: str | None = None
        all_permanent = True
        while True:
            response = self._request(current, headers, deadline)
            if response.status_code in _REDIRECT_CODES and response.headers.get("location"):
                response.close()
                if len(redirects) >= self.network.max_redirects:
                    raise FetchError("too_many_redirects", f"more than {self.network.max_redirects} redirects")
                target = urljoin(current, response.headers["location"])
                if target in redirects or target == current:
                    raise FetchError("redirect_loop", f"redirect loop at {redact(target)}")
                all_permanent = all_permanent and response.status_code in _PERMANENT_REDIRECTS
                redirects.append(current)
                current = target
                continue
            if all_permanent and redirects:
                permanent_url = current
            break
        try:
            content, received = self._read_body(response, limit, deadline)
        finally:
            response.close()
        result = FetchResult(
            url=current,
            status=response.status_code,
            content=content,
            headers={key.lower(): value for key, value in response.headers.items()},
            permanent_url=permanent_url,
            bytes_received=received,
            elapsed=time.monotonic() - started,
            redirects=redirects,
        )
        if response.status_code >= 400:
            raise FetchError("http_error", f"HTTP {response.status_code}", status=response.status_code)
        return result

    def _request(self, url: str, headers: dict[str, str], deadline: float) -> requests.Response:
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise FetchError("invalid_url", str(exc)) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("invalid_url", f"not an http(s) URL: {redact(url)}")
        self.policy.check_host(parts.hostname, port)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout", "total deadline exceeded")
        timeout = (min(self.network.connect_timeout, remaining), min(self.network.read_timeout, remaining))
        try:
            response = self.session.get(
                url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
            )
        except requests.Timeout:
            raise FetchError("timeout", f"no answer from {redact(url)} in time") from None
        except requests.ConnectionError as exc:
            raise FetchError("connection", f"cannot connect to {redact(url)}: {_short(exc)}") from None
        except requests.RequestException as exc:
            raise FetchError("request", f"{redact(url)}: {_short(exc)}") from None
        peer = _peer_address(response)
        if peer is not None and not self.policy.permits(peer):
            response.close()
            raise FetchError("blocked_address", f"{parts.hostname} connected to refused address {peer}")
        return response

    def _read_body(self, response: requests.Response, limit: int, deadline: float) -> tuple[bytes, int]:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.raw.stream(64 * 1024, decode_content=True):
                size += len(chunk)
                if size > limit:
                    raise FetchError("too_large", f"body larger than {limit} bytes (after decompression)")
                if time.monotonic() > deadline:
                    raise FetchError("timeout", "body not received within the total deadline")
                chunks.append(chunk)
        except FetchError:
            raise
        except Exception as exc:  # urllib3 decode and protocol errors, socket timeouts
            kind = "timeout" if "timed out" in str(exc).lower() else "bad_response"
            raise FetchError(kind, _short(exc)) from None
        return b"".join(chunks), size


def _peer_address(response: requests.Response) -> str | None:
    """The IP of the socket the response came from (urllib3 keeps it on the underlying file object)."""
    raw = response.raw
    candidates = (
        getattr(getattr(raw, "_connection", None), "sock", None),
        getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None),
    )
    for sock in candidates:
        if sock is not None:
            try:
                return sock.getpeername()[0]
            except OSError:
                continue
    return None


def _short(exc: BaseException) -> str:
    text = str(exc)
    # requests puts the full URL (query string and all) in messages: keep only the reason.
    if "(Caused by " in text:
        text = text.split("(Caused by ", 1)[1].rstrip(")")
    return text[:300]
