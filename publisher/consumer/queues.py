"""Route: which exchanges a topic pattern binds on, and the queues a consumer declares."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from kombu.entity import Queue, binding

from publisher import topology
from publisher.broker import DEAD, EXCHANGES

# Every published routing key, per exchange, as words; None stands for the channel id.
_ROUTES: Final = tuple(
    (route.exchange, words) for route in topology.ROUTES for words in route.words()
)
_EXCHANGES: Final = {exchange.name: exchange for exchange in EXCHANGES}


def topic_matches(pattern: Sequence[str], words: Sequence[str | None]) -> bool:
    """Say whether a topic pattern (as words) can match a routing key (None: any word)."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(topic_matches(rest, words[start:]) for start in range(len(words) + 1))
    if not words or not (head == "*" or words[0] is None or words[0] == head):
        return False
    return topic_matches(rest, words[1:])


def exchanges_for(pattern: str) -> list[str]:
    """Return the event exchanges carrying routing keys the pattern can match."""
    words = pattern.split(".")
    found = sorted({exchange for exchange, key in _ROUTES if topic_matches(words, key)})
    if not found:
        raise ValueError(f"pattern {pattern!r} matches no routing key the publisher uses")
    return found


def _bindings(patterns: Sequence[str]) -> list[binding]:
    return [
        binding(_EXCHANGES[name], routing_key=pattern)
        for pattern in patterns
        for name in exchanges_for(pattern)
    ]


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A durable consumer queue, its bindings and its dead-letter queue."""

    name: str
    patterns: tuple[str, ...]
    max_attempts: int = 5
    quorum: bool = True
    single_active: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith("amq."):
            raise ValueError(f"invalid queue name {self.name!r}")
        if not self.patterns:
            raise ValueError("a subscription needs at least one routing-key pattern")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for pattern in self.patterns:
            exchanges_for(pattern)  # fail now, not at the first connect

    @property
    def dead_name(self) -> str:
        """Return the name of the dead-letter queue: ``<queue>.dead``."""
        return topology.dead_queue(self.name)

    def arguments(self) -> dict[str, Any]:
        """Return the queue arguments: type, dead-lettering, delivery limit."""
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": topology.DEAD_EXCHANGE,
            "x-dead-letter-routing-key": self.name,
        }
        if self.quorum:
            arguments |= {
                "x-queue-type": "quorum",
                "x-delivery-limit": self.max_attempts,
                # At-least-once dead-lettering needs reject-publish overflow; together they
                # keep a message until the dead-letter queue has confirmed it.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        if self.single_active:
            arguments["x-single-active-consumer"] = True
        return arguments

    def queue(self) -> Queue:
        """Return the consumer queue with one binding per (pattern, matching exchange)."""
        return Queue(
            self.name,
            bindings=_bindings(self.patterns),
            durable=True,
            auto_delete=False,
            queue_arguments=self.arguments(),
        )

    def dead_queue(self) -> Queue:
        """Return the dead-letter queue, bound to `akinon.dead` by the queue's name."""
        arguments = {"x-queue-type": "quorum"} if self.quorum else {}
        return Queue(
            self.dead_name,
            DEAD,
            routing_key=self.name,
            durable=True,
            auto_delete=False,
            queue_arguments=arguments,
        )


def temporary_queue(patterns: Sequence[str]) -> Queue:
    """Return a server-only queue for watching: exclusive, auto-deleted, not durable."""
    return Queue(
        f"{topology.TAIL_QUEUE_PREFIX}.{uuid.uuid4().hex[:12]}",
        bindings=_bindings(patterns),
        exclusive=True,
        auto_delete=True,
        durable=False,
    )
