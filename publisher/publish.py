"""PUBLISH edge: put a batch of events on the broker and return only once it confirmed all.

The exchanges (`publisher.topology`) are declared once per connection (idempotent); each
event exchange has the alternate exchange `akinon.unrouted`, whose queue keeps an event no
queue is bound for instead of dropping it.

Publisher confirms are on for every AMQP connection, and awaited per batch: all messages of
a batch go out back to back, then we read acks until every delivery tag is settled. A nack,
a returned message, a timeout or a lost connection fails the whole batch with `BrokerError`,
so the caller commits nothing and the next step publishes the same events again. A refusal
that a new connection would meet again (credentials, vhost, permissions, an exchange declared
otherwise) is a `BrokerConfigError` instead, which says what to fix.

Every wait has a deadline: connecting and declaring `connect_timeout` (per silent wait),
writing a batch and reading its confirms `confirm_timeout`, closing `close_timeout`; a
connection that failed is dropped without the close handshake. So a broker that stops
answering fails a step after about `confirm_timeout`, and never holds it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from kombu.messaging import Producer

from publisher import metrics, topology
from publisher.broker import (
    BROKER_ERRORS,
    BrokerConnection,
    broker_failure,
    declare_topology,
    shown_url,
)
from publisher.errors import BrokerError, PublisherError
from publisher.framing import publish_frames
from publisher.outgoing import OutgoingEvent, message_properties

log = logging.getLogger(__name__)


class ConfirmTracker:
    """Follow which delivery tags of a confirm-mode channel the broker has settled."""

    def __init__(self) -> None:
        self.published = 0  # the broker numbers published messages 1, 2, 3 ...
        self._floor = 0  # every tag <= floor is settled
        self._above: set[int] = set()
        self.nacked = 0
        self.returned: list[str] = []

    def on_ack(self, tag: int, multiple: bool) -> None:
        """Settle one tag, or every tag up to it."""
        if multiple:
            self._floor = max(self._floor, tag)
            self._above = {t for t in self._above if t > tag}
        else:
            self._above.add(tag)
        while self._floor + 1 in self._above:
            self._floor += 1
            self._above.discard(self._floor)

    def on_nack(self, tag: int, multiple: bool) -> None:
        """Count a refusal; the tag is settled, badly."""
        self.nacked += 1
        self.on_ack(tag, multiple)

    def on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        """Remember a message the broker could not route even to the alternate exchange."""
        self.returned.append(f"{exchange}/{routing_key}")

    def settled(self, upto: int) -> bool:
        """Say whether every message up to delivery tag `upto` is acked or nacked."""
        return self._floor >= upto


def event_frames(event: OutgoingEvent, channel: int, frame_max: int) -> bytes:
    """Return the AMQP frames that publish one event (mandatory, persistent)."""
    return publish_frames(
        channel,
        exchange=event.exchange,
        routing_key=event.routing_key,
        body=event.body,
        properties=message_properties(event),
        mandatory=event.mandatory,
        frame_max=frame_max,
    )


def kombu_properties(event: OutgoingEvent) -> dict[str, Any]:
    """Return an event's AMQP properties as kombu's `Producer.publish` takes them."""
    properties = message_properties(event)
    properties["headers"] = properties.pop("application_headers")
    return properties


class KombuPublisher:
    """Publish through kombu; with AMQP, confirms are awaited per batch.

    On an AMQP broker a batch goes out as one write of frames encoded by `publisher.framing`
    on the channel kombu opened (kombu's Producer, and py-amqp's own framing, cost several
    times more per message); py-amqp still reads the confirms. On kombu's in-memory
    transport (the demo) the Producer is used and there is nothing to wait for.

    Safe to share between threads: each thread publishes on a connection and channel of its
    own (`threading.local`), because a py-amqp channel is not thread-safe and a batch's
    confirms must be read on the channel it went out on; a ticket belongs to the thread that
    sent it. Under gevent's monkey-patching a greenlet counts as a thread. When a thread (or
    greenlet) ends, its connection is kept for the next new thread that publishes, so a pool
    that starts one per task does not open a connection per task. `close` closes every
    thread's connection: call it once no thread is publishing.
    """

    def __init__(
        self,
        url: str,
        *,
        confirm_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        close_timeout: float = 2.0,
    ) -> None:
        self._url = url
        self._timeouts = (connect_timeout, confirm_timeout)
        self._close_timeout = close_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[_Session] = []  # every thread's, for `close`
        self._idle: list[_Session] = []  # left by threads that ended

    def publish(self, events: Sequence[OutgoingEvent]) -> None:
        """Send a batch and wait for its confirms."""
        self.confirm(self.send(events))

    def send(self, events: Sequence[OutgoingEvent]) -> int:
        """Write every event of a batch; return the batch's last delivery tag."""
        return self._session().send(events)

    def confirm(self, ticket: int) -> None:
        """Wait for the broker to settle every delivery tag up to `ticket` (of this thread)."""
        with metrics.confirm_wait():
            self._session().confirm(ticket)

    def close(self) -> None:
        """Close every thread's connection within about `close_timeout`; later use reconnects."""
        with self._lock:
            sessions = list(self._sessions)
        deadline = time.monotonic() + self._close_timeout
        for session in sessions:
            session.close(deadline - time.monotonic())

    def _session(self) -> _Session:
        session: _Session | None = getattr(self._local, "session", None)
        if session is not None:
            return session
        with self._lock:
            session = self._idle.pop() if self._idle else None
            if session is None:
                session = _Session(self._url, *self._timeouts)
                self._sessions.append(session)
        session.adopt()
        # The thread's local values go when the thread does: then its session is idle.
        owner = _Owner()
        weakref.finalize(owner, self._idle.append, session).atexit = False
        self._local.session, self._local.owner = session, owner
        return session


