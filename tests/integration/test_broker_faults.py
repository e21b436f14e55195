"""Broker faults against the real RabbitMQ: refusals are fatal, silences have deadlines, and
one publisher is safe to share between threads.

A silent broker is a `TcpProxy` that stops forwarding (a black hole); every operation runs
in a thread that must end in time, so a hang fails the test instead of stalling the run.
(Each such thread publishes on the connection the thread before it left: see
`KombuPublisher`.)
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import amqp
import kombu
import pytest

from publisher import broker
from publisher.broker import broker_failure
from publisher.consumer import Subscription, follow
from publisher.diff import diff_page
from publisher.errors import BrokerConfigError, BrokerError, RetryableError
from publisher.outgoing import EventContext, OutgoingEvent, change_event
from publisher.publish import KombuPublisher
from publisher.records import Resource
from tests.factories import as_page, stock
from tests.integration.collect import Collector
from tests.proxy import TcpProxy

pytestmark = pytest.mark.integration

# What a deadline may overrun by: scheduling, a loaded machine.
SLACK = 1.5
HANDSHAKE_BYTES = 230  # what a client sends to open a connection, before its first channel


def _events(channel_id: int, keys: range) -> list[OutgoingEvent]:
    ctx = EventContext(channel_id, Resource.STOCK, "http://a.example", datetime.now(UTC))
    diff = diff_page(as_page(Resource.STOCK, [stock(k) for k in keys]), {})
    return [change_event(ctx, c) for c in diff.changes]


def _within(seconds: float, work: Callable[[], object]) -> BaseException | None:
    """Run `work` in a thread; fail unless it ends within `seconds`; return what it raised."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test to judge
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds:g}s"
    return outcome[0]


