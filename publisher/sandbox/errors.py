"""Name the two ways a sandbox request can be refused, so HTTP status stays at the edge.

    SandboxError        root of the sandbox's own errors
    ├── NotFoundError   unknown channel, record, batch or page  -> 404
    └── InvalidError    a body or parameter the sandbox refuses  -> 400

`detail` is what the JSON error body carries: a message, or a DRF-style mapping of field
name to messages.
"""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """Base of the errors the sandbox raises on purpose."""

    def __init__(self, detail: str | dict[str, Any]) -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> dict[str, Any]:
        """Return the JSON error body Akinon (Django REST framework) would send."""
        if isinstance(self.detail, dict):
            return self.detail
        return {"detail": self.detail}


class NotFoundError(SandboxError):
    """Signal that the addressed channel, record, batch or page does not exist."""


class InvalidError(SandboxError):
    """Signal a request the sandbox refuses: bad body, bad filter, bad state transition."""
