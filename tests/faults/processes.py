"""Step processes (`tests.faults.worker`) the fault suite can kill or freeze mid-step."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parents[2]


class StepProcess:
    """One worker process: send it a step, then read its answer, kill it or freeze it."""

    def __init__(self, log: IO[bytes]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        self._ready = False

    @property
    def alive(self) -> bool:
        """Say whether the process still runs."""
        return self._proc.poll() is None

    def send(self, command: dict[str, Any]) -> None:
        """Start a step (waits for the process to have started first)."""
        if not self._ready:
            if self._line(timeout=30.0) != "ready":
                raise RuntimeError("the step process did not start")
            self._ready = True
        assert self._proc.stdin is not None
        self._proc.stdin.write(orjson.dumps(command) + b"\n")
        self._proc.stdin.flush()

    def answer(self, timeout: float) -> dict[str, Any] | None:
        """Return the step's outcome, or None if none came within `timeout` seconds."""
        line = self._line(timeout)
        return orjson.loads(line) if line else None

    def _line(self, timeout: float) -> str | None:
        assert self._proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return None
        return self._proc.stdout.readline().decode().strip() or None

    def signal(self, number: signal.Signals) -> None:
        """Send a signal (SIGKILL, SIGSTOP, SIGCONT) unless the process is gone."""
        if self.alive:
            os.kill(self._proc.pid, number)

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        self.signal(signal.SIGKILL)
        self._proc.wait(timeout=10)

    def close(self) -> None:
        """End the process (resume it first, in case it is frozen)."""
        self.signal(signal.SIGCONT)
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class Processes:
    """Hand out started step processes; keep one spare starting, so a kill costs no wait."""

    def __init__(self) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="fault-steps-", suffix=".log", delete=False)  # noqa: SIM115
        self._spare: StepProcess | None = None
        self.started = 0

    def take(self) -> StepProcess:
        """Return a process for a step (the caller gives it back or kills it here)."""
        process = self._spare if self._spare is not None else self._start()
        self._spare = None
        return process

    def kill(self, process: StepProcess) -> None:
        """SIGKILL a process taken from here, and start the next spare at once."""
        process.kill()
        process.close()
        if self._spare is None:
            self._spare = self._start()

    def give_back(self, process: StepProcess) -> None:
        """Keep a live, idle process as the spare (or end it if there is one)."""
        if process.alive and self._spare is None:
            self._spare = process
        else:
            process.close()

    def _start(self) -> StepProcess:
        self.started += 1
        return StepProcess(self.log)

    def close(self) -> None:
        """End the spare; delete the processes' log (their stderr, kept while they run)."""
        if self._spare is not None:
            self._spare.close()
            self._spare = None
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
