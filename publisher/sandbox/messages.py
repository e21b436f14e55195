"""Carry one HTTP request in and one response out, free of sockets (pure).

The handler in `server.py` turns bytes on the wire into a `Request` and a `Response` back
into bytes; everything between works on these plain values and can be tested without I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from publisher.sandbox.errors import InvalidError


@dataclass(frozen=True)
class Request:
    """One request: method, path, decoded query, headers (lower-case names) and raw body."""

    method: str
    path: str
    query: Mapping[str, Sequence[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """Return a header's value, or None when absent."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """Return the body parsed as JSON (an empty body reads as {}); InvalidError if bad."""
        if not self.body.strip():
            return {}
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise InvalidError(f"JSON parse error - {exc}") from exc

    def json_object(self) -> dict[str, Any]:
        """Return the body as a JSON object; InvalidError for anything else."""
        body = self.json()
        if not isinstance(body, dict):
            raise InvalidError("Expected a JSON object.")
        return body


@dataclass(frozen=True)
class Response:
    """One response. `truncate` asks the server to cut the body short and hang up."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    truncate: bool = False


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """Return a JSON response of `payload` (dict keys may be ints, as for key maps)."""
    return Response(status, orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), headers=headers)


def error_response(
    status: int, detail: str | dict[str, Any], headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """Return a DRF-style JSON error: {"detail": ...} or a field -> messages mapping."""
    payload = detail if isinstance(detail, dict) else {"detail": detail}
    return json_response(status, payload, headers)
