"""AMQP edge shared by the publisher and the consumer kit: topology, connections, failures.

`publisher.topology` describes the exchanges as plain data; this module turns them into
kombu's `Exchange` and `Queue` and declares them (idempotent).

`BrokerConnection` is a kombu connection on which every wait has a deadline: connecting
(TCP and each step of the AMQP handshake), each reply awaited afterwards, each write, and
closing, which gives up on the broker's Close-Ok and drops the socket. A broker that stops
answering (a black hole) therefore fails the call instead of hanging it.

`broker_failure` says what a failure means: a refusal a new connection would meet again
(wrong credentials, a vhost the user may not use, missing permissions, an exchange or queue
declared with other settings) is a `BrokerConfigError` that says what to fix; anything else
(a lost connection, a timeout) is a `BrokerError`, which a later step may not meet.
"""

from __future__ import annotations

import contextlib
import re
import socket
from typing import Any, Final

import amqp
import kombu.exceptions
from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from publisher import topology
from publisher.errors import BrokerConfigError, BrokerError, PublisherError


def exchange(spec: topology.ExchangeSpec) -> Exchange:
    """Return the kombu exchange an `ExchangeSpec` describes."""
    return Exchange(spec.name, spec.kind, durable=spec.durable, arguments=spec.arguments())


UNROUTED: Final = exchange(topology.UNROUTED)
# Readers take it as it is (`no_declare`): `declare_unrouted` is the one place that makes it.
UNROUTED_QUEUE: Final = Queue(
    topology.UNROUTED_QUEUE,
    UNROUTED,
    durable=True,
    queue_arguments=topology.UNROUTED_QUEUE_ARGUMENTS,
    no_declare=True,
)
EXCHANGES: Final = tuple(exchange(spec) for spec in topology.EVENT_EXCHANGES)
DEAD: Final = exchange(topology.DEAD)

# Errors after which a fresh connection may work: the consumer kit reconnects on these.
RECOVERABLE: Final = (
    OSError,
    ConnectionError,
    amqp.exceptions.RecoverableConnectionError,
    amqp.exceptions.RecoverableChannelError,
    kombu.exceptions.OperationalError,  # what kombu raises when it cannot connect
)
# Everything talking to the broker may raise.
BROKER_ERRORS: Final = (*RECOVERABLE, amqp.exceptions.AMQPError, kombu.exceptions.KombuError)


def declare_topology(channel: Any) -> int | None:
    """Declare the event exchanges, the alternate exchange and its queue (idempotent).

    Return how many events wait in the unrouted queue (None where it cannot be told).
    """
    UNROUTED.bind(channel).declare()
    waiting = declare_unrouted(channel)
    for event_exchange in EXCHANGES:
        event_exchange.bind(channel).declare()
    return waiting


def declare_unrouted(channel: Any) -> int | None:
    """Declare `akinon.unrouted` bounded, unless it exists; return how many events wait in it.

    One declared by a version before the bound has no `x-max-length`, and declaring it now
    with one would be refused (PRECONDITION_FAILED): an existing queue is left as it is (a
    policy bounds it, see the README). The check is a passive declare on a channel of its
    own, which the broker closes if the queue is missing.
    """
    if not isinstance(channel, amqp.Channel):  # kombu's in-memory transport (the demo)
        Queue(topology.UNROUTED_QUEUE, UNROUTED, durable=True).bind(channel).declare()
        return None
    probe = channel.connection.channel()
    try:
        _, waiting, _ = probe.queue_declare(topology.UNROUTED_QUEUE, passive=True)
    except amqp.exceptions.NotFound:
        channel.queue_declare(
            topology.UNROUTED_QUEUE,
            durable=True,
            auto_delete=False,
            arguments=topology.UNROUTED_QUEUE_ARGUMENTS,
        )
        channel.queue_bind(topology.UNROUTED_QUEUE, topology.UNROUTED_EXCHANGE)
        return 0
    probe.close()
    return int(waiting)


# ------------------------------------------------------------------------------- failures

_ACCESS_REFUSED: Final = 403
_NOT_FOUND: Final = 404
_PRECONDITION_FAILED: Final = 406
_INTERNAL_ERROR: Final = 541  # the broker's own trouble (a node restarting): may pass
_FRAMING: Final = range(501, 506)  # frame, syntax, command, channel and unexpected-frame errors
# e.g. "inequivalent arg 'type' for exchange 'akinon.stock' in vhost 'h': received 'topic'
# but current is 'fanout'" (RabbitMQ's wording)
_INEQUIVALENT: Final = re.compile(
    r"inequivalent arg '(?P<arg>[^']*)' for (?P<kind>exchange|queue) '(?P<name>[^']*)'"
    r".*?: received (?P<ours>.*) but current is (?P<theirs>.*)$"
)
_NO_SUCH: Final = re.compile(r"no (?P<kind>exchange|queue) '(?P<name>[^']*)'")


def is_fatal(exc: BaseException) -> bool:
    """Say whether a new connection would fail the same way (py-amqp's irrecoverable errors)."""
    irrecoverable = (
        amqp.exceptions.IrrecoverableChannelError,
        amqp.exceptions.IrrecoverableConnectionError,
    )
    return isinstance(exc, irrecoverable) and exc.reply_code != _INTERNAL_ERROR


def broker_failure(exc: BaseException, doing: str) -> PublisherError:
    """Return our error for a kombu or py-amqp failure met while `doing` something."""
    if is_fatal(exc):
        assert isinstance(exc, amqp.exceptions.AMQPError)  # is_fatal checked it
        return BrokerConfigError(f"{doing}: {_advice(exc)} ({exc})")
    if isinstance(exc, PublisherError):
        return exc
    return BrokerError(f"{doing}: {type(exc).__name__}: {exc}")


