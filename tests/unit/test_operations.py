"""What operators see: progress lines, beat's first steps, Flower's options, a fast CLI."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from publisher.celery import SYNC_TASK, BeatScheduler, _configure_flower, private_directory
from publisher.cli import RESOURCE_NAMES
from publisher.config import Settings
from publisher.errors import ConfigError
from publisher.pipeline import StepSummary
from publisher.records import Resource
from publisher.service import STEP_LOGGER, ProgressLog
from publisher.tail import binding_line


def _settings(**values: object) -> Settings:
    return Settings(
        _env_file=None,
        akinon_url="https://omni.example",
        akinon_channels="1",
        akinon_token="t",
        **values,
    )


def test_a_long_step_logs_progress_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    progress = ProgressLog(every=10, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger=STEP_LOGGER)
    for seconds, seen in ((4, 500), (11, 1000), (15, 1500), (21, 2000)):
        now[0] = 100.0 + seconds
        progress(StepSummary(1, "stock", pages=seen // 500, seen=seen, published=seen))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "step progress channel=1 resource=stock pages=2 seen=1000 published=1000 elapsed=11s",
        "step progress channel=1 resource=stock pages=4 seen=2000 published=2000 elapsed=21s",
    ]


def test_beat_makes_every_sync_entry_due_at_start(tmp_path: Path) -> None:
    from celery import current_app

    previous = current_app._get_current_object()
    app = Celery("beat-test")  # current: schedules find their clock through it
    app.conf.beat_schedule = {
        "sync-1-stock": {"task": SYNC_TASK, "schedule": 600.0, "args": (1, "stock")},
        "other": {"task": "other.task", "schedule": 600.0},
    }
    scheduler = BeatScheduler(app=app, schedule_filename=str(tmp_path / "beat" / "schedule"))
    try:
        assert scheduler.schedule["sync-1-stock"].is_due()[0]
        assert not scheduler.schedule["other"].is_due()[0]
    finally:
        scheduler.close()
        previous.set_current()
    assert stat.S_IMODE((tmp_path / "beat").stat().st_mode) == 0o700


def test_beat_schedule_directory_is_private(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    private_directory(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    if os.getuid() != 0:
        pytest.skip("only root can make a directory that belongs to someone else")
    planted = tmp_path / "planted"
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    with pytest.raises(ConfigError, match="BEAT_SCHEDULE_FILE"):
        private_directory(planted)


@pytest.fixture
def flower_options() -> Iterator[Any]:
    from flower.options import default_options

    saved = {n: getattr(default_options, n) for n in ("address", "port", "basic_auth", "auth")}
    yield default_options
    for name, value in saved.items():
        setattr(default_options, name, value)


def test_flower_takes_address_port_and_users_from_settings(flower_options: Any) -> None:
    settings = _settings(flower_port=5999, flower_basic_auth="ops:pw1,viewer:pw2")
    _configure_flower(settings, ())
    assert flower_options.address == "127.0.0.1"
    assert flower_options.port == 5999
    assert flower_options.basic_auth == ["ops:pw1", "viewer:pw2"]


def test_flower_command_line_wins_and_an_open_address_needs_users(
    flower_options: Any,
) -> None:
    flower_options.address, flower_options.port = "0.0.0.0", 6001
    _configure_flower(_settings(flower_basic_auth="ops:pw"), ("--address=0.0.0.0", "--port=6001"))
    assert flower_options.address == "0.0.0.0"
    assert flower_options.port == 6001
    flower_options.basic_auth = []
    with pytest.raises(SystemExit) as stopped:
        _configure_flower(_settings(), ("--address=0.0.0.0",))
    assert stopped.value.code == 2


def test_tail_says_where_it_listens_without_the_password() -> None:
    line = binding_line("amqp://user:s3cret@broker:5672/h4", "stock.changed.*")
    assert line.startswith("tail: bound to amqp://user@broker:5672 vhost 'h4'")
    assert "'stock.changed.*'" in line
    assert "s3cret" not in line
    assert "vhost '/'" in binding_line("amqp://guest:guest@127.0.0.1:5672//", "#")


def test_cli_resource_names_are_the_resources() -> None:
    assert tuple(r.value for r in Resource) == RESOURCE_NAMES


def test_the_command_line_imports_no_heavy_module_until_a_command_runs() -> None:
    heavy = ("httpx", "redis", "kombu", "celery", "pydantic", "msgspec", "lz4", "yaml")
    code = (
        "import sys, publisher.cli; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
