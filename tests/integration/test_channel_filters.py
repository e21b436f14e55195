"""Filtered polling against a sandbox that filters: every filter the channels file passes."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from publisher.akinon import AkinonClient
from publisher.channels import FILTERS, KEYED_FILTERS
from publisher.config import load_settings
from publisher.publish import KombuPublisher
from publisher.records import Resource
from publisher.sandbox import SandboxServer, products
from publisher.service import Edges, run_step, step_spec
from publisher.state import RedisStateStore
from tests.conftest import SANDBOX_TOKEN
from tests.integration.collect import Collector

pytestmark = pytest.mark.integration

Check = Callable[[dict[str, Any]], bool]


def _cases(record: dict[str, Any], resource: Resource) -> dict[str, tuple[str, Check]]:
    """Return, per filter name, a value taken from `record` and what the filter keeps."""
    key = record[resource.key_field]
    product = record["product"]
    color = products.attributes(product)["color"]
    cases: dict[str, tuple[str, Check]] = {
        "pk__in": (str(key), lambda r: r[resource.key_field] == key),
        "product": (str(product), lambda r: r["product"] == product),
        "product__pk__in": (f"{product},1", lambda r: r["product"] in (product, 1)),
        "product__sku__in": (
            f"{products.sku(product)},SKU-0",
            lambda r: products.sku(r["product"]) in (products.sku(product), "SKU-0"),
        ),
        "product__sku__exact": (products.sku(product), lambda r: r["product"] == product),
        "product__attributes__color": (
            color,
            lambda r: products.attributes(r["product"])["color"] == color,
        ),
    }
    if resource is Resource.STOCK:
        for name in ("stock", "unit_type", "sold_quantity_unreported"):
            wanted = record[name]
            cases[name] = (str(wanted), lambda r, n=name, w=wanted: r[n] == w)
    else:
        for name in ("tax_rate", "price", "retail_price"):
            wanted = record[name]
            cases[name] = (
                str(Decimal(wanted).normalize()),
                lambda r, n=name, w=wanted: r[n] is not None and Decimal(r[n]) == Decimal(w),
            )
        cases["currency_type"] = ("try", lambda r: r["currency_type"] == "try")
        cases["extra_field__origin"] = ("erp", lambda r: r["extra_field"].get("origin") == "erp")
    return cases


@pytest.mark.parametrize("resource", list(Resource))
def test_the_sandbox_applies_every_filter_the_channels_file_passes(
    sandbox: SandboxServer, channel_id: int, resource: Resource
) -> None:
    catalog = sandbox.catalog
    record = catalog.records(channel_id, resource)[3]
    if resource is Resource.PRICE:
        key = record["id"]
        catalog.set_price(
            channel_id, key, extra_field={"origin": "erp"}, retail_price="150.00", tax_rate="8.00"
        )
        record = next(r for r in catalog.records(channel_id, resource) if r["id"] == key)
    every = catalog.records(channel_id, resource)
    cases = _cases(record, resource)
    keyed = {name for name in cases if name.startswith(KEYED_FILTERS[resource])}
    assert set(cases) - keyed == FILTERS[resource]  # every name the channels file passes
    url = f"{sandbox.url}/api/v1/channel/{channel_id}/{resource.path}/"
    for name, (value, keeps) in cases.items():
        answer = httpx.get(
            url,
            params={name: value, "limit": 100},
            headers={"Authorization": f"Token {SANDBOX_TOKEN}"},
        )
        answer.raise_for_status()
        got = sorted(r[resource.key_field] for r in answer.json()["results"])
        expected = sorted(r[resource.key_field] for r in every if keeps(r))
        assert got == expected, name
        assert record[resource.key_field] in got, name
        if name not in {"currency_type", "unit_type"}:
            assert len(got) < len(every), f"{name} filtered nothing"


def test_two_stock_lists_of_one_channel_publish_only_their_records(
    sandbox: SandboxServer,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stocks = sandbox.catalog.records(channel_id, Resource.STOCK)
    first, second = 900 + channel_id % 100, 950 + channel_id % 100
    chosen = {}
    for index, record in enumerate(stocks[:8]):
        list_id = first if index % 2 else second
        sandbox.catalog.set_stock(channel_id, record["pk"], stock_list=list_id)
        chosen[record["pk"]] = list_id
    path = tmp_path / "channels.toml"
    path.write_text(
        f"[channels.{channel_id}]\n"
        'resources = ["stock"]\n'
        f"stock_lists = [{first}, {second}]\n"
        "page_size = 3\n"
    )
    for name, value in {
        "AKINON_CHANNELS_FILE": str(path),
        "AKINON_URL": sandbox.url,
        "AKINON_TOKEN": SANDBOX_TOKEN,
        "REDIS_URL": redis_url,
        "AMQP_URL": amqp_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AKINON_CHANNELS", raising=False)
    settings = load_settings()
    state = RedisStateStore.from_url(redis_url)
    edges = Edges(
        AkinonClient(sandbox.url, token=SANDBOX_TOKEN),
        state,
        KombuPublisher(amqp_url, confirm_timeout=5),
        redis=state.client,
    )
    try:
        with Collector(amqp_url, f"stock.changed.{channel_id}") as events:
            summary = run_step(step_spec(settings, channel_id, Resource.STOCK), edges)
            assert (summary.seen, summary.published) == (8, 8)
            assert summary.pages == 4  # pages of 3: two lists of 4 records, 2 pages each
            received = events.collect(8)
            assert len(events.settle()) == 8
        assert {e["data"]["key"]: e["data"]["after"]["stock_list"] for e in received} == chosen
        # a complete scan of both lists: nothing outside them is taken for deleted
        again = run_step(step_spec(settings, channel_id, Resource.STOCK), edges)
        assert (again.seen, again.published, again.deleted) == (8, 0, 0)
    finally:
        edges.close()


@pytest.mark.parametrize("resource", list(Resource))
def test_show_prints_akinon_s_record_beside_what_was_last_published(
    sandbox: SandboxServer,
    channel_id: int,
    redis_url: str,
    amqp_url: str,
    monkeypatch: pytest.MonkeyPatch,
    resource: Resource,
) -> None:
    from click.testing import CliRunner

    from publisher.cli import main

    for name, value in {
        "AKINON_URL": sandbox.url,
        "AKINON_TOKEN": SANDBOX_TOKEN,
        "AKINON_CHANNELS": str(channel_id),
        "REDIS_URL": redis_url,
        "AMQP_URL": amqp_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AKINON_CHANNELS_FILE", raising=False)
    settings = load_settings()
    key = sandbox.catalog.records(channel_id, resource)[2][resource.key_field]
    runner = CliRunner()
    args = ["show", resource.value, str(key), "--channel", str(channel_id), "--json"]
    never = json_of(runner.invoke(main, args))
    assert never["published"]["state"] == "never published"
    assert never["published"]["sent_not_committed"] is None  # no failed step sent it

    state = RedisStateStore.from_url(redis_url)
    edges = Edges(
        AkinonClient(sandbox.url, token=SANDBOX_TOKEN),
        state,
        KombuPublisher(amqp_url, confirm_timeout=5),
        redis=state.client,
    )
    try:
        with Collector(amqp_url, f"{resource.value}.changed.{channel_id}") as events:
            run_step(step_spec(settings, channel_id, resource), edges)
            (event,) = [e for e in events.collect(30) if e["data"]["key"] == key]
    finally:
        edges.close()
    shown = json_of(runner.invoke(main, args))
    served = next(
        r for r in sandbox.catalog.records(channel_id, resource) if r[resource.key_field] == key
    )
    assert shown["akinon"]["list"] == served
    if resource is Resource.PRICE:
        assert shown["akinon"]["retrieve"] == served
        assert shown["akinon"]["retrieve_detailed"] == served
    published = shown["published"]
    assert published["sequence"] == event["data"]["sequence"] == 1
    assert published["fingerprint"] == event["data"]["fingerprint"]
    assert published["content"] == event["data"]["after"]
    text = runner.invoke(main, args[:-1])
    assert text.exit_code == 0, text.output
    assert f"fingerprint={event['data']['fingerprint']}" in text.output

    missing = runner.invoke(main, ["show", resource.value, "1", "--channel", "999999"])
    assert missing.exit_code == 2
    assert "channel 999999 is not in AKINON_CHANNELS" in missing.output


def json_of(result: Any) -> Any:
    import orjson

    assert result.exit_code == 0, result.output
    return orjson.loads(result.output)
