"""What a threads pool and beat's expiring steps need of the worker process, without servers."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.app.task import Context
from celery.signals import before_task_publish, task_revoked
from prometheus_client import REGISTRY

import publisher.celery as tasks
from publisher import lock
from publisher.config import Settings


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        _env_file=None, akinon_url="https://omni.example", akinon_channels="1,2", akinon_token="t"
    )
    monkeypatch.setattr(tasks, "_settings", settings)


@pytest.mark.usefixtures("configured")
def test_eight_threads_asking_for_the_edges_at_once_build_them_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[object] = []

    def slow_build(_: Settings) -> object:
        time.sleep(0.05)  # connecting takes a while: every thread arrives meanwhile
        edges = object()
        built.append(edges)
        return edges

    monkeypatch.setattr(tasks, "build_edges", slow_build)
    monkeypatch.setattr(tasks, "_edges", None)
    start = threading.Barrier(8)
    got: list[object] = []

    def first_task() -> None:
        start.wait()
        got.append(tasks.edges())

    threads = [threading.Thread(target=first_task) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(built) == 1
    assert got == built * 8


def _expired(channel: str, resource: str) -> float:
    labels = {"channel": channel, "resource": resource}
    return REGISTRY.get_sample_value("akinon_publisher_tasks_expired_total", labels) or 0.0


def _revoke(args: list[Any], expired: bool) -> None:
    task_revoked.send(
        sender=tasks.sync,
        request=Context({"args": args}),
        terminated=False,
        signum=None,
        expired=expired,
    )


@pytest.mark.usefixtures("configured")
def test_a_task_that_expired_unsent_is_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="publisher.celery")
    before = _expired("2", "price")
    _revoke([2, "price"], expired=True)
    assert _expired("2", "price") == before + 1
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("task expired unsent: akinon.sync channel=2 resource=price")
    _revoke([2, "price"], expired=False)  # revoked by hand: not an expiry
    assert _expired("2", "price") == before + 1


@pytest.mark.usefixtures("configured")
def test_an_expired_task_with_foreign_arguments_counts_without_new_labels() -> None:
    before = _expired("?", "?")
    _revoke(["../users/#", "stock"], expired=True)
    _revoke([99, "stock"], expired=True)
    assert _expired("?", "?") == before + 2
    assert (
        REGISTRY.get_sample_value(
            "akinon_publisher_tasks_expired_total", {"channel": "99", "resource": "stock"}
        )
        is None
    )


def _published_properties(task: str, expiration: float | None) -> dict[str, Any]:
    properties: dict[str, Any] = {} if expiration is None else {"expiration": expiration}
    before_task_publish.send(sender=task, body=(), headers={}, properties=properties)
    return properties


def test_a_sync_step_keeps_the_broker_from_dropping_it_when_it_expires() -> None:
    # The worker reads the expiry from the message; the broker's TTL is only a long bound.
    assert _published_properties(tasks.SYNC_TASK, 2.0) == {
        "expiration": tasks.EXPIRED_TASK_TTL_SECONDS
    }
    assert _published_properties(tasks.SYNC_TASK, None) == {}
    assert _published_properties("other.task", 2.0) == {"expiration": 2.0}


@pytest.fixture
def node_name() -> Iterator[None]:
    yield
    lock.name_owner(socket.gethostname())


@pytest.mark.usefixtures("node_name")
def test_a_worker_names_its_node_in_the_locks_it_takes() -> None:
    from celery.signals import celeryd_init

    celeryd_init.send(sender="w7@host-a", instance=None, conf=None, options={})
    token = lock.owner_token()
    assert token.startswith("w7@host-a:")
    assert token != lock.owner_token()  # still unique per acquisition
