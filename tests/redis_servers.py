"""Start real Redis deployments for the tests: a three-node Cluster and a Sentinel setup.

Each deployment needs only the `redis-server` and `redis-cli` binaries: its servers listen on
free loopback ports picked at start-up (several test runs may share a machine), keep their
files in a temporary directory, and are stopped (the directory removed) when the session
ends. Start-up is bounded: a deployment that is not ready within `BOOT_SECONDS` fails with
the log of the server that let it down. Without the binaries the tests skip, except under
``CI=true``, where that is a failure.

`redis_backend` is the URL of one of three backends, standalone (the shared test server),
``cluster`` or ``sentinel``: parametrise a test over `BACKENDS` (indirectly) and one test
body runs against each.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

import pytest
import redis

BOOT_SECONDS: Final = 20.0
SERVICE: Final = "akp-master"
BACKENDS: Final = ("standalone", "cluster", "sentinel")

T = TypeVar("T")

# A cluster node also listens on its port + 10000 (the cluster bus); keep both in range.
_PORTS: Final = (20_000, 55_000)


class StartupError(Exception):
    """A deployment did not come up in time."""


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, bus: bool = False) -> int:
    """Return a loopback port nobody listens on (and its bus port, for a cluster node)."""
    for _ in range(200):
        port = random.randint(*_PORTS)
        if _free(port) and (not bus or _free(port + 10_000)):
            return port
    raise StartupError("no free loopback port found")


def _wait(ready: Callable[[], bool], what: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise StartupError(f"{what} not ready within {BOOT_SECONDS:.0f} s")


@dataclass
class Server:
    """One redis-server (or sentinel) process."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> redis.Redis:
        """Return a plain client of this one process, with short timeouts."""
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def kill(self) -> None:
        """Kill the process at once, as a crash would (SIGKILL)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=5)

    def tail(self) -> str:
        """Return the end of the server's log."""
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""


@dataclass
class Deployment:
    """Servers started together, in one temporary directory, stopped together."""

    name: str
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="akp-redis-")))
    servers: list[Server] = field(default_factory=list)
    deadline: float = field(default_factory=lambda: time.monotonic() + BOOT_SECONDS)

    def start(self, name: str, args: list[str], *, bus: bool = False) -> Server:
        """Start one server on a free port (another if that one was taken meanwhile)."""
        for _ in range(3):
            port = free_port(bus=bus)
            log = self.root / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    ["redis-server", *args, "--port", str(port), "--bind", "127.0.0.1"],
                    cwd=self.root,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            server = Server(port, process, log)
            self.servers.append(server)
            if self._answers(server):
                return server
        raise StartupError(f"{self.name}: {name} did not start; its log:\n{server.tail()}")

    def _answers(self, server: Server) -> bool:
        client = server.client()
        try:
            while time.monotonic() < self.deadline and server.process.poll() is None:
                try:
                    return bool(client.ping())
                except redis.ConnectionError:
                    time.sleep(0.02)
            return False  # exited: most likely its port was taken in between
        finally:
            client.close()

    def wait(self, ready: Callable[[], bool], what: str) -> None:
        """Wait (until the deployment's deadline) for `ready` to hold."""
        try:
            _wait(ready, what, self.deadline)
        except StartupError as exc:
            logs = "\n".join(f"--- {s.log.name}\n{s.tail()}" for s in self.servers)
            raise StartupError(f"{self.name}: {exc}\n{logs}") from None

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and remove the directory."""
        for server in self.servers:
            if server.process.poll() is None:
                server.process.terminate()
        for server in self.servers:
            try:
                server.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


_NO_PERSISTENCE: Final = ["--save", "", "--appendonly", "no"]


def _cluster_ok(server: Server) -> bool:
    client = server.client()
    try:
        info = client.execute_command("CLUSTER", "INFO")
    finally:
        client.close()
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


def start_cluster(deployment: Deployment, nodes: int = 3) -> list[Server]:
    """Start a Redis Cluster of `nodes` primaries (no replicas); return its nodes."""
    servers = [
        deployment.start(
            f"node-{n}",
            [
                *_NO_PERSISTENCE,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(deployment.root / f"nodes-{n}.conf"),
                "--cluster-node-timeout",
                "2000",
            ],
            bus=True,
        )
        for n in range(nodes)
    ]
    created = subprocess.run(
        [
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{s.port}" for s in servers),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        capture_output=True,
        timeout=max(1.0, deployment.deadline - time.monotonic()),
        check=False,
    )
    if created.returncode != 0:
        raise StartupError(f"redis-cli --cluster create failed:\n{created.stdout.decode()}")
    for server in servers:
        deployment.wait(lambda s=server: _cluster_ok(s), f"cluster node {server.port}")
    return servers


@dataclass
class SentinelSetup:
    """A master, its replica and one sentinel watching them as `SERVICE`."""

    master: Server
    replica: Server
    sentinel: Server

    @property
    def url(self) -> str:
        """Return the REDIS_URL of this setup's master."""
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}"

    def master_port(self) -> int:
        """Return the port of the server the sentinel names master now."""
        client = self.sentinel.client()
        try:
            _, port = client.sentinel_get_master_addr_by_name(SERVICE)
        finally:
            client.close()
        return int(port)


