"""The Akinon client against hostile or unlucky answers and settings (issue 17, client parts).

Paging data that used to crash a step with a raw exception, responses without bounds
(endless, slow, huge, compressed bombs), and unsafe connection settings (cleartext to a
remote host, proxies from the environment, credentials in the URL, a certificate that does
not verify).
"""

from __future__ import annotations

import gzip
import http.server
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from publisher.akinon import AkinonClient, TokenCache
from publisher.config import load_settings
from publisher.diff import diff_page
from publisher.errors import (
    AkinonBadResponse,
    AkinonProtocolError,
    AkinonUnavailable,
    ConfigError,
    PublisherError,
)
from publisher.pages import RecordPage
from publisher.records import Endpoint, Resource
from tests.factories import stock

BASE = "https://omni.example"
PAGE_PATH = "/api/v1/channel/5/extra_product_stocks/"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def make() -> Iterator[Callable[..., AkinonClient]]:
    made: list[AkinonClient] = []

    def build(answer: Handler, **options: Any) -> AkinonClient:
        options.setdefault("token", "t0ken")
        options.setdefault("token_cache", TokenCache())
        options.setdefault("sleep", lambda _: None)
        client = AkinonClient(
            options.pop("base_url", BASE), transport=httpx.MockTransport(answer), **options
        )
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def scan(client: AkinonClient) -> list[RecordPage]:
    return list(client.iter_pages(5, Resource.STOCK, Endpoint.LIST))


def envelope(next_link: str | None, results: list[Any]) -> dict[str, Any]:
    return {"count": 9, "next": next_link, "previous": None, "results": results}


# ------------------------------------------------------------------------ paging crashes


@pytest.mark.parametrize("page", ["\u00b2", "9" * 5000, "-1", "1e3"])
def test_a_next_link_with_an_unreadable_page_number_never_crashes(
    make: Callable[..., AkinonClient], page: str
) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params.get("page", ""))
        if len(seen) == 1:
            return httpx.Response(200, json=envelope(f"{PAGE_PATH}?page={page}", [stock(1)]))
        return httpx.Response(200, json=envelope(None, [stock(2)]))

    pages = scan(make(answer))  # no ValueError
    assert [len(p) for p in pages] == [1, 1]
    assert seen[1] == page  # the link is followed as the server wrote it


def test_limit_zero_in_a_next_link_then_an_empty_array_ends_paging(
    make: Callable[..., AkinonClient],
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("limit") == "0":
            return httpx.Response(200, json=[])
        return httpx.Response(200, json=envelope(f"{PAGE_PATH}?page=2&limit=0", [stock(1)]))

    pages = scan(make(answer))  # no IndexError
    assert [len(p) for p in pages] == [1, 0]


def test_a_number_past_the_double_range_rejects_its_record_alone(
    make: Callable[..., AkinonClient],
) -> None:
    body = b'[%s, {"pk": 2, "stock": 1e309, "modified_date": "2025-12-01T00:00:00Z"}, %s]' % (
        httpx.Response(200, json=stock(1)).content,
        httpx.Response(200, json=stock(3)).content,
    )
    client = make(lambda _: httpx.Response(200, content=body), page_size=500)
    [page] = scan(client)
    assert page.keys == [1, 2, 3]
    diff = diff_page(page, {})
    assert [c.key for c in diff.changes] == [1, 3]
    [rejection] = diff.rejections
    assert rejection.key == 2
    assert "not valid JSON" in rejection.reason and "infinity" in rejection.reason


# ------------------------------------------------------------------------ response bounds


def endless(chunk: bytes, pause: float = 0.0) -> Iterator[bytes]:
    yield b"["
    while True:
        if pause:
            time.sleep(pause)
        yield chunk


def test_an_endless_body_is_cut_at_the_byte_bound(make: Callable[..., AkinonClient]) -> None:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless(b"1," * 32_768))

    client = make(answer, max_response_bytes=1_000_000)
    with pytest.raises(AkinonBadResponse, match="AKINON_MAX_RESPONSE_BYTES"):
        scan(client)


def test_a_gzip_bomb_is_cut_at_the_decompressed_bound(make: Callable[..., AkinonClient]) -> None:
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    assert len(bomb) < 100_000

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([bomb]), headers={"Content-Encoding": "gzip"})

    client = make(answer, max_response_bytes=1_000_000)
    with pytest.raises(AkinonBadResponse, match="decompressed"):
        scan(client)


def test_a_gzip_page_within_bounds_is_read(make: Callable[..., AkinonClient]) -> None:
    body = httpx.Response(200, json=[stock(1), stock(2)]).content

    def answer(_: httpx.Request) -> httpx.Response:
        zipped = iter([gzip.compress(body)])  # streamed, as from a socket
        return httpx.Response(200, content=zipped, headers={"Content-Encoding": "gzip"})

    assert [p.keys for p in scan(make(answer))] == [[1, 2]]


def test_a_slow_drip_body_ends_at_the_request_deadline(make: Callable[..., AkinonClient]) -> None:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless(b" ", pause=0.02))

    client = make(answer, request_deadline=0.3, max_retries=1)
    started = time.monotonic()
    with pytest.raises(AkinonUnavailable, match="deadline"):
        scan(client)
    assert time.monotonic() - started < 2.0


