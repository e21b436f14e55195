"""The per-channel configuration file: the README's example loads, every mistake is one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from publisher.celery import beat_schedule
from publisher.channels import FILTERS, KEYED_FILTERS, ChannelsFileError, parse_channels
from publisher.config import load_settings
from publisher.errors import ConfigError
from publisher.records import Endpoint, Resource
from publisher.service import snapshot_spec, step_spec
from tests.unit.test_cli_errors import assert_one_line, run

ROOT = Path(__file__).resolve().parents[2]
SEEDS = Path("/work/shared/seeds")


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- channels-example -->\n```toml\n(.*?)```", text, re.S)
    assert found, "the README's Configuration section lost its example channels file"
    return found.group(1)


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "channels.toml"
    path.write_text(readme_example())
    for name in ("AKINON_URL", "AKINON_TOKEN", "AKINON_CHANNELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHOP_AKINON_TOKEN", "secret")
    monkeypatch.setenv("AKINON_CHANNELS_FILE", str(path))
    return path


def test_the_readme_example_loads_and_drives_steps_and_the_schedule(example: Path) -> None:
    settings = load_settings()
    assert settings.akinon_url == "https://omnitron.example.com"
    assert settings.akinon_token is not None
    assert settings.akinon_token.get_secret_value() == "secret"
    assert settings.channel_ids == [5, 7]
    assert settings.targets() == [(5, Resource.STOCK), (5, Resource.PRICE), (7, Resource.STOCK)]

    stocks = step_spec(settings, 5, Resource.STOCK)
    assert stocks.queries == (
        (("stock_list", "51"), ("product__attributes__color", "red")),
        (("stock_list", "52"), ("product__attributes__color", "red")),
    )
    assert (stocks.endpoint, stocks.acknowledge, stocks.page_size) == (Endpoint.LIST, False, 500)
    prices = step_spec(settings, 5, Resource.PRICE)
    assert prices.queries == (
        (
            ("price_list", "53"),
            ("currency_type", "try"),
            ("product__sku__in", "SKU-1001,SKU-1002,SKU-1003"),
        ),
    )
    queue = step_spec(settings, 7, Resource.STOCK)
    assert (queue.endpoint, queue.acknowledge, queue.page_size) == (Endpoint.UPDATES, True, 100)
    assert queue.queries == ((("stock_list", "71"),),)
    # a snapshot reads the lists, never the work queue
    assert snapshot_spec(settings, 7, Resource.STOCK, "s", None).endpoint is Endpoint.LIST

    schedule = beat_schedule(settings)
    assert sorted(schedule) == ["sync-5-price", "sync-5-stock", "sync-7-stock"]
    assert schedule["sync-5-stock"]["schedule"] == 10.0
    assert schedule["sync-7-stock"]["schedule"] == 120.0
    with pytest.raises(ConfigError, match="channel 6 is not in"):
        settings.channel(6)


def test_without_a_file_the_environment_configures_every_channel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AKINON_CHANNELS_FILE", raising=False)
    settings = load_settings(
        akinon_url="https://a.example", akinon_token="t", akinon_channels=[3, 4]
    )
    assert settings.targets() == [(c, r) for c in (3, 4) for r in Resource]
    assert step_spec(settings, 3, Resource.PRICE).queries == ((),)


BASE = '[channels.5]\nresources = ["stock"]\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "[channels.5]\npol_interval_seconds = 5\n",
            "channel 5: unknown key 'pol_interval_seconds'",
        ),
        ("[channel.5]\n", "unknown key 'channel'"),
        ("[channels.x]\n", "channel x must be a channel id"),
        ("[channels.5]\nmode = 'acknowledge'\n", "channel 5: mode must be one of"),
        ("[channels.5]\nresources = ['stocks']\n", "channel 5: resources must be"),
        ("[channels.5]\npoll_interval_seconds = 0\n", "channel 5: poll_interval_seconds must"),
        ("[channels.5]\npage_size = 'big'\n", "channel 5: page_size must be"),
        ("[channels.5]\nstock_lists = 3\n", "channel 5: stock_lists must be a list"),
        (
            "[channels.5]\nmode = 'acknowledging'\nendpoint = 'list'\n",
            "channel 5: endpoint list cannot be read acknowledging",
        ),
        ("[channels.5]\nendpoint = 'updates'\n", "channel 5: endpoint updates cannot be read"),
        (
            BASE + "[channels.5.filters.stock]\nproduct__sku__inn = 'a'\n",
            "channel 5: filters.stock: unknown filter 'product__sku__inn'",
        ),
        (
            BASE + "[channels.5.filters.stock]\ncurrency_type = 'try'\n",
            "channel 5: filters.stock: unknown filter 'currency_type'",
        ),
        (
            BASE + "[channels.5.filters.stock]\nmodified_date__gte = '2020-01-01'\n",
            "unknown filter 'modified_date__gte'",
        ),
        (BASE + "[channels.5.filters.prices]\na = 1\n", "channel 5: filters: unknown key 'prices'"),
        (
            "[channels.5]\nmode = 'acknowledging'\n[channels.5.filters.stock]\nstock = 1\n",
            "channel 5: filters.stock: the work queue takes no filters",
        ),
        ("[akinon]\ntoken = 'x'\n" + BASE, "[akinon]: unknown key 'token'"),
        ("[channels]\n", "[channels] needs at least one channel"),
        ("[defaults]\npage_sise = 5\n" + BASE, "[defaults]: unknown key 'page_sise'"),
        (
            "[akinon]\nusername_variable = 'U'\n" + BASE,
            "[akinon] username_variable and password_variable go together",
        ),
        ("[channels.5\n", "not valid TOML"),
    ],
)
def test_a_mistake_is_one_line_naming_the_file_the_channel_and_the_key(
    text: str, problem: str
) -> None:
    with pytest.raises(ChannelsFileError) as caught:
        parse_channels(text, "channels.toml")
    message = str(caught.value)
    assert message.startswith("channels.toml: ")
    assert problem in message
    assert "\n" not in message


def test_a_typo_stops_the_program_with_one_line_and_status_2(tmp_path: Path) -> None:
    path = tmp_path / "channels.toml"
    path.write_text("[channels.7]\npol_interval_seconds = 5\n")
    for command in (["akinon-publisher", "poll"], ["akinon-publisher", "status"]):
        result = run(command, tmp_path, AKINON_CHANNELS_FILE=str(path))
        assert_one_line(result, f"{path}: channel 7: unknown key 'pol_interval_seconds'")
    missing = run(["akinon-publisher", "poll"], tmp_path, AKINON_CHANNELS_FILE="nowhere.toml")
    assert_one_line(missing, "AKINON_CHANNELS_FILE nowhere.toml")


def _documented_filters() -> set[str]:
    """Return every query parameter the seeds document for the list endpoints."""
    prices = (SEEDS / "003_cd1411931abb64c7.txt").read_text()
    names = set(re.findall(r"^([a-z_]+)(?:string|integer|number|boolean|array)", prices, re.M))
    # The stocks text lost its parameter names; AKINON.md names them.
    names |= {"stock_list", "product", "pk__in", "stock", "unit_type", "sold_quantity_unreported"}
    return names - {"page", "limit", "hyper", "channel_id", "id"}


@pytest.mark.skipif(not SEEDS.exists(), reason="the seeds are not on this machine")
def test_every_documented_filter_is_passed_through_or_refused_at_start() -> None:
    documented = _documented_filters()
    assert {"price_list", "currency_type", "product__sku__in", "pk__in"} <= documented
    for name in sorted(documented):
        for resource in Resource:
            passed = name in FILTERS[resource] or any(
                name.startswith(p) and name != p.rstrip("_") for p in KEYED_FILTERS[resource]
            )
            text = f'[channels.5]\n[channels.5.filters.{resource.value}]\n{name} = "1"\n'
            if passed:
                parse_channels(text, "c.toml")
            else:
                with pytest.raises(ChannelsFileError, match="unknown filter"):
                    parse_channels(text, "c.toml")


def test_what_a_channel_leaves_out_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "channels.toml"
    path.write_text("[channels.3]\n[channels.4]\npoll_interval_seconds = 7\n")
    monkeypatch.setenv("AKINON_CHANNELS_FILE", str(path))
    monkeypatch.setenv("AKINON_CHANNELS", "1,2")  # the file's channels replace these
    settings = load_settings(
        akinon_url="https://a.example", akinon_token="t", poll_interval_seconds=45
    )
    assert settings.channel_ids == settings.akinon_channels == [3, 4]
    assert (settings.interval_for(3), settings.interval_for(4)) == (45, 7)
    assert step_spec(settings, 3, Resource.STOCK).page_size is None  # AKINON_PAGE_SIZE


def test_a_list_endpoint_with_acknowledging_is_refused_at_start(tmp_path: Path) -> None:
    from publisher.pipeline import StepSpec

    result = run(
        ["akinon-publisher", "poll"], tmp_path, AKINON_ACKNOWLEDGE="true", AKINON_ENDPOINT="list"
    )
    assert_one_line(result, "AKINON_ENDPOINT=list is a whole list")
    with pytest.raises(ValueError, match="cannot be read acknowledging"):
        StepSpec(5, Resource.STOCK, "http://a", endpoint=Endpoint.LIST, acknowledge=True)


def test_a_credential_variable_the_file_names_must_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "channels.toml"
    path.write_text('[akinon]\ntoken_variable = "SHOP_TOKEN_UNSET"\n[channels.3]\n')
    monkeypatch.setenv("AKINON_CHANNELS_FILE", str(path))
    monkeypatch.delenv("SHOP_TOKEN_UNSET", raising=False)
    with pytest.raises(ConfigError, match="names the variable SHOP_TOKEN_UNSET, which is not set"):
        load_settings(akinon_url="https://a.example")


def test_a_task_for_a_resource_the_file_leaves_out_is_refused(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import publisher.celery as tasks
    from publisher.errors import UnsafeArgument

    monkeypatch.setattr(tasks, "_settings", load_settings())
    assert tasks.checked_step("akinon.sync", 7, "stock") == (7, Resource.STOCK)
    with pytest.raises(UnsafeArgument, match="5/stock, 5/price, 7/stock"):
        tasks.checked_step("akinon.sync", 7, "price")  # channel 7 follows stocks only
