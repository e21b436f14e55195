"""The raw ceilings of the parts, measured on the same data in the same run.

(a) HTTP: fetch every page of the sandbox with httpx and decode it with orjson.
(b) AMQP: publish the same event bodies with py-amqp alone, confirms awaited per 1,000.
(c) Redis: pipelined HMGET of the same record keys, 1,000 per page.
Also kombu with a confirm awaited per message, the straightforward way, for comparison.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import amqp
import httpx
import kombu
import orjson
import redis

from bench.env import AMQP_URL, TOKEN, Sandbox
from publisher.events import OutgoingEvent
from publisher.publish import message_properties
from publisher.records import Resource

PAGE = 1000
WINDOW = 1000


def http_records_per_second(box: Sandbox, resource: Resource) -> float:
    """Fetch and decode every page of a resource's list; return records per second.

    The first pass is not timed: it warms the sandbox, which encodes records lazily.
    """
    _fetch_all(box, resource)
    started = time.perf_counter()
    records = _fetch_all(box, resource)
    return records / (time.perf_counter() - started)


def _fetch_all(box: Sandbox, resource: Resource) -> int:
    url = f"{box.url}/api/v1/channel/{box.channel_id}/{resource.path}/inserts_or_updates/"
    headers = {"Authorization": f"Token {TOKEN}"}
    records = 0
    with httpx.Client(headers=headers, timeout=30) as client:
        page = 1
        while True:
            body = orjson.loads(client.get(url, params={"page": page, "limit": PAGE}).content)
            rows = body["results"] if isinstance(body, dict) else body
            records += len(rows)
            if len(rows) < PAGE or (isinstance(body, dict) and not body.get("next")):
                break
            page += 1
    return records


def amqp_events_per_second(events: Sequence[OutgoingEvent]) -> float:
    """Publish the bodies with py-amqp, waiting for confirms every WINDOW messages."""
    connection = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    channel = connection.channel()
    channel.confirm_select()
    acked = [0]
    channel.events["basic_ack"].add(lambda tag, multiple: acked.__setitem__(0, tag))
    sent = 0
    started = time.perf_counter()
    for start in range(0, len(events), WINDOW):
        for event in events[start : start + WINDOW]:
            message = amqp.Message(event.body, **message_properties(event))
            channel.basic_publish(message, exchange=event.exchange, routing_key=event.routing_key)
            sent += 1
        while acked[0] < sent:
            connection.drain_events(timeout=30)
    elapsed = time.perf_counter() - started
    connection.close()
    return len(events) / elapsed


def kombu_one_by_one_per_second(events: Sequence[OutgoingEvent]) -> float:
    """Publish with kombu, the broker's confirm awaited after every message."""
    with kombu.Connection(AMQP_URL, transport_options={"confirm_publish": True}) as conn:
        producer = kombu.Producer(conn.channel())
        started = time.perf_counter()
        for event in events:
            properties: dict[str, Any] = message_properties(event)
            properties["headers"] = properties.pop("application_headers")
            producer.publish(
                event.body,
                exchange=event.exchange,
                routing_key=event.routing_key,
                retry=False,
                **properties,
            )
        return len(events) / (time.perf_counter() - started)


def redis_keys_per_second(client: redis.Redis, record_keys: Sequence[int]) -> float:
    """Read the keys with one pipeline of HMGETs per page of 1,000; return keys per second."""
    prefix = "bench:hmget:"
    writer = client.pipeline(transaction=False)
    for key in record_keys:
        writer.hset(f"{prefix}{key // 100}", str(key % 100), "1|[1,2,3]")
    writer.execute()
    started = time.perf_counter()
    for start in range(0, len(record_keys), PAGE):
        reader = client.pipeline(transaction=False)
        page = record_keys[start : start + PAGE]
        buckets: dict[int, list[str]] = {}
        for key in page:
            buckets.setdefault(key // 100, []).append(str(key % 100))
        for bucket, fields in buckets.items():
            reader.hmget(f"{prefix}{bucket}", fields)
        reader.execute()
    elapsed = time.perf_counter() - started
    for name in client.scan_iter(f"{prefix}*", count=1000):
        client.delete(name)
    return len(record_keys) / elapsed