@contextmanager
def dripping(opening: bytes, drop: bytes, lasting: float = 8.0) -> Iterator[str]:
    """Serve on loopback: read what the client sends, answer `opening`, then `drop` every 0.2 s.

    Each drop comes well within the client's read timeout, so only a deadline on the whole
    request ends it; after `lasting` seconds the server hangs up (a test without that
    deadline fails then instead of hanging). Yields the server's address.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done = threading.Event()
    served: list[threading.Thread] = []

    def drip(conn: socket.socket) -> None:
        until = time.monotonic() + lasting
        with conn:
            try:
                conn.recv(65_536)
                conn.sendall(opening)
                while not done.wait(0.2) and time.monotonic() < until:
                    conn.sendall(drop)
            except OSError:
                return  # the client hung up

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            served.append(threading.Thread(target=drip, args=(conn,), daemon=True))
            served[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        acceptor.join()
        for thread in served:
            thread.join()
        listener.close()


def deadline_client(url: str) -> AkinonClient:
    # Timeouts far above the drip's pauses and the deadline: only the deadline can end it.
    return AkinonClient(
        url,
        token="t0ken",
        token_cache=TokenCache(),
        timeout=5.0,
        request_deadline=1.0,
        max_retries=0,
    )


def test_a_header_drip_ends_at_the_request_deadline() -> None:
    with (
        dripping(b"HTTP/1.1 200 OK\r\n", b"X") as address,
        deadline_client(f"http://{address}") as client,
    ):
        started = time.monotonic()
        with pytest.raises(AkinonUnavailable, match="request deadline of 1 s passed") as caught:
            client.channel(5)
        assert time.monotonic() - started < 3.0
    assert "t0ken" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_tls_preamble_drip_ends_at_the_request_deadline() -> None:
    # A TLS handshake record announced 16 KB long, then a byte at a time.
    with (
        dripping(b"\x16\x03\x03\x40\x00", b"\x00") as address,
        deadline_client(f"https://{address}") as client,
    ):
        started = time.monotonic()
        with pytest.raises(AkinonUnavailable, match="request deadline of 1 s passed"):
            client.channel(5)
        assert time.monotonic() - started < 3.0


def test_a_drip_through_a_proxy_from_the_environment_ends_at_the_deadline_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with dripping(b"HTTP/1.1 200 OK\r\n", b"X") as address:
        monkeypatch.setenv("HTTP_PROXY", f"http://{address}")
        # Nothing listens on port 9: an answer can only come through the proxy.
        with (
            AkinonClient(
                "http://127.0.0.1:9",
                token="t0ken",
                token_cache=TokenCache(),
                timeout=5.0,
                request_deadline=1.0,
                max_retries=0,
                trust_env=True,
            ) as client,
            pytest.raises(AkinonUnavailable, match="request deadline of 1 s passed"),
        ):
            client.channel(5)


def test_bounds_have_settings_with_sane_defaults() -> None:
    settings = load_settings(akinon_url=BASE, akinon_channels=[1], akinon_token="t")
    assert 16 * 2**20 <= settings.akinon_max_response_bytes <= 512 * 2**20
    assert settings.akinon_timeout_seconds < settings.akinon_request_deadline_seconds <= 600


# ------------------------------------------------------------------------ connection safety


@pytest.mark.parametrize("url", ["http://omni.example", "http://10.0.0.5:8000"])
def test_cleartext_to_a_remote_host_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(ConfigError, match="AKINON_ALLOW_HTTP"):
        AkinonClient(url, token="t")
    AkinonClient(url, token="t", allow_http=True).close()
    with pytest.raises(ConfigError, match="AKINON_ALLOW_HTTP") as caught:
        load_settings(akinon_url=url, akinon_channels=[1], akinon_token="t")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8800", "http://localhost:8800", "http://[::1]:1"]
)
def test_cleartext_to_loopback_is_fine(url: str) -> None:
    AkinonClient(url, token="t").close()


@pytest.mark.parametrize("url", ["https://user:pw@omni.example", "https://user@omni.example"])
def test_userinfo_in_the_url_is_refused_in_one_line(url: str) -> None:
    with pytest.raises(ConfigError, match="AKINON_USERNAME") as caught:
        AkinonClient(url, token="t")
    assert "pw" not in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="AKINON_URL"):
        load_settings(akinon_url=url, akinon_channels=[1], akinon_token="t")


def test_proxy_variables_are_ignored_unless_trust_env_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    settings = load_settings(akinon_url=BASE, akinon_channels=[1], akinon_token="t")
    assert settings.akinon_trust_env is False
    with AkinonClient.from_settings(settings) as client:
        assert not client.trusts_env
    with AkinonClient(BASE, token="t", trust_env=True) as client:
        assert client.trusts_env


# ------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Serve `[]` over TLS with a self-signed certificate for 127.0.0.1; yield URL and cert."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()


def test_a_certificate_that_does_not_verify_is_fatal_at_once(
    tls_server: tuple[str, Path],
) -> None:
    url, _ = tls_server
    sleeps: list[float] = []
    with (
        AkinonClient(url, token="t", sleep=sleeps.append) as client,
        pytest.raises(AkinonProtocolError, match="AKINON_CA_BUNDLE") as caught,
    ):
        scan(client)
    assert sleeps == []  # not retried as an outage
    assert "\n" not in str(caught.value)
    assert not isinstance(caught.value, AkinonUnavailable)


def test_a_ca_bundle_makes_a_private_certificate_trusted(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    with AkinonClient(url, token="t", ca_bundle=str(cert)) as client:
        assert [len(p) for p in scan(client)] == [0]


def test_a_missing_ca_bundle_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="AKINON_CA_BUNDLE"):
        AkinonClient(BASE, token="t", ca_bundle="/nonexistent/ca.pem")


def test_every_failure_here_is_ours() -> None:
    assert issubclass(ConfigError, PublisherError)
