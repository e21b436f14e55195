"""The Akinon client against httpx.MockTransport: no network, every request recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from publisher.akinon import AkinonClient, TokenCache
from publisher.errors import AkinonBadResponse, AkinonProtocolError, AkinonUnavailable, AuthError
from publisher.records import Endpoint, Resource

BASE = "https://omni.example"
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a script."""

    def __init__(self, answer: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def client(answer: Handler, **options: Any) -> tuple[AkinonClient, Recorder, list[float]]:
    recorder = Recorder(answer)
    sleeps: list[float] = []
    options.setdefault("token", "t0ken")
    made = AkinonClient(
        BASE,
        transport=httpx.MockTransport(recorder),
        sleep=sleeps.append,
        token_cache=options.pop("token_cache", TokenCache()),
        **options,
    )
    return made, recorder, sleeps


def records(start: int, count: int) -> list[dict[str, int]]:
    return [{"pk": n} for n in range(start, start + count)]


def pages_of(made: AkinonClient, **options: Any) -> list[list[dict[str, Any]]]:
    # MockTransport holds no sockets, so clients here need no closing between calls.
    return list(made.iter_pages(5, Resource.STOCK, Endpoint.INSERTS_OR_UPDATES, **options))


def test_token_header_and_plain_array_paging_until_a_short_page() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        assert request.url.params["limit"] == "3"
        return httpx.Response(200, json=records(page * 10, 3 if page < 3 else 1))

    made, recorder, _ = client(answer, page_size=3)
    assert [len(p) for p in pages_of(made)] == [3, 3, 1]
    assert {r.headers["Authorization"] for r in recorder.requests} == {"Token t0ken"}
    assert recorder.paths()[0] == "/api/v1/channel/5/extra_product_stocks/inserts_or_updates/"


def test_paginated_objects_follow_next_links_on_the_same_host() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        following = f"{BASE}/api/v1/channel/5/x/?page={page + 1}" if page < 3 else None
        return httpx.Response(
            200, json={"count": 6, "next": following, "results": records(page, 2)}
        )

    made, recorder, _ = client(answer, page_size=2)
    for prefetch in (True, False):
        assert [len(p) for p in pages_of(made, prefetch=prefetch)] == [2, 2, 2]
    assert recorder.requests[1].url.path == "/api/v1/channel/5/x/"


def test_a_next_link_to_another_host_is_refused_before_any_request_to_it() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"next": "https://evil.example/steal?page=2", "results": records(1, 1)}
        )

    made, recorder, _ = client(answer, page_size=1)
    with pytest.raises(AkinonProtocolError, match=r"evil\.example"):
        pages_of(made)
    assert {r.url.host for r in recorder.requests} == {"omni.example"}


def test_a_redirect_is_not_followed() -> None:
    made, recorder, _ = client(
        lambda r: httpx.Response(302, headers={"Location": "https://evil.example/"})
    )
    with pytest.raises(AkinonProtocolError, match="redirect"):
        pages_of(made)
    assert len(recorder.requests) == 1


def test_429_waits_for_retry_after_and_503_backs_off() -> None:
    script = [
        httpx.Response(429, headers={"Retry-After": "4"}),
        httpx.Response(503),
        httpx.Response(200, json=[]),
    ]
    made, recorder, sleeps = client(lambda r: script.pop(0), backoff_cap=10)
    assert pages_of(made) == [[]]
    assert len(recorder.requests) == 3
    assert sleeps[0] == 4.0
    assert 0 < sleeps[1] <= 10


def test_connection_errors_are_retried_then_reported_as_unavailable() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    made, recorder, sleeps = client(answer, max_retries=3)
    with pytest.raises(AkinonUnavailable) as caught:
        pages_of(made)
    assert len(recorder.requests) == 4
    assert len(sleeps) == 3
    message = str(caught.value)
    assert "channel=5" in message
    assert "page=1" in message
    assert "ConnectError" in message


def test_other_4xx_are_not_retried() -> None:
    made, recorder, _ = client(lambda r: httpx.Response(404, json={"detail": "Not found."}))
    with pytest.raises(AkinonProtocolError, match=r"HTTP 404.*Not found"):
        pages_of(made)
    assert len(recorder.requests) == 1


def test_invalid_json_names_channel_endpoint_and_page() -> None:
    made, _, _ = client(lambda r: httpx.Response(200, content=b'[{"pk": 1'))
    with pytest.raises(AkinonBadResponse) as caught:
        pages_of(made)
    message = str(caught.value)
    assert "channel=5" in message
    assert "inserts_or_updates" in message
    assert "page=1" in message


