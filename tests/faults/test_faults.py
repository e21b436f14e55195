"""The fault suite: random sequences of changes and faults; the oracle must hold every record.

Each example is a `Sequence` (see `tests.faults.world`) played on a fresh channel of one
sandbox, through the real pipeline, Redis and RabbitMQ. After the publisher recovered, the
oracle (a consumer built on the consumer kit) must hold exactly the sandbox's records:
nothing lost, nothing applied out of order, every copy of an event id the same content.

Sequences run read-only (the list, deletes found by complete scans) and, without deletes,
acknowledging (the work queue). The short profile runs with the other tests; the long one
(`-m faults_long`) runs 1,000 sequences per mode and writes its figures. `FAULT_SEED=<n>`
repeats a run's generation; Hypothesis prints the shrunk failing sequence (and a
`@reproduce_failure` blob).
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from publisher.records import Resource
from publisher.sandbox import SandboxServer
from tests.faults.world import (
    Action,
    AkinonFault,
    Change,
    Delete,
    Freeze,
    Kill,
    LinkFault,
    LoseState,
    Sequence,
    Step,
    TwoSteps,
    World,
)

pytestmark = pytest.mark.integration

FAULT_SEED = int(os.environ.get("FAULT_SEED") or random.randrange(2**32))
SHORT_EXAMPLES = int(os.environ.get("FAULT_EXAMPLES") or 300)
LONG_EXAMPLES = int(os.environ.get("FAULT_LONG_EXAMPLES") or 1000)
# A directory: the long profile writes its figures there (<mode>.json) after each sequence.
FIGURES = os.environ.get("FAULT_FIGURES")

# -- strategies --------------------------------------------------------------------------

resources = st.sampled_from(list(Resource))
slots = st.integers(0, 6)  # the seeded keys, and a few new ones past them
amounts = st.integers(0, 99)


def link_faults(most_bytes: int) -> st.SearchStrategy[LinkFault]:
    """Cut or stall after a number of client bytes (0: a black hole) or a moment."""
    actions = st.sampled_from(["cut", "stall"])
    return st.one_of(
        st.builds(LinkFault, actions, after_bytes=st.integers(0, most_bytes)),
        st.builds(LinkFault, actions, after_seconds=st.floats(0.0, 0.15)),
    )


# An AMQP handshake is about 600 bytes from the client and an event about 1,000: up to
# 8,000 bytes falls before, during and after a step's confirms. Redis commands are smaller.
steps = st.builds(
    Step,
    resources,
    broker=st.none() | link_faults(8000),
    redis=st.none() | link_faults(2500) | st.just(LinkFault("cut", on_command="EVALSHA")),
    incremental=st.booleans(),
)
changes = st.builds(Change, resources, slots, amounts)
records = st.one_of(changes, st.builds(Delete, resources, slots))
akinon = st.builds(
    AkinonFault,
    st.sampled_from(["5xx", "429", "truncated", "malformed", "flaky"]),
    st.integers(1, 3),
)
# Each of these costs a second or so: a slow Akinon times out, a frozen step outlives its lock.
costly = st.one_of(
    st.builds(Kill, resources, st.floats(0.0, 0.15)),
    st.builds(Freeze, resources, st.floats(0.0, 0.15), slots, amounts),
    st.just(AkinonFault("timeout")),
)
others = (steps, steps, akinon, st.builds(TwoSteps, resources), st.builds(LoseState, resources))
actions: st.SearchStrategy[Action] = st.one_of(records, records, *others)
# A work queue (acknowledging mode) never says a record was deleted: no deletes there.
no_deletes: st.SearchStrategy[Action] = st.one_of(changes, changes, *others)


@st.composite
def sequences(
    draw: st.DrawFn, costly_one_in: int, cheap: st.SearchStrategy[Action] = actions
) -> Sequence:
    """Draw a few seeded records and up to six actions, about one in `costly_one_in` costly.

    (Costly is the top value of the draw: Hypothesis shrinks toward 0, so toward cheap.)
    """
    size = draw(st.integers(1, 4))
    drawn: list[Action] = []
    for _ in range(draw(st.integers(1, 6))):
        use_costly = draw(st.integers(1, costly_one_in)) == costly_one_in
        drawn.append(draw(costly if use_costly else cheap))
    return Sequence(size, tuple(drawn))


# -- the world ---------------------------------------------------------------------------


@pytest.fixture
def world(
    sandbox_factory: Callable[..., SandboxServer],
    redis_url: str,
    redis_client: redis.Redis,
    amqp_url: str,
    channel_id: int,
) -> Iterator[World]:
    server = sandbox_factory([channel_id], size=1)
    # Channel ids of their own, far from the other tests' (record keys are id * 1,000,000).
    fresh = itertools.count(channel_id * 1000 + 1)
    built = World(server, redis_url, redis_client, amqp_url, fresh)
    yield built
    built.close()


def play(world: World, sequence: Sequence) -> None:
    """Play one sequence; fail with everything needed to understand and repeat it."""
    problems = world.run(sequence)
    if currently_in_test_context():
        note(f"channel {world.channel_id}; FAULT_SEED={FAULT_SEED} repeats this run")
    if problems:
        pytest.fail(
            f"{len(problems)} problems on channel {world.channel_id} "
            f"(FAULT_SEED={FAULT_SEED} repeats this run):\n" + "\n".join(problems)
        )


# -- what were known limits, as the shortest sequences that showed them -------------------
# Deletes are found by comparing a complete scan with what the publisher remembers; a record
# deleted while it remembered nothing of it was never announced. Both cases are closed now.


def test_a_delete_not_yet_seen_when_the_state_is_lost_reaches_the_consumer(world: World) -> None:
    """The load after the loss ends with a reload event; the oracle drops the deleted record."""
    play(
        world,
        Sequence(2, (Step(Resource.STOCK), Delete(Resource.STOCK, 0), LoseState(Resource.STOCK))),
    )
    assert world.oracle.swept == 1


def test_a_list_emptied_while_the_state_was_lost_is_held_then_released_to_the_consumer(
    world: World,
) -> None:
    """The load reads the list empty: held like a mass delete, released, then announced.

    (Found by the long profile: a load that saw no record published nothing at all.)
    """
    play(
        world,
        Sequence(1, (Step(Resource.STOCK), Delete(Resource.STOCK, 0), LoseState(Resource.STOCK))),
    )
    assert world.counts.reloads_held == 1
    assert world.oracle.swept == 1


def test_a_delete_after_a_published_but_uncommitted_page_reaches_the_consumer(
    world: World,
) -> None:
    """The page's versions were journalled before it was sent: the scan finds the delete."""
    commit_fails = LinkFault("cut", on_command="EVALSHA")  # Redis dies as the page commits
    play(world, Sequence(1, (Step(Resource.STOCK, redis=commit_fails), Delete(Resource.STOCK, 0))))