class _Owner:
    """A token a thread's local storage holds: collected when the thread ends."""


class _Session:
    """One connection and one confirm-mode channel, used by one thread at a time."""

    def __init__(self, url: str, connect_timeout: float, confirm_timeout: float) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._confirm_timeout = confirm_timeout
        self._connection: BrokerConnection | None = None
        self._channel: Any = None
        self._producer: Producer | None = None
        self._tracker = ConfirmTracker()
        self._problems = (0, 0)  # (nacks, returns) already accounted for

    def adopt(self) -> None:
        """Prepare for a new thread: drop a connection its last thread left unconfirmed."""
        if self._connection is not None and not self._tracker.settled(self._tracker.published):
            self._discard()  # its late confirms, nacks and returns are no concern of the new one

    def send(self, events: Sequence[OutgoingEvent]) -> int:
        """Write every event of a batch; return the batch's last delivery tag."""
        with self._guarded():
            return self._send(events)

    def confirm(self, ticket: int) -> None:
        """Wait for the broker to settle every delivery tag up to `ticket`."""
        with self._guarded():
            self._confirm(ticket)

    def close(self, timeout: float) -> None:
        """Close the connection, if any, politely within `timeout` seconds or by dropping it."""
        connection, self._connection, self._producer, self._channel = (
            self._connection,
            None,
            None,
            None,
        )
        if connection is not None:
            connection.close(timeout)

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """Turn any broker failure into one of our errors and drop the broken connection."""
        try:
            yield
        except PublisherError:
            self._discard()
            raise
        except BROKER_ERRORS as exc:
            self._discard()
            raise broker_failure(exc, "publishing failed") from exc

    def _send(self, events: Sequence[OutgoingEvent]) -> int:
        connection = self._ensure_open()
        if not events:  # an unchanged page: nothing to write, nothing new to wait for
            return self._tracker.published
        if self._producer is not None:
            for event in events:
                self._producer.publish(
                    event.body,
                    exchange=event.exchange,
                    routing_key=event.routing_key,
                    retry=False,
                    **kombu_properties(event),
                )
            return 0
        channel, frame_max = self._channel.channel_id, connection.raw.frame_max
        frames = b"".join(event_frames(e, channel, frame_max) for e in events)
        try:
            connection.write(frames)  # bounded by the socket timeout: confirm_timeout
        except TimeoutError:
            raise BrokerError(
                f"broker took no data for {self._confirm_timeout:g}s "
                "(unreachable, or blocked by a resource alarm)"
            ) from None
        self._tracker.published += len(events)
        return self._tracker.published

    def _confirm(self, ticket: int) -> None:
        if self._producer is not None:
            return  # the in-memory transport has nothing to confirm
        if self._connection is None:
            raise BrokerError("the connection was lost before the batch was confirmed")
        deadline = time.monotonic() + self._confirm_timeout
        tracker = self._tracker
        while not tracker.settled(ticket):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(f"broker did not confirm within {self._confirm_timeout:g}s")
            with contextlib.suppress(TimeoutError):  # the deadline, checked above, decides
                self._connection.drain_events(timeout=remaining)
        self._check_problems()

    def _check_problems(self) -> None:
        tracker = self._tracker
        nacked, returned = self._problems
        self._problems = (tracker.nacked, len(tracker.returned))
        if tracker.nacked > nacked:
            raise BrokerError(f"broker refused {tracker.nacked - nacked} events")
        if len(tracker.returned) > returned:
            lost = ", ".join(tracker.returned[returned:][:3])
            raise BrokerError(f"broker could not route events (no alternate exchange?): {lost}")

    def _ensure_open(self) -> BrokerConnection:
        if self._connection is not None:
            return self._connection
        try:
            connection = BrokerConnection.open(self._url, connect_timeout=self._connect_timeout)
        except BROKER_ERRORS as exc:
            raise broker_failure(exc, f"cannot connect to {shown_url(self._url)}") from exc
        try:
            channel = connection.channel()
            _warn_unrouted(declare_topology(channel))
            self._tracker, self._problems = ConfirmTracker(), (0, 0)
            if connection.driver_type == "amqp":
                channel.confirm_select()
                channel.events["basic_ack"].add(self._tracker.on_ack)
                channel.events["basic_nack"].add(self._tracker.on_nack)
                channel.events["basic_return"].add(self._tracker.on_return)
                self._producer = None
            else:
                self._producer = Producer(channel)
        except BaseException:
            connection.drop()
            raise
        connection.settimeout(self._confirm_timeout)  # now for the writes of a batch
        self._connection, self._channel = connection, channel
        return connection

    def _discard(self) -> None:
        self.close(0)  # a failed connection: do not wait for the broker


def _warn_unrouted(waiting: int | None) -> None:
    """Say so when events wait in akinon.unrouted: no queue was bound for their keys."""
    if waiting:
        log.warning(
            "unrouted events=%d queue=%s: no queue was bound for their routing keys; bind "
            "one (or read them with `akinon-publisher tail`); it keeps at most %d, the "
            "oldest are dropped",
            waiting,
            topology.UNROUTED_QUEUE,
            topology.UNROUTED_MAX_LENGTH,
        )
