"""Steer the sandbox over HTTP: inspect state, change records, inject faults, pick shapes.

Every route lives under `/_control/`, takes and returns JSON, needs no token and never meets
injected faults. `GET /_control/` lists the routes below.
"""

from __future__ import annotations

import random
import re
from typing import Any, Final, Protocol

from publisher.sandbox.catalog import Catalog, as_resource
from publisher.sandbox.errors import InvalidError
from publisher.sandbox.faults import Faults
from publisher.sandbox.messages import Request, Response, json_response
from publisher.sandbox.recordset import DROP
from publisher.sandbox.routing import Route, Router, dispatch, route
from publisher.sandbox.shapes import ShapeConfig

ROUTES_HELP: Final = {
    "GET /_control/state": "channels, record and queue counts, logins, requests, faults, "
    "shapes, churn, open batches",
    "POST /_control/records/{channel_id}/{stock|price}": "upsert one record; body holds its "
    "key (pk for stock, id for price) and the fields to set",
    "GET /_control/records/{channel_id}/{stock|price}/{pk}": "one record as served",
    "DELETE /_control/records/{channel_id}/{stock|price}/{pk}": "delete one record",
    "POST /_control/churn": '{"count": n} changes n random records now; {"rate": r} changes '
    "r records/s in the background (0 stops)",
    "POST /_control/malformed": '{"channel_id", "resource", "pk", "field", "value"} serves a bad '
    'value; "drop": true leaves the field out; "clear": true serves true values again',
    "GET|PUT|PATCH /_control/faults": "read, replace or update the injected faults",
    "GET|PUT /_control/shape": '{"shape": "documented|array|paginated", "overrides": '
    '{"stock/inserts": "paginated"}}',
    "POST /_control/reset": "reseed (optional channels, size, seed) and clear faults, shapes, "
    "counters, churn, batches and acknowledgements",
    "POST /_control/channels": '{"channel_id", "size"} adds a seeded channel',
    "GET /_control/batches": "every batch request, oldest first",
    "GET /_control/acknowledgements/{channel_id}/{stock|price}": "acknowledged version per key",
    "GET /_control/errors/{channel_id}/{stock|price}": "records acknowledged with a "
    "failed_reason_type (the errors Akinon keeps for them), with their batch",
}

_RECORDS: Final = r"/_control/records/(?P<channel>\d+)/(?P<resource>[a-z]+)"


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidError({name: ["A valid integer is required."]})
    return value


