"""The fault suite's world: the real pipeline, the faults it meets, and its recovery.

A sequence is a list of actions (below) on one fresh channel of a running sandbox: record
changes and deletes, Akinon faults, sync steps whose broker or Redis connection is cut or
stalled through a `TcpProxy`, step processes killed or frozen past their lock's TTL, two
steps at once, the publisher's Redis state lost. `World.run` plays one; `World.recover`
then runs healthy steps until they have nothing left to publish, and `World.verdict` holds
the oracle's copy against the sandbox.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from publisher import service, topology
from publisher.errors import PublisherError
from publisher.pipeline import StepSpec, StepSummary
from publisher.records import Endpoint, Resource
from publisher.redis_client import RedisClient
from publisher.sandbox import SandboxServer
from publisher.sandbox.faults import Faults
from tests.faults import edges as edge
from tests.faults.oracle import History, Oracle
from tests.faults.processes import Processes, StepProcess
from tests.proxy import TcpProxy

# Steps hold their lock this long without renewal: short, so that a frozen or killed step
# lets another take over within the sequence (a deployment's is a minute).
LOCK_TTL = 0.6
FROZEN_FOR = LOCK_TTL + 0.3

# -- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """Set a record's stock or price (`slot` past the existing keys: create one)."""

    resource: Resource
    slot: int
    amount: int


@dataclass(frozen=True)
class Delete:
    """Delete a record (the `slot`-th existing key, wrapping around)."""

    resource: Resource
    slot: int


AkinonKind = Literal["5xx", "429", "timeout", "truncated", "malformed", "flaky"]


@dataclass(frozen=True)
class AkinonFault:
    """Make the sandbox fail the next requests (`timeout` and `flaky`: the next step's)."""

    kind: AkinonKind
    count: int = 1


@dataclass(frozen=True)
class LinkFault:
    """Cut or stall a connection after so many bytes from the client, or so many seconds,
    or (a cut) the moment the client sends a given command (`EVALSHA`: a state commit).

    A stall after 0 bytes is a black hole: connections are accepted, nothing is answered.
    """

    action: Literal["cut", "stall"]
    after_bytes: int | None = None
    after_seconds: float | None = None
    on_command: str | None = None


@dataclass(frozen=True)
class Step:
    """Run one step here, its broker and Redis reached through proxies that may fail."""

    resource: Resource
    broker: LinkFault | None = None
    redis: LinkFault | None = None
    incremental: bool = False


@dataclass(frozen=True)
class Kill:
    """Run a step in a process and SIGKILL it `after_seconds` into the step."""

    resource: Resource
    after_seconds: float


@dataclass(frozen=True)
class Freeze:
    """SIGSTOP a step process mid-step past its lock's TTL; change a record and run another
    step meanwhile; then let the frozen one go on."""

    resource: Resource
    after_seconds: float
    slot: int
    amount: int


@dataclass(frozen=True)
class TwoSteps:
    """Start a step in a process and one here at the same moment."""

    resource: Resource


@dataclass(frozen=True)
class LoseState:
    """Lose the publisher's Redis state of the list (every key of it, the lock too)."""

    resource: Resource


Action = Change | Delete | AkinonFault | Step | Kill | Freeze | TwoSteps | LoseState


@dataclass(frozen=True)
class Sequence:
    """One run: `size` seeded records of each resource, then the actions in order."""

    size: int
    actions: tuple[Action, ...]

    @property
    def resources(self) -> list[Resource]:
        """Return the resources the actions touch, in a stable order."""
        named = {action.resource for action in self.actions if hasattr(action, "resource")}
        return [r for r in Resource if r in named]


# -- the world ---------------------------------------------------------------------------


@dataclass
class Counts:
    """What the runs did, for the long profile's figures."""

    sequences: int = 0
    actions: int = 0
    steps: int = 0
    failed_steps: int = 0
    kills: int = 0
    freezes: int = 0
    events_applied: int = 0
    copies_seen: int = 0
    # Records a reload event (the load after a state loss) made the oracle delete.
    reload_deletes: int = 0
    # Loads that read a whole list empty and held their reload event until released.
    reloads_held: int = 0


