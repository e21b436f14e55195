"""The `akinon-publisher` command line (also `python -m publisher`).

Each command imports what it needs when it runs: `--help` and a mistyped option answer at
once instead of after loading httpx, redis, kombu, pydantic models and the sandbox.

A bad setting or option stops any command with one line on stderr and exit status 2.

Modules: `base` (the group, settings, one-line errors), `steps` (poll, status, snapshot,
deletes), `show` (one record, Akinon's and ours), `tools` (tail, sandbox, demo, schemas),
`health` (probes for beat and the worker).
"""

from publisher.cli import health, show, steps, tools
from publisher.cli.base import RESOURCE_NAMES, RESOURCES, ConfigProblem, main

__all__ = [
    "RESOURCES",
    "RESOURCE_NAMES",
    "ConfigProblem",
    "health",
    "main",
    "show",
    "steps",
    "tools",
]