def _number(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidError({name: ["A non-negative number is required."]})
    return float(value)


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    return None if body.get(name) is None else _int(body, name)


class Counters(Protocol):
    """Request counters that can show themselves as JSON."""

    def to_json(self) -> dict[str, Any]:
        """Return the counts as a JSON object."""
        ...


class ControlledApp(Protocol):
    """What the control API reads and changes of the app it steers (a SandboxApp).

    A protocol rather than the class, so that the app can own its control API without the
    two modules importing each other.
    """

    faults: Faults

    @property
    def catalog(self) -> Catalog:
        """Return the records and batch requests the app serves."""
        ...

    @property
    def shapes(self) -> ShapeConfig:
        """Return the response shapes per list endpoint."""
        ...

    @property
    def stats(self) -> Counters:
        """Return the login and request counters."""
        ...

    def churn_state(self) -> dict[str, Any]:
        """Return the background churn rate and how many records it has changed."""
        ...

    def set_churn_rate(self, rate: float, seed: int | None = None) -> None:
        """Change about `rate` random records per second in the background; 0 stops it."""
        ...

    def reset(
        self, channels: list[int] | None = None, size: int | None = None, seed: int | None = None
    ) -> None:
        """Reseed the catalog and clear faults, shapes, counters and background churn."""
        ...


class ControlApi:
    """Answer `/_control/` requests against one app (a SandboxApp)."""

    def __init__(self, app: ControlledApp) -> None:
        self.app = app
        self._router = Router(self._routes())

    def handle(self, request: Request) -> Response:
        """Answer one control request (404 and 405 as JSON)."""
        return dispatch(self._router, request)

    def _routes(self) -> list[Route]:
        return [
            route("index", r"/_control/?", GET=self._index),
            route("state", r"/_control/state/?", GET=self._state),
            route("records", _RECORDS + "/?", POST=self._upsert),
            route("record", _RECORDS + r"/(?P<pk>\d+)/?", GET=self._get, DELETE=self._delete),
            route("churn", r"/_control/churn/?", POST=self._churn),
            route("malformed", r"/_control/malformed/?", POST=self._malformed),
            route(
                "faults",
                r"/_control/faults/?",
                GET=self._faults,
                PUT=self._put_faults,
                PATCH=self._patch_faults,
            ),
            route("shape", r"/_control/shape/?", GET=self._shape, PUT=self._put_shape),
            route("reset", r"/_control/reset/?", POST=self._reset),
            route("channels", r"/_control/channels/?", POST=self._add_channel),
            route("batches", r"/_control/batches/?", GET=self._batches),
            route(
                "acknowledgements",
                r"/_control/acknowledgements/(?P<channel>\d+)/(?P<resource>[a-z]+)/?",
                GET=self._acknowledgements,
            ),
            route(
                "errors",
                r"/_control/errors/(?P<channel>\d+)/(?P<resource>[a-z]+)/?",
                GET=self._errors,
            ),
        ]

    def _index(self, _: Request, __: re.Match[str]) -> Response:
        return json_response(200, {"routes": ROUTES_HELP})

    def _state(self, _: Request, __: re.Match[str]) -> Response:
        return json_response(200, self.state())

    def state(self) -> dict[str, Any]:
        """Return everything a test or a person may want to know about the sandbox."""
        app = self.app
        return {
            **app.catalog.state(),
            **app.stats.to_json(),
            "faults": app.faults.to_json(),
            "shape": app.shapes.to_json(),
            "churn": app.churn_state(),
        }

    # -- records ----------------------------------------------------------------------------

    def _upsert(self, request: Request, match: re.Match[str]) -> Response:
        resource = as_resource(match["resource"])
        body = request.json_object()
        key_name = resource.key_field if resource.key_field in body else "pk"
        pk = _int(body, key_name)
        values = {name: value for name, value in body.items() if name not in ("pk", "id")}
        record = self.app.catalog.upsert(int(match["channel"]), resource, pk, values)
        return json_response(200, record)

    def _get(self, _: Request, match: re.Match[str]) -> Response:
        record = self.app.catalog.get(int(match["channel"]), match["resource"], int(match["pk"]))
        if record is None:
            return json_response(404, {"detail": "Not found."})
        return json_response(200, record)

    def _delete(self, _: Request, match: re.Match[str]) -> Response:
        existed = self.app.catalog.delete(
            int(match["channel"]), match["resource"], int(match["pk"])
        )
        if not existed:
            return json_response(404, {"detail": "Not found."})
        return json_response(200, {"deleted": True})

    def _churn(self, request: Request, _: re.Match[str]) -> Response:
        body = request.json_object()
        seed = _optional_int(body, "seed")
        answer: dict[str, Any] = {}
        if "count" in body:
            changed = self.app.catalog.churn(_int(body, "count"), random.Random(seed))
            answer["changed"] = [
                {"channel_id": channel, "resource": resource.value, "pk": pk}
                for channel, resource, pk in changed
            ]
        if "rate" in body:
            self.app.set_churn_rate(_number(body, "rate"), seed)
        if not answer and "rate" not in body:
            raise InvalidError('Give "count" (change now) or "rate" (per second, 0 stops).')
        answer["churn"] = self.app.churn_state()
        return json_response(200, answer)

    def _malformed(self, request: Request, _: re.Match[str]) -> Response:
        body = request.json_object()
        channel, pk = _int(body, "channel_id"), _int(body, "pk")
        resource = as_resource(str(body.get("resource")))
        catalog = self.app.catalog
        if body.get("clear"):
            return json_response(200, catalog.clear_malformed(channel, resource, pk))
        field_name = body.get("field")
        if not isinstance(field_name, str):
            raise InvalidError({"field": ["This field is required."]})
        if not body.get("drop") and "value" not in body:
            raise InvalidError('Give "value" (served as is) or "drop": true.')
        value = DROP if body.get("drop") else body["value"]
        touch = bool(body.get("touch", True))
        record = catalog.mark_malformed(channel, resource, pk, field_name, value, touch=touch)
        return json_response(200, record)

    # -- faults, shapes, reset --------------------------------------------------------------

    def _faults(self, _: Request, __: re.Match[str]) -> Response:
        return json_response(200, self.app.faults.to_json())

    def _put_faults(self, request: Request, _: re.Match[str]) -> Response:
        try:
            self.app.faults = Faults.from_json(request.json())
        except (TypeError, ValueError) as exc:
            raise InvalidError(str(exc)) from exc
        return json_response(200, self.app.faults.to_json())

    def _patch_faults(self, request: Request, _: re.Match[str]) -> Response:
        try:
            self.app.faults = self.app.faults.merged(request.json())
        except (TypeError, ValueError) as exc:
            raise InvalidError(str(exc)) from exc
        return json_response(200, self.app.faults.to_json())

    def _shape(self, _: Request, __: re.Match[str]) -> Response:
        return json_response(200, self.app.shapes.to_json())

    def _put_shape(self, request: Request, _: re.Match[str]) -> Response:
        try:
            self.app.shapes.configure(request.json())
        except ValueError as exc:
            raise InvalidError(str(exc)) from exc
        return json_response(200, self.app.shapes.to_json())

    def _reset(self, request: Request, _: re.Match[str]) -> Response:
        body = request.json_object()
        channels = body.get("channels")
        if channels is not None and not (
            isinstance(channels, list) and all(isinstance(c, int) for c in channels)
        ):
            raise InvalidError({"channels": ["Expected a list of channel ids."]})
        self.app.reset(channels, _optional_int(body, "size"), _optional_int(body, "seed"))
        return json_response(200, self.state())

    def _add_channel(self, request: Request, _: re.Match[str]) -> Response:
        body = request.json_object()
        channel_id = _int(body, "channel_id")
        size = _optional_int(body, "size") or 0
        self.app.catalog.add_channel(channel_id, size, _optional_int(body, "seed") or 42)
        return json_response(201, self.app.catalog.channel(channel_id))

    def _batches(self, _: Request, __: re.Match[str]) -> Response:
        return json_response(200, self.app.catalog.batches())

    def _acknowledgements(self, _: Request, match: re.Match[str]) -> Response:
        acks = self.app.catalog.acknowledgements(int(match["channel"]), match["resource"])
        return json_response(200, acks)

    def _errors(self, _: Request, match: re.Match[str]) -> Response:
        errors = self.app.catalog.errors(int(match["channel"]), match["resource"])
        return json_response(200, errors)
