"""Answer Akinon's API the way Omnitron does: auth, channels, record lists, batch requests.

`SandboxApp.handle` takes a `Request` and returns a `Response`; the HTTP server only moves
bytes. `/api/` requests meet the configured faults first; `/_control/` requests never do.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections import Counter
from typing import Any, Final
from urllib.parse import urlencode

import orjson

from publisher.records import Endpoint, Resource
from publisher.sandbox.catalog import Catalog, Page
from publisher.sandbox.churn import Churner
from publisher.sandbox.control import ControlApi
from publisher.sandbox.errors import NotFoundError, SandboxError
from publisher.sandbox.faults import Faults
from publisher.sandbox.messages import Request, Response, error_response, json_response
from publisher.sandbox.query import Filters, Paging
from publisher.sandbox.routing import Route, Router, method_not_allowed, route
from publisher.sandbox.shapes import Shape, ShapeConfig

_log = logging.getLogger(__name__)
FOREIGN_HOST: Final = "evil.example.invalid"
_RESOURCE_BY_PATH: Final = {resource.path: resource for resource in Resource}
_ENDPOINT_BY_SUFFIX: Final = {endpoint.value: endpoint for endpoint in Endpoint}
_CHANNEL: Final = r"/api/v1/channel/(?P<channel>\d+)"
_RESOURCE: Final = r"(?P<resource>extra_product_stocks|extra_product_prices)"
_LIST_ROUTES: Final = frozenset({"list"})
_INVALID_TOKEN: Final = "Invalid token."
DATE_PARAMS: Final = ("modified_date", "created_date")


class Stats:
    """Count logins and `/api/` requests (in total and per route), safely across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.logins = 0
        self.requests = 0
        self.by_route: Counter[str] = Counter()

    def count_request(self, route_name: str) -> None:
        """Count one `/api/` request to the named route."""
        with self._lock:
            self.requests += 1
            self.by_route[route_name] += 1

    def count_login(self) -> None:
        """Count one successful login."""
        with self._lock:
            self.logins += 1

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self.logins = 0
            self.requests = 0
            self.by_route.clear()

    def to_json(self) -> dict[str, Any]:
        """Return the counts as a JSON object."""
        with self._lock:
            return {
                "logins": self.logins,
                "requests": self.requests,
                "requests_by_route": dict(sorted(self.by_route.items())),
            }


