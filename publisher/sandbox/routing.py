"""Match a method and path to a handler, telling 404 (no route) from 405 (wrong method)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from publisher.sandbox.messages import Request, Response, error_response

Handler = Callable[[Request, "re.Match[str]"], Response]


@dataclass(frozen=True)
class Route:
    """A path pattern, a short name for request counts, and a handler per method."""

    name: str
    pattern: re.Pattern[str]
    methods: Mapping[str, Handler]


def route(name: str, pattern: str, **methods: Handler) -> Route:
    """Build a route; `pattern` must match the whole path."""
    return Route(name, re.compile(pattern + r"\Z"), methods)


@dataclass(frozen=True)
class Match:
    """A resolved request: the route, its path match, and the handler (None on 405)."""

    route: Route
    groups: re.Match[str]
    handler: Handler | None

    def allowed(self) -> str:
        """Return the `Allow` header value: the methods this path answers."""
        return ", ".join(sorted(self.route.methods))


class Router:
    """Resolve requests against an ordered list of routes."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = tuple(routes)

    def resolve(self, method: str, path: str) -> Match | None:
        """Return the first route whose pattern matches `path`, or None."""
        for candidate in self._routes:
            groups = candidate.pattern.match(path)
            if groups is not None:
                return Match(candidate, groups, candidate.methods.get(method))
        return None


def dispatch(router: Router, request: Request) -> Response:
    """Run the handler of the matching route: 404 JSON if none, 405 JSON for a wrong method."""
    found = router.resolve(request.method, request.path)
    if found is None:
        return error_response(404, "Not found.")
    if found.handler is None:
        return method_not_allowed(request, found)
    return found.handler(request, found.groups)


def method_not_allowed(request: Request, found: Match) -> Response:
    """Return DRF's 405 answer, naming the methods the path allows."""
    return error_response(
        405, f'Method "{request.method}" not allowed.', (("Allow", found.allowed()),)
    )
