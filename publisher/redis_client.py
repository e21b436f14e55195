"""Connect to the Redis that REDIS_URL names: one server, a Redis Cluster, or a Sentinel's master.

REDIS_URL takes one of these forms ([...] is optional; options are redis-py's URL options, such
as ``socket_timeout``, ``health_check_interval`` or ``client_name``):

    redis://[[user]:password@]host[:port][/db][?options]          one server
    rediss://...                                                  one server, over TLS
    unix://[[user]:password@]/path/to/socket[?db=<db>&options]    one server, local socket
    redis+cluster://[[user]:password@]host:port[,host:port...][?options]
        a Redis Cluster; the nodes listed are where discovery starts (two or three are
        plenty). A cluster has database 0 only, so the URL names none (or ``/0``).
    redis+sentinel://[[user]:password@]host:port[,host:port...]/<service>[/<db>][?options]
        the master that the sentinels listed know as <service>, found again after every
        failover. User and password are the master's; the options ``sentinel_username`` and
        ``sentinel_password`` are the sentinels' own, if they require one.
    rediss+cluster://..., rediss+sentinel://...
        the same over TLS (to the sentinels too)

Ports default to 6379, a sentinel's to 26379. The scheme names the topology, so a plain
``redis://`` URL keeps meaning exactly what it means to redis-py, and ``rediss+`` keeps TLS
where ``rediss://`` has it. Hosts are a comma-separated list in the authority, as MongoDB
and Lettuce URLs have them: with a single seed, one node's outage would stop every worker
that starts meanwhile.

`parse` checks a URL without connecting; `connect` returns redis-py's own client for it
(`redis.Redis`, `redis.cluster.RedisCluster`, or the `redis.Redis` that
`redis.sentinel.Sentinel.master_for` returns). A cluster client reads the slot map when it
is built, so `connect` talks to a cluster at once; the others connect on first use.
`translate` turns a Redis failure into one of ours: an answer showing that REDIS_URL names
the wrong kind of deployment (MOVED or ASK from a cluster node, SELECT refused in cluster
mode, a command a sentinel does not serve) is a `ConfigError`; anything else is a
retryable `StateStoreError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.connection import parse_url as parse_standalone
from redis.exceptions import AskError, RedisClusterException
from redis.sentinel import Sentinel

from publisher.errors import ConfigError, PublisherError, StateStoreError

RedisClient: TypeAlias = redis.Redis | RedisCluster
"""A client of one server (or of a Sentinel's master) or of a Redis Cluster."""

# Every error a redis-py client raises: some cluster errors do not derive from RedisError.
REDIS_ERRORS: Final = (redis.RedisError, RedisClusterException)

_OPTION_PARSERS: Final = cast(Mapping[str, Callable[[str], Any]], URL_QUERY_ARGUMENT_PARSERS)
_STANDALONE: Final = ("redis", "rediss", "unix")
_SCHEMES: Final = "redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://"
_SENTINEL_OPTIONS: Final = {"sentinel_username": "username", "sentinel_password": "password"}
_CLUSTER_FORM: Final = "redis+cluster://host:port[,host:port...]"
_SENTINEL_FORM: Final = "redis+sentinel://host:port[,host:port...]/<service>"


@dataclass(frozen=True)
class RedisTarget:
    """What a REDIS_URL names: the deployment's kind, where to start, how to connect."""

    kind: Literal["standalone", "cluster", "sentinel"]
    options: dict[str, Any]
    """Connection options of every data node (credentials, database, TLS, timeouts)."""
    nodes: tuple[tuple[str, int], ...] = ()
    """Cluster nodes to discover the cluster from, or the sentinels; none for one server."""
    service: str = ""
    sentinel_options: dict[str, Any] = field(default_factory=dict)


def parse(url: str) -> RedisTarget:
    """Return what a REDIS_URL names; raise ValueError saying what is wrong (never the URL)."""
    scheme, found, _ = url.partition("://")
    if not found:
        raise ValueError(f"must be a URL starting with {_SCHEMES}")
    if scheme in _STANDALONE:
        database = urlsplit(url).path.strip("/")
        if scheme != "unix" and database and not database.isdigit():
            raise ValueError(f"must end in a database number, got {unquote(database)!r}")
        try:
            return RedisTarget("standalone", parse_standalone(url))
        except ValueError as exc:
            raise ValueError(f"is not a valid Redis URL: {exc}") from None
    base, _, topology = scheme.partition("+")
    if base not in ("redis", "rediss") or topology not in ("cluster", "sentinel"):
        raise ValueError(f"has the unknown scheme {scheme!r}: use {_SCHEMES}")
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    options = {**_credentials(userinfo), **_query_options(parts.query)}
    if base == "rediss":
        options["ssl"] = True
    if topology == "cluster":
        return RedisTarget("cluster", _cluster_options(parts.path, options), _nodes(hosts, 6379))
    return _sentinel(parts.path, options, _nodes(hosts, 26379))


def _credentials(userinfo: str) -> dict[str, str]:
    user, _, password = userinfo.partition(":")
    found = {"username": unquote(user), "password": unquote(password)}
    return {name: value for name, value in found.items() if value}


def _query_options(query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, values in parse_qs(query).items():
        convert = _OPTION_PARSERS.get(name, str)
        try:
            options[name] = convert(values[0])
        except (TypeError, ValueError):
            raise ValueError(f"has an invalid value for the option {name!r}") from None
    return options


def _nodes(hosts: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for host in filter(None, hosts.split(",")):
        try:
            address = urlsplit(f"//{host}")
            port = address.port
        except ValueError:
            raise ValueError(f"has an invalid host:port {host!r}") from None
        if not address.hostname:
            raise ValueError(f"has an invalid host:port {host!r}")
        nodes.append((address.hostname, port or default_port))
    if not nodes:
        raise ValueError("names no host: list at least one host:port")
    return tuple(nodes)


def _cluster_options(path: str, options: dict[str, Any]) -> dict[str, Any]:
    database = path.strip("/") or "0"
    if database != "0" or options.pop("db", 0) != 0:
        raise ValueError(
            f"names a database, but a Redis Cluster has database 0 only: use {_CLUSTER_FORM}"
        )
    return options


def _sentinel(
    path: str, options: dict[str, Any], nodes: tuple[tuple[str, int], ...]
) -> RedisTarget:
    service, _, database = path.strip("/").partition("/")
    if not service:
        raise ValueError(f"names no Sentinel service: use {_SENTINEL_FORM}[/<db>]")
    if database:
        if not database.isdigit():
            raise ValueError(f"has an invalid database {database!r}: use {_SENTINEL_FORM}/<db>")
        options["db"] = int(database)
    sentinel_options = {
        ours: options.pop(name) for name, ours in _SENTINEL_OPTIONS.items() if name in options
    }
    return RedisTarget("sentinel", options, nodes, unquote(service), sentinel_options)


def url_secrets(url: str) -> list[str]:
    """Return the passwords a REDIS_URL holds (for the log filter), whatever its form."""
    parts = urlsplit(url)
    found = [unquote(parts.password or "")]
    found += parse_qs(parts.query).get("sentinel_password", [])
    return [secret for secret in found if secret]


def connect(
    url: str, *, socket_timeout: float = 10, socket_connect_timeout: float = 5
) -> RedisClient:
    """Return a client of the Redis that `url` names, with these timeouts unless it sets its own.

    Raise `ConfigError` if the URL is malformed or names the wrong kind of deployment, and
    `StateStoreError` if a cluster cannot be reached (a cluster client connects at once).
    """
    try:
        target = parse(url)
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: REDIS_URL {exc}") from None
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
    if target.kind == "standalone":
        return redis.Redis.from_url(url, **timeouts)
    options = {**timeouts, **target.options}
    if target.kind == "sentinel":
        sentinels = Sentinel(list(target.nodes), sentinel_kwargs=_sentinel_kwargs(target, options))
        master: redis.Redis = sentinels.master_for(target.service, **options)
        return master
    try:
        return RedisCluster(startup_nodes=[ClusterNode(*node) for node in target.nodes], **options)
    except REDIS_ERRORS as exc:
        raise translate(exc, "redis cluster discovery") from exc


def _sentinel_kwargs(target: RedisTarget, options: dict[str, Any]) -> dict[str, Any]:
    """Return how to reach the sentinels: the data nodes' timeouts and TLS, their own login."""
    shared = {k: v for k, v in options.items() if k.startswith("socket_") or k == "ssl"}
    return {**shared, **target.sentinel_options}


def translate(exc: Exception, doing: str) -> PublisherError:
    """Return the error of ours that a redis-py error becomes; `doing` names what failed."""
    hint = _misconfiguration(exc)
    if hint is not None:
        return ConfigError(f"{doing} failed: {hint}")
    return StateStoreError(f"{doing} failed: {type(exc).__name__}: {exc}")


def _misconfiguration(exc: Exception) -> str | None:
    """Return what to change in REDIS_URL if the server's answer shows it is wrong, else None."""
    text = str(exc)
    if isinstance(exc, AskError) or text.startswith(("MOVED ", "ASK ")):
        # A cluster client follows redirections itself: only a one-server client sees them.
        return f"REDIS_URL names one node of a Redis Cluster (it redirects): use {_CLUSTER_FORM}"
    if "SELECT is not allowed in cluster mode" in text:
        return (
            "REDIS_URL names a database, but a Redis Cluster has database 0 only: "
            f"use {_CLUSTER_FORM}"
        )
    if "Cluster mode is not enabled" in text:
        return (
            "REDIS_URL names a Redis Cluster, but the server is not one: use redis://host:port/db"
        )
    if "unknown command 'SENTINEL'" in text:
        return "REDIS_URL names sentinels, but the server is not one: use a sentinel's host:port"
    if text.startswith("unknown command"):
        return f"REDIS_URL names a server that stores no data (a Sentinel?): use {_SENTINEL_FORM}"
    return None
