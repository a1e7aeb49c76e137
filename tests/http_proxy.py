"""A loopback HTTP proxy for fault tests: forwards every request to a server and can
lose (or hold back) the response of chosen requests.

A lost response is the fault a client's retry meets: the request reached the server
and took effect, but the client never heard back (the proxy forwards it, reads the
answer, then closes the client's connection without a word), so the client sends it
again. ``drop`` chooses the requests by method, path and headers.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: Chooses a request whose response is lost: (method, path, headers) -> bool.
Choice = Callable[[str, str, Mapping[str, str]], bool]
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


class DroppingProxy:
    """Forwards to ``upstream``; loses the responses ``drop`` chooses, ``times`` times."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.choice: Choice | None = None
        self.times = 0
        self.slow: Choice | None = None
        self.slow_by = 0.0
        self.dropped: list[tuple[str, str]] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.lost_one = threading.Event()
        self._guard = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def drop(self, choice: Choice, times: int = 1) -> None:
        """Lose the response of the next ``times`` requests that ``choice`` picks."""
        with self._guard:
            self.choice, self.times = choice, times
            self.lost_one.clear()

    def hold_back(self, choice: Choice, seconds: float) -> None:
        """Answer the requests ``choice`` picks ``seconds`` late (after they took effect)."""
        with self._guard:
            self.slow, self.slow_by = choice, seconds

    def _late_by(self, method: str, path: str, headers: Mapping[str, str]) -> float:
        with self._guard:
            slow, seconds = self.slow, self.slow_by
        return seconds if slow is not None and slow(method, path, headers) else 0.0

    def _lose(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        with self._guard:
            self.seen.append((method, path, dict(headers)))
            if self.times <= 0 or self.choice is None or not self.choice(method, path, headers):
                return False
            self.times -= 1
            self.dropped.append((method, path))
        self.lost_one.set()
        return True

    @contextmanager
    def running(self) -> Iterator[DroppingProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()


def _handler(proxy: DroppingProxy) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                upstream.putrequest(
                    self.command, self.path, skip_host=True, skip_accept_encoding=True
                )
                for name, value in self.headers.items():
                    upstream.putheader(name, value)
                upstream.endheaders(body)
                answer = upstream.getresponse()
                data = answer.read()
                headers = answer.getheaders()
            finally:
                upstream.close()
            if proxy._lose(self.command, self.path, self.headers):
                self.close_connection = True  # the request took effect; its answer is lost
                return
            time.sleep(proxy._late_by(self.command, self.path, self.headers))
            self.send_response_only(answer.status, answer.reason)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP or (
                    self.command == "HEAD" and name.lower() == "content-length"
                ):
                    self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Forward
