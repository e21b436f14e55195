"""Hold one broker connection: one channel, one kombu consumer on one queue.

Every wait on the broker has a deadline (see `publisher.broker.BrokerConnection`): connecting
and declaring `connect_timeout`, acknowledging `connect_timeout`, closing `close_timeout`,
so a broker that stops answering cannot hang `close` (nor `tail`'s Ctrl-C).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from kombu.entity import Queue
from kombu.messaging import Consumer

from publisher.broker import BROKER_ERRORS, BrokerConnection, broker_failure, declare_topology


def message_body(message: Any) -> bytes:
    """Return a kombu message's body as bytes."""
    body = message.body
    return body if isinstance(body, bytes) else str(body).encode()


class Link:
    """One connection, one channel, one kombu consumer on one queue."""

    def __init__(
        self,
        url: str,
        queue: Queue,
        on_message: Callable[[Any], None],
        *,
        prefetch: int,
        connect_timeout: float,
        close_timeout: float = 2.0,
        extra: Sequence[Queue] = (),
    ) -> None:
        self._url = url
        self._queue = queue
        self._extra = extra
        self._on_message = on_message
        self._prefetch = prefetch
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._connection: BrokerConnection | None = None
        self._consumer: Consumer | None = None

    def open(self) -> None:
        """Connect, declare the topology and start consuming (once)."""
        if self._connection is not None:
            return
        # One try: `run` does its own backoff between reconnections.
        connection = BrokerConnection.open(self._url, connect_timeout=self._connect_timeout)
        try:
            channel = connection.channel()
            declare_topology(channel)
            for queue in (*self._extra, self._queue):
                queue.bind(channel).declare()
            consumer = Consumer(
                channel, queues=[self._queue], on_message=self._on_message, auto_declare=False
            )
            consumer.qos(prefetch_count=self._prefetch)
            consumer.consume()
        except BaseException:
            connection.drop()
            raise
        self._connection, self._consumer = connection, consumer

    def pump(self, timeout: float) -> bool:
        """Handle what arrives within `timeout` seconds; False when nothing did."""
        self.open()
        assert self._connection is not None
        try:
            self._connection.drain_events(timeout=timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Stop consuming and close; unacknowledged messages go back to the queue.

        Takes about `close_timeout` at most: a broker that does not answer the cancel is not
        asked to close either; the socket is dropped.
        """
        connection, consumer = self._connection, self._consumer
        self._connection = self._consumer = None
        if connection is None:
            return
        connection.settimeout(self._close_timeout)
        try:
            if consumer is not None:
                consumer.cancel()
        except BROKER_ERRORS:
            connection.drop()
            return
        connection.close(self._close_timeout)


@contextlib.contextmanager
def as_broker_error() -> Iterator[None]:
    """Translate kombu's and amqp's errors into ours (`BrokerError`, `BrokerConfigError`)."""
    try:
        yield
    except BROKER_ERRORS as exc:
        raise broker_failure(exc, "consuming failed") from exc
