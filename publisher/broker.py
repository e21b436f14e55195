"""AMQP edge shared by the publisher and the consumer kit: the topology as kombu entities.

`publisher.topology` describes the exchanges as plain data; this module turns them into
kombu's `Exchange` and `Queue` and declares them (idempotent), and says which broker errors
a fresh connection may cure.
"""

from __future__ import annotations

from typing import Any, Final

import amqp
import kombu.exceptions
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from publisher import topology


def exchange(spec: topology.ExchangeSpec) -> Exchange:
    """Return the kombu exchange an `ExchangeSpec` describes."""
    return Exchange(spec.name, spec.kind, durable=spec.durable, arguments=spec.arguments())


UNROUTED: Final = exchange(topology.UNROUTED)
UNROUTED_QUEUE: Final = Queue(topology.UNROUTED_QUEUE, UNROUTED, durable=True)
EXCHANGES: Final = tuple(exchange(spec) for spec in topology.EVENT_EXCHANGES)
DEAD: Final = exchange(topology.DEAD)

# Errors after which a fresh connection may work; anything else is a configuration problem.
RECOVERABLE: Final = (
    OSError,
    ConnectionError,
    amqp.exceptions.RecoverableConnectionError,
    amqp.exceptions.RecoverableChannelError,
    kombu.exceptions.OperationalError,  # what kombu raises when it cannot connect
)
# Everything talking to the broker may raise.
BROKER_ERRORS: Final = (*RECOVERABLE, amqp.exceptions.AMQPError, kombu.exceptions.KombuError)


def declare_topology(channel: Any) -> None:
    """Declare the event exchanges, the alternate exchange and its queue (idempotent)."""
    UNROUTED.bind(channel).declare()
    UNROUTED_QUEUE.bind(channel).declare()
    for event_exchange in EXCHANGES:
        event_exchange.bind(channel).declare()


def queue_exists(url: str, name: str) -> bool:
    """Say whether a queue of this name exists on the broker (a passive declare)."""
    with Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            channel.queue_declare(name, passive=True)
        except amqp.exceptions.NotFound:
            return False
    return True
