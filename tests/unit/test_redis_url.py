"""REDIS_URL's forms, what a malformed one says, and which Redis errors mean a wrong URL."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import MovedError, RedisClusterException

from publisher.config import load_settings
from publisher.errors import ConfigError, StateStoreError
from publisher.redis_client import RedisTarget, connect, parse, translate, url_secrets


def test_plain_urls_are_parsed_as_redis_py_parses_them() -> None:
    target = parse("redis://:pw@cache:6380/2?socket_timeout=3&client_name=publisher")
    assert target.kind == "standalone"
    assert target.options == {
        "host": "cache",
        "port": 6380,
        "db": 2,
        "password": "pw",
        "socket_timeout": 3.0,
        "client_name": "publisher",
    }
    assert parse("unix:///run/redis.sock?db=1").options["path"] == "/run/redis.sock"
    assert parse("rediss://cache").kind == "standalone"


def test_a_cluster_url_lists_seed_nodes_and_has_no_database() -> None:
    url = "redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002/0?health_check_interval=5"
    assert parse(url) == RedisTarget(
        "cluster",
        {"username": "app", "password": "s@cret", "health_check_interval": 5},
        (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)),
    )
    assert parse("rediss+cluster://node:7000").options == {"ssl": True}


def test_a_sentinel_url_names_the_service_and_keeps_the_sentinels_password_apart() -> None:
    url = "redis+sentinel://:master-pw@s1:26380,s2/orders/4?sentinel_password=sentinel-pw"
    assert parse(url) == RedisTarget(
        "sentinel",
        {"password": "master-pw", "db": 4},
        (("s1", 26380), ("s2", 26379)),
        "orders",
        {"password": "sentinel-pw"},
    )
    assert parse("redis+sentinel://s1/orders").options == {}
    assert url_secrets(url) == ["master-pw", "sentinel-pw"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("cache:6379", "must be a URL starting with redis://"),
        ("http://cache:6379/0", "unknown scheme 'http'"),
        ("redis+shard://cache:6379", "unknown scheme 'redis+shard'"),
        ("redis://cache:6379/0?socket_timeout=soon", "value for 'socket_timeout'"),
        ("redis+cluster://cache:7000/3", "a Redis Cluster has database 0 only"),
        ("redis+cluster://cache:7000?db=1", "a Redis Cluster has database 0 only"),
        ("redis+cluster://:pw@", "names no host"),
        ("redis+cluster://cache:port", "invalid host:port 'cache:port'"),
        ("redis+sentinel://s1:26379", "names no Sentinel service"),
        ("redis+sentinel://s1:26379/", "names no Sentinel service"),
        ("redis+sentinel://s1:26379/orders/first", "invalid database 'first'"),
        ("redis+sentinel://s1:26379/orders?socket_timeout=x", "invalid value"),
    ],
)
def test_a_malformed_redis_url_is_one_config_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    monkeypatch.setenv("AKINON_URL", "https://omni.example")
    monkeypatch.setenv("AKINON_CHANNELS", "1")
    monkeypatch.setenv("AKINON_TOKEN", "t")
    monkeypatch.setenv("REDIS_URL", url.replace("pw@", "hunter2@"))
    with pytest.raises(ConfigError) as failed:
        load_settings()
    message = str(failed.value)
    assert message.startswith("invalid configuration: REDIS_URL ")
    assert says in message
    assert "\n" not in message
    assert "hunter2" not in message
    with pytest.raises(ConfigError, match="REDIS_URL"):
        connect(url)  # the same check, for a URL that never went through the settings


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (MovedError("3999 127.0.0.1:7001"), "one node of a Redis Cluster"),
        (redis.ResponseError("ASK 3999 127.0.0.1:7001"), "one node of a Redis Cluster"),
        (redis.ResponseError("SELECT is not allowed in cluster mode"), "database 0 only"),
        (RedisClusterException("… Cluster mode is not enabled on this node"), "not one"),
        (redis.ResponseError("unknown command 'SENTINEL', with args"), "names sentinels"),
        (redis.ResponseError("unknown command 'MGET', with args"), "a Sentinel?"),
    ],
)
def test_answers_that_show_a_wrong_url_are_config_errors(error: Exception, says: str) -> None:
    translated = translate(error, "redis read")
    assert isinstance(translated, ConfigError)
    assert str(translated).startswith("redis read failed: REDIS_URL ")
    assert says in str(translated)


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("Error 111 connecting"),
        redis.TimeoutError("Timeout reading from socket"),
        redis.ResponseError("BUSY Redis is busy running a script"),
        RedisClusterException("Redis Cluster cannot be connected: Connection refused"),
    ],
)
def test_other_redis_failures_stay_retryable(error: Exception) -> None:
    translated = translate(error, "redis write")
    assert isinstance(translated, StateStoreError)
    assert str(translated).startswith(f"redis write failed: {type(error).__name__}: ")


def test_the_log_filter_masks_both_passwords_of_a_sentinel_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from publisher.logs import secrets_of

    monkeypatch.setenv("AKINON_URL", "https://omni.example")
    monkeypatch.setenv("AKINON_CHANNELS", "1")
    monkeypatch.setenv("AKINON_TOKEN", "token-1")
    monkeypatch.setenv(
        "REDIS_URL", "redis+sentinel://:master-pw@s1,s2/orders?sentinel_password=s-pw"
    )
    assert {"master-pw", "s-pw"} <= set(secrets_of(load_settings()))