class SandboxApp:
    """Hold the catalog, credentials, faults, shapes and counters, and answer requests."""

    def __init__(
        self,
        catalog: Catalog,
        token: str = "sandbox-token",
        username: str = "sandbox",
        password: str = "sandbox",
        faults: Faults | None = None,
    ) -> None:
        self.catalog = catalog
        self.token = token
        self.username = username
        self.password = password
        self.faults = faults or Faults()
        self.shapes = ShapeConfig()
        self.stats = Stats()
        self._churner: Churner | None = None
        self._churn_lock = threading.Lock()
        self._api = Router(self._api_routes())
        self.control = ControlApi(self)

    # -- entry point ------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request; unexpected errors become a 500 JSON answer, not a dropped line."""
        try:
            if request.path == "/_control" or request.path.startswith("/_control/"):
                return self.control.handle(request)
            if request.path.startswith("/api/"):
                return self._handle_api(request)
            return error_response(404, "Not found.")
        except SandboxError as exc:
            return _error_for(exc)
        except Exception:
            # A sandbox bug must still answer, or a keep-alive client waits for nothing.
            _log.exception("sandbox failed on %s %s", request.method, request.path)
            return error_response(500, "Internal sandbox error.")

    def _handle_api(self, request: Request) -> Response:
        found = self._api.resolve(request.method, request.path)
        self.stats.count_request(found.route.name if found else "unknown")
        fault = self._injected_fault(request)
        if fault is not None:
            return fault
        if found is None:
            return error_response(404, "Not found.")
        if found.handler is None:
            return method_not_allowed(request, found)
        if found.route.name != "login" and not self._authorised(request):
            return _unauthorised()
        response = found.handler(request, found.groups)
        if found.route.name in _LIST_ROUTES and response.status == 200:
            return self._maybe_truncate(response)
        return response

    # -- faults and auth --------------------------------------------------------------------

    def _injected_fault(self, request: Request) -> Response | None:
        faults = self.faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        if not request.path.startswith("/api/v1/auth/") and faults.take("unauthorized_next"):
            return _unauthorised()
        if faults.take("fail_next"):
            return error_response(faults.fail_status, "Injected failure.")
        if faults.take("rate_limit_next") or faults.over_rate():
            retry = (("Retry-After", str(faults.retry_after)),)
            return error_response(429, "Request was throttled.", retry)
        if faults.roll_error():
            return error_response(faults.error_status, "Injected error.")
        return None

    def _maybe_truncate(self, response: Response) -> Response:
        if self.faults.take("garble_next"):
            half = response.body[: len(response.body) // 2]
            return Response(response.status, half, response.content_type)
        if not self.faults.take("truncate_next"):
            return response
        return Response(response.status, response.body, response.content_type, truncate=True)

    def _authorised(self, request: Request) -> bool:
        keyword, _, key = (request.header("Authorization") or "").partition(" ")
        if keyword.lower() != "token" or not key.strip():
            return False
        return hmac.compare_digest(key.strip().encode(), self.token.encode())

    def reset(
        self, channels: list[int] | None = None, size: int | None = None, seed: int | None = None
    ) -> None:
        """Reseed the catalog and clear faults, shapes, counters and background churn."""
        self.set_churn_rate(0)
        self.catalog.reseed(channels, size, seed)
        self.faults = Faults()
        self.shapes.reset()
        self.stats.reset()

    # -- churn ------------------------------------------------------------------------------

    def set_churn_rate(self, rate: float, seed: int | None = None) -> None:
        """Change about `rate` random records per second in the background; 0 stops it."""
        with self._churn_lock:
            if self._churner is not None:
                self._churner.stop()
                self._churner = None
            if rate > 0:
                self._churner = Churner(self.catalog, rate, seed).start()

    def churn_state(self) -> dict[str, Any]:
        """Return the background churn rate and how many records it has changed."""
        churner = self._churner
        if churner is None:
            return {"rate": 0, "changed": 0}
        return {"rate": churner.rate, "changed": churner.changed}

    # -- routes -----------------------------------------------------------------------------

    def _api_routes(self) -> list[Route]:
        return [
            route("login", r"/api/v1/auth/login/", POST=self._login),
            route("channel", r"/api/v1/channels/(?P<channel>\d+)/", GET=self._channel),
            route(
                "list",
                _CHANNEL + "/" + _RESOURCE + r"/(?:(?P<endpoint>detailed|inserts|updates"
                r"|inserts_or_updates)/)?",
                GET=self._list,
            ),
            route(
                "price",
                _CHANNEL + r"/extra_product_prices/(?P<pk>\d+)/(?:detailed/)?",
                GET=self._price,
            ),
            route(
                "batches",
                _CHANNEL + r"/batch_requests/",
                POST=self._create_batch,
            ),
            route(
                "batch",
                _CHANNEL + r"/batch_requests/(?P<pk>\d+)/",
                GET=self._get_batch,
                PATCH=self._patch_batch,
            ),
        ]

    def _login(self, request: Request, _: re.Match[str]) -> Response:
        body = request.json_object()
        username_ok = hmac.compare_digest(str(body.get("username", "")), self.username)
        password_ok = hmac.compare_digest(str(body.get("password", "")), self.password)
        if not (username_ok and password_ok):
            return error_response(401, "Unable to log in with provided credentials.")
        self.stats.count_login()
        return json_response(200, {"key": self.token})

    def _channel(self, _: Request, match: re.Match[str]) -> Response:
        return json_response(200, self.catalog.channel(int(match["channel"])))

    def _list(self, request: Request, match: re.Match[str]) -> Response:
        resource = _RESOURCE_BY_PATH[match["resource"]]
        endpoint = _ENDPOINT_BY_SUFFIX[match["endpoint"] or Endpoint.LIST.value]
        query = request.query
        if self.shapes.ignores_dates(resource, endpoint):
            query = {k: v for k, v in query.items() if not k.startswith(DATE_PARAMS)}
        filters = Filters.parse(resource, query)
        paging = Paging.parse(request.query)
        page = self.catalog.page(int(match["channel"]), resource, endpoint, filters, paging)
        if self.shapes.shape_for(resource, endpoint) is Shape.ARRAY:
            return Response(200, _wrap(b"[", page.items, b"]"))
        if not page.exists:
            raise NotFoundError("Invalid page.")
        return Response(200, self._paginated(request, page))

    def _paginated(self, request: Request, page: Page) -> bytes:
        following = _link(request, page.number + 1, self.faults.foreign_next)
        preceding = _link(request, page.number - 1, False)
        head = b"".join(
            (
                b'{"count":',
                str(page.count).encode(),
                b',"next":',
                orjson.dumps(following if page.has_next else None),
                b',"previous":',
                orjson.dumps(preceding if page.has_previous else None),
                b',"results":[',
            )
        )
        return _wrap(head, page.items, b"]}")

    def _price(self, _: Request, match: re.Match[str]) -> Response:
        blob = self.catalog.record_bytes(int(match["channel"]), Resource.PRICE, int(match["pk"]))
        if blob is None:
            raise NotFoundError("Not found.")
        return Response(200, blob)

    def _create_batch(self, request: Request, match: re.Match[str]) -> Response:
        channel_id = int(match["channel"])
        body = request.json_object()
        if body.get("channel", channel_id) != channel_id:
            return error_response(400, {"channel": ["Does not match the channel in the URL."]})
        return json_response(201, self.catalog.create_batch(channel_id))

    def _get_batch(self, _: Request, match: re.Match[str]) -> Response:
        return json_response(200, self.catalog.batch(int(match["channel"]), int(match["pk"])))

    def _patch_batch(self, request: Request, match: re.Match[str]) -> Response:
        channel_id, pk, body = int(match["channel"]), int(match["pk"]), request.json_object()
        if self.faults.hold_in_commit and self.catalog.batch(channel_id, pk)["status"] == "commit":
            return error_response(503, "Injected failure: the batch is held in commit.")
        batch = self.catalog.update_batch(channel_id, pk, body)
        if self.faults.take("lost_answer_next"):
            return error_response(504, "Injected gateway timeout (the change was applied).")
        return json_response(200, batch)


def _wrap(head: bytes, items: list[bytes], tail: bytes) -> bytes:
    """Join records into a JSON list between `head` and `tail`, copying a large page once."""
    if not items:
        return head + tail
    parts = list(items)
    parts[0] = head + parts[0]
    parts[-1] = parts[-1] + tail
    return b",".join(parts)


def _link(request: Request, number: int, foreign: bool) -> str:
    """Build the absolute URL of another page, keeping every other query parameter.

    Like DRF, parameters are sorted and page 1 is addressed by leaving `page` out.
    """
    host = FOREIGN_HOST if foreign else request.header("Host") or "localhost"
    pairs = [(name, value) for name, values in request.query.items() for value in values]
    kept = sorted((name, value) for name, value in pairs if name != "page")
    if number > 1:
        kept = sorted([*kept, ("page", str(number))])
    query = urlencode(kept)
    return f"http://{host}{request.path}" + (f"?{query}" if query else "")


def _unauthorised() -> Response:
    return error_response(401, _INVALID_TOKEN, (("WWW-Authenticate", "Token"),))


def _error_for(exc: SandboxError) -> Response:
    status = 404 if isinstance(exc, NotFoundError) else 400
    return json_response(status, exc.body())
