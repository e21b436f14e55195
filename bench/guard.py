"""Run a module as `__main__` in a child that the kernel stops when its parent dies.

    python -m bench.guard PARENT_PID MODULE [ARGS...]

The suite starts its sandboxes through this, so a suite killed outright (SIGKILL, a test's
timeout) leaves no sandbox behind. Setting the death signal in the child itself, rather
than in a `preexec_fn`, is safe while the parent runs threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import runpy
import signal
import sys
from typing import Final

_PR_SET_PDEATHSIG: Final = 1


def die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the parent dies (Linux; elsewhere a no-op); exit if it already has."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        raise SystemExit(1)


def main() -> None:
    """Arm the death signal, then run the module with the remaining arguments."""
    parent_pid, module = int(sys.argv[1]), sys.argv[2]
    die_with_parent(parent_pid)
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
