"""Make sure one sync step per (channel, resource) runs at a time, across machines.

A Redis key holds the owner's token (the Celery node name inside a worker, else the host;
the pid; a random part) with a TTL; a thread
extends the TTL while the step runs, and release deletes the key only if we still own it,
so a step that outlived its TTL can never delete a lock someone else took since.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from typing import Final

from publisher import topology
from publisher.errors import LockLost
from publisher.records import Resource
from publisher.redis_client import REDIS_ERRORS, RedisClient, translate

DEFAULT_TTL: Final = 60.0
# This process's clock for the lock's deadlines (tests move it, as a pause would).
_clock = time.monotonic


def _script(name: str) -> str:
    """Return the text of a Lua script kept next to this module."""
    return files(__package__ or "publisher").joinpath(name).read_text(encoding="utf-8")


# Delete / extend only when the value is still our token (atomic compare-and-act). Read
# once, at import: the scripts ship as package data.
_RELEASE: Final = _script("lock_release.lua")
_EXTEND: Final = _script("lock_extend.lua")


# Who this process is in a lock's token (`status` shows it): the host, until a Celery worker
# names its node (`celery@host`), so an operator can tell two workers of one host apart.
_owner = socket.gethostname()


def name_owner(name: str) -> None:
    """Name this process in the tokens of the locks it takes from now on."""
    global _owner  # noqa: PLW0603 - one name per process, set once at worker start
    _owner = name


def owner_token() -> str:
    """Return a token naming this process, unique per acquisition."""
    return f"{_owner}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class StepLock:
    """A renewed Redis lock for one (channel, resource).

    `held_until` is the moment (on this process's monotonic clock) until which the lock
    is surely ours: half a TTL after the start of the last request that set or extended
    it. Only an expired TTL makes another step's SET succeed, so before then `ensure` needs
    no round trip; after it (a process paused past its TTL, a renewer cut off from Redis)
    it asks Redis.
    """

    def __init__(
        self, client: RedisClient, channel_id: int, resource: Resource, ttl: float = DEFAULT_TTL
    ) -> None:
        self._redis = client
        self.key = topology.lock(channel_id, resource)
        self._ttl_ms = int(ttl * 1000)
        self.token = owner_token()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost = False
        self.held_until = 0.0

    def acquire(self) -> bool:
        """Take the lock if free; start renewing it. Return False if someone holds it."""
        started = _clock()
        try:
            taken = bool(self._redis.set(self.key, self.token, nx=True, px=self._ttl_ms))
        except REDIS_ERRORS as exc:
            raise translate(exc, "redis lock") from exc
        if taken:
            self._held(started)
            self._renewer = threading.Thread(target=self._renew, daemon=True, name=self.key)
            self._renewer.start()
        return taken

    def _held(self, since: float) -> None:
        self.held_until = max(self.held_until, since + self._ttl_ms / 2000)

    def _extend(self) -> bool:
        """Extend the TTL if the lock is still ours (raises Redis's errors as they are)."""
        started = _clock()
        extended = bool(self._redis.eval(_EXTEND, 1, self.key, self.token, self._ttl_ms))
        if extended:
            self._held(started)
        return extended

    def _renew(self) -> None:
        interval = self._ttl_ms / 3000
        while not self._stop.wait(interval):
            try:
                extended = self._extend()
            except REDIS_ERRORS:
                # Try again next round while the TTL still covers us; past it, another
                # step may have taken the lock: this one must not write any more.
                if _clock() >= self.held_until + self._ttl_ms / 2000:
                    self.lost = True
                    return
                continue
            if not extended:
                self.lost = True
                return

    def ensure(self) -> None:
        """Raise `LockLost` unless the lock is still ours (asking Redis only when in doubt).

        The renewer alone is not enough: a process paused past the TTL resumes with its
        renewer paused too, and would write before the renewer notices.
        """
        if not self.lost and _clock() >= self.held_until:
            try:
                self.lost = not self._extend()
            except REDIS_ERRORS as exc:
                raise translate(exc, "redis lock") from exc
        if self.lost:
            raise LockLost(
                f"the step lost its lock {self.key} (it outlived the lock's TTL, or the lock "
                "was taken): it stopped before publishing or committing anything more"
            )

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        # If Redis is unreachable now, the TTL frees the lock soon; nothing else to do.
        with contextlib.suppress(*REDIS_ERRORS):
            self._redis.eval(_RELEASE, 1, self.key, self.token)


def holder(client: RedisClient, channel_id: int, resource: Resource) -> str | None:
    """Return who holds the lock of a (channel, resource), if anyone."""
    try:
        value = client.get(topology.lock(channel_id, resource))
    except REDIS_ERRORS as exc:
        raise translate(exc, "redis lock") from exc
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def single_flight(
    client: RedisClient, channel_id: int, resource: Resource, ttl: float = DEFAULT_TTL
) -> Iterator[StepLock | None]:
    """Yield the lock while holding it, or None at once if another step holds it."""
    lock = StepLock(client, channel_id, resource, ttl)
    taken = lock.acquire()
    try:
        yield lock if taken else None
    finally:
        if taken:
            lock.release()
