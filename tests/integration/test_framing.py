"""Our publish frames are byte for byte what py-amqp sends, and RabbitMQ accepts them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import amqp
import pytest

from publisher.diff import diff_page
from publisher.framing import publish_frames
from publisher.outgoing import EventContext, OutgoingEvent, change_event, message_properties
from publisher.publish import event_frames
from publisher.records import Resource
from tests.factories import as_page, price

pytestmark = pytest.mark.integration


def _event() -> OutgoingEvent:
    ctx = EventContext(
        12, Resource.PRICE, "https://omni.example/api/v1/channel/12", datetime.now(UTC)
    )
    (change,) = diff_page(
        as_page(Resource.PRICE, [price(5, extra_field={"note": "çok güzel"})]), {}
    ).changes
    return change_event(ctx, change)


def test_frames_equal_what_py_amqp_writes(amqp_url: str) -> None:
    event = _event()
    connection = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    channel = connection.channel()
    written: list[bytes] = []
    transport: Any = connection.transport
    send = transport._write
    transport._write = lambda data: written.append(bytes(data))
    try:
        channel.basic_publish(
            amqp.Message(event.body, **message_properties(event)),
            exchange=event.exchange,
            routing_key=event.routing_key,
            mandatory=True,
        )
    finally:
        transport._write = send
    ours = event_frames(event, channel.channel_id, connection.frame_max)
    connection.close()
    assert b"".join(written) == ours


def test_a_body_longer_than_a_frame_is_split() -> None:
    body = b"x" * 2500
    frames = publish_frames(
        1,
        exchange="e",
        routing_key="k",
        body=body,
        properties={
            "content_type": "t",
            "content_encoding": "u",
            "application_headers": {},
            "delivery_mode": 2,
            "message_id": "m",
            "timestamp": 0,
            "type": "y",
        },
        mandatory=False,
        frame_max=1008,
    )
    assert frames.count(b"x" * 1000) == 2
    assert frames.endswith(b"\x03\x00\x01\x00\x00\x01\xf4" + b"x" * 500 + b"\xce")
