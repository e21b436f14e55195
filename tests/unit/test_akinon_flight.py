"""Pages in flight (issue 16 item 1): several requests outstanding, pages handed over in order.

The window that sizes them (grown while the step waits, halved on 429/503 or climbing
response times, between 1 and the cap) and the process's pacing per host are tested on their
own with plain values; the client against a MockTransport that takes its time per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from publisher.akinon import AkinonClient, TokenCache
from publisher.akinon.pacing import Pacer
from publisher.akinon.window import Window
from publisher.errors import AkinonProtocolError
from publisher.pages import RecordPage
from publisher.records import Endpoint, Resource
from tests.factories import stock

BASE = "https://omni.example"
PATH = "/api/v1/channel/5/extra_product_stocks/"
Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Answer each request after `delay` seconds; count how many were in flight at once."""

    def __init__(self, answer: Handler, delay: float = 0.05) -> None:
        self.answer, self.delay = answer, delay
        self.pages: list[int] = []
        self.most_at_once = 0
        self._now = 0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.pages.append(int(request.url.params.get("page", "1")))
            self._now += 1
            self.most_at_once = max(self.most_at_once, self._now)
        time.sleep(self.delay)
        with self._lock:
            self._now -= 1
        return self.answer(request)


@pytest.fixture
def client_for() -> Iterator[Callable[..., AkinonClient]]:
    made: list[AkinonClient] = []

    def build(server: Server, **options: Any) -> AkinonClient:
        options.setdefault("token", "t")
        options.setdefault("token_cache", TokenCache())
        options.setdefault("sleep", lambda _: None)
        client = AkinonClient(BASE, transport=httpx.MockTransport(server), **options)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def scan(client: AkinonClient, **options: Any) -> list[RecordPage]:
    return list(client.iter_pages(5, Resource.STOCK, Endpoint.LIST, **options))


def numbered(request: httpx.Request) -> int:
    return int(request.url.params.get("page", "1"))


