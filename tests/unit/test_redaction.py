"""Secrets stay out of what the service stores, prints, logs and raises (issue 17, item 3)."""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import orjson
import pytest

from publisher.akinon import AkinonClient
from publisher.akinon.auth import TokenCache
from publisher.errors import PublisherError
from publisher.logs import configure_logging
from publisher.pages import RecordPage
from publisher.pipeline import StepSpec
from publisher.publish import KombuPublisher
from publisher.records import Resource
from publisher.redact import MASK, Redactor
from publisher.service import Edges, run_step
from publisher.state import MemoryStateStore

TOKEN = 'tok/en"from+login 42'
PASSWORD = 'pa ss/wo"rd'


def test_every_escaped_form_of_a_secret_is_masked() -> None:
    redactor = Redactor()
    redactor.register(TOKEN, None, "ab")  # None and too-short values are ignored
    for form in (
        TOKEN,
        orjson.dumps(TOKEN).decode(),
        quote(TOKEN, safe=""),
        quote(TOKEN),
        "tok%2Fen%22from%2Blogin+42",
        repr(TOKEN),
    ):
        assert TOKEN not in redactor.scrub(f"x {form} y")
        assert "login" not in redactor.scrub(f"x {form} y"), form
    assert redactor.scrub("ab cd") == "ab cd"


def test_an_exception_chain_is_scrubbed_or_cut() -> None:
    redactor = Redactor()
    redactor.register(TOKEN)

    class Opaque(Exception):
        def __str__(self) -> str:
            return f"opaque {TOKEN}"

    try:
        try:
            raise Opaque()
        except Opaque as inner:
            raise PublisherError(f"refused {TOKEN}") from inner
    except PublisherError as exc:
        redactor.scrub_exception(exc)
        assert str(exc) == f"refused {MASK}"
        assert exc.__cause__ is None  # its text could not be scrubbed


def _echoing_akinon(request: httpx.Request) -> httpx.Response:
    """Log in, then refuse every page with a body that echoes the token and the password."""
    if request.url.path.endswith("/auth/login/"):
        return httpx.Response(200, json={"key": TOKEN})
    body = {"detail": f"token {TOKEN} may not", "login": {"password": PASSWORD}}
    return httpx.Response(403, content=orjson.dumps(body))


def test_a_body_that_echoes_secrets_is_masked_in_last_error_the_error_and_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = io.StringIO()
    handler = configure_logging(None, stream=stream)
    foreign = logging.StreamHandler(io.StringIO())  # as tornado adds in Flower
    logging.getLogger().addHandler(foreign)
    try:
        client = AkinonClient(
            "https://akinon.example.com",
            username="user",
            password=PASSWORD,
            transport=httpx.MockTransport(_echoing_akinon),
            token_cache=TokenCache(),
            max_retries=0,
        )
        state = MemoryStateStore()
        edges = Edges(client, state, KombuPublisher("memory://", confirm_timeout=1))
        from publisher.redact import register

        register(PASSWORD)  # the settings' secrets, as build_edges registers them
        spec = StepSpec(1, Resource.STOCK, "https://akinon.example.com")
        with pytest.raises(PublisherError) as caught:
            run_step(spec, edges)
        logging.getLogger("tornado.access").warning("GET /?token=%s", quote(TOKEN, safe=""))
        seen = [
            str(caught.value),
            state.read_meta(1, Resource.STOCK)["last_error"],
            stream.getvalue(),
            foreign.stream.getvalue(),  # type: ignore[attr-defined]
            caplog.text,
        ]
    finally:
        logging.getLogger().removeHandler(foreign)
        logging.getLogger().removeHandler(handler)
    for text in seen:
        assert "from+login" not in text and "from%2Blogin" not in text
        assert 'wo\\"rd' not in text and "pa ss" not in text
    assert MASK in seen[1]


class _Failing:
    """A source that fails with an exception that is not ours, holding a secret."""

    def iter_pages(self, *args: object, **options: object) -> Iterator[RecordPage]:
        raise KeyError(f"lookup of {TOKEN}")

    def acknowledge(self, *args: object) -> None:
        raise AssertionError("not reached")


def test_a_foreign_exception_holding_a_secret_leaves_no_trace_of_it() -> None:
    from publisher.errors import StepCrashed
    from publisher.redact import register

    register(TOKEN)
    state = MemoryStateStore()
    edges = Edges(_Failing(), state, KombuPublisher("memory://", confirm_timeout=1))
    with pytest.raises(StepCrashed) as caught:
        run_step(StepSpec(1, Resource.STOCK, "https://akinon.example.com"), edges)
    shown = "".join(traceback.format_exception(caught.value))  # what Flower shows
    assert "KeyError" in shown
    assert "from+login" not in shown
    assert "from+login" not in state.read_meta(1, Resource.STOCK)["last_error"]
