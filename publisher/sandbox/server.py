"""Serve the sandbox over real HTTP/1.1 with keep-alive, one thread per connection.

`SandboxServer` binds on `start()` (port 0 picks a free port), serves in a daemon thread and,
on `stop()`, also closes kept-alive connections so a stopped server stops answering.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from publisher.sandbox.app import SandboxApp
from publisher.sandbox.catalog import Catalog
from publisher.sandbox.faults import Faults
from publisher.sandbox.messages import Request, Response, error_response

_JOIN_SECONDS: Final = 2.0
_COPY_LIMIT: Final = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    """Move bytes between a socket and the SandboxApp; no API logic lives here."""

    protocol_version = "HTTP/1.1"
    server_version = "AkinonSandbox/1.0"
    # Headers and body go out in one write; without NODELAY a small write after a keep-alive
    # exchange can wait ~40 ms on the peer's delayed ACK.
    disable_nagle_algorithm = True
    # An idle keep-alive connection is dropped after a minute rather than holding a thread.
    timeout = 60

    def do_GET(self) -> None:
        """Answer a GET request."""
        self._serve()

    def do_POST(self) -> None:
        """Answer a POST request."""
        self._serve()

    def do_PUT(self) -> None:
        """Answer a PUT request."""
        self._serve()

    def do_PATCH(self) -> None:
        """Answer a PATCH request."""
        self._serve()

    def do_DELETE(self) -> None:
        """Answer a DELETE request."""
        self._serve()

    def do_HEAD(self) -> None:
        """Answer a HEAD request (no route takes it: a 405 without a body)."""
        self._serve()

    def do_OPTIONS(self) -> None:
        """Answer an OPTIONS request (no route takes it: a 405)."""
        self._serve()

    @property
    def _httpd(self) -> _HTTPServer:
        assert isinstance(self.server, _HTTPServer)
        return self.server

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            return
        target = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=target.path,
            query=parse_qs(target.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        self._send(self._httpd.app.handle(request))

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._send(error_response(411, "Send a Content-Length; chunked bodies are refused."))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(error_response(400, "Invalid Content-Length."))
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response) -> None:
        body = response.body
        lines = [
            f"HTTP/1.1 {response.status} {_reason(response.status)}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if response.truncate:
            # Promise the whole body, send half of it, then hang up: a cut connection.
            body = body[: len(body) // 2]
            self.close_connection = True
        elif self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            self.wfile.write(head)  # HEAD promises the length but never sends a body
        elif len(body) < _COPY_LIMIT:
            self.wfile.write(head + body)  # one packet for the usual small answer
        else:
            self.wfile.write(head)  # a big page is not worth copying just to prepend headers
            self.wfile.write(body)
        self.log_request(response.status, len(body))

    def log_message(self, format: str, *args: Any) -> None:
        """Log a request line only when the server was asked to be verbose."""
        if self._httpd.verbose:
            super().log_message(format, *args)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _HTTPServer(ThreadingHTTPServer):
    """Track live connections so stopping the server can close kept-alive ones too."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SandboxApp, verbose: bool) -> None:
        self.app = app
        self.verbose = verbose
        self._live: dict[socket.socket, threading.Thread] = {}
        self._live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection in its own daemon thread, remembering both."""
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="sandbox-connection",
            daemon=True,
        )
        with self._live_lock:
            self._live[request] = thread
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        """Forget a finished connection and close it."""
        with self._live_lock:
            self._live.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore peers that hang up mid-exchange; report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Hang up every live connection and wait briefly for its thread to end."""
        with self._live_lock:
            live = list(self._live.items())
        for connection, _ in live:
            # A connection may already be closed by its own thread; that is fine.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for _, thread in live:
            thread.join(_JOIN_SECONDS)


class SandboxServer:
    """Run a local stand-in for Akinon's API over HTTP, for tests, the demo and benchmarks.

    ``with SandboxServer(Catalog.seeded(channels=[1, 2])) as server:`` starts it on a free
    port; ``server.url`` is its base URL and ``server.faults`` the faults it injects.
    """

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "sandbox-token",
        username: str = "sandbox",
        password: str = "sandbox",
        faults: Faults | None = None,
        verbose: bool = False,
    ) -> None:
        self.app = SandboxApp(
            catalog if catalog is not None else Catalog.seeded(),
            token=token,
            username=username,
            password=password,
            faults=faults,
        )
        self.host = host
        self.port = port
        self.verbose = verbose
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- what callers read ------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """Return the catalog this server serves."""
        return self.app.catalog

    @property
    def faults(self) -> Faults:
        """Return the faults injected into `/api/` requests now."""
        return self.app.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.app.faults = faults

    @property
    def token(self) -> str:
        """Return the token the server accepts (and login hands out)."""
        return self.app.token

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:54321``; only once started."""
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("the sandbox server is not started")
        host, port = httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def state(self) -> dict[str, Any]:
        """Return what `GET /_control/state` returns."""
        return self.app.control.state()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Bind and serve in a background daemon thread; return once connections are accepted."""
        httpd = self._bind()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-server"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def serve_forever(self, ready: Callable[[str], None] | None = None) -> None:
        """Bind and serve in the calling thread until `stop()` or Ctrl-C.

        `ready`, if given, is called with the base URL once the port is bound (useful with
        port 0).
        """
        httpd = self._bind()
        if ready is not None:
            ready(self.url)
        try:
            httpd.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, hang up open connections, stop churn and wait for the thread."""
        httpd = self._httpd
        if httpd is not None:
            httpd.shutdown()
        self._close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def run_churn(self, rate_per_second: float, seed: int | None = None) -> None:
        """Change about `rate_per_second` random records per second; 0 stops."""
        self.app.set_churn_rate(rate_per_second, seed)

    def stop_churn(self) -> None:
        """Stop the background churn, if any."""
        self.app.set_churn_rate(0)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> _HTTPServer:
        with self._lock:
            if self._httpd is not None:
                raise RuntimeError("the sandbox server is already running")
            self._httpd = _HTTPServer((self.host, self.port), self.app, self.verbose)
            return self._httpd

    def _close(self) -> None:
        with self._lock:
            httpd, self._httpd = self._httpd, None
        self.app.set_churn_rate(0)
        if httpd is not None:
            httpd.close_connections()
            httpd.server_close()
