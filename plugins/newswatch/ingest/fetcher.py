"""HTTP fetching of untrusted URLs (feeds and the article links they carry).

Feeds are written by strangers, so every request is bounded: connect and read timeouts plus a total
deadline, a size cap enforced on the decompressed stream (gzip bombs stop at the cap), a redirect
limit with each hop checked, and refusal of private, loopback, link-local, multicast and reserved
addresses unless ``network.allow_networks`` admits them. Each connection resolves the name once, checks
every address, and connects to a checked address before a byte is sent (TLS still checks the name), so
DNS rebinding cannot slip through.

The total deadline is enforced by a watchdog that shuts the socket down: requests' timeouts apply to
each read, so a server dripping one byte per second would otherwise hold a worker for ever. A
:class:`HostLimiter` caps concurrent requests per (host, port) (each redirect hop takes its own host's slot).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from newswatch.config import Network
from newswatch.text import without_controls
from newswatch.urls import redact

_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
_REDIRECT_CODES = {301, 302, 303, 307, 308}
_PERMANENT_REDIRECTS = {301, 308}


class FetchError(Exception):
    """A fetch that produced no usable response; ``kind`` is a short stable label for reports."""

    def __init__(self, kind: str, message: str, status: int | None = None, headers: dict[str, str] | None = None):
        self.kind = kind
        self.message = without_controls(message)  # it may quote the server: never an escape sequence
        self.status = status
        self.headers = headers or {}  # response headers (lower-case keys) of an HTTP error, e.g. Retry-After
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

    def resolve(self, host: str, port: int) -> list[tuple[str, int]]:
        """The (address, port) pairs ``host`` resolves to, once; FetchError if any of them is refused.

        The connection then goes to one of these very addresses: resolving again to connect would let a
        name that answers differently the second time (DNS rebinding) reach a refused address.
        """
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError("dns", f"cannot resolve {host}: {exc}") from None
        addresses: list[tuple[str, int]] = []
        for info in infos:
            address, address_port = info[4][0], info[4][1]
            if not self.permits(address):
                raise FetchError(
                    "blocked_address",
                    f"{host} resolves to {address}, which is not a public address "
                    "(add its network to network.allow_networks to allow it)",
                )
            if (address, address_port) not in addresses:
                addresses.append((address, address_port))
        return addresses


class HostLimiter(Protocol):
    """Caps concurrent requests per host: ``slot(url)`` holds one of the URL's host slots for a block
    (``newswatch.ingest.hostslots``: shared by every process through PostgreSQL)."""

    def slot(self, url: str) -> AbstractContextManager[None]: ...


class _Watchdog:
    """Shuts down the socket of the request in flight when the total deadline passes.

    Connections register their socket here (through a thread-local) just before waiting for the
    response headers, so a slow drip of headers or body is cut, not only a silent server.
    """

    _current = threading.local()

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._done = False
        self._socket: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self._paused_at: float | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def __enter__(self) -> _Watchdog:
        _Watchdog._current.watchdog = self
        self._schedule()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()
        _Watchdog._current.watchdog = None

    def _schedule(self) -> None:
        self._timer = threading.Timer(max(self.remaining(), 0.5 if self._paused_at else 0.0) + 0.01, self._fire)
        self._timer.daemon = True
        self._timer.start()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the clock: time spent waiting for a host slot is not the server's fault."""
        with self._lock:
            self._paused_at = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self.deadline += time.monotonic() - self._paused_at
                self._paused_at = None

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socket = sock
            if self.expired and sock is not None:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            if self._paused_at is not None or self.remaining() > 0:  # waiting for a slot, or extended
                self._schedule()
                return
            self.expired = True
            if self._socket is not None:
                _shutdown(self._socket)

    @classmethod
    def register(cls, sock: socket.socket | None) -> None:
        watchdog = getattr(cls._current, "watchdog", None)
        if watchdog is not None:
            watchdog.watch(sock)


