"""The sandbox over real HTTP on loopback: what a client of Akinon would see."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from publisher.sandbox import Catalog, Faults, SandboxServer

pytestmark = pytest.mark.integration

TOKEN = "sandbox-token"
STOCKS = "/api/v1/channel/1/extra_product_stocks/"
PRICES = "/api/v1/channel/1/extra_product_prices/"
BATCHES = "/api/v1/channel/1/batch_requests/"
MONEY = re.compile(r"^\d+\.\d{2}$")


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    catalog = Catalog.seeded(channels=[1, 2], size=25, seed=11)
    with SandboxServer(catalog) as running:
        yield running


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Token {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=5) as session:
        yield session


@pytest.fixture
def anonymous(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as session:
        yield session


def _keys(records: list[dict[str, Any]], key: str = "pk") -> list[int]:
    return [record[key] for record in records]


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _commit(client: httpx.Client, content_type: str, records: list[dict[str, Any]]) -> int:
    batch = client.post(BATCHES, json={"channel": 1})
    assert batch.status_code == 201
    key = "pk" if content_type == "productstock" else "id"
    objects = [
        {"pk": r[key], "version_date": r["modified_date"], "content_type": content_type}
        for r in records
    ]
    body = {"status": "commit", "content_type": content_type, "objects": objects}
    answer = client.patch(f"{BATCHES}{batch.json()['pk']}/", json=body)
    assert answer.status_code == 200, answer.text
    return int(batch.json()["pk"])


# -- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Token wrong", f"Bearer {TOKEN}", "Token"])
def test_requests_without_a_good_token_get_401_json(
    anonymous: httpx.Client, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = anonymous.get(STOCKS, headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "Invalid token."}
    assert answer.headers["WWW-Authenticate"] == "Token"


def test_login_hands_out_the_token_and_is_counted(
    anonymous: httpx.Client, server: SandboxServer
) -> None:
    login = anonymous.post(
        "/api/v1/auth/login/", json={"username": "sandbox", "password": "sandbox"}
    )
    assert login.status_code == 200
    key = login.json()["key"]
    assert anonymous.get(STOCKS, headers={"Authorization": f"Token {key}"}).status_code == 200
    assert anonymous.get("/_control/state").json()["logins"] == 1
    assert server.state()["logins"] == 1


def test_login_with_wrong_credentials_is_401_json(anonymous: httpx.Client) -> None:
    answer = anonymous.post("/api/v1/auth/login/", json={"username": "sandbox", "password": "nope"})
    assert answer.status_code == 401
    assert "detail" in answer.json()
    assert anonymous.get("/_control/state").json()["logins"] == 0


# -- channels, lists and paging -----------------------------------------------------------


def test_channel_endpoint_and_unknown_channel(client: httpx.Client) -> None:
    assert client.get("/api/v1/channels/2/").json() == {
        "pk": 2,
        "name": "Sandbox channel 2",
        "is_active": True,
    }
    for path in ("/api/v1/channels/9/", "/api/v1/channel/9/extra_product_stocks/"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.json() == {"detail": "Not found."}


def test_following_next_links_visits_every_record_once(
    client: httpx.Client, server: SandboxServer
) -> None:
    url: str | None = f"{STOCKS}?limit=7"
    seen: list[int] = []
    pages = []
    while url is not None:
        body = client.get(url).json()
        assert body["count"] == 25
        seen.extend(_keys(body["results"]))
        pages.append(body)
        url = body["next"]
    assert seen == _keys(server.catalog.records(1, "stock"))
    assert len(pages) == 4
    assert pages[0]["previous"] is None
    assert pages[-1]["next"] is None
    assert pages[0]["next"] == f"{server.url}{STOCKS}?limit=7&page=2"
    assert pages[1]["previous"] == f"{server.url}{STOCKS}?limit=7"  # page 1 has no page=


def test_next_links_keep_filters_and_use_the_host_header(client: httpx.Client) -> None:
    params = {"limit": "2", "product__pk__in": "100001,100002,100003", "ignored": "x"}
    answer = client.get(PRICES, params=params, headers={"Host": "omnitron.example:8080"})
    body = answer.json()
    assert body["count"] == 3
    assert body["next"].startswith("http://omnitron.example:8080" + PRICES)
    assert _query(body["next"]) == {
        "ignored": ["x"],
        "limit": ["2"],
        "page": ["2"],
        "product__pk__in": ["100001,100002,100003"],
    }


def test_a_page_past_the_end_is_404_when_paginated_and_empty_when_plain(
    client: httpx.Client,
) -> None:
    beyond = client.get(STOCKS, params={"limit": 10, "page": 4})
    assert beyond.status_code == 404
    assert beyond.json() == {"detail": "Invalid page."}
    assert client.get(f"{STOCKS}inserts/", params={"limit": 10, "page": 4}).json() == []


def test_default_shapes_follow_the_documentation(client: httpx.Client) -> None:
    stock_inserts = client.get(f"{STOCKS}inserts/", params={"limit": 10, "page": 3}).json()
    assert isinstance(stock_inserts, list)
    assert _keys(stock_inserts) == list(range(1_000_021, 1_000_026))
    assert isinstance(client.get(f"{STOCKS}updates/").json(), list)
    for path in (STOCKS, f"{STOCKS}detailed/", PRICES, f"{PRICES}inserts/", f"{PRICES}updates/"):
        body = client.get(path).json()
        assert set(body) == {"count", "next", "previous", "results"}, path
    assert len(client.get(f"{STOCKS}inserts_or_updates/").json()) == 10  # default limit


def test_shape_can_be_switched_for_all_endpoints_or_one(client: httpx.Client) -> None:
    answer = client.put("/_control/shape", json={"shape": "array"})
    assert answer.json()["effective"]["price/list"] == "array"
    assert isinstance(client.get(PRICES).json(), list)
    client.put(
        "/_control/shape",
        json={"shape": "paginated", "overrides": {"price/updates": "array"}},
    )
    assert "results" in client.get(f"{STOCKS}inserts/").json()
    assert client.get(f"{PRICES}updates/").json() == []
    assert client.put("/_control/shape", json={"shape": "xml"}).status_code == 400


def test_filters_over_http(client: httpx.Client, server: SandboxServer) -> None:
    newest = max(r["modified_date"] for r in server.catalog.records(1, "price"))
    client.post("/_control/records/1/price", json={"id": 1_000_004, "price": "5.00"})
    changed = client.get(PRICES, params={"modified_date__gt": newest}).json()
    assert _keys(changed["results"], "id") == [1_000_004]
    assert changed["results"][0]["price"] == "5.00"
    by_key = client.get(PRICES, params={"pk__in": "1000002,1000009"}).json()
    assert _keys(by_key["results"], "id") == [1_000_002, 1_000_009]
    other_list = server.catalog.list_id(2, "stock")
    assert client.get(STOCKS, params={"stock_list": other_list}).json()["count"] == 0
    assert client.get(STOCKS, params={"product": ""}).json()["count"] == 25  # empty: no filter
    bad = client.get(STOCKS, params={"modified_date__gte": "soon"})
    assert bad.status_code == 400
    assert "modified_date__gte" in bad.json()


def test_single_price_and_its_detailed_view(client: httpx.Client) -> None:
    one = client.get(f"{PRICES}1000003/").json()
    assert one["id"] == 1_000_003
    assert client.get(f"{PRICES}1000003/detailed/").json() == one
    missing = client.get(f"{PRICES}5/")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not found."}


def test_money_arrives_as_decimal_strings_never_floats(client: httpx.Client) -> None:
    def no_floats(text: str) -> float:
        raise AssertionError(f"float in payload: {text}")

    raw = client.get(PRICES, params={"limit": 25}).text
    body = json.loads(raw, parse_float=no_floats)
    for record in body["results"]:
        for name in ("tax_rate", "price", "adjusted_price"):
            assert MONEY.match(record[name]), (name, record[name])
        for name in ("retail_price", "discount_percentage"):
            assert record[name] is None or MONEY.match(record[name])


def test_unknown_paths_and_wrong_methods(client: httpx.Client) -> None:
    missing = client.get("/api/v1/channel/1/nothing/")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})
    wrong = client.delete(STOCKS)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET"
    assert "detail" in wrong.json()
    assert client.get("/_control/nothing").status_code == 404


def test_a_sandbox_bug_answers_500_json_and_keeps_serving(
    client: httpx.Client, server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(server.catalog, "page", broken)
    answer = client.get(STOCKS)
    assert (answer.status_code, answer.json()) == (500, {"detail": "Internal sandbox error."})
    monkeypatch.undo()
    assert client.get(STOCKS).status_code == 200


def test_one_connection_carries_many_requests(server: SandboxServer) -> None:
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)
    try:
        sockets = []
        for _ in range(3):
            connection.request("GET", STOCKS, headers={"Authorization": f"Token {TOKEN}"})
            answer = connection.getresponse()
            body = answer.read()
            assert int(answer.headers["Content-Length"]) == len(body)
            sockets.append(connection.sock)
        assert sockets[0] is not None
        assert sockets.count(sockets[0]) == 3
    finally:
        connection.close()


def test_head_is_refused_without_a_body_and_the_connection_survives(
    server: SandboxServer,
) -> None:
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=5)
    auth = {"Authorization": f"Token {TOKEN}"}
    try:
        connection.request("HEAD", STOCKS, headers=auth)
        head = connection.getresponse()
        assert (head.status, head.read()) == (405, b"")
        connection.request("GET", STOCKS, headers=auth)
        assert json.loads(connection.getresponse().read())["count"] == 25
    finally:
        connection.close()


def test_stopping_hangs_up_kept_alive_connections() -> None:
    server = SandboxServer(Catalog.seeded(channels=[1], size=3)).start()
    headers = {"Authorization": f"Token {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=2) as session:
        assert session.get(STOCKS).status_code == 200
        server.stop()
        with pytest.raises(httpx.TransportError):
            session.get(STOCKS)


# -- the work queue -----------------------------------------------------------------------


def test_commit_removes_records_from_inserts_and_changes_return_as_updates(
    client: httpx.Client,
) -> None:
    first = client.get(f"{STOCKS}inserts/", params={"limit": 5}).json()
    _commit(client, "productstock", first)
    remaining = client.get(f"{STOCKS}inserts/", params={"limit": 100}).json()
    assert len(remaining) == 20
    assert not set(_keys(first)) & set(_keys(remaining))
    assert client.get(f"{STOCKS}updates/").json() == []
    changed = client.post("/_control/records/1/stock", json={"pk": first[1]["pk"], "stock": 999})
    updates = client.get(f"{STOCKS}updates/").json()
    assert updates == [changed.json()]
    both = client.get(f"{STOCKS}inserts_or_updates/", params={"limit": 100}).json()
    assert len(both) == 21


def test_a_change_between_read_and_commit_is_not_lost(client: httpx.Client) -> None:
    read = client.get(f"{PRICES}inserts/", params={"limit": 1}).json()["results"]
    client.post("/_control/records/1/price", json={"id": read[0]["id"], "price": "1.00"})
    _commit(client, "productprice", read)
    updates = client.get(f"{PRICES}updates/").json()["results"]
    assert _keys(updates, "id") == [read[0]["id"]]
    assert updates[0]["price"] == "1.00"


def test_fail_gives_records_back_and_a_second_commit_waits(client: httpx.Client) -> None:
    records = client.get(f"{STOCKS}inserts/", params={"limit": 3}).json()
    batch = _commit(client, "productstock", records)
    second = client.post(BATCHES, json={"channel": 1}).json()["pk"]
    refused = client.patch(
        f"{BATCHES}{second}/",
        json={"status": "commit", "content_type": "productstock", "objects": []},
    )
    assert refused.status_code == 400
    assert "already in commit" in refused.text
    state = client.get("/_control/state").json()
    assert [b["pk"] for b in state["batches"]["open"]] == [batch, second]
    failed = client.patch(f"{BATCHES}{batch}/", json={"status": "fail"})
    assert failed.json()["status"] == "fail"
    again = client.get(f"{STOCKS}inserts/", params={"limit": 3}).json()
    assert _keys(again) == _keys(records)
    allowed = client.patch(
        f"{BATCHES}{second}/",
        json={"status": "commit", "content_type": "productstock", "objects": []},
    )
    assert allowed.status_code == 200


def test_batch_answers_look_like_akinons(client: httpx.Client) -> None:
    created = client.post(BATCHES, json={"channel": 1})
    body = created.json()
    assert created.status_code == 201
    assert body["status"] == "initialized"
    assert body["content_type"] is None
    assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4", body["local_batch_id"])
    assert client.get(f"{BATCHES}{body['pk']}/").json()["local_batch_id"] == body["local_batch_id"]
    skipped = client.patch(f"{BATCHES}{body['pk']}/", json={"status": "done"})
    assert skipped.status_code == 400
    assert client.patch(f"{BATCHES}999/", json={"status": "fail"}).status_code == 404
    mismatch = client.post(BATCHES, json={"channel": 2})
    assert mismatch.status_code == 400


def test_done_closes_the_batch_and_acknowledgements_are_visible(client: httpx.Client) -> None:
    records = client.get(f"{STOCKS}inserts/", params={"limit": 2}).json()
    batch = _commit(client, "productstock", records)
    done = client.patch(f"{BATCHES}{batch}/", json={"status": "done"})
    assert done.json()["status"] == "done"
    assert client.get("/_control/state").json()["batches"]["open"] == []
    acks = client.get("/_control/acknowledgements/1/stock").json()
    assert acks == {str(r["pk"]): r["modified_date"] for r in records}


# -- faults -------------------------------------------------------------------------------


def test_latency_slows_api_requests_but_not_control(client: httpx.Client) -> None:
    client.put("/_control/faults", json={"latency_ms": 150})
    started = time.perf_counter()
    assert client.get(STOCKS).status_code == 200
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    client.get("/_control/faults")
    assert time.perf_counter() - started < 0.15


def test_fail_next_answers_that_many_requests_with_the_status(client: httpx.Client) -> None:
    client.put("/_control/faults", json={"fail_next": 2, "fail_status": 502})
    statuses = [client.get(STOCKS).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert client.get("/_control/faults").json()["fail_next"] == 0


def test_error_rate_is_reproducible(client: httpx.Client) -> None:
    def run() -> list[int]:
        client.put("/_control/faults", json={"error_rate": 0.5, "seed": 3})
        return [client.get(STOCKS).status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert set(first) == {200, 503}


def test_rate_limit_sends_429_with_retry_after(client: httpx.Client, server: SandboxServer) -> None:
    server.faults = Faults(rate_limit_next=1, retry_after=7)
    limited = client.get(STOCKS)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert client.get(STOCKS).status_code == 200


def test_truncated_list_breaks_mid_body_then_recovers(client: httpx.Client) -> None:
    client.put("/_control/faults", json={"truncate_next": 1})
    assert client.get("/api/v1/channels/1/").status_code == 200  # not a list: untouched
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(STOCKS, params={"limit": 25})
    assert client.get(STOCKS, params={"limit": 25}).json()["count"] == 25


def test_garbled_list_is_a_whole_answer_that_is_not_json_then_recovers(
    client: httpx.Client,
) -> None:
    client.put("/_control/faults", json={"garble_next": 1})
    garbled = client.get(STOCKS, params={"limit": 25})
    assert garbled.status_code == 200
    with pytest.raises(ValueError):
        garbled.json()
    assert client.get(STOCKS, params={"limit": 25}).json()["count"] == 25


def test_foreign_next_points_away_from_the_request_host(client: httpx.Client) -> None:
    client.patch("/_control/faults", json={"foreign_next": True})
    body = client.get(STOCKS).json()
    assert urlsplit(body["next"]).hostname == "evil.example.invalid"


def test_unauthorized_next_rejects_a_good_token_until_used_up(client: httpx.Client) -> None:
    client.put("/_control/faults", json={"unauthorized_next": 1})
    first = client.get(STOCKS)
    assert (first.status_code, first.json()) == (401, {"detail": "Invalid token."})
    login = client.post("/api/v1/auth/login/", json={"username": "sandbox", "password": "sandbox"})
    assert login.status_code == 200
    assert client.get(STOCKS).status_code == 200


def test_bad_fault_settings_are_refused(client: httpx.Client) -> None:
    answer = client.put("/_control/faults", json={"fail_later": 1})
    assert answer.status_code == 400
    assert "fail_later" in answer.json()["detail"]


# -- control API --------------------------------------------------------------------------


def test_control_upsert_creates_and_changes_records(client: httpx.Client) -> None:
    created = client.post("/_control/records/2/stock", json={"pk": 2_500_000, "stock": 4})
    assert created.status_code == 200
    assert created.json()["stock_list"] == 21
    served = client.get(
        "/api/v1/channel/2/extra_product_stocks/", params={"pk__in": "2500000"}
    ).json()
    assert served["results"] == [created.json()]
    missing_key = client.post("/_control/records/2/stock", json={"stock": 4})
    assert missing_key.status_code == 400
    wrong_type = client.post("/_control/records/2/stock", json={"pk": 2_000_001, "stock": "4"})
    assert wrong_type.status_code == 400
    assert client.post("/_control/records/2/lamp", json={"pk": 1}).status_code == 404


def test_control_delete_removes_a_record(client: httpx.Client) -> None:
    assert client.delete("/_control/records/1/price/1000002").status_code == 200
    assert client.get(f"{PRICES}1000002/").status_code == 404
    assert client.delete("/_control/records/1/price/1000002").status_code == 404
    assert client.get(PRICES).json()["count"] == 24


def _everything(server: SandboxServer) -> dict[tuple[int, str, int], dict[str, Any]]:
    return {
        (channel, resource, record["pk" if resource == "stock" else "id"]): record
        for channel in (1, 2)
        for resource in ("stock", "price")
        for record in server.catalog.records(channel, resource)
    }


def test_control_churn_changes_records_now_and_in_the_background(
    client: httpx.Client, server: SandboxServer
) -> None:
    before = _everything(server)
    answer = client.post("/_control/churn", json={"count": 4, "seed": 1}).json()
    assert len(answer["changed"]) == 4
    after = _everything(server)
    touched = {(c["channel_id"], c["resource"], c["pk"]) for c in answer["changed"]}
    assert {key for key in before if before[key] != after[key]} == touched
    client.post("/_control/churn", json={"rate": 200})
    time.sleep(0.3)
    running = client.get("/_control/state").json()["churn"]
    assert running["rate"] == 200
    assert running["changed"] > 0
    stopped = client.post("/_control/churn", json={"rate": 0}).json()
    assert stopped["churn"]["rate"] == 0
    assert client.post("/_control/churn", json={}).status_code == 400


def test_run_churn_from_python_changes_records_until_stopped(server: SandboxServer) -> None:
    before = _everything(server)
    server.run_churn(300, seed=4)
    time.sleep(0.3)
    server.stop_churn()
    settled = _everything(server)
    assert settled != before
    time.sleep(0.1)
    assert _everything(server) == settled


def test_control_malformed_serves_bad_values_and_dropped_fields(client: httpx.Client) -> None:
    bad = {"channel_id": 1, "resource": "stock", "pk": 1_000_002, "field": "stock"}
    client.post("/_control/malformed", json={**bad, "value": "abc"})
    page = client.get(f"{STOCKS}inserts/", params={"limit": 2}).json()
    assert page[1]["stock"] == "abc"
    price = {"channel_id": 1, "resource": "price", "pk": 1_000_001, "field": "price"}
    client.post("/_control/malformed", json={**price, "value": "not-a-number"})
    assert client.get(f"{PRICES}1000001/").json()["price"] == "not-a-number"
    client.post("/_control/malformed", json={**price, "drop": True})
    assert "price" not in client.get(f"{PRICES}1000001/").json()
    client.post("/_control/malformed", json={**price, "clear": True})
    assert MONEY.match(client.get(f"{PRICES}1000001/").json()["price"])
    assert client.post("/_control/malformed", json=bad).status_code == 400


def test_reset_reseeds_and_clears_faults_and_counters(client: httpx.Client) -> None:
    client.delete("/_control/records/1/stock/1000001")
    client.put("/_control/faults", json={"fail_next": 5})
    state = client.post("/_control/reset", json={"size": 5}).json()
    assert state["faults"]["fail_next"] == 0
    assert state["requests"] == 0
    assert state["channels"][0]["records"] == {"stock": 5, "price": 5}
    assert client.get(STOCKS).json()["count"] == 5


def test_state_reports_requests_per_route(client: httpx.Client) -> None:
    client.get(STOCKS)
    client.get(f"{PRICES}1000001/")
    client.get(STOCKS, headers={"Authorization": "Token wrong"})
    state = client.get("/_control/state").json()
    assert state["requests"] == 3
    assert state["requests_by_route"] == {"list": 2, "price": 1}
    assert {"channels", "faults", "shape", "batches", "logins", "churn"} <= set(state)
    assert "POST /_control/churn" in client.get("/_control/").json()["routes"]
