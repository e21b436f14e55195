"""Run the sandbox from a shell: `python -m publisher.sandbox --port 8800 --churn 5`."""

from __future__ import annotations

import argparse
import contextlib
import sys

from publisher.sandbox.catalog import Catalog
from publisher.sandbox.server import SandboxServer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m publisher.sandbox", description="Serve a local stand-in for Akinon."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--channels", default="1,2", help="comma-separated channel ids")
    parser.add_argument("--size", type=int, default=1000, help="records per channel and kind")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--token", default="sandbox-token")
    parser.add_argument("--churn", type=float, default=0.0, help="random changes per second")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


def _announce(url: str) -> None:
    print(f"Akinon sandbox on {url} (control API: {url}/_control/)", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; return the exit status."""
    args = _parse(argv)
    channels = [int(part) for part in args.channels.split(",") if part.strip()]
    catalog = Catalog.seeded(channels=channels, size=args.size, seed=args.seed)
    server = SandboxServer(
        catalog, host=args.host, port=args.port, token=args.token, verbose=args.verbose
    )
    if args.churn > 0:
        server.run_churn(args.churn)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop
        server.serve_forever(ready=_announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
