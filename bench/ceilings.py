"""Measure the raw ceilings of reading: HTTP pages (a) and Redis HMGET (c).

(a) fetch every page of both kinds from the sandbox with a plain httpx client, decode each
    body with orjson, nothing else; records per second.
(c) the records' keys, page by page as the sandbox serves them, read back with one pipeline
    of HMGETs per page: one HMGET per bucket of `keys.BUCKET_SIZE` consecutive keys, the
    values being each record's canonical form (what the state store keeps); keys per second.
    The hashes live under `bench:` in the bench database and are deleted afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

import httpx
import orjson
import redis

from bench.env import PAGE_SIZE, TOKEN, Sandbox
from publisher import keys
from publisher.diff import page_keys
from publisher.fingerprint import raw_canonical
from publisher.records import Endpoint, Resource

_HASH_PREFIX: Final = "bench:hmget"

KeyPages = list[tuple[Resource, list[int]]]


def iter_pages(box: Sandbox, resource: Resource) -> Iterator[list[dict[str, Any]]]:
    """Yield the decoded pages of a resource's change list, like a client would read them."""
    url = f"{box.url}/api/v1/channel/{box.channel_id}/{resource.path}/"
    url += Endpoint.INSERTS_OR_UPDATES.suffix
    with httpx.Client(headers={"Authorization": f"Token {TOKEN}"}, timeout=30) as client:
        number = 1
        while True:
            query = {"page": str(number), "limit": str(PAGE_SIZE)}
            body = orjson.loads(client.get(url, params=query).content)
            # Stock lists come as a bare array, price lists as {count, next, results}.
            records = body if isinstance(body, list) else body["results"]
            if records:
                yield records
            more = len(records) >= PAGE_SIZE if isinstance(body, list) else bool(body["next"])
            if not more:
                return
            number += 1


def http_records_per_second(box: Sandbox) -> float:
    """Fetch and decode every page of both kinds once; return records per second."""
    started = time.perf_counter()
    records = sum(len(page) for resource in Resource for page in iter_pages(box, resource))
    return records / (time.perf_counter() - started)


def store_hashes(client: redis.Redis, box: Sandbox) -> KeyPages:
    """Write every record's canonical form into bucket hashes; return the keys per page."""
    pages: KeyPages = []
    for resource in Resource:
        for records in iter_pages(box, resource):
            page = [key for key in page_keys(resource, records) if key is not None]
            writer = client.pipeline(transaction=False)
            for key, record in zip(page, records, strict=True):
                bucket, field = keys.bucket_of(key)
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
            bucket, field = keys.bucket_of(key)
            fields.setdefault(bucket, []).append(field)
        reader = client.pipeline(transaction=False)
        for bucket, names in fields.items():
            reader.hmget(_hash_name(box, resource, bucket), names)
        read += sum(len(values) for values in reader.execute())
    return read / (time.perf_counter() - started)


def drop_hashes(client: redis.Redis) -> None:
    """Delete the hashes `store_hashes` wrote."""
    for name in client.scan_iter(f"{_HASH_PREFIX}:*", count=1000):
        client.delete(name)


def _hash_name(box: Sandbox, resource: Resource, bucket: int) -> str:
    return f"{_HASH_PREFIX}:{box.channel_id}:{resource.value}:{bucket}"