def _replicas_seen(sentinel: Server) -> int:
    client = sentinel.client()
    try:
        replicas = client.sentinel_slaves(SERVICE)
    finally:
        client.close()
    return sum(1 for r in replicas if not (r["is_sdown"] or r["is_odown"]))


def _linked(replica: Server) -> bool:
    client = replica.client()
    try:
        return bool(client.info("replication").get("master_link_status") == "up")
    finally:
        client.close()


def start_sentinel(deployment: Deployment) -> SentinelSetup:
    """Start a master, a replica of it and a sentinel (quorum 1, fails over within seconds)."""
    # The master waits 5 s by default before a diskless sync, in case more replicas come.
    master = deployment.start("master", [*_NO_PERSISTENCE, "--repl-diskless-sync-delay", "0"])
    replica = deployment.start(
        "replica", [*_NO_PERSISTENCE, "--replicaof", "127.0.0.1", str(master.port)]
    )
    deployment.wait(lambda: _linked(replica), "replica link")
    # The sentinel learns of replicas from the master's INFO, which it reads at once and
    # then only every 10 s: start it after the replica is linked.
    config = deployment.root / "sentinel.conf"
    config.write_text(
        f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 3000\n"
    )
    sentinel = deployment.start("sentinel", [str(config), "--sentinel"])
    deployment.wait(lambda: _replicas_seen(sentinel) == 1, "sentinel's view of the replica")
    return SentinelSetup(master, replica, sentinel)


def _started(name: str, start: Callable[[Deployment], T]) -> Iterator[T]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server and redis-cli are needed to start a Redis " + name
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # in CI a missing server is a failure, never a skip
        pytest.skip(message)
    deployment = Deployment(name)
    try:
        started = start(deployment)
    except (StartupError, subprocess.TimeoutExpired) as exc:
        deployment.stop()
        pytest.fail(f"could not start a Redis {name}: {exc}")
    try:
        yield started
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[list[Server]]:
    """Yield the nodes of a real three-node Redis Cluster, shared by the session."""
    yield from _started("cluster", start_cluster)


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: list[Server]) -> str:
    """Return the REDIS_URL of the session's cluster (two of its nodes as seeds)."""
    return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in redis_cluster[:2])


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelSetup]:
    """Yield the session's Sentinel setup (shared: never fail it over, see `fresh_sentinel`)."""
    yield from _started("sentinel", start_sentinel)


@pytest.fixture(scope="session")
def redis_sentinel_url(redis_sentinel: SentinelSetup) -> str:
    """Return the REDIS_URL of the session's Sentinel setup."""
    return redis_sentinel.url


@pytest.fixture
def fresh_sentinel() -> Iterator[SentinelSetup]:
    """Yield a Sentinel setup of this test's own, which it may fail over."""
    yield from _started("sentinel", start_sentinel)


_URL_FIXTURES: Final = {
    "standalone": "redis_url",
    "cluster": "redis_cluster_url",
    "sentinel": "redis_sentinel_url",
}


def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    """Return the REDIS_URL of one of `BACKENDS`, starting its servers if need be."""
    return str(request.getfixturevalue(_URL_FIXTURES[backend]))


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    """Return the REDIS_URL of a backend: standalone unless parametrised with `BACKENDS`."""
    return backend_url(request, getattr(request, "param", "standalone"))
