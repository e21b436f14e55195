"""Start the product's own processes in tests: Celery workers, beat, Flower, with settings.

Shared by the integration tests that run the product as operators do; the `processes`
fixture (in conftest) stops whatever a test started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from publisher.sandbox import SandboxServer
from tests.conftest import SANDBOX_TOKEN

BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a loopback port free at this moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(
    server: SandboxServer, channel_id: int, redis_url: str, amqp_url: str, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AKINON_", "POLL_"))}
    env.update(
        AKINON_URL=server.url,
        AKINON_TOKEN=SANDBOX_TOKEN,
        AKINON_CHANNELS=str(channel_id),
        AKINON_PAGE_SIZE="10",
        REDIS_URL=redis_url,
        AMQP_URL=amqp_url,
        CELERY_QUEUE=f"akinon-publisher-test-{uuid.uuid4().hex[:8]}",
        POLL_INTERVAL_SECONDS="2",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Processes:
    """Start subprocesses and make sure they all end with the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp_path
            )
        self.running.append((proc, log))
        return proc

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Wait until every process has written `text` to its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(text in log.read_text() for _, log in self.running):
                return
            time.sleep(0.1)
        raise AssertionError(f"not every process said {text!r}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for _, log in self.running)

    def stop(self) -> None:
        for proc, _ in self.running:
            proc.terminate()
        for proc, _ in self.running:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def celery(*args: str) -> list[str]:
    return [str(BIN / "celery"), "-A", "publisher", *args]


def worker(name: str) -> list[str]:
    return celery(
        "worker",
        "--loglevel=INFO",
        "--concurrency=2",
        "--pool=threads",
        f"--hostname={name}@%h",
        "--without-mingle",
        "--without-gossip",
    )
