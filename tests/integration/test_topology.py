"""The README's "Run the real topology" section, run as written: honcho, Flower, tail.

The commands come from the README itself, so this test breaks when the README drifts from
what works. They run in a fresh directory holding what they read (the Procfile,
`.env.example`, the `.venv`); the environment points them at this run's Redis database,
RabbitMQ vhost and free ports, which is how the README says to override `.env`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from dotenv import dotenv_values
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.services import free_port
from tests.readme import ROOT, block_with

pytestmark = pytest.mark.integration

TOPOLOGY = "Run the real topology"
INTERVAL = 5  # POLL_INTERVAL_SECONDS for this run
STARTUP_TIMEOUT = 45
SETTLE = 5  # beyond two intervals: the machine is shared and slow at times


def _process_table() -> dict[int, tuple[int, int]]:
    """Return pid -> (parent pid, process group) for every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The command name (field 2) may hold spaces; the rest follows its ')'.
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


class Sessions:
    """Start commands each in its own session; at the end, kill every process they started.

    honcho starts each of its processes in a session of its own too, so the groups to kill
    are found by walking the process tree before anything is stopped.
    """

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, line: str) -> tuple[Path, Path]:
        """Start one README line; return the files its stdout and stderr go to."""
        out, err = self.directory / f"{name}.out", self.directory / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.started.append(
                subprocess.Popen(
                    shlex.split(line, comments=True),
                    cwd=self.directory,
                    env=self.env,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                )
            )
        return out, err

    def stop(self) -> None:
        """Terminate every group (honcho then stops its own), then kill what is left."""
        groups = self._groups()
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        for proc in self.started:
            proc.wait(timeout=5)

    def _groups(self) -> set[int]:
        table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in table.items():
            children.setdefault(parent, []).append(pid)
        groups, todo = set(), [proc.pid for proc in self.started]
        while todo:
            pid = todo.pop()
            if pid in table:
                groups.add(table[pid][1])
            todo += children.get(pid, [])
        return groups


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Return a fresh directory with what the README's commands read, and the `.venv`."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the README's commands run from a virtualenv (.venv)")
    if not Path("/proc").is_dir():
        pytest.skip("finding every process honcho starts needs /proc")
    for name in ("Procfile", ".env.example"):
        shutil.copy(ROOT / name, tmp_path)
    (tmp_path / ".venv").symlink_to(sys.prefix)
    return tmp_path


def _environment(redis_url: str, amqp_url: str) -> dict[str, str]:
    sandbox_port = free_port()
    ours = ("AKINON_", "FLOWER_", "SANDBOX_", "POLL_", "CELERY_", "LOG_", "BEAT_", "HONCHO")
    ours += ("METRICS_", "HEALTH_", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env.update(
        REDIS_URL=redis_url,
        AMQP_URL=amqp_url,
        AKINON_URL=f"http://127.0.0.1:{sandbox_port}",
        SANDBOX_PORT=str(sandbox_port),
        FLOWER_PORT=str(free_port()),
        METRICS_PORT=str(free_port()),
        CELERY_QUEUE=f"akinon-publisher-readme-{uuid.uuid4().hex[:8]}",
        POLL_INTERVAL_SECONDS=str(INTERVAL),
    )
    return env


def _wait(what: str, check: Callable[[], bool], until: float, logs: Callable[[], str]) -> None:
    while not check():
        if time.monotonic() > until:
            raise AssertionError(f"{what}: not within the time allowed\n{logs()}")
        time.sleep(0.3)


def _flower_tasks(port: int, users: str) -> dict[str, dict[str, str]]:
    user, _, password = users.split(",", maxsplit=1)[0].partition(":")
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/tasks", auth=(user, password), timeout=3)
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    tasks: dict[str, dict[str, str]] = response.json()
    return tasks


def _succeeded_steps(tasks: dict[str, dict[str, str]]) -> set[str]:
    ours = {f"[{ch}, '{r}']" for ch in (1, 2) for r in ("stock", "price")}
    return {
        t["args"]
        for t in tasks.values()
        if t.get("name") == "akinon.sync" and t.get("state") == "SUCCESS" and t["args"] in ours
    }


def _published(port: int) -> float:
    """Return the records the worker's metrics say were published, on every step."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "akinon_publisher_records_total"
        and sample.labels.get("outcome") == "published"
    )


def _json_events(path: Path) -> Iterator[dict[str, object]]:
    for line in path.read_text().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            yield orjson.loads(line)


def test_the_readme_production_section_runs_as_written(
    workdir: Path, redis_url: str, amqp_url: str
) -> None:
    setup = block_with(TOPOLOGY, "honcho start")
    watch = block_with(TOPOLOGY, "akinon-publisher tail")
    assert "honcho start" in setup[-1], setup
    env = _environment(redis_url, amqp_url)
    sessions = Sessions(workdir, env)
    started = time.monotonic()
    try:
        for line in setup[:-1]:
            done = subprocess.run(
                ["sh", "-c", line], cwd=workdir, env=env, capture_output=True, timeout=120
            )
            assert done.returncode == 0, f"{line}\n{done.stdout!r}\n{done.stderr!r}"
        # The watchers first, so that they see the first steps' events too.
        tails = [sessions.start(f"tail-{i}", line) for i, line in enumerate(watch)]
        honcho_out, _ = sessions.start("honcho", setup[-1])

        def logs() -> str:
            files = [honcho_out, *(f for pair in tails for f in pair)]
            return "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in files)

        users = dotenv_values(workdir / ".env")["FLOWER_BASIC_AUTH"]
        assert users, "the README's steps give Flower a user"
        flower_port = int(env["FLOWER_PORT"])
        until = started + STARTUP_TIMEOUT
        _wait("the worker is ready", lambda: " ready." in honcho_out.read_text(), until, logs)
        _wait("Flower answers", lambda: _flower_tasks(flower_port, users) != {}, until, logs)
        _wait(
            "tail is bound", lambda: all("bound to" in e.read_text() for _, e in tails), until, logs
        )

        until = time.monotonic() + 2 * INTERVAL + SETTLE
        every, stock_1 = tails[0][0], tails[1][0]
        _wait(
            "events on the tail",
            lambda: re.search(r"(stock|price)\.changed +ch=[12] ", every.read_text()) is not None,
            until,
            logs,
        )
        _wait(
            "stock.changed.1 as JSON",
            lambda: any(
                e.get("type") == "stock.changed" and e["data"]["channel_id"] == 1  # type: ignore[index]
                for e in _json_events(stock_1)
            ),
            until,
            logs,
        )
        _wait(
            "Flower lists succeeded steps",
            lambda: bool(_succeeded_steps(_flower_tasks(flower_port, users))),
            until,
            logs,
        )
        _wait(
            "the worker's metrics count published records",
            lambda: _published(int(env["METRICS_PORT"])) > 0,
            until,
            logs,
        )
    finally:
        sessions.stop()
    vhost = urlsplit(amqp_url).path[1:] or "/"
    announced = tails[0][1].read_text()
    assert f"vhost '{vhost}'" in announced, announced
    assert "guest:guest" not in announced
    assert stat.S_IMODE((workdir / ".celery").stat().st_mode) == 0o700
    assert time.monotonic() - started < 90
