"""Time, injectable: the operator asks a Clock for `now` and sleeps through it, so tests can move time."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime.datetime: ...

    async def sleep_until(self, deadline: datetime.datetime, wake: asyncio.Event) -> None:
        """Return at the deadline, or earlier when `wake` is set."""


class SystemClock:
    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    async def sleep_until(self, deadline: datetime.datetime, wake: asyncio.Event) -> None:
        seconds = (deadline - self.now()).total_seconds()
        if seconds <= 0 or wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=seconds)


class ManualClock:
    """A clock that moves only when told (`advance`), from any thread. For tests and benchmarks."""

    # How often sleepers look at the clock in real time; small, so that an advance is noticed at once.
    poll_seconds = 0.02

    def __init__(self, start: datetime.datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime.datetime:
        with self._lock:
            return self._now

    def advance(self, delta: datetime.timedelta) -> datetime.datetime:
        with self._lock:
            self._now += delta
            return self._now

    async def sleep_until(self, deadline: datetime.datetime, wake: asyncio.Event) -> None:
        while self.now() < deadline and not wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=self.poll_seconds)