def _shutdown(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _GuardedConnection(HTTPConnection):
    """Connects only to an address its policy permits, resolved once, and is watched by the deadline.

    The name is resolved and every address checked here, and the socket connected to a checked address,
    before a byte is sent; the host name stays the connection's ``host``, so it still gives the Host
    header, the TLS server name (SNI) and the name the certificate is checked against.
    """

    def __init__(self, *args: Any, address_policy: AddressPolicy | None = None, **kwargs: Any):
        self.address_policy = address_policy
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        if self.address_policy is None:  # a trusted URL (a configured webhook)
            return super()._new_conn()
        error: Exception = NewConnectionError(self, f"no address for {self.host}")
        for address, port in self.address_policy.resolve(self._dns_host, self.port):
            try:
                return create_connection((address, port), self.timeout, source_address=self.source_address,
                                         socket_options=self.socket_options)
            except TimeoutError:
                error = ConnectTimeoutError(self, f"connection to {self.host} timed out")
            except OSError as exc:
                error = NewConnectionError(self, f"failed to establish a new connection: {exc}")
        raise error

    def getresponse(self):  # type: ignore[override]
        _Watchdog.register(self.sock)
        return super().getresponse()


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """Connections watched by the deadline and, given a policy, connected only to addresses it permits."""

    def __init__(self, address_policy: AddressPolicy | None = None):
        self.address_policy = address_policy
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        policy = {"address_policy": self.address_policy}  # handed by each pool to the connections it opens
        self.poolmanager.pool_classes_by_scheme = {"http": partial(_WatchedHTTPPool, **policy),
                                                   "https": partial(_WatchedHTTPSPool, **policy)}


def watched_session() -> requests.Session:
    """A session for trusted URLs (configured webhooks) whose requests a :func:`deadline` can cut."""
    session = requests.Session()
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def deadline(seconds: float) -> _Watchdog:
    """A total deadline for the requests this thread makes through a watched session (a context manager)."""
    return _Watchdog(seconds)


class Fetcher:
    """A polite, bounded HTTP client; one per worker thread (requests sessions are not thread-safe)."""

    def __init__(self, network: Network, limiter: HostLimiter | None = None):
        self.network = network
        self.limiter = limiter
        self.policy = AddressPolicy(network.allow_networks)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or .netrc credentials for untrusted URLs
        self.session.max_redirects = network.max_redirects
        adapter = _WatchedAdapter(self.policy)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
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
        limit = max_bytes or self.network.max_page_bytes
        # Cookies last for one request and its redirects (a consent page that sets one and redirects), never
        # from one page or site to the next: a metered paywall would count them, and a shared parent domain
        # (*.blogspot.com) would carry one site's cookies to another.
        self.session.cookies.clear()
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        with _Watchdog(self.network.total_timeout) as watchdog:
            try:
                return self._get(url, headers, limit, watchdog)
            except FetchError as exc:
                if watchdog.expired and exc.kind in ("connection", "request", "bad_response", "timeout"):
                    raise FetchError(
                        "timeout", f"not received within the total deadline of {self.network.total_timeout:g} s"
                    ) from None
                raise
            finally:
                # No idle connection outlives the request (its redirects may reuse one): a thread's next request
                # usually goes to another host (hosts are taken in turn), a kept socket the server dropped
                # meanwhile would fail it with nothing to retry, and a host sees no more open connections than
                # its request slots.
                for adapter in self.session.adapters.values():
                    adapter.close()

    @contextmanager
    def _host_slot(self, url: str, watchdog: _Watchdog) -> Iterator[None]:
        """One of the host's slots (when a limiter is set); the wait does not count against the deadline."""
        if self.limiter is None:
            yield
            return
        held = ExitStack()
        with watchdog.paused():
            held.enter_context(self.limiter.slot(url))  # may raise HostBusy (a FetchError): nothing held then
        with held:
            yield

    def _get(self, url: str, headers: dict[str, str], limit: int, watchdog: _Watchdog) -> FetchResult:
        started = time.monotonic()
        current = url
        redirects: list[str] = []
        permanent_url: str | None = None
        all_permanent = True
        while True:
            with self._host_slot(current, watchdog):
                response = self._request(current, headers, watchdog)
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
                try:
                    content, received = self._read_body(response, limit, watchdog)
                finally:
                    response.close()
                break
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
            raise FetchError("http_error", f"HTTP {response.status_code}", status=response.status_code,
                             headers=result.headers)
        return result

    def _request(self, url: str, headers: dict[str, str], watchdog: _Watchdog) -> requests.Response:
        try:
            parts = urlsplit(url)
            if parts.port == 0:  # reading it also rejects a port out of range (ValueError)
                raise ValueError("port 0")
        except ValueError as exc:
            raise FetchError("invalid_url", str(exc)) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError("invalid_url", f"not an http(s) URL: {redact(url)}")
        remaining = watchdog.remaining()
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
        return response

    def _read_body(self, response: requests.Response, limit: int, watchdog: _Watchdog) -> tuple[bytes, int]:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.raw.stream(64 * 1024, decode_content=True):
                size += len(chunk)
                if size > limit:
                    raise FetchError("too_large", f"body larger than {limit} bytes (after decompression)")
                if watchdog.remaining() < 0:
                    raise FetchError("timeout", "body not received within the total deadline")
                chunks.append(chunk)
        except FetchError:
            raise
        except Exception as exc:  # urllib3 decode and protocol errors, socket timeouts, watchdog shutdowns
            kind = "timeout" if "timed out" in str(exc).lower() else "bad_response"
            raise FetchError(kind, _short(exc)) from None
        if watchdog.expired:
            # The watchdog shut the socket down mid-body: what arrived is truncated, not the document.
            raise FetchError("timeout", "body not received within the total deadline")
        return b"".join(chunks), size


class ThreadFetchers:
    """One :class:`Fetcher` per thread of a run, kept from request to request and closed with the run.

    Sessions are not thread-safe, so threads do not share one; a thread that keeps its own does not build a
    session, its adapter and its connection pools for every request. Nothing else carries over from one request
    to the next: no cookie, no idle connection (see :class:`Fetcher`).
    """

    def __init__(self, network: Network, limiter: HostLimiter | None = None):
        self.network, self.limiter = network, limiter
        self._local = threading.local()
        self._all: list[Fetcher] = []
        self._lock = threading.Lock()

    def get(self) -> Fetcher:
        """This thread's client."""
        fetcher = getattr(self._local, "fetcher", None)
        if fetcher is None:
            fetcher = self._local.fetcher = Fetcher(self.network, self.limiter)
            with self._lock:
                self._all.append(fetcher)
        return fetcher

    def close(self) -> None:
        with self._lock:
            fetchers, self._all = self._all, []
        for fetcher in fetchers:
            fetcher.close()

    def __enter__(self) -> ThreadFetchers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(exc: BaseException) -> str:
    text = str(exc)
    # requests puts the full URL (query string and all) in messages: keep only the reason.
    if "(Caused by " in text:
        text = text.split("(Caused by ", 1)[1].rstrip(")")
    return text[:300]