def envelope_of(total: int, limit: int) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        page = numbered(request)
        start = (page - 1) * limit
        last = -(-total // limit)
        link = f"{PATH}?limit={limit}&page={page + 1}" if page < last else None
        rows = [stock(n) for n in range(start + 1, min(total, start + limit) + 1)]
        return httpx.Response(200, json={"count": total, "next": link, "results": rows})

    return answer


def array_of(total: int, limit: int) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        start = (numbered(request) - 1) * limit
        return httpx.Response(
            200, json=[stock(n) for n in range(start + 1, min(total, start + limit) + 1)]
        )

    return answer


def keys(pages: list[RecordPage]) -> list[int | None]:
    return [key for page in pages for key in page.keys]


# ------------------------------------------------------------------------ in flight, in order


def test_paginated_pages_are_fetched_several_at_once_and_handed_over_in_order(
    client_for: Callable[..., AkinonClient],
) -> None:
    server = Server(envelope_of(total=400, limit=10), delay=0.05)
    started = time.monotonic()
    pages = scan(client_for(server, page_size=10))
    took = time.monotonic() - started
    assert keys(pages) == list(range(1, 401))
    assert sorted(server.pages) == list(range(1, 41))  # `count` told the end: none past it
    assert server.most_at_once > 4
    assert took < 40 * 0.05 / 2  # one at a time would take 2 s (generous: a loaded machine)


def test_plain_arrays_are_fetched_ahead_and_stop_at_the_first_short_page(
    client_for: Callable[..., AkinonClient],
) -> None:
    server = Server(array_of(total=305, limit=10), delay=0.02)
    pages = scan(client_for(server, page_size=10))
    assert keys(pages) == list(range(1, 306))
    assert [len(p) for p in pages][-2:] == [10, 5]
    assert server.most_at_once > 2
    assert max(server.pages) <= 31 + 16  # speculation past the end is bounded by the cap


def test_the_cap_bounds_the_requests_in_flight(client_for: Callable[..., AkinonClient]) -> None:
    server = Server(envelope_of(total=300, limit=10), delay=0.02)
    assert keys(scan(client_for(server, page_size=10, max_in_flight=3))) == list(range(1, 301))
    assert server.most_at_once <= 3


def test_one_in_flight_is_one_at_a_time(client_for: Callable[..., AkinonClient]) -> None:
    server = Server(envelope_of(total=50, limit=10), delay=0.01)
    assert keys(scan(client_for(server, page_size=10, max_in_flight=1))) == list(range(1, 51))
    assert server.pages == [1, 2, 3, 4, 5] and server.most_at_once == 1


def test_an_error_on_page_n_is_raised_after_pages_before_it_even_if_later_pages_came(
    client_for: Callable[..., AkinonClient],
) -> None:
    ok = envelope_of(total=200, limit=10)

    def answer(request: httpx.Request) -> httpx.Response:
        if numbered(request) == 7:
            return httpx.Response(404, json={"detail": "Invalid page."})
        return ok(request)

    pages: list[RecordPage] = []
    with pytest.raises(AkinonProtocolError, match="page=7"):
        for page in client_for(Server(answer, delay=0.01), page_size=10).iter_pages(
            5, Resource.STOCK, Endpoint.LIST
        ):
            pages.append(page)
    assert keys(pages) == list(range(1, 61))


def test_a_next_link_other_than_predicted_is_followed(
    client_for: Callable[..., AkinonClient],
) -> None:
    # Pages 1, 2, then a jump to page 10: the predictions 3, 4... are dropped unread.
    def answer(request: httpx.Request) -> httpx.Response:
        page = numbered(request)
        link = {1: 2, 2: 10, 10: 11}.get(page)
        nxt = f"{BASE}{PATH}?limit=1&page={link}" if link else None
        return httpx.Response(200, json={"count": 99, "next": nxt, "results": [stock(page)]})

    assert keys(scan(client_for(Server(answer, delay=0.01), page_size=1))) == [1, 2, 10, 11]


def test_a_server_ignoring_page_ends_the_scan_cut_short_with_pages_in_flight(
    client_for: Callable[..., AkinonClient],
) -> None:
    server = Server(lambda r: httpx.Response(200, json=[stock(1), stock(2)]), delay=0.01)
    pages = scan(client_for(server, page_size=2))
    assert keys(pages) == [1, 2]
    assert pages[-1].cut_short and len(pages[-1]) == 0


def test_stopping_early_leaves_no_request_running(client_for: Callable[..., AkinonClient]) -> None:
    server = Server(envelope_of(total=1000, limit=10), delay=0.02)
    pages = client_for(server, page_size=10).iter_pages(5, Resource.STOCK, Endpoint.LIST)
    for number, _ in enumerate(pages):
        if number == 5:
            break
    pages.close()  # type: ignore[attr-defined]
    asked = len(server.pages)
    time.sleep(0.1)
    assert len(server.pages) == asked and asked < 5 + 16 + 1


def test_429s_halve_the_window(client_for: Callable[..., AkinonClient]) -> None:
    ok = envelope_of(total=400, limit=10)
    refused = {15, 16, 17}

    def answer(request: httpx.Request) -> httpx.Response:
        page = numbered(request)
        if page in refused:
            refused.discard(page)
            return httpx.Response(429, headers={"Retry-After": "0"})
        return ok(request)

    client = client_for(Server(answer, delay=0.01), page_size=10)
    assert keys(scan(client)) == list(range(1, 401))
    assert client.window.decreases >= 1


# ------------------------------------------------------------------------ the window alone


def test_the_window_grows_while_waiting_up_to_its_cap_and_never_below_one() -> None:
    assert Window(cap=16).size == 4 and Window(cap=2).size == 2
    window = Window(cap=8, initial=1)
    assert window.size == 1
    for _ in range(3):
        window.waited()
    assert window.size == 4  # slow start: one more per page waited for
    for _ in range(50):
        window.waited()
    assert window.size == 8
    for _ in range(10):
        window.congested()
        window._calm = 0  # as if a window's worth of responses had come
    assert window.size == 1


def test_one_burst_of_429s_halves_the_window_once() -> None:
    window = Window(cap=16)
    for _ in range(15):
        window.waited()
    assert window.size == 16
    for _ in range(5):
        window.congested()
    assert window.size == 8 and window.decreases == 1


def test_growth_after_a_decrease_is_about_one_per_round_trip() -> None:
    window = Window(cap=16)
    for _ in range(15):
        window.waited()
    window.congested()
    assert window.size == 8
    for _ in range(9):  # about one window's worth of pages
        window.waited()
    assert window.size == 9


def test_climbing_response_times_halve_the_window_and_noise_does_not() -> None:
    window = Window(cap=16)
    for _ in range(15):
        window.waited()
    for seconds in (0.100, 0.104, 0.098, 0.110, 0.101) * 4:
        window.observe(seconds)
    assert window.size == 16  # steady at 100 ms
    for seconds in (0.25, 0.3, 0.35, 0.4):
        window.observe(seconds)
    assert window.size == 8
    quick = Window(cap=16)
    for _ in range(15):
        quick.waited()
    for seconds in (0.001, 0.004, 0.002, 0.009) * 5:  # loopback jitter: not congestion
        quick.observe(seconds)
    assert quick.size == 16


# ------------------------------------------------------------------------ pacing


def test_the_pacer_spaces_requests_evenly() -> None:
    now = [100.0]
    pacer = Pacer(rate=10, clock=lambda: now[0])
    waits = [pacer.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    now[0] += 10
    assert pacer.reserve() == 0.0
    assert Pacer(rate=0).reserve() == 0.0  # no ceiling


def test_the_rate_ceiling_holds_across_clients_of_one_process() -> None:
    waits: list[float] = []
    server = Server(envelope_of(total=30, limit=10), delay=0.0)
    base = "https://paced.example"
    clients = [
        AkinonClient(
            base,
            token="t",
            token_cache=TokenCache(),
            transport=httpx.MockTransport(server),
            max_requests_per_second=20,
            sleep=waits.append,
        )
        for _ in range(2)
    ]
    try:
        for client in clients:
            list(client.iter_pages(5, Resource.STOCK, Endpoint.LIST))
    finally:
        for client in clients:
            client.close()
    # Six requests through one pacer at 20/s: the last waits about 5 x 50 ms.
    assert max(waits) == pytest.approx(0.25, abs=0.05)
