"""`show`: one record as Akinon serves it now, beside what this service last published."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
import orjson

from publisher.cli.base import RESOURCE_NAMES, ConfigProblem, _settings, main

if TYPE_CHECKING:
    from publisher.akinon import AkinonClient
    from publisher.config import Settings
    from publisher.records import Resource


def _served(client: AkinonClient, channel_id: int, resource: Resource, key: int) -> dict[str, Any]:
    """Return the record as Akinon serves it: the list filtered by key; prices by id too."""
    from publisher.akinon.errors import NotFound
    from publisher.records import Endpoint

    served: dict[str, Any] = {}
    pages = client.iter_pages(
        channel_id, resource, Endpoint.LIST, {"pk__in": str(key)}, prefetch=False
    )
    page = next(pages, None)
    served["list"] = page[0] if page else None
    if resource.value == "price":  # the seeds' retrieve and retrieve-detailed
        for name, detailed in (("retrieve", False), ("retrieve_detailed", True)):
            try:
                served[name] = client.get_price(channel_id, key, detailed=detailed)
            except NotFound:
                served[name] = None
    return served


def _published(settings: Settings, channel_id: int, resource: Resource, key: int) -> dict[str, Any]:
    """Return what the state store holds for the record: its last published version."""
    from publisher.fingerprint import content_of, digest
    from publisher.state import RedisStateStore

    store = RedisStateStore.from_url(settings.redis_url)
    try:
        stored = store.load(channel_id, resource, [key]).get(key)
        rejected = store.load_rejected(channel_id, resource, [key]).get(key)
        sent = store.read_pending(channel_id, resource).get(key)
    finally:
        store.close()
    # A version a failed step sent and never committed (the state's journal), if any.
    uncommitted = None
    if sent is not None:
        uncommitted = {"sequence": sent.sequence, "fingerprint": digest(sent.canonical)}
    if stored is None:
        return {
            "state": "never published",
            "last_rejected_digest": rejected,
            "sent_not_committed": uncommitted,
        }
    return {
        "state": "published",
        "sequence": stored.sequence,
        "fingerprint": digest(stored.canonical),
        "content": content_of(resource, stored.canonical),
        "last_rejected_digest": rejected,
        "sent_not_committed": uncommitted,
    }


def _lines(payload: dict[str, Any]) -> list[str]:
    head = f"channel={payload['channel_id']} {payload['resource']} key={payload['key']}"
    lines = [head, "akinon now:"]
    for name, record in payload["akinon"].items():
        shown = "not found" if record is None else orjson.dumps(record).decode()
        lines.append(f"  {name}: {shown}")
    published = payload["published"]
    lines.append(f"published: {published['state']}")
    if published["state"] == "published":
        lines.append(f"  sequence={published['sequence']} fingerprint={published['fingerprint']}")
        lines.append(f"  content: {orjson.dumps(published['content']).decode()}")
    sent = published.get("sent_not_committed")
    if sent:
        lines.append(
            f"  sent, not committed: sequence={sent['sequence']} fingerprint={sent['fingerprint']}"
        )
    if published["last_rejected_digest"]:
        lines.append(f"  last rejected content digest: {published['last_rejected_digest']}")
    return lines


@main.command()
@click.argument("resource", type=click.Choice(RESOURCE_NAMES))
@click.argument("key", type=click.IntRange(min=1))
@click.option("--channel", "channel_id", type=int, required=True, help="Channel id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def show(resource: str, key: int, channel_id: int, as_json: bool) -> None:
    """Show one record as Akinon serves it now, beside what was last published for it.

    Reads Akinon (the list filtered by key; for a price, also retrieve and
    retrieve-detailed) and Redis; publishes and changes nothing. Exit status 1 if Akinon
    or Redis cannot be read.
    """
    settings = _settings()
    from publisher.akinon import AkinonClient
    from publisher.errors import ConfigError, PublisherError
    from publisher.records import Resource

    item = Resource(resource)
    try:
        settings.channel(channel_id)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    try:
        with AkinonClient.from_settings(settings) as client:
            served = _served(client, channel_id, item, key)
        published = _published(settings, channel_id, item, key)
    except PublisherError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
    payload = {
        "channel_id": channel_id,
        "resource": resource,
        "key": key,
        "akinon": served,
        "published": published,
    }
    if as_json:
        click.echo(orjson.dumps(payload).decode())
        return
    for line in _lines(payload):
        click.echo(line)
