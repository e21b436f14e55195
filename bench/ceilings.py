"""Measure the raw ceilings of reading: HTTP pages (a) and Redis HMGET (c).

(a) fetch every page of both kinds from the sandbox with a plain httpx client, decode each
    body with orjson, nothing else; records per second.
(c) the records' keys, page by page as the sandbox serves them, read back with one pipeline
    of HMGETs per page: one HMGET per bucket of `topology.BUCKET_SIZE` consecutive keys, the
    values being each record's canonical form (what the state store keeps); keys per second.
    The hashes live under `bench:<channel>:hmget:` in the bench database.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import redis

from bench.env import PAGE_SIZE, SCRATCH_PREFIX, TOKEN, Sandbox
from publisher import topology
from publisher.fingerprint import raw_canonical
from publisher.pages import page_keys
from publisher.records import Endpoint, Resource

KeyPages = list[tuple[Resource, list[int]]]


def http_client() -> httpx.Client:
    """Return a keep-alive client that sends the sandbox's token."""
    return httpx.Client(headers={"Authorization": f"Token {TOKEN}"}, timeout=30)


def iter_pages(
    box: Sandbox, resource: Resource, client: httpx.Client | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Yield the decoded pages of a resource's change list, like a client would read them."""
    url = f"{box.url}/api/v1/channel/{box.channel_id}/{resource.path}/"
    url += Endpoint.INSERTS_OR_UPDATES.suffix
    with contextlib.ExitStack() as stack:
        http = client or stack.enter_context(http_client())
        number = 1
        while True:
            query = {"page": str(number), "limit": str(PAGE_SIZE)}
            body = orjson.loads(http.get(url, params=query).content)
            # Stock lists come as a bare array, price lists as {count, next, results}.
            records = body if isinstance(body, list) else body["results"]
            if records:
                yield records
            more = len(records) >= PAGE_SIZE if isinstance(body, list) else bool(body["next"])
            if not more:
                return
            number += 1


def http_records_per_second(box: Sandbox) -> float:
    """Fetch and decode every page of both kinds once; return records per second.

    One client reads both kinds, its connection opened before the clock starts, as the
    pipeline's client keeps its own open from one step to the next.
    """
    with http_client() as client:
        client.get(f"{box.url}/_control/state")
        started = time.perf_counter()
        records = sum(
            len(page) for resource in Resource for page in iter_pages(box, resource, client)
        )
        return records / (time.perf_counter() - started)


def store_hashes(client: redis.Redis, box: Sandbox) -> KeyPages:
    """Write every record's canonical form into bucket hashes; return the keys per page."""
    pages: KeyPages = []
    for resource in Resource:
        for records in iter_pages(box, resource):
            page = [key for key in page_keys(resource, records) if key is not None]
            writer = client.pipeline(transaction=False)
            for key, record in zip(page, records, strict=True):
                bucket, field = topology.bucket_of(key)
                value = b"1 " + (raw_canonical(resource, record) or b"")
                writer.hset(_hash_name(box, resource, bucket), field, value)
            writer.execute()
            pages.append((resource, page))
    return pages


def redis_keys_per_second(client: redis.Redis, box: Sandbox, pages: KeyPages) -> float:
    """Read every key back, one pipeline of HMGETs per page; return keys per second."""
    read = 0
    started = time.perf_counter()
    for resource, page in pages:
        fields: dict[int, list[str]] = {}
        for key in page:
            bucket, field = topology.bucket_of(key)
            fields.setdefault(bucket, []).append(field)
        reader = client.pipeline(transaction=False)
        for bucket, names in fields.items():
            reader.hmget(_hash_name(box, resource, bucket), names)
        read += sum(len(values) for values in reader.execute())
    return read / (time.perf_counter() - started)


def _hash_name(box: Sandbox, resource: Resource, bucket: int) -> str:
    return f"{SCRATCH_PREFIX}:{box.channel_id}:hmget:{resource.value}:{bucket}"
