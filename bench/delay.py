"""A TCP proxy that adds a fixed round-trip time, run in a process of its own.

    python -m bench.delay LISTEN_PORT TARGET_PORT RTT_MS

Every byte is forwarded half the round trip later in each direction, in order, without a
bandwidth limit: what a distant server adds to each request (on top of its own work), and
nothing else. It runs in its own process (through `bench.guard`) so its work does not share
the measured pipeline's GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Final

_READ: Final = 65_536


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    while data := await reader.read(_READ):
        if delay > 0:
            loop.call_later(delay, writer.write, data)  # same delay: call order is byte order
        else:
            writer.write(data)
    await asyncio.sleep(delay)
    with contextlib.suppress(OSError):
        writer.write_eof()


async def _serve(listen: int, target: int, rtt: float) -> None:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
            await asyncio.gather(
                _pump(reader, up_writer, rtt / 2), _pump(up_reader, writer, rtt / 2)
            )
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def delayed(target_port: int, rtt_ms: float) -> Iterator[int]:
    """Run a delay proxy to a loopback port; yield the port it listens on."""
    from bench.env import free_port, guarded, stop, wait_for_port

    port = free_port()
    command = guarded("bench.delay", str(port), str(target_port), str(rtt_ms))
    process = subprocess.Popen(command)
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop(process)


def main() -> None:
    """Serve until stopped."""
    listen, target, rtt_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    asyncio.run(_serve(listen, target, rtt_ms / 1000))


if __name__ == "__main__":
    main()
