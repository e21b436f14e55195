"""Bad settings and options: the real programs stop with one line on stderr and status 2.

Each case runs the installed program in a subprocess, in an empty working directory, with
the environment a user would have; no server is needed (each stops before connecting).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
GOOD = {
    "AKINON_URL": "http://127.0.0.1:1",
    "AKINON_TOKEN": "t",
    "AKINON_CHANNELS": "1",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "AMQP_URL": "amqp://guest:guest@127.0.0.1:1//",
}


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a program of this package with GOOD settings plus `env`, in `cwd`."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AKINON_", "FLOWER_", "SANDBOX_", "LOG_", "POLL_", "CELERY_"))
        and k not in ("REDIS_URL", "AMQP_URL")
    }
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        env={**clean, **GOOD, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], names: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert names in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["akinon-publisher", "status"], {"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL"),
        (["akinon-publisher", "poll"], {"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL"),
        (["akinon-publisher", "poll"], {"AMQP_URL": "kafka://broker:9092"}, "AMQP_URL"),
        (["akinon-publisher", "tail"], {"AMQP_URL": "kafka://broker:9092"}, "AMQP_URL"),
        (["akinon-publisher", "poll"], {"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        (["akinon-publisher", "poll"], {"AKINON_URL": ""}, "AKINON_URL is required"),
        (["akinon-publisher", "sandbox", "--channels", "1,x"], {}, "--channels"),
        (["akinon-publisher", "demo", "--channels", "1,x"], {}, "--channels"),
        (["akinon-publisher", "sandbox"], {"SANDBOX_PORT": "x"}, "SANDBOX_PORT"),
        (["akinon-publisher", "tail", "--amqp-url", "localhost:5672"], {}, "--amqp-url"),
        (["akinon-publisher", "tail", "--pattern", "orders.#"], {}, "--pattern"),
        (["celery", "-A", "publisher", "worker"], {"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL"),
        (["celery", "-A", "publisher", "beat"], {"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        (
            ["celery", "-A", "publisher", "flower", "--address=0.0.0.0"],
            {},
            "FLOWER_BASIC_AUTH is required",
        ),
    ],
)
def test_a_bad_setting_or_option_is_one_line_and_status_2(
    tmp_path: Path, args: list[str], env: dict[str, str], names: str
) -> None:
    assert_one_line(run(args, tmp_path, **env), names)


def test_sandbox_on_a_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = run(["akinon-publisher", "sandbox", "--port", str(busy_port)], tmp_path)
    assert_one_line(result, f"--port {busy_port}")


def test_settings_come_from_env_file_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=verbose\n")
    assert_one_line(run(["akinon-publisher", "poll"], tmp_path), "LOG_LEVEL")
    # ... and the environment wins over the file.
    result = run(["akinon-publisher", "poll"], tmp_path, LOG_LEVEL="info", AMQP_URL="x://")
    assert_one_line(result, "AMQP_URL")
    assert "LOG_LEVEL" not in result.stderr
