"""Keep the contract files on disk: render, write, check staleness, release and compare.

    render_schemas() --write_schemas()--> schemas/
    schemas/released/<version>/ --check_released()--> breaking differences

`render_schemas` is pure; every other function here reads or writes files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

import orjson

from publisher.contract.asyncapi import asyncapi_document
from publisher.contract.compat import compare_contracts
from publisher.contract.schemas import (
    ASYNCAPI_FILE,
    CONTRACT_VERSION,
    JsonObject,
    event_schema,
    json_text,
    schema_path,
    yaml_text,
)
from publisher.events import EventType

RELEASED_DIR: Final = "released"
REGENERATE_HINT: Final = "run `akinon-publisher schemas` to regenerate"


def render_schemas() -> dict[str, str]:
    """Return every generated contract file: relative path -> text."""
    files = {schema_path(kind): json_text(event_schema(kind)) for kind in EventType}
    files[ASYNCAPI_FILE] = yaml_text(asyncapi_document())
    return files


def write_schemas(directory: Path) -> list[str]:
    """Write every generated file under `directory`; return the paths whose text changed."""
    changed = []
    for relative, text in render_schemas().items():
        target = directory / relative
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(relative)
    return changed


def stale_schemas(directory: Path) -> list[str]:
    """Return the generated files that are missing under `directory` or differ from it."""
    return [
        relative
        for relative, text in render_schemas().items()
        if not (directory / relative).is_file()
        or (directory / relative).read_text(encoding="utf-8") != text
    ]


def load_schemas(directory: Path) -> dict[str, JsonObject]:
    """Read the event schemas (``<type>/v<major>.json``) found directly under `directory`."""
    return {
        path.relative_to(directory).as_posix(): orjson.loads(path.read_bytes())
        for path in sorted(directory.glob("*/v*.json"))
        if path.parent.name != RELEASED_DIR
    }


def released_versions(directory: Path) -> list[str]:
    """Return the versions kept under ``released/``, oldest first."""
    root = directory / RELEASED_DIR
    found = [path.name for path in root.iterdir() if path.is_dir()] if root.is_dir() else []
    return sorted(found, key=lambda v: tuple(int(part) for part in v.split(".")))


def check_released(directory: Path) -> list[str]:
    """List every breaking difference between the current schemas and each released copy."""
    current = load_schemas(directory)
    problems = []
    for version in released_versions(directory):
        released = load_schemas(directory / RELEASED_DIR / version)
        problems += [
            f"against {version}: {finding}"
            for finding in compare_contracts(released, current)
            if finding.breaking
        ]
    return problems


def release_schemas(directory: Path, version: str = CONTRACT_VERSION) -> Path:
    """Copy the current event schemas to ``released/<version>/``; refuse to overwrite."""
    target = directory / RELEASED_DIR / version
    if target.exists():
        raise FileExistsError(f"{target} exists: a released contract is never rewritten")
    for relative in load_schemas(directory):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(directory / relative, target / relative)
    return target
