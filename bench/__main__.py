"""Run the benchmark suite: `python -m bench [--quick] [--json PATH]`."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import orjson

from bench.report import render
from bench.suite import FULL, QUICK, run, say
from publisher.service import tune_gc


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the pipeline against the raw ceilings of its parts, in one run. "
        "Needs Redis (keys of its own in database 14) and RabbitMQ on loopback.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="10,000 records per kind, every figure taken once"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, _: FrameType | None) -> None:
    # Unwinding (rather than dying) runs the `finally` blocks that stop our child processes.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table on stdout, optionally write the JSON; return the status."""
    options = _parse(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    plan = QUICK if options.quick else FULL
    tune_gc()  # the pipeline runs here as in a worker process (see publisher.celery)
    started = time.monotonic()
    rows = run(plan)
    seconds = time.monotonic() - started
    print(render(rows), flush=True)
    say(f"done in {seconds:,.0f} s")
    if options.json is not None:
        document = {
            "plan": "quick" if options.quick else "full",
            "sizes": asdict(plan),
            "seconds": seconds,
            "rows": [row.as_json() for row in rows],
        }
        options.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