class World:
    """One sandbox, the real Redis and RabbitMQ, an oracle, and step processes."""

    def __init__(
        self,
        sandbox: SandboxServer,
        redis_url: str,
        redis: RedisClient,
        amqp_url: str,
        channel_ids: Iterator[int],
    ) -> None:
        self.sandbox = sandbox
        self.redis_url = redis_url
        self.redis = redis
        self.amqp_url = amqp_url
        self.history = History()
        self.oracle = Oracle(amqp_url, self.history)
        self.processes = Processes()
        self.counts = Counts()
        self._channel_ids = channel_ids
        self.channel_id = 0
        self.resources: list[Resource] = []
        # Drain the work queue (inserts_or_updates), acknowledging, instead of reading lists.
        self.acknowledge = False
        self._quick_client = edge.akinon(sandbox.url, quick=True)
        self.healthy = edge.build(
            edge.akinon(sandbox.url, quick=False), redis_url, amqp_url, quick=False
        )

    def close(self) -> None:
        """Stop the oracle and the step processes."""
        self.oracle.close()
        self.processes.close()
        self.healthy.close()
        self._quick_client.close()

    # -- one sequence ------------------------------------------------------------------------

    def run(self, sequence: Sequence) -> list[str]:
        """Play a sequence on a new channel, recover, and return what the oracle found."""
        self.counts.sequences += 1
        self.channel_id = next(self._channel_ids)
        self.oracle.channels.add(self.channel_id)
        self.resources = sequence.resources
        catalog = self.sandbox.catalog
        catalog.add_channel(self.channel_id, sequence.size)
        for resource in Resource:
            for record in catalog.records(self.channel_id, resource):
                self.history.saw(self.channel_id, resource, record)
        try:
            for action in sequence.actions:
                self.counts.actions += 1
                self.apply(action)
        finally:
            self.sandbox.faults = Faults()
        self.recover()
        return self.verdict()

    def apply(self, action: Action) -> None:
        """Play one action."""
        match action:
            case Change():
                self.change(action.resource, action.slot, action.amount)
            case Delete():
                self.delete(action.resource, action.slot)
            case AkinonFault():
                self.akinon_fault(action)
            case Step():
                self.faulty_step(action)
                self._clear_step_faults()
            case Kill():
                self.kill(action)
                self._clear_step_faults()
            case Freeze():
                self.freeze(action)
                self._clear_step_faults()
            case TwoSteps():
                self.two_steps(action.resource)
                self._clear_step_faults()
            case LoseState():
                self.lose_state(action.resource)

    # -- records -----------------------------------------------------------------------------

    def _keys(self, resource: Resource) -> list[int]:
        return [
            r[resource.key_field] for r in self.sandbox.catalog.records(self.channel_id, resource)
        ]

    def change(self, resource: Resource, slot: int, amount: int) -> None:
        """Change (or create) a record; remember the version the sandbox now serves."""
        keys = self._keys(resource)
        first = self.channel_id * 1_000_000 + 1  # the sandbox's first key of a channel
        pk = keys[slot] if slot < len(keys) else first + 100 + slot
        values = {"stock": amount} if resource is Resource.STOCK else {"price": f"{amount}.90"}
        record = self.sandbox.catalog.upsert(self.channel_id, resource, pk, values)
        self.history.saw(self.channel_id, resource, record)

    def delete(self, resource: Resource, slot: int) -> None:
        """Delete a record, if the list has any."""
        keys = self._keys(resource)
        if not keys:
            return
        pk = keys[slot % len(keys)]
        self.sandbox.catalog.delete(self.channel_id, resource, pk)

    # -- Akinon --------------------------------------------------------------------------------

    def akinon_fault(self, fault: AkinonFault) -> None:
        """Arm a sandbox fault for the next requests."""
        settings = {
            "5xx": {"fail_next": fault.count, "fail_status": 502},
            "429": {"rate_limit_next": fault.count, "retry_after": 0},
            "timeout": {"latency_ms": 400.0},
            "truncated": {"truncate_next": fault.count},
            "malformed": {"garble_next": fault.count},
            "flaky": {"error_rate": 0.3, "seed": fault.count},
        }[fault.kind]
        self.sandbox.faults = self.sandbox.faults.merged(settings)

    def _clear_step_faults(self) -> None:
        """End the faults that last one step (slow and flaky answers); keep the counters."""
        self.sandbox.faults = self.sandbox.faults.merged({"latency_ms": 0.0, "error_rate": 0.0})

    # -- steps -------------------------------------------------------------------------------

    def _spec(self, resource: Resource, *, incremental: bool = False) -> StepSpec:
        if self.acknowledge:
            return StepSpec(
                self.channel_id,
                resource,
                self.sandbox.url,
                endpoint=Endpoint.INSERTS_OR_UPDATES,
                acknowledge=True,
            )
        return StepSpec(
            self.channel_id,
            resource,
            self.sandbox.url,
            lookback_seconds=0.0 if incremental else None,
        )

    def _step_here(self, spec: StepSpec, edges: service.Edges | None = None) -> StepSummary | None:
        """Run a step in this process (on the healthy edges unless given others); None if
        it failed, as a step may, meeting faults."""
        self.counts.steps += 1
        try:
            with edge.short_locks(LOCK_TTL):
                return service.run_step(spec, edges or self.healthy)
        except PublisherError:
            self.counts.failed_steps += 1
            return None

    def faulty_step(self, step: Step) -> None:
        """Run a step whose broker and Redis connections go through failing proxies."""
        proxies: list[TcpProxy] = []
        timers: list[threading.Timer] = []

        def through(port: int, url: str, fault: LinkFault | None) -> str:
            if fault is None:
                return url
            proxy = TcpProxy(
                port,
                cut_after_bytes=fault.after_bytes if fault.action == "cut" else None,
                stall_after_bytes=fault.after_bytes if fault.action == "stall" else None,
                cut_on=fault.on_command.encode() if fault.on_command else None,
            )
            proxies.append(proxy)
            if fault.after_seconds is not None:
                act = proxy.cut if fault.action == "cut" else proxy.stall
                timers.append(threading.Timer(fault.after_seconds, act))
            return proxy.url_for(url)

        amqp = through(5672, self.amqp_url, step.broker)
        redis_url = through(6379, self.redis_url, step.redis)
        edges = edge.build(self._quick_client, redis_url, amqp, quick=True)
        for timer in timers:
            timer.start()
        try:
            self._step_here(self._spec(step.resource, incremental=step.incremental), edges)
        finally:
            for timer in timers:
                timer.cancel()
            edge.close(edges)
            for proxy in proxies:
                proxy.cut()

    def _command(self, resource: Resource) -> dict[str, object]:
        return {
            "akinon": self.sandbox.url,
            "redis": self.redis_url,
            "amqp": self.amqp_url,
            "channel_id": self.channel_id,
            "resource": resource.value,
            "lock_ttl": LOCK_TTL,
            "acknowledge": self.acknowledge,
        }

    def _finish(self, process: StepProcess, timeout: float = 30.0) -> None:
        answer = process.answer(timeout)
        if answer is None:
            raise AssertionError(f"a step process gave no answer within {timeout}s")
        self.counts.steps += 1
        self.counts.failed_steps += not answer["ok"]
        self.processes.give_back(process)

    def kill(self, kill: Kill) -> None:
        """Start a step in a process, SIGKILL it part-way."""
        process = self.processes.take()
        process.send(self._command(kill.resource))
        time.sleep(kill.after_seconds)
        self.counts.kills += 1
        self.counts.steps += 1
        self.processes.kill(process)

    def freeze(self, freeze: Freeze) -> None:
        """Freeze a step process past its lock's TTL while the list moves on, then resume it."""
        process = self.processes.take()
        process.send(self._command(freeze.resource))
        time.sleep(freeze.after_seconds)
        process.signal(signal.SIGSTOP)
        self.counts.freezes += 1
        try:
            self.change(freeze.resource, freeze.slot, freeze.amount)
            time.sleep(FROZEN_FOR)
            self._step_here(self._spec(freeze.resource))
        finally:
            process.signal(signal.SIGCONT)
        self._finish(process)

    def two_steps(self, resource: Resource) -> None:
        """Start a step in a process and one here at once."""
        process = self.processes.take()
        process.send(self._command(resource))
        self._step_here(self._spec(resource))
        self._finish(process)

    def lose_state(self, resource: Resource) -> None:
        """Delete every Redis key of the list's state (the next load ends with reload events)."""
        found = list(self.redis.scan_iter(match=topology.state_pattern(self.channel_id, resource)))
        if found:
            self.redis.delete(*found)

    # -- recovery and verdict ----------------------------------------------------------------

    def recover(self, rounds: int = 12) -> None:
        """Run healthy complete scans until one round publishes nothing."""
        for _ in range(rounds):
            busy = False
            for resource in self.resources:
                summary = self._step_here(self._spec(resource))
                if summary is None or summary.skipped_because:
                    busy = True
                    time.sleep(0.2)  # a killed step's lock runs out within LOCK_TTL
                elif summary.reload_held:  # as an operator who checked the list would
                    self.counts.reloads_held += 1
                    self.healthy.state.write_meta(
                        self.channel_id, resource, {"release_deletes": "1"}
                    )
                    busy = True
                elif summary.published or summary.deletes_held:
                    busy = True
            if not busy:
                return
        raise AssertionError(f"the publisher did not settle in {rounds} rounds of steps")

    def _compare(self) -> list[str]:
        """Return what differs between the oracle and the sandbox: every difference is lost."""
        catalog = self.sandbox.catalog
        lost = []
        for resource in self.resources:
            served = catalog.records(self.channel_id, resource)
            lost += [line for _, line in self.oracle.compare(self.channel_id, resource, served)]
        return lost

    def verdict(self) -> list[str]:
        """Drain the oracle, compare it with the sandbox, return what it found (one sequence)."""
        oracle = self.oracle
        oracle.drain(quiet=0.03)
        lost = self._compare()
        if lost:  # a slow moment of the machine, or really lost: wait longer to tell
            oracle.drain(quiet=1.0)
            lost = self._compare()
        oracle.problems.lost += lost
        self.counts.reload_deletes = oracle.swept
        self.counts.events_applied = oracle.applied
        self.counts.copies_seen = oracle.copies
        found = oracle.problems.lines()
        oracle.problems = type(oracle.problems)()
        return found
