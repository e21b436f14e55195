"""`python -m bench --quick` runs end to end and reports every figure with a number.

Nothing here asserts a rate, a ratio or a verdict: CI machines are shared and noisy, and the
figures are for people to read. It needs Redis and RabbitMQ; the run cleans up after itself.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIGURES = (
    "ceiling (a) HTTP fetch + JSON decode",
    "ceiling (b) py-amqp, confirms per 1,000",
    "ceiling (c) Redis pipelined HMGET",
    "kombu, confirm awaited per message",
    "kombu, confirms per 1,000",
    "1 initial sync",
    "2 steady state, 1% changed",
    "3 no change",
    "4 latency p50",
    "4 latency p99",
    "5 Redis memory per tracked record",
    "6 worker peak RSS, 10,000 records",
    "6 worker peak RSS, 100,000 records",
    "7 no change at 0 ms round trip",
    "7 no change at 50 ms round trip",
    "7 no change at 100 ms round trip",
    "8 scan under a 50 requests/s limit (429)",
)


@pytest.mark.timeout(150)
def test_quick_run_reports_every_figure(redis_url: str, amqp_url: str, tmp_path: Path) -> None:
    results = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(results)],
        cwd=ROOT,
        # The test's own servers: a vhost and database of its own.
        env={**os.environ, "BENCH_AMQP_URL": amqp_url, "BENCH_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    rows = {row["figure"]: row for row in orjson.loads(results.read_bytes())["rows"]}
    assert sorted(rows) == sorted(FIGURES)
    for figure, row in rows.items():
        assert isinstance(row["value"], float | int), figure
        assert math.isfinite(row["value"]), figure
        assert row["verdict"] in (None, "PASS", "FAIL"), figure

    table = done.stdout.splitlines()
    assert table[0].split()[:5] == ["figure", "value", "ceiling", "ratio", "target"]
    for figure in FIGURES:
        line = next((text for text in table if text.startswith(figure)), None)
        assert line is not None, f"{figure} missing from the table"
        value = line[len(figure) :].split()[0]
        float(value.replace(",", ""))  # printed as a number, with thousands separators