def test_a_fixed_token_refused_is_an_auth_error_without_retry() -> None:
    made, recorder, _ = client(lambda r: httpx.Response(401, json={"detail": "Invalid token."}))
    with pytest.raises(AuthError) as caught:
        pages_of(made)
    assert len(recorder.requests) == 1
    assert "t0ken" not in str(caught.value)
    assert "t0ken" not in repr(made)


def login_server(tokens: list[str], refuse: set[str]) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/login/":
            body = orjson.loads(request.content)
            if body["password"] != "right":
                return httpx.Response(401, json={"detail": "bad credentials"})
            return httpx.Response(200, json={"key": tokens.pop(0)})
        token = request.headers["Authorization"].removeprefix("Token ")
        if token in refuse:
            return httpx.Response(401, json={"detail": "Invalid token."})
        return httpx.Response(200, json=[])

    return answer


def test_login_once_share_the_token_and_relogin_once_on_401() -> None:
    cache = TokenCache()
    tokens = ["first", "second"]
    refused: set[str] = set()
    answer = login_server(tokens, refused)
    one, rec_one, _ = client(answer, token=None, username="u", password="right", token_cache=cache)
    two, rec_two, _ = client(answer, token=None, username="u", password="right", token_cache=cache)
    pages_of(one)
    pages_of(two)
    assert rec_one.paths().count("/api/v1/auth/login/") == 1
    assert rec_two.paths().count("/api/v1/auth/login/") == 0  # the cached token is shared

    refused.add("first")
    three, rec_three, _ = client(
        answer, token=None, username="u", password="right", token_cache=cache
    )
    pages_of(three)
    assert rec_three.paths().count("/api/v1/auth/login/") == 1
    assert rec_three.requests[-1].headers["Authorization"] == "Token second"


def test_a_wrong_password_is_an_auth_error_that_never_shows_the_password() -> None:
    made, recorder, _ = client(
        login_server(["x"], set()), token=None, username="u", password="wrong-password"
    )
    with pytest.raises(AuthError) as caught:
        pages_of(made)
    assert "wrong-password" not in str(caught.value)
    assert recorder.paths() == ["/api/v1/auth/login/"]


def test_logins_are_capped_at_three_per_window() -> None:
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    made, recorder, _ = client(
        login_server([], set()), token=None, username="u", password="wrong", token_cache=cache
    )
    for _ in range(3):
        with pytest.raises(AuthError, match="refused the login"):
            pages_of(made)
    with pytest.raises(AuthError, match="login cap"):
        pages_of(made)
    assert recorder.paths().count("/api/v1/auth/login/") == 3
    now[0] = 361.0
    with pytest.raises(AuthError, match="refused the login"):
        pages_of(made)


def test_stopping_early_stops_the_prefetch() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=records(1, 2))  # always full: an endless queue

    made, recorder, _ = client(answer, page_size=2)
    with made:
        pages = made.iter_pages(5, Resource.STOCK, Endpoint.UPDATES)
        assert len(next(pages)) == 2
        pages.close()  # type: ignore[attr-defined]
    assert len(recorder.requests) <= 2


def test_acknowledge_opens_commits_and_closes_a_batch_with_the_dates_as_read() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"pk": 77, "status": "initialized"})
        return httpx.Response(200, json={"pk": 77})

    made, recorder, _ = client(answer)
    with made:
        made.acknowledge(5, Resource.PRICE, [(1, "2026-01-01T00:00:00Z")])
        made.acknowledge(5, Resource.PRICE, [])
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("POST", "/api/v1/channel/5/batch_requests/"),
        ("PATCH", "/api/v1/channel/5/batch_requests/77/"),
        ("PATCH", "/api/v1/channel/5/batch_requests/77/"),
    ]
    commit = orjson.loads(recorder.requests[1].content)
    assert commit["status"] == "commit"
    assert commit["content_type"] == "productprice"
    assert commit["objects"] == [
        {"pk": 1, "version_date": "2026-01-01T00:00:00Z", "content_type": "productprice"}
    ]
    assert orjson.loads(recorder.requests[2].content)["status"] == "done"


def test_single_price_and_channel() -> None:
    made, recorder, _ = client(lambda r: httpx.Response(200, json={"id": 3}))
    with made:
        assert made.get_price(5, 3) == {"id": 3}
        assert made.get_price(5, 3, detailed=True) == {"id": 3}
        assert made.channel(5) == {"id": 3}
    assert recorder.paths() == [
        "/api/v1/channel/5/extra_product_prices/3/",
        "/api/v1/channel/5/extra_product_prices/3/detailed/",
        "/api/v1/channels/5/",
    ]