def _with_vhost(url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{vhost}"))


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = TcpProxy(5672)
    yield server
    server.cut()


# ------------------------------------------------------------ refusals are fatal and explained


@pytest.fixture
def conflicting_exchange(
    amqp_url: str, channel_id: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """An event exchange of ours that already exists on the broker as a fanout."""
    name = f"test.conflict.{channel_id}"
    with kombu.Connection(amqp_url) as conn:
        kombu.Exchange(name, "fanout", durable=True).bind(conn.default_channel).declare()
        ours = kombu.Exchange(name, "topic", durable=True)
        monkeypatch.setattr(broker, "EXCHANGES", (*broker.EXCHANGES, ours))
        yield name
        conn.default_channel.exchange_delete(name)


def test_an_exchange_declared_with_another_type_is_fatal_and_says_what_to_fix(
    amqp_url: str, channel_id: int, conflicting_exchange: str
) -> None:
    publisher = KombuPublisher(amqp_url)
    with pytest.raises(BrokerConfigError) as caught:
        publisher.publish(_events(channel_id, range(1, 2)))
    publisher.close()
    message = str(caught.value)
    assert f"exchange {conflicting_exchange} exists with type fanout" in message
    assert "declare it with type topic" in message
    assert "delete the exchange" in message
    assert not isinstance(caught.value, RetryableError)


def test_wrong_credentials_are_fatal_and_the_password_is_not_shown(
    amqp_url: str, channel_id: int
) -> None:
    url = amqp_url.replace("guest:guest@", "guest:not-the-password@")
    assert url != amqp_url
    publisher = KombuPublisher(url)
    with pytest.raises(BrokerConfigError, match="user name and password of AMQP_URL") as caught:
        publisher.publish(_events(channel_id, range(1, 2)))
    publisher.close()
    assert "not-the-password" not in str(caught.value)


def test_a_vhost_the_user_may_not_use_is_fatal_and_named(amqp_url: str, channel_id: int) -> None:
    vhost = f"no-such-vhost-{channel_id}"
    publisher = KombuPublisher(_with_vhost(amqp_url, vhost))
    with pytest.raises(BrokerConfigError, match="may not access the vhost") as caught:
        publisher.publish(_events(channel_id, range(1, 2)))
    publisher.close()
    assert vhost in str(caught.value)


def test_an_event_for_an_exchange_that_does_not_exist_is_fatal_and_names_it(
    amqp_url: str, channel_id: int
) -> None:
    missing = f"test.missing.{channel_id}"
    events = [replace(e, exchange=missing) for e in _events(channel_id, range(1, 3))]
    publisher = KombuPublisher(amqp_url, confirm_timeout=5)
    with pytest.raises(BrokerConfigError, match=f"exchange {missing} does not exist"):
        publisher.publish(events)
    publisher.publish(_events(channel_id, range(1, 3)))  # a new connection works again
    publisher.close()


def test_an_access_refusal_says_which_permissions_to_grant(amqp_url: str) -> None:
    with (
        kombu.Connection(amqp_url) as conn,
        pytest.raises(amqp.exceptions.AccessRefused) as refused,
    ):
        conn.default_channel.queue_declare("amq.reserved-for-the-broker")
    error = broker_failure(refused.value, "declaring")
    assert isinstance(error, BrokerConfigError)
    assert "ACCESS_REFUSED" in str(error)
    assert "permissions" in str(error)


def test_a_lost_connection_stays_retryable() -> None:
    error = broker_failure(ConnectionResetError("reset by peer"), "publishing failed")
    assert isinstance(error, BrokerError)


def test_the_consumer_kit_reports_a_queue_declared_otherwise_as_fatal(
    amqp_url: str, channel_id: int
) -> None:
    name = f"test.classic.{channel_id}"
    with kombu.Connection(amqp_url) as conn:
        # declared without the kit's arguments (dead-lettering, quorum)
        conn.default_channel.queue_declare(name, durable=True, auto_delete=False)
        subscription = Subscription(
            amqp_url, queue=name, patterns=["stock.changed.*"], handler=print
        )
        with pytest.raises(BrokerConfigError) as caught:
            subscription.declare()
        subscription.close()
        conn.default_channel.queue_delete(name)
    message = str(caught.value)
    assert f"queue {name} exists with x-dead-letter-exchange none, but we declare it" in message
    assert "with x-dead-letter-exchange akinon.dead: delete the queue" in message


def test_following_on_a_vhost_the_user_may_not_use_is_fatal(amqp_url: str, channel_id: int) -> None:
    url = _with_vhost(amqp_url, f"no-such-vhost-{channel_id}")
    with pytest.raises(BrokerConfigError, match="may not access the vhost"):
        follow(url, "#", print, connect_timeout=2)


# --------------------------------------------------------- every wait on the broker has a deadline


def test_a_black_holed_broker_fails_the_batch_within_the_confirm_timeout(
    amqp_url: str, channel_id: int, proxy: TcpProxy
) -> None:
    publisher = KombuPublisher(proxy.url_for(amqp_url), confirm_timeout=1, connect_timeout=1)
    # connected, topology declared
    assert _within(10, lambda: publisher.publish(_events(channel_id, range(1, 6)))) is None
    proxy.stall()
    started = time.monotonic()
    error = _within(10, lambda: publisher.publish(_events(channel_id, range(6, 11))))
    assert isinstance(error, BrokerError)
    assert "did not confirm within 1s" in str(error)
    assert time.monotonic() - started < 1 + SLACK
    assert _within(SLACK, publisher.close) is None


def test_a_batch_the_black_hole_will_not_take_fails_within_the_confirm_timeout(
    amqp_url: str, channel_id: int, proxy: TcpProxy
) -> None:
    publisher = KombuPublisher(proxy.url_for(amqp_url), confirm_timeout=1, connect_timeout=1)
    assert _within(10, lambda: publisher.publish(_events(channel_id, range(1, 2)))) is None
    proxy.stall()
    # Far more than the socket buffers on both sides of the proxy hold: the write blocks.
    big = [replace(e, body=b"x" * 1_000_000) for e in _events(channel_id, range(1, 65))]
    started = time.monotonic()
    error = _within(10, lambda: publisher.send(big))
    assert isinstance(error, BrokerError)
    assert time.monotonic() - started < 1 + SLACK
    assert _within(SLACK, publisher.close) is None


def test_closing_a_live_connection_to_a_black_holed_broker_is_quick(
    amqp_url: str, channel_id: int, proxy: TcpProxy
) -> None:
    publisher = KombuPublisher(proxy.url_for(amqp_url), close_timeout=0.5)
    publisher.publish(_events(channel_id, range(1, 6)))
    proxy.stall()
    assert _within(0.5 + SLACK, publisher.close) is None


def test_a_broker_that_accepts_tcp_but_never_answers_fails_within_the_connect_timeout(
    amqp_url: str, channel_id: int, proxy: TcpProxy
) -> None:
    proxy.stall()
    publisher = KombuPublisher(proxy.url_for(amqp_url), connect_timeout=1)
    started = time.monotonic()
    error = _within(10, lambda: publisher.publish(_events(channel_id, range(1, 2))))
    assert isinstance(error, BrokerError)
    assert time.monotonic() - started < 1 + SLACK
    assert _within(SLACK, publisher.close) is None


def test_a_broker_silent_after_the_handshake_fails_within_the_connect_timeout(
    amqp_url: str, channel_id: int
) -> None:
    proxy = TcpProxy(5672, stall_after_bytes=HANDSHAKE_BYTES)  # no answer to Channel.Open
    publisher = KombuPublisher(proxy.url_for(amqp_url), connect_timeout=1, confirm_timeout=30)
    started = time.monotonic()
    error = _within(10, lambda: publisher.publish(_events(channel_id, range(1, 2))))
    proxy.cut()
    assert isinstance(error, BrokerError)
    assert time.monotonic() - started < 1 + SLACK


def test_tail_stops_promptly_when_the_broker_is_black_holed(amqp_url: str, proxy: TcpProxy) -> None:
    stop, ready = threading.Event(), threading.Event()
    url = proxy.url_for(amqp_url)

    def watch() -> None:
        follow(url, "stock.changed.*", print, stop=stop, ready=ready, connect_timeout=1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(5)
    proxy.stall()
    stop.set()
    thread.join(0.5 + 2 + SLACK)  # the pump in progress, then closing
    assert not thread.is_alive()


def test_a_subscription_closes_promptly_when_the_broker_is_black_holed(
    amqp_url: str, channel_id: int, proxy: TcpProxy
) -> None:
    subscription = Subscription(
        proxy.url_for(amqp_url),
        queue=f"test.silent.{channel_id}",
        patterns=[f"stock.changed.{channel_id}"],
        handler=print,
        quorum=False,
    )
    subscription.declare()
    proxy.stall()
    assert _within(2 + SLACK, subscription.close) is None
    with kombu.Connection(amqp_url) as conn:
        for name in (f"test.silent.{channel_id}", f"test.silent.{channel_id}.dead"):
            conn.default_channel.queue_delete(name)


def test_following_a_broker_that_never_answers_fails_within_the_connect_timeout(
    amqp_url: str, proxy: TcpProxy
) -> None:
    proxy.stall()
    started = time.monotonic()
    error = _within(10, lambda: follow(proxy.url_for(amqp_url), "#", print, connect_timeout=1))
    assert isinstance(error, BrokerError)
    assert time.monotonic() - started < 1 + SLACK


# ---------------------------------------------------------------- one publisher, many threads


def test_one_publisher_shared_by_eight_threads_delivers_every_event_exactly_once(
    amqp_url: str, channel_id: int
) -> None:
    threads, batches, size = 8, 5, 40
    publisher = KombuPublisher(amqp_url, confirm_timeout=10)
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for batch in range(batches):
                first = thread * 1000 + batch * size + 1
                publisher.publish(_events(channel_id, range(first, first + size)))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    with Collector(amqp_url, f"stock.changed.{channel_id}") as events:
        workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert not any(w.is_alive() for w in workers)
        assert errors == []
        events.collect(threads * batches * size, timeout=20)
        received = events.settle()
    publisher.close()
    counts = Counter(e["id"] for e in received)
    assert len(counts) == threads * batches * size
    assert set(counts.values()) == {1}


def test_a_thread_that_ended_leaves_its_connection_to_the_next(
    amqp_url: str, channel_id: int
) -> None:
    publisher = KombuPublisher(amqp_url)
    for turn in range(4):
        first = turn * 10 + 1
        worker = threading.Thread(
            target=publisher.publish, args=(_events(channel_id, range(first, first + 10)),)
        )
        worker.start()
        worker.join(10)
    assert len(publisher._sessions) == 1  # one connection served all four threads
    publisher.close()