def test_a_record_changed_back_after_an_uncommitted_page_reaches_the_consumer(
    world: World,
) -> None:
    """Sent 7 but not committed, then back to 5 (the stored content): 5 must go out again."""
    stock, commit_fails = Resource.STOCK, LinkFault("cut", on_command="EVALSHA")
    play(
        world,
        Sequence(
            1,
            (
                Change(stock, 0, 5),
                Step(stock),
                Change(stock, 0, 7),
                Step(stock, redis=commit_fails),
                Change(stock, 0, 5),
            ),
        ),
    )


def test_two_deletions_of_one_key_carry_two_ids(world: World) -> None:
    stock = Resource.STOCK
    again = (Change(stock, 3, 5), Step(stock), Delete(stock, 1), Step(stock))
    play(world, Sequence(1, again + again))
    ids = {event_id for record, event_id in world.oracle.deletion_ids if record[2] % 1000 == 104}
    assert len(ids) == 2


def test_a_page_published_but_not_committed_is_published_again_with_the_same_ids(
    world: World,
) -> None:
    commit_fails = LinkFault("cut", on_command="EVALSHA")
    play(world, Sequence(3, (Step(Resource.STOCK, redis=commit_fails), Step(Resource.STOCK))))
    assert world.counts.failed_steps == 1
    assert world.counts.copies_seen > world.counts.events_applied  # re-published, same ids


COMMON = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    print_blob=True,
)


@pytest.fixture
def acknowledging(world: World) -> World:
    """The world, its steps draining the work queue (inserts_or_updates) and acknowledging."""
    world.acknowledge = True
    return world


def play_counted(world: World, sequence: Sequence, mode: str) -> None:
    """Play a sequence of a long run; write the run's figures so far (`FAULT_FIGURES`)."""
    world.started = getattr(world, "started", None) or time.monotonic()  # type: ignore[attr-defined]
    play(world, sequence)
    if FIGURES:
        figures = {
            "mode": mode,
            "seed": FAULT_SEED,
            "duration_seconds": round(time.monotonic() - world.started, 1),  # type: ignore[attr-defined]
            **world.counts.__dict__,
        }
        path = Path(FIGURES) / f"{mode}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


@pytest.mark.timeout(900)
@seed(FAULT_SEED)
@settings(COMMON, max_examples=SHORT_EXAMPLES)
@given(sequence=sequences(costly_one_in=30))
def test_no_sequence_of_faults_loses_or_reorders_a_record(world: World, sequence: Sequence) -> None:
    play(world, sequence)


@pytest.mark.timeout(900)
@seed(FAULT_SEED)
@settings(COMMON, max_examples=SHORT_EXAMPLES // 4)
@given(sequence=sequences(costly_one_in=30, cheap=no_deletes))
def test_acknowledging_no_sequence_of_faults_loses_or_reorders_a_record(
    acknowledging: World, sequence: Sequence
) -> None:
    play(acknowledging, sequence)


@pytest.mark.faults_long
@pytest.mark.timeout(0)
@seed(FAULT_SEED)
@settings(COMMON, max_examples=LONG_EXAMPLES)
@given(sequence=sequences(costly_one_in=10))
def test_long_profile_no_sequence_loses_or_reorders_a_record(
    world: World, sequence: Sequence
) -> None:
    play_counted(world, sequence, "read-only")


@pytest.mark.faults_long
@pytest.mark.timeout(0)
@seed(FAULT_SEED)
@settings(COMMON, max_examples=LONG_EXAMPLES)
@given(sequence=sequences(costly_one_in=10, cheap=no_deletes))
def test_long_profile_acknowledging_no_sequence_loses_or_reorders_a_record(
    acknowledging: World, sequence: Sequence
) -> None:
    play_counted(acknowledging, sequence, "acknowledging")
