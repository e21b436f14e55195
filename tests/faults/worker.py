"""A step process for the fault suite: runs sync steps on command, to be killed or paused.

Started as `python -m tests.faults.worker`, it imports everything, prints `ready`, then reads
one JSON command per line and answers each with one JSON line. A command names the sandbox,
Redis and broker URLs and the step to run; the test may SIGKILL or SIGSTOP the process at
any moment of the step, as a crashed or frozen worker.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from publisher import service
from publisher.errors import PublisherError
from publisher.pipeline import StepSpec
from publisher.records import Endpoint, Resource
from tests.faults.edges import akinon, build, short_locks


def run(command: dict[str, Any]) -> dict[str, Any]:
    """Run the step a command describes; return its summary or its error."""
    client = akinon(command["akinon"], quick=False)
    edges = build(client, command["redis"], command["amqp"], quick=False)
    acknowledge = bool(command.get("acknowledge"))
    spec = StepSpec(
        command["channel_id"],
        Resource(command["resource"]),
        command["akinon"],
        endpoint=Endpoint.INSERTS_OR_UPDATES if acknowledge else Endpoint.LIST,
        acknowledge=acknowledge,
    )
    try:
        with short_locks(command["lock_ttl"]):
            summary = service.run_step(spec, edges)
    except PublisherError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        edges.close()
    return {"ok": True, "summary": summary.as_dict()}


def main() -> None:
    """Answer commands from standard input until it closes."""
    print("ready", flush=True)
    for line in sys.stdin:
        answer = run(orjson.loads(line))
        print(orjson.dumps(answer).decode(), flush=True)


if __name__ == "__main__":
    main()