def _advice(exc: amqp.exceptions.AMQPError) -> str:
    """Say what to change so that the broker accepts what it refused."""
    code, text, method = exc.reply_code, exc.reply_text or "", exc.method_name or "a method"
    if code == _ACCESS_REFUSED and not exc.method_name:  # refused at login, before any method
        return "the broker refused the user name and password of AMQP_URL; correct them"
    if code == _ACCESS_REFUSED:
        return (
            f"the AMQP_URL user may not do {method}: grant it configure, write and read "
            "permissions on the vhost (rabbitmqctl set_permissions)"
        )
    if isinstance(exc, amqp.exceptions.InvalidPath) or method == "Connection.open":
        return (
            "the AMQP_URL user may not access the vhost it names: create the vhost, grant "
            "the user access to it (rabbitmqctl set_permissions -p <vhost>) or correct AMQP_URL"
        )
    if code == _PRECONDITION_FAILED and (found := _INEQUIVALENT.search(text)):
        kind, name, arg = found["kind"], found["name"], found["arg"]
        return (
            f"{kind} {name} exists with {arg} {_unquote(found['theirs'])}, but we declare it "
            f"with {arg} {_unquote(found['ours'])}: delete the {kind} (it is declared again "
            "on the next connection) or point AMQP_URL at another vhost"
        )
    if code in _FRAMING:
        return (
            "the AMQP conversation broke: a bug in this client, or something between it and "
            "the broker that alters the bytes; please report it"
        )
    if code == _NOT_FOUND and (found := _NO_SUCH.search(text)):
        return (
            f"{found['kind']} {found['name']} does not exist: something deleted it after it "
            "was declared (it is declared again on the next connection), or it is not one "
            "of publisher.topology's"
        )
    return f"the broker refused {method}; retrying will not change that"


def shown_url(url: str) -> str:
    """Return a broker URL fit for a message: without its password."""
    return str(Connection(url).as_uri())


def _unquote(text: str) -> str:
    """Return a value as RabbitMQ words it ("the value 'x' of type 'longstr'") as x."""
    return re.sub(r"^the value | of type '[^']*'$", "", text.strip()).replace("'", "")


# ---------------------------------------------------------------------------- connections


class BrokerConnection:
    """A connected kombu connection whose every wait on the broker has a deadline.

    Deadlines are socket timeouts: after `open`, a wait for a reply or a write that makes no
    progress for `connect_timeout` fails with `TimeoutError` (an `OSError`) until `settimeout`
    sets another bound; `drain_events` takes its own. Calls go to the py-amqp connection taken
    once at connect, never through kombu's `Connection.connection`, which would silently open
    a new connection (without our channel) after a lost one.
    """

    def __init__(self, connection: Connection) -> None:
        self.kombu = connection
        self.raw: Any = connection.connection  # connected: this does not reconnect
        self.driver_type: str = connection.transport.driver_type

    @classmethod
    def open(cls, url: str, *, connect_timeout: float) -> BrokerConnection:
        """Connect in one attempt (callers retry whole steps); raise kombu's or amqp's error."""
        connection = Connection(url, connect_timeout=connect_timeout)
        try:
            connection.ensure_connection(max_retries=0)
        except BaseException:
            connection.collect()
            raise
        opened = cls(connection)
        opened.settimeout(connect_timeout)
        return opened

    def _transport(self) -> Any:
        # py-amqp's public `transport` property reconnects once the transport is gone.
        return getattr(self.raw, "_transport", None)

    def settimeout(self, seconds: float) -> None:
        """Bound every later wait and write that sets no bound of its own."""
        sock: socket.socket | None = getattr(self._transport(), "sock", None)
        if sock is not None:  # None on kombu's memory transport, or once closed
            sock.settimeout(seconds)

    def write(self, data: bytes) -> None:
        """Write raw AMQP frames (bounded by the socket timeout)."""
        transport = self._transport()
        if transport is None:
            raise amqp.exceptions.RecoverableConnectionError("the connection is closed")
        transport.write(data)

    def channel(self) -> Any:
        """Open a channel (a wait for the broker's Open-Ok)."""
        return self.kombu.transport.create_channel(self.raw)

    def drain_events(self, timeout: float) -> None:
        """Handle what arrives within `timeout` seconds; raise `TimeoutError` if nothing did."""
        self.kombu.transport.drain_events(self.raw, timeout=timeout)

    def drop(self) -> None:
        """Close the socket at once, without the AMQP close handshake."""
        with contextlib.suppress(*BROKER_ERRORS):
            self.kombu.collect()
            if self.driver_type == "amqp":
                self.raw.collect()  # idempotent; kombu lets go of it after a failed close

    def close(self, timeout: float) -> None:
        """Close politely if the broker answers within about `timeout` seconds, else drop."""
        if timeout > 0:  # a zero timeout would make the socket non-blocking instead
            self.settimeout(timeout)
            with contextlib.suppress(*BROKER_ERRORS):
                self.kombu.release()  # Close, then wait for Close-Ok, each up to `timeout`
        self.drop()


def queue_exists(url: str, name: str) -> bool:
    """Say whether a queue of this name exists on the broker (a passive declare)."""
    connection = BrokerConnection.open(url, connect_timeout=5.0)
    try:
        connection.channel().queue_declare(name, passive=True)
    except amqp.exceptions.NotFound:
        return False
    finally:
        connection.close(2.0)
    return True
