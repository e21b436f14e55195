"""The benchmark suite keeps working: `python -m bench --quick` measures every figure.

No timing is asserted here: CI machines are shared and noisy; the figures are for people.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.integration

FIGURES = [
    "ceiling (a)",
    "ceiling (b)",
    "ceiling (c)",
    "kombu, confirm awaited per message",
    "1 initial sync",
    "2 steady state",
    "3 no change",
    "4 latency p50",
    "4 latency p99",
    "5 Redis memory",
    "6 worker peak RSS",
]


def test_quick_benchmark_prints_every_figure(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = orjson.loads(report.read_bytes())
    for figure in FIGURES:
        matching = [r for r in rows if r["figure"].startswith(figure)]
        assert matching, f"{figure} missing from {[r['figure'] for r in rows]}"
        assert all(math.isfinite(r["value"]) and r["value"] > 0 for r in matching)
        assert figure in result.stdout
    assert "verdict" in result.stdout.splitlines()[0]
