"""The Akinon client against httpx.MockTransport: no network, every request recorded.

Sections follow the client's requirements: auth, both list shapes, host pinning, timeouts,
retries, bad bodies, error translation, secrets, prefetch; then the single-record calls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from publisher.akinon import DEFAULT_TOKEN_CACHE, AkinonClient, TokenCache
from publisher.config import Settings
from publisher.errors import (
    AkinonBadResponse,
    AkinonProtocolError,
    AkinonUnavailable,
    AuthError,
    ConfigError,
    PublisherError,
)
from publisher.pages import RecordPage
from publisher.records import Endpoint, Resource
from tests.factories import price, stock

BASE = "https://omni.example"
LOGIN = "/api/v1/auth/login/"
PAGE_PATH = "/api/v1/channel/5/extra_product_stocks/inserts_or_updates/"
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a function."""

    def __init__(self, answer: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self._answer(request)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def pages(self) -> list[str]:
        return [r.url.params.get("page", "") for r in self.requests]


Made = tuple[AkinonClient, Recorder, list[float]]
Factory = Callable[..., Made]


@pytest.fixture
def make() -> Iterator[Factory]:
    """Build clients on a MockTransport with a recorded sleep; close them all afterwards."""
    made: list[AkinonClient] = []

    def build(answer: Handler, **options: Any) -> Made:
        recorder = Recorder(answer)
        sleeps: list[float] = []
        options.setdefault("token", "t0ken")
        options.setdefault("token_cache", TokenCache())
        options.setdefault("sleep", sleeps.append)
        client = AkinonClient(
            options.pop("base_url", BASE), transport=httpx.MockTransport(recorder), **options
        )
        made.append(client)
        return client, recorder, sleeps

    yield build
    for client in made:
        client.close()


def records(start: int, count: int) -> list[dict[str, Any]]:
    return [stock(n) for n in range(start, start + count)]


def scan(client: AkinonClient, **options: Any) -> list[list[dict[str, Any]]]:
    return list(client.iter_pages(5, Resource.STOCK, Endpoint.INSERTS_OR_UPDATES, **options))


def page_number(request: httpx.Request) -> int:
    return int(request.url.params.get("page", "1"))


def paginated(next_link: str | None, results: list[Any]) -> httpx.Response:
    return httpx.Response(
        200, json={"count": 99, "next": next_link, "previous": None, "results": results}
    )


def ok_empty(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=[])


# ---------------------------------------------------------------------------------- 1. auth


def login_server(tokens: list[str], refuse: set[str], *, pause: float = 0.0) -> Handler:
    """Answer logins from `tokens` (password 'right' only) and refuse the tokens in `refuse`."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == LOGIN:
            time.sleep(pause)
            body = orjson.loads(request.content)
            if body["password"] != "right":
                return httpx.Response(401, json={"detail": "bad credentials"})
            return httpx.Response(200, json={"key": tokens.pop(0)})
        token = request.headers["Authorization"].removeprefix("Token ")
        if token in refuse:
            return httpx.Response(401, json={"detail": "Invalid token."})
        return httpx.Response(200, json=[])

    return answer


def test_a_fixed_token_is_sent_as_a_token_header_on_every_request(make: Factory) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/channels/5/":
            return httpx.Response(200, json={"pk": 5, "is_active": True})
        return httpx.Response(200, json=records(1, 2))

    client, recorder, _ = make(answer)
    scan(client)
    client.channel(5)
    assert [r.headers["Authorization"] for r in recorder.requests] == ["Token t0ken"] * 2
    assert LOGIN not in recorder.paths()


def test_login_posts_the_credentials_and_uses_the_answered_key(make: Factory) -> None:
    client, recorder, _ = make(
        login_server(["k3y"], set()), token=None, username="u", password="right"
    )
    scan(client)
    login, listing = recorder.requests
    assert (login.method, login.url.path) == ("POST", LOGIN)
    assert orjson.loads(login.content) == {"username": "u", "password": "right"}
    assert login.headers["Content-Type"] == "application/json"
    assert "Authorization" not in login.headers
    assert listing.headers["Authorization"] == "Token k3y"


def test_clients_sharing_a_cache_log_in_once_and_a_401_triggers_one_fresh_login(
    make: Factory,
) -> None:
    cache = TokenCache()
    refused: set[str] = set()
    answer = login_server(["first", "second"], refused)
    login = {"token": None, "username": "u", "password": "right", "token_cache": cache}
    one, rec_one, _ = make(answer, **login)
    two, rec_two, _ = make(answer, **login)
    scan(one)
    scan(two)
    assert rec_one.paths().count(LOGIN) == 1
    assert rec_two.paths().count(LOGIN) == 0  # the cached token is shared

    refused.add("first")
    three, rec_three, _ = make(answer, **login)
    assert scan(three) == [[]]
    assert rec_three.paths() == [PAGE_PATH, LOGIN, PAGE_PATH]  # refused, log in, retry once
    assert rec_three.requests[-1].headers["Authorization"] == "Token second"
    assert cache.get((BASE, "u")) == "second"


def test_the_module_cache_is_shared_by_clients_that_get_none(make: Factory) -> None:
    base = "https://shared-cache.example"  # a base URL no other test uses
    answer = login_server(["only"], set())
    one, rec_one, _ = make(
        answer, base_url=base, token=None, username="u", password="right", token_cache=None
    )
    two, rec_two, _ = make(
        answer, base_url=base, token=None, username="u", password="right", token_cache=None
    )
    scan(one)
    scan(two)
    assert rec_one.paths().count(LOGIN) + rec_two.paths().count(LOGIN) == 1
    assert DEFAULT_TOKEN_CACHE.get((base, "u")) == "only"


def test_the_cache_is_keyed_by_base_url_and_user(make: Factory) -> None:
    cache = TokenCache()
    answer = login_server(["a", "b", "c"], set())
    for base, user in [(BASE, "u"), (BASE, "v"), ("https://other.example", "u"), (BASE, "u")]:
        client, _, _ = make(
            answer, base_url=base, token=None, username=user, password="right", token_cache=cache
        )
        scan(client)
    assert cache.get((BASE, "u")) == "a"
    assert cache.get((BASE, "v")) == "b"
    assert cache.get(("https://other.example", "u")) == "c"


def test_a_second_401_after_a_fresh_login_is_an_auth_error(make: Factory) -> None:
    refused = {"first", "second"}
    client, recorder, _ = make(
        login_server(["first", "second"], refused), token=None, username="u", password="right"
    )
    with pytest.raises(AuthError) as caught:
        scan(client)
    assert recorder.paths() == [LOGIN, PAGE_PATH, LOGIN, PAGE_PATH]
    message = str(caught.value)
    assert "channel=5" in message
    assert all(secret not in message for secret in ("first", "second", "right"))


def test_a_fixed_token_refused_is_an_auth_error_without_retry(make: Factory) -> None:
    client, recorder, sleeps = make(
        lambda r: httpx.Response(401, json={"detail": "Invalid token."})
    )
    with pytest.raises(AuthError, match="AKINON_TOKEN") as caught:
        scan(client)
    assert len(recorder.requests) == 1
    assert sleeps == []
    assert "t0ken" not in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_refused_login_is_an_auth_error_that_never_shows_the_password(
    make: Factory, status: int
) -> None:
    client, recorder, _ = make(
        lambda r: httpx.Response(status, json={"non_field_errors": ["Unable to log in."]}),
        token=None,
        username="u",
        password="wrong-password",
    )
    with pytest.raises(AuthError, match=f"refused the login of user 'u' \\(HTTP {status}\\)") as e:
        scan(client)
    assert "wrong-password" not in str(e.value)
    assert recorder.paths() == [LOGIN]


def test_logins_are_capped_at_three_per_sliding_six_minutes(make: Factory) -> None:
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    client, recorder, _ = make(
        login_server([], set()), token=None, username="u", password="wrong", token_cache=cache
    )
    for moment in (0.0, 100.0, 200.0):
        now[0] = moment
        with pytest.raises(AuthError, match="refused the login"):
            scan(client)
    now[0] = 300.0
    with pytest.raises(AuthError, match=r"login cap reached .*3 logins per 6 minutes") as caught:
        scan(client)
    assert "wrong" not in str(caught.value)
    assert recorder.paths().count(LOGIN) == 3  # the capped attempt never reached the server
    now[0] = 360.0  # the login at 0 has left the window, the one at 100 has not
    with pytest.raises(AuthError, match="refused the login"):
        scan(client)
    now[0] = 361.0
    with pytest.raises(AuthError, match="login cap reached"):
        scan(client)
    assert recorder.paths().count(LOGIN) == 4


def test_threads_needing_a_token_at_once_log_in_only_once(make: Factory) -> None:
    cache = TokenCache()
    answer = login_server(["shared"], set(), pause=0.05)
    clients = [
        make(answer, token=None, username="u", password="right", token_cache=cache)
        for _ in range(6)
    ]
    start = threading.Barrier(len(clients))

    def run(client: AkinonClient) -> None:
        start.wait()
        scan(client, prefetch=False)

    threads = [threading.Thread(target=run, args=(c,)) for c, _, _ in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    logins = sum(recorder.paths().count(LOGIN) for _, recorder, _ in clients)
    assert logins == 1
    assert all(len(recorder.requests) >= 1 for _, recorder, _ in clients)


def test_a_login_is_retried_on_503_and_needs_a_key(make: Factory) -> None:
    script = [httpx.Response(503), httpx.Response(200, json={"key": "k"})]

    def answer(request: httpx.Request) -> httpx.Response:
        return script.pop(0) if request.url.path == LOGIN else httpx.Response(200, json=[])

    client, recorder, sleeps = make(answer, token=None, username="u", password="p")
    assert scan(client) == [[]]
    assert recorder.paths() == [LOGIN, LOGIN, PAGE_PATH]
    assert len(sleeps) == 1

    keyless, _, _ = make(
        lambda r: httpx.Response(200, json={}), token=None, username="u", password="p"
    )
    with pytest.raises(AkinonBadResponse, match="no token"):
        scan(keyless)


def test_a_client_needs_a_token_or_full_credentials() -> None:
    with pytest.raises(AuthError):
        AkinonClient(BASE, username="u")


# ---------------------------------------------------------------------- 2. both list shapes


def test_plain_arrays_page_by_page_and_limit_until_a_short_page(make: Factory) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = page_number(request)
        return httpx.Response(200, json=records(page * 10, 3 if page < 3 else 1))

    client, recorder, _ = make(answer, page_size=3)
    pages = scan(client, params={"stock_list": "7"})
    assert [len(p) for p in pages] == [3, 3, 1]
    assert pages[1][0] == stock(20)
    # Pages past the short one may have been asked for ahead (see test_akinon_flight.py).
    assert sorted(recorder.pages())[:3] == ["1", "2", "3"]
    for request in recorder.requests:
        assert request.url.path == PAGE_PATH
        assert request.url.params["limit"] == "3"
        assert request.url.params["stock_list"] == "7"


def test_a_full_array_asks_once_more_and_an_empty_one_ends_paging(make: Factory) -> None:
    client, recorder, _ = make(
        lambda r: httpx.Response(200, json=records(1, 3) if page_number(r) == 1 else []),
        page_size=3,
    )
    assert scan(client) == [records(1, 3), []]
    assert sorted(recorder.pages())[:2] == ["1", "2"]


def test_an_array_longer_than_the_limit_is_the_whole_list(make: Factory) -> None:
    client, recorder, _ = make(lambda r: httpx.Response(200, json=records(1, 5)), page_size=3)
    assert scan(client) == [records(1, 5)]
    assert len(recorder.requests) == 1


def test_a_server_ignoring_page_is_not_read_twice(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    client, recorder, _ = make(lambda r: httpx.Response(200, json=records(1, 3)), page_size=3)
    with caplog.at_level(logging.WARNING, logger="publisher.akinon"):
        pages = scan(client)
    assert [r for page in pages for r in page] == records(1, 3)
    assert pages[-1].cut_short  # the scan saw only part of the list
    assert sorted(recorder.pages())[:2] == ["1", "2"]  # page 3 may have been asked ahead
    assert "akinon.page_repeated channel=5" in caplog.text


def test_paging_through_typed_pages_decodes_no_record_whole(make: Factory) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        number = page_number(request)
        found = records(3 * number - 2, 3 if number < 3 else 1)
        found[0]["extra_field"] = {"colour": "red"}  # would be read whole by `fields`
        return httpx.Response(200, json=found)

    client, _, _ = make(answer, page_size=3)
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.INSERTS_OR_UPDATES)
    typed = [page for page in pages if isinstance(page, RecordPage)]
    assert [page.keys for page in typed] == [[1, 2, 3], [4, 5, 6], [7]]
    assert not any(page._decoded for page in typed)  # only keys, forms and rows were read


@pytest.mark.parametrize("prefetch", [True, False])
def test_paginated_objects_follow_next_links_on_the_same_host(
    make: Factory, prefetch: bool
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = page_number(request)
        following = f"{BASE}/api/v1/channel/5/other/?page={page + 1}&limit=2" if page < 3 else None
        return paginated(following, records(page * 10, 2))

    client, recorder, _ = make(answer, page_size=2)
    assert [len(p) for p in scan(client, prefetch=prefetch)] == [2, 2, 2]
    # `count` says 99: pages past the third may have been asked for ahead, and dropped.
    assert recorder.paths()[:3] == [PAGE_PATH] + ["/api/v1/channel/5/other/"] * 2
    assert sorted(recorder.pages(), key=int)[:3] == ["1", "2", "3"]


def test_a_relative_next_link_stays_on_our_host(make: Factory) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return paginated("?page=2&limit=1" if page_number(request) == 1 else None, records(1, 1))

    client, recorder, _ = make(answer, page_size=1)
    assert len(scan(client)) == 2
    assert str(recorder.requests[1].url) == f"{BASE}{PAGE_PATH}?page=2&limit=1"


def test_a_paginated_page_without_next_ends_paging_even_when_full(make: Factory) -> None:
    client, recorder, _ = make(lambda r: paginated(None, records(1, 2)), page_size=2)
    assert scan(client) == [records(1, 2)]
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("prefetch", [True, False])
def test_pages_are_capped_when_a_server_keeps_sending_next(make: Factory, prefetch: bool) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return paginated(f"{BASE}{PAGE_PATH}?page={page_number(request) + 1}", records(1, 1))

    client, recorder, _ = make(answer, page_size=1, max_pages=3)
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.INSERTS_OR_UPDATES, prefetch=prefetch)
    assert [len(next(pages)) for _ in range(3)] == [1, 1, 1]
    with pytest.raises(AkinonProtocolError, match="more than 3 pages"):
        next(pages)
    assert len(recorder.requests) == 3


def test_the_default_page_cap_scales_with_the_page_size(make: Factory) -> None:
    small, _, _ = make(ok_empty, page_size=10)
    large, _, _ = make(ok_empty, page_size=1000)
    assert small._max_pages > 1_000_000 // 10
    assert large._max_pages > 1_000_000 // 1000
    assert small._max_pages > large._max_pages


def test_a_next_link_to_the_same_page_is_refused(make: Factory) -> None:
    client, recorder, _ = make(lambda r: paginated(str(r.url), records(1, 1)), page_size=1)
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.INSERTS_OR_UPDATES)
    assert next(pages) == records(1, 1)
    with pytest.raises(AkinonProtocolError, match="same page"):
        next(pages)
    assert len(recorder.requests) == 1


def test_pages_of_records_come_typed_and_equal_to_their_json(make: Factory) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if "prices" in request.url.path:
            return paginated(None, [price(1), price(2)])
        return httpx.Response(200, json=records(1, 2))

    client, _, _ = make(answer, page_size=3)
    (stocks,) = scan(client)
    (prices,) = client.iter_pages(5, Resource.PRICE, Endpoint.INSERTS_OR_UPDATES)
    assert isinstance(stocks, RecordPage) and isinstance(prices, RecordPage)
    assert stocks.keys == [1, 2] and prices.keys == [1, 2]
    assert list(stocks) == records(1, 2)
    assert list(prices) == [price(1), price(2)]


def test_a_page_with_a_record_the_typed_pass_cannot_read_comes_as_plain_dicts(
    make: Factory,
) -> None:
    page = [stock(1), stock(2) | {"pk": "2"}]
    client, _, _ = make(lambda r: httpx.Response(200, json=page))
    (found,) = scan(client)
    assert not found.is_typed and found == page


def test_every_element_of_a_page_is_passed_through_for_the_caller_to_judge(
    make: Factory,
) -> None:
    mixed = [{"pk": 1}, "junk", 3, None, [1], {"pk": 2}]
    client, _, _ = make(lambda r: paginated(None, mixed))
    assert scan(client) == [mixed]


# --------------------------------------------------------------------- 3. host pinning


@pytest.mark.parametrize(
    ("link", "named"),
    [
        ("https://evil.example/steal?page=2", "evil.example"),
        ("//evil.example/steal?page=2", "evil.example"),
        ("http://omni.example/api/v1/x/?page=2", "http://omni.example:80"),
        ("https://omni.example:8443/api/v1/x/?page=2", "omni.example:8443"),
    ],
)
def test_a_next_link_to_another_origin_is_refused_before_any_request_to_it(
    make: Factory, link: str, named: str
) -> None:
    client, recorder, _ = make(lambda r: paginated(link, records(1, 1)), page_size=1)
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.INSERTS_OR_UPDATES)
    assert next(pages) == records(1, 1)  # the page itself is fine: the caller gets it first
    with pytest.raises(AkinonProtocolError, match=named.replace(".", r"\.")):
        next(pages)
    assert [str(r.url.netloc, "ascii") for r in recorder.requests] == ["omni.example"]


@pytest.mark.parametrize("location", ["https://evil.example/", f"{BASE}{PAGE_PATH}?page=1"])
def test_redirects_are_never_followed(make: Factory, location: str) -> None:
    client, recorder, _ = make(lambda r: httpx.Response(302, headers={"Location": location}))
    with pytest.raises(AkinonProtocolError, match="redirect") as caught:
        scan(client)
    assert location in str(caught.value)
    assert len(recorder.requests) == 1


# ------------------------------------------------------------------------- 4. timeouts


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (30.0, {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}),
        (3.0, {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}),
    ],
)
def test_every_request_has_timeouts(
    make: Factory, timeout: float, expected: dict[str, float]
) -> None:
    client, recorder, _ = make(ok_empty, timeout=timeout)
    scan(client)
    assert recorder.requests[0].extensions["timeout"] == expected


# -------------------------------------------------------------------------- 5. retries


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.PoolTimeout,
        httpx.ReadError,
        httpx.RemoteProtocolError,
    ],
)
def test_transport_failures_are_retried(make: Factory, error: type[httpx.RequestError]) -> None:
    failures = [error]

    def answer(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop()("boom", request=request)
        return httpx.Response(200, json=records(1, 1))

    client, recorder, sleeps = make(answer)
    assert scan(client) == [records(1, 1)]
    assert len(recorder.requests) == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_retried(make: Factory, status: int) -> None:
    script = [httpx.Response(status), httpx.Response(200, json=[])]
    client, recorder, sleeps = make(lambda r: script.pop(0), backoff_cap=10)
    assert scan(client) == [[]]
    assert len(recorder.requests) == 2
    assert 0.25 <= sleeps[0] <= 0.5  # the first back-off step, equal jitter


@pytest.mark.parametrize(
    ("status", "header", "pause"),
    [
        (429, "4", 4.0),
        (429, "120", 10.0),
        (503, "2", 2.0),
        (429, "Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ],
)
def test_retry_after_is_honoured_and_capped(
    make: Factory, status: int, header: str, pause: float
) -> None:
    script = [httpx.Response(status, headers={"Retry-After": header}), httpx.Response(200, json=[])]
    client, _, sleeps = make(lambda r: script.pop(0), backoff_cap=10)
    scan(client)
    assert sleeps == [pause]


def test_retries_run_out_into_unavailable_naming_where_and_why(make: Factory) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if page_number(request) == 1:
            return httpx.Response(200, json=records(1, 2))
        raise httpx.ConnectError("refused", request=request)

    # One page in flight: the retries of page 2 alone (pages in flight: test_akinon_flight.py).
    client, recorder, sleeps = make(
        answer, page_size=2, max_retries=4, backoff_cap=3, max_in_flight=1
    )
    with pytest.raises(AkinonUnavailable) as caught:
        scan(client)
    assert len(recorder.requests) == 1 + 5
    assert len(sleeps) == 4
    for attempt, pause in enumerate(sleeps):
        step = min(3.0, 0.5 * 2**attempt)
        assert step / 2 <= pause <= step
    message = str(caught.value)
    for part in ("channel=5", "endpoint=extra_product_stocks/inserts_or_updates", "page=2"):
        assert part in message
    assert "ConnectError: refused" in message
    assert "5 attempts" in message


def test_no_retries_means_one_attempt(make: Factory) -> None:
    client, recorder, sleeps = make(lambda r: httpx.Response(502), max_retries=0)
    with pytest.raises(AkinonUnavailable, match="HTTP 502"):
        scan(client)
    assert len(recorder.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [400, 403, 404, 405, 409, 422])
def test_other_4xx_are_protocol_errors_without_retry(make: Factory, status: int) -> None:
    client, recorder, sleeps = make(
        lambda r: httpx.Response(status, json={"detail": "Not   found.\n" + "x" * 500})
    )
    with pytest.raises(AkinonProtocolError) as caught:
        scan(client)
    assert len(recorder.requests) == 1
    assert sleeps == []
    message = str(caught.value)
    assert f"HTTP {status}" in message
    assert "channel=5 endpoint=extra_product_stocks/inserts_or_updates page=1" in message
    assert '{"detail":"Not found.' in message  # whitespace collapsed
    assert len(message) < 400  # a snippet, not the whole body


# ----------------------------------------------------------------------- 6. bad bodies


def test_invalid_json_is_retried_then_a_bad_response_naming_where(make: Factory) -> None:
    client, recorder, sleeps = make(
        lambda r: httpx.Response(200, content=b'[{"pk": 1'), max_retries=2
    )
    with pytest.raises(AkinonBadResponse) as caught:
        scan(client)
    assert len(recorder.requests) == 3
    assert len(sleeps) == 2
    message = str(caught.value)
    for part in ("channel=5", "inserts_or_updates", "page=1", "invalid JSON"):
        assert part in message


def test_a_truncated_body_once_is_retried_and_read(make: Factory) -> None:
    script = [httpx.Response(200, content=b'{"next": null, "resu'), paginated(None, records(1, 2))]
    client, recorder, _ = make(lambda r: script.pop(0))
    assert scan(client) == [records(1, 2)]
    assert len(recorder.requests) == 2


@pytest.mark.parametrize("body", [{"detail": "x"}, {"results": "nope"}, "text", 7, None])
def test_json_of_neither_shape_is_a_bad_response_at_once(make: Factory, body: Any) -> None:
    client, recorder, _ = make(lambda r: httpx.Response(200, content=orjson.dumps(body)))
    with pytest.raises(AkinonBadResponse, match="neither a JSON array") as caught:
        scan(client)
    assert "channel=5" in str(caught.value)
    assert "page=1" in str(caught.value)
    assert len(recorder.requests) == 1


# ------------------------------------------------------------------ 7. error translation


@pytest.mark.parametrize(
    ("error", "expected", "attempts"),
    [
        (httpx.ConnectError, AkinonUnavailable, 3),
        (httpx.ConnectTimeout, AkinonUnavailable, 3),
        (httpx.ReadTimeout, AkinonUnavailable, 3),
        (httpx.WriteTimeout, AkinonUnavailable, 3),
        (httpx.PoolTimeout, AkinonUnavailable, 3),
        (httpx.ReadError, AkinonUnavailable, 3),
        (httpx.WriteError, AkinonUnavailable, 3),
        (httpx.CloseError, AkinonUnavailable, 3),
        (httpx.RemoteProtocolError, AkinonUnavailable, 3),
        (httpx.ProxyError, AkinonUnavailable, 3),
        (httpx.DecodingError, AkinonBadResponse, 3),
        (httpx.LocalProtocolError, AkinonProtocolError, 1),
        (httpx.UnsupportedProtocol, AkinonProtocolError, 1),
        (httpx.TooManyRedirects, AkinonProtocolError, 1),
    ],
)
@pytest.mark.parametrize("call", ["scan", "channel", "get_price", "acknowledge"])
def test_every_httpx_error_is_translated(
    make: Factory,
    error: type[httpx.RequestError],
    expected: type[PublisherError],
    attempts: int,
    call: str,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    client, recorder, _ = make(answer, max_retries=2)
    calls: dict[str, Callable[[], object]] = {
        "scan": lambda: scan(client),
        "channel": lambda: client.channel(5),
        "get_price": lambda: client.get_price(5, 3),
        "acknowledge": lambda: client.acknowledge(5, Resource.STOCK, [(1, "d")]),
    }
    with pytest.raises(PublisherError) as caught:
        calls[call]()
    assert type(caught.value) is expected
    assert "channel=5" in str(caught.value)
    assert error.__name__ in str(caught.value)
    assert len(recorder.requests) == attempts


# ------------------------------------------------------------------------- 8. secrets


def test_reprs_and_logs_never_show_the_token_or_the_password(
    make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    cache = TokenCache()
    script = [httpx.Response(503), httpx.Response(401), httpx.Response(503)]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == LOGIN:
            return httpx.Response(200, json={"key": "s3cret-key"})
        return script.pop(0) if script else httpx.Response(401)

    fixed, _, _ = make(ok_empty, token="t0ken")
    login, _, _ = make(answer, token=None, username="u", password="pa55word", token_cache=cache)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as caught:
        scan(login)
    shown = [repr(fixed), repr(login), repr(cache), str(caught.value), caplog.text]
    for secret in ("t0ken", "s3cret-key", "pa55word"):
        assert all(secret not in text for text in shown)
    assert repr(fixed) == "AkinonClient('https://omni.example', auth='token')"
    assert "akinon.retry channel=5 endpoint=extra_product_stocks/inserts_or_updates" in caplog.text
    assert "attempt=1 max_retries=5 wait_s=" in caplog.text


def test_a_base_url_with_userinfo_is_refused_without_showing_it(make: Factory) -> None:
    with pytest.raises(ConfigError) as refused:
        make(ok_empty, base_url="https://user:hunter2@omni.example/")
    assert "hunter2" not in str(refused.value)


# ------------------------------------------------------------------------ 9. prefetch


def endless(page_size: int) -> Handler:
    return lambda r: httpx.Response(200, json=records(page_number(r) * 100, page_size))


def test_the_next_page_is_fetched_while_the_caller_works(make: Factory) -> None:
    second_asked = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        if page_number(request) == 2:
            second_asked.set()
        return httpx.Response(200, json=records(1, 2) if page_number(request) == 1 else [])

    client, _, _ = make(answer, page_size=2)
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.UPDATES)
    assert next(pages) == records(1, 2)
    assert second_asked.wait(2)  # asked for before the caller wants it
    assert list(pages) == [[]]


def test_without_prefetch_pages_are_fetched_on_demand(make: Factory) -> None:
    client, recorder, _ = make(endless(2), page_size=2)
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.UPDATES, prefetch=False)
    next(pages)
    time.sleep(0.05)
    assert len(recorder.requests) == 1
    next(pages)
    assert len(recorder.requests) == 2
    pages.close()  # type: ignore[attr-defined]


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("akinon-page")]


def test_stopping_early_ends_the_prefetch_thread(make: Factory) -> None:
    client, recorder, _ = make(endless(2), page_size=2)  # an endless queue
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.UPDATES)
    assert len(next(pages)) == 2
    pages.close()  # type: ignore[attr-defined]
    assert prefetch_threads() == []
    assert len(recorder.requests) <= 1 + client.window.size

    for _ in client.iter_pages(5, Resource.STOCK, Endpoint.UPDATES):
        break
    assert prefetch_threads() == []


def test_stopping_during_a_long_retry_pause_returns_at_once() -> None:
    asked = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        if page_number(request) == 1:
            return httpx.Response(200, json=records(1, 2))
        asked.set()
        return httpx.Response(503, headers={"Retry-After": "30"})

    # The real clock (the default sleep): the helper must not sit out the 30 s pause.
    with AkinonClient(
        BASE,
        token="t",
        page_size=2,
        transport=httpx.MockTransport(answer),
        token_cache=TokenCache(),
    ) as client:
        pages = client.iter_pages(5, Resource.STOCK, Endpoint.UPDATES)
        next(pages)
        assert asked.wait(2)
        started = time.monotonic()
        pages.close()  # type: ignore[attr-defined]
        assert time.monotonic() - started < 5
    assert prefetch_threads() == []


@pytest.mark.parametrize("prefetch", [True, False])
def test_an_error_on_the_next_page_surfaces_when_that_page_is_asked_for(
    make: Factory, prefetch: bool
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if page_number(request) == 1:
            return httpx.Response(200, json=records(1, 2))
        return httpx.Response(404, json={"detail": "gone"})

    client, recorder, _ = make(answer, page_size=2)
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.UPDATES, prefetch=prefetch)
    assert next(pages) == records(1, 2)
    if not prefetch:
        assert len(recorder.requests) == 1  # page 2 is only asked for on demand
    with pytest.raises(AkinonProtocolError, match="page=2"):
        next(pages)
    assert prefetch_threads() == []


def test_the_client_reuses_one_connection_pool(make: Factory) -> None:
    client, _, _ = make(endless(1), page_size=1)
    pool = client._http
    pages = client.iter_pages(5, Resource.STOCK, Endpoint.UPDATES)
    for _ in range(3):
        next(pages)
    pages.close()  # type: ignore[attr-defined]
    assert client._http is pool
    with client:
        pass
    assert pool.is_closed


# ----------------------------------------------------------------- single records, ack


def batch_server(pk: Any = 77) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json={"pk": pk, "status": "initialized"})
        return httpx.Response(200, json={"pk": pk})

    return answer


def test_acknowledge_opens_commits_and_closes_a_batch_with_the_dates_as_read(
    make: Factory,
) -> None:
    client, recorder, _ = make(batch_server())
    client.acknowledge(5, Resource.PRICE, [(1, "2026-01-01T00:00:00.123456Z"), (2, "d2")])
    assert [(r.method, r.url.path) for r in recorder.requests] == [
        ("POST", "/api/v1/channel/5/batch_requests/"),
        ("PATCH", "/api/v1/channel/5/batch_requests/77/"),
        ("PATCH", "/api/v1/channel/5/batch_requests/77/"),
    ]
    assert orjson.loads(recorder.requests[0].content) == {"channel": 5}
    items = [
        {"pk": 1, "version_date": "2026-01-01T00:00:00.123456Z", "content_type": "productprice"},
        {"pk": 2, "version_date": "d2", "content_type": "productprice"},
    ]
    assert orjson.loads(recorder.requests[1].content) == {
        "status": "commit",
        "content_type": "productprice",
        "objects": items,
    }
    assert orjson.loads(recorder.requests[2].content) == {"status": "done", "objects": items}
    assert {r.headers["Authorization"] for r in recorder.requests} == {"Token t0ken"}


def test_acknowledging_nothing_sends_nothing(make: Factory) -> None:
    client, recorder, _ = make(batch_server())
    client.acknowledge(5, Resource.STOCK, [])
    assert recorder.requests == []


def test_acknowledge_uses_the_stock_content_type(make: Factory) -> None:
    client, recorder, _ = make(batch_server())
    client.acknowledge(5, Resource.STOCK, [(9, "d")])
    assert orjson.loads(recorder.requests[1].content)["content_type"] == "productstock"


@pytest.mark.parametrize("pk", [None, "", True, "../../x", {"a": 1}])
def test_a_batch_without_a_usable_pk_is_a_bad_response(make: Factory, pk: Any) -> None:
    client, recorder, _ = make(batch_server(pk))
    with pytest.raises(AkinonBadResponse, match="pk"):
        client.acknowledge(5, Resource.STOCK, [(9, "d")])
    assert len(recorder.requests) == 1


def test_single_price_and_channel(make: Factory) -> None:
    client, recorder, _ = make(lambda r: httpx.Response(200, json={"id": 3}))
    assert client.get_price(5, 3) == {"id": 3}
    assert client.get_price(5, 3, detailed=True) == {"id": 3}
    assert client.channel(5) == {"id": 3}
    assert recorder.paths() == [
        "/api/v1/channel/5/extra_product_prices/3/",
        "/api/v1/channel/5/extra_product_prices/3/detailed/",
        "/api/v1/channels/5/",
    ]


def test_a_single_record_that_is_not_an_object_is_a_bad_response(make: Factory) -> None:
    client, _, _ = make(lambda r: httpx.Response(200, json=[1]))
    with pytest.raises(AkinonBadResponse, match="expected a JSON object"):
        client.get_price(5, 3)


def test_from_settings_takes_url_credentials_and_paging() -> None:
    settings = Settings(
        akinon_url="https://omni.example/",
        akinon_token="from-settings",
        akinon_channels=[5],
        akinon_page_size=7,
        akinon_max_retries=1,
    )
    recorder = Recorder(ok_empty)
    with AkinonClient.from_settings(
        settings, transport=httpx.MockTransport(recorder), token_cache=TokenCache()
    ) as client:
        scan(client)
    request = recorder.requests[0]
    assert str(request.url).startswith(f"{BASE}{PAGE_PATH}")
    assert request.url.params["limit"] == "7"
    assert request.headers["Authorization"] == "Token from-settings"


@pytest.mark.parametrize("paginated", [False, True])
def test_a_page_carries_the_servers_clock_from_its_date_header(
    make: Factory, paginated: bool
) -> None:
    """Future-dated records are judged by Akinon's clock, not ours (issue 17 item 10)."""
    rows = records(1, 2)
    body: Any = {"count": 2, "next": None, "results": rows} if paginated else rows
    date = "Tue, 01 Dec 2026 10:00:00 GMT"
    client, _, _ = make(lambda r: httpx.Response(200, json=body, headers={"Date": date}))
    (page,) = list(client.iter_pages(5, Resource.STOCK, Endpoint.LIST))
    assert page.served_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    client, _, _ = make(lambda r: httpx.Response(200, json=body, headers={"Date": "soon"}))
    (page,) = list(client.iter_pages(5, Resource.STOCK, Endpoint.LIST))
    assert page.served_at is None  # an unreadable clock: ours stands in
