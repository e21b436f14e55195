"""Tell a breaking schema change from a minor one, by the rules of the versioning policy (pure).

Two versions of an event's JSON Schema are walked side by side; every difference that matters
is a `Finding`, breaking or not (see the policy in `publisher.contract`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference between two versions of a schema, and whether it breaks consumers."""

    where: str
    what: str
    breaking: bool

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


_CONSTRAINTS: Final = ("pattern", "format", "minimum", "maximum", "minLength", "maxLength")


def breaking_changes(old: JsonObject, new: JsonObject) -> list[str]:
    """List what in `new` breaks a consumer of `old` (empty: `new` is a minor update)."""
    return [str(f) for f in compare_schemas(old, new) if f.breaking]


def compare_schemas(old: JsonObject, new: JsonObject) -> list[Finding]:
    """Compare two JSON Schemas of one event type; report every difference that matters."""
    return list(_SchemaPair(old, new).compare(old, new, "$"))


def compare_contracts(
    old: Mapping[str, JsonObject], new: Mapping[str, JsonObject]
) -> list[Finding]:
    """Compare two sets of schema files (path -> schema): removed, added and changed types."""
    findings = [Finding(path, "event type removed", True) for path in sorted(old.keys() - new)]
    findings += [Finding(path, "event type added", False) for path in sorted(new.keys() - old)]
    for path in sorted(old.keys() & new.keys()):
        findings += [
            Finding(f"{path} {f.where}", f.what, f.breaking)
            for f in compare_schemas(old[path], new[path])
        ]
    return findings


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class _SchemaPair:
    """Walk an old and a new schema side by side, each resolving its own local `$ref`s."""

    def __init__(self, old_root: JsonObject, new_root: JsonObject) -> None:
        self._roots = (old_root, new_root)

    def compare(self, old: Any, new: Any, where: str) -> Iterator[Finding]:
        """Compare one node of each schema: the JSON types they allow, then each type."""
        old_kinds = _variants(_resolve(self._roots[0], old), self._roots[0])
        new_kinds = _variants(_resolve(self._roots[1], new), self._roots[1])
        if "any" in old_kinds or "any" in new_kinds:
            if old_kinds.keys() != new_kinds.keys():
                was, now = "/".join(sorted(old_kinds)), "/".join(sorted(new_kinds))
                yield Finding(where, f"type changed: {was} -> {now}", True)
            return  # nothing more to compare against "any value"
        for kind in sorted(old_kinds.keys() - new_kinds.keys()):
            yield Finding(where, f"type changed: {kind} no longer allowed", True)
        for kind in sorted(new_kinds.keys() - old_kinds.keys()):
            yield Finding(where, f"type changed: {kind} now allowed", True)
        for kind in sorted(old_kinds.keys() & new_kinds.keys()):
            yield from self._same_type(old_kinds[kind], new_kinds[kind], where)

    def _same_type(self, old: JsonObject, new: JsonObject, where: str) -> Iterator[Finding]:
        yield from _compare_values(old, new, where)
        yield from _compare_constraints(old, new, where)
        if "items" in old or "items" in new:
            yield from self.compare(old.get("items", {}), new.get("items", {}), f"{where}[]")
        if "properties" in old or "properties" in new:
            yield from self._compare_object(old, new, where)

    def _compare_object(self, old: JsonObject, new: JsonObject, where: str) -> Iterator[Finding]:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name in sorted(old_props.keys() - new_props.keys()):
            yield Finding(f"{where}.{name}", "field removed", True)
        for name in sorted(new_props.keys() - old_props.keys()):
            required = name in new_required
            what = "required field added" if required else "optional field added"
            yield Finding(f"{where}.{name}", what, required)
        for name in sorted(old_props.keys() & new_props.keys()):
            path = f"{where}.{name}"
            yield from _compare_required(name in old_required, name in new_required, path)
            yield from self.compare(old_props[name], new_props[name], path)
        if (
            old.get("additionalProperties") is not False
            and new.get("additionalProperties") is False
        ):
            yield Finding(where, "object closed to new fields", True)


def _compare_required(was: bool, now: bool, where: str) -> Iterator[Finding]:
    if now and not was:
        yield Finding(where, "optional field made required", True)
    elif was and not now:
        yield Finding(where, "required field made optional: it may now be missing", True)


def _compare_values(old: JsonObject, new: JsonObject, where: str) -> Iterator[Finding]:
    old_values, new_values = _allowed_values(old), _allowed_values(new)
    if new_values is None:
        if old_values is not None:
            yield Finding(where, "enum lifted: any value allowed", False)
        return
    if old_values is None:
        yield Finding(where, "enum narrowed: only listed values allowed", True)
        return
    removed, added = _minus(old_values, new_values), _minus(new_values, old_values)
    if removed:
        yield Finding(where, f"enum narrowed: {removed} removed", True)
    if added:
        yield Finding(where, f"enum widened: {added} added", False)


def _minus(values: list[Any], others: list[Any]) -> list[Any]:
    return [value for value in values if value not in others]


def _compare_constraints(old: JsonObject, new: JsonObject, where: str) -> Iterator[Finding]:
    for name in _CONSTRAINTS:
        if old.get(name) != new.get(name):
            yield Finding(where, f"{name} changed: {old.get(name)!r} -> {new.get(name)!r}", True)


def _allowed_values(node: JsonObject) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    values = node.get("enum")
    return list(values) if values is not None else None


def _resolve(root: JsonObject, node: Any) -> JsonObject:
    """Follow local `$ref`s (``#/...``) until a node without one."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#"):
            raise ValueError(f"cannot follow $ref {ref!r}")
        seen.add(ref)
        node = root
        for part in filter(None, ref[1:].split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node if isinstance(node, dict) else {}


def _variants(node: JsonObject, root: JsonObject) -> dict[str, JsonObject]:
    """Split a node into the JSON types it allows: type name -> the schema for that type."""
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        merged: dict[str, JsonObject] = {}
        for alternative in alternatives:
            merged.update(_variants(_resolve(root, alternative), root))
        return merged
    declared = node.get("type")
    if declared is None and "const" in node:
        declared = _json_type(node["const"])
    if declared is None and "enum" in node:
        declared = sorted({_json_type(value) for value in node["enum"]})
    if declared is None:
        return {"any": node}
    names = [declared] if isinstance(declared, str) else list(declared)
    return {name: node for name in names}
