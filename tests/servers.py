"""Real loopback servers for tests: a scriptable HTTP site, a webhook receiver and an SMTP sink."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # when set, a matching If-None-Match gets 304


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int] | None = None  # the sender's address and port


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _handle(self) -> None:
        # Counted in flight from the request's arrival until just before the answer goes out: a client sees its
        # answer (and may send its next request) only after that, so the count never overlaps two requests that
        # the client side kept apart.
        with self.server.counting():
            route, request = self._route()
        self._answer(route, request)

    def _route(self) -> tuple[Route, Request]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                          self.client_address[:2])
        self.server.requests.append(request)
        route = self.server.resolve(request)
        if route is None:
            route = Route(404, b"not found", {"Content-Type": "text/plain"})
        return route, request

    def _answer(self, route: Route, request: Request) -> None:
        if route.etag and request.headers.get("if-none-match") == route.etag:
            self.send_response(304)
            self.send_header("ETag", route.etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(route.status)
        for key, value in route.headers.items():
            self.send_header(key, value)
        if route.etag:
            self.send_header("ETag", route.etag)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body)

    do_GET = do_POST = do_PUT = _handle


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 whose routes a test sets and whose requests it records."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", poll_interval: float = 0.02):
        super().__init__((host, 0), _Handler)
        self.routes: dict[str, Route | Callable[[Request], Route]] = {}
        self.requests: list[Request] = []
        self.delay = 0.0  # seconds each answer waits before it is sent
        self.in_flight = 0  # requests being answered now: this server is one (host, port)
        self.peak_in_flight = 0
        self._flight_lock = threading.Lock()
        # shutdown() waits for the loop to look at its flag, every poll_interval (0.5 s is the library's default),
        # per server and test; but each look costs CPU while idle (60 servers at 0.02 s: 12% of a core).
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": poll_interval},
                                        daemon=True)

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Count one request in flight while it is being answered (``delay`` included), until its answer is sent."""
        with self._flight_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            yield
        finally:
            with self._flight_lock:
                self.in_flight -= 1

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def resolve(self, request: Request) -> Route | None:
        route = self.routes.get(request.path) or self.routes.get(request.path.split("?", 1)[0])
        return route(request) if callable(route) else route

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path.split("?", 1)[0] == path.split("?", 1)[0]]


class WebhookReceiver(LoopbackServer):
    """Accepts POSTed JSON on any path; set ``status`` to simulate an outage."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.received: list[dict] = []  # payloads answered with 200
        self.refused = 0

    def resolve(self, request: Request) -> Route:
        if self.status == 200:
            self.received.append(json.loads(request.body or b"null"))
        else:
            self.refused += 1
        return Route(self.status, b'{"ok": true}', {"Content-Type": "application/json"})


class _SmtpHandler:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """Stop a server started with ``start_new_session=True`` and all its children."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.handler = _SmtpHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=free_port())

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def messages(self) -> list[Message]:
        return self.handler.messages

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


class TricklingReceiver:
    """A raw HTTP receiver on 127.0.0.1 that reads each request whole, then answers one byte a second.

    ``on_request`` runs (in the receiver's thread) once a request has fully arrived and before the first
    byte of the answer, i.e. while the sender waits on it.
    """

    ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'

    def __init__(self, on_request: Callable[[Request], None] | None = None, interval: float = 1.0) -> None:
        self.on_request = on_request
        self.interval = interval
        self.requests: list[Request] = []
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def start(self) -> TricklingReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with suppress(OSError):
            self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            self.requests.append(request)
            if self.on_request is not None:
                self.on_request(request)
            for byte in self.ANSWER:
                if self._stop.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # the sender hung up
                self.bytes_sent += 1


def _read_request(conn: socket.socket) -> Request | None:
    """One HTTP/1.1 request with a Content-Length body, read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length") or 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return Request(method, path, headers, body)
