"""Work that waits: remediations the global rate limit held back, and pods (or sweeps) to try again.

Plain data structures over the operator's clock, safe to use from several threads; the Remediator decides
what goes in, and the Runtime's work loop (runtime.py) takes out what is due. Nothing here talks to the API.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import threading
from collections.abc import Hashable

from regcred.clock import Clock

# (credential, namespace, kind, name): one entry per workload and credential, however many of its pods are stuck.
WorkloadKey = tuple[str, str, str, str]


class RateLimiter:
    """A sliding window: at most `limit` actions in any 60 seconds of the operator's clock."""

    window = datetime.timedelta(minutes=1)

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit, self.clock = limit, clock
        self._times: collections.deque[datetime.datetime] = collections.deque()
        self._lock = threading.Lock()

    def _expire(self, now: datetime.datetime) -> None:
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()

    def allow(self) -> bool:
        """Take a slot now, if there is one."""
        now = self.clock.now()
        with self._lock:
            self._expire(now)
            if len(self._times) >= self.limit:
                return False
            self._times.append(now)
            return True

    def next_free(self) -> datetime.datetime:
        """When the next slot is free: now, or when the oldest action of the window leaves it."""
        now = self.clock.now()
        with self._lock:
            self._expire(now)
            if len(self._times) < self.limit:
                return now
            return self._times[len(self._times) - self.limit] + self.window


@dataclasses.dataclass
class Held:
    """A remediation the rate limit held back: the workload, and the stuck pod that asked for it."""

    credential: str
    namespace: str
    kind: str
    name: str
    pod: str  # re-read when its turn comes: it may have been fixed or replaced meanwhile
    since: datetime.datetime

    @property
    def key(self) -> WorkloadKey:
        return (self.credential, self.namespace, self.kind, self.name)


class Backlog:
    """Remediations waiting for the rate limit: one per workload, oldest first, at most `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[WorkloadKey, Held] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, held: Held) -> bool:
        """Queue it (a workload already waiting keeps its place, with the newer pod); False when full."""
        with self._lock:
            waiting = self._items.get(held.key)
            if waiting is not None:
                waiting.pod = held.pod
                return True
            if len(self._items) >= self.capacity:
                return False
            self._items[held.key] = held
            return True

    def oldest(self) -> Held | None:
        with self._lock:
            return next(iter(self._items.values()), None)

    def remove(self, key: WorkloadKey) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def counts(self) -> dict[str, int]:
        """How many workloads wait, per credential."""
        with self._lock:
            return dict(collections.Counter(key[0] for key in self._items))

    def waiting(self) -> list[WorkloadKey]:
        """In the order they will be worked through."""
        with self._lock:
            return list(self._items)


@dataclasses.dataclass
class _Attempt:
    failures: int
    due: datetime.datetime


class Retries:
    """What failed on an API error, tried again with exponential back-off, at most `max_failures` times."""

    def __init__(self, clock: Clock, *, initial: datetime.timedelta, maximum: datetime.timedelta,
                 max_failures: int = 8, capacity: int = 10_000) -> None:
        self.clock, self.initial, self.maximum = clock, initial, maximum
        self.max_failures, self.capacity = max_failures, capacity
        self._attempts: dict[Hashable, _Attempt] = {}
        self._lock = threading.Lock()

    def failed(self, key: Hashable) -> datetime.datetime | None:
        """Record a failure; when to try again, or None when it was tried often enough (or too much waits)."""
        now = self.clock.now()
        with self._lock:
            attempt = self._attempts.get(key)
            failures = attempt.failures + 1 if attempt else 1
            if failures > self.max_failures or (attempt is None and len(self._attempts) >= self.capacity):
                self._attempts.pop(key, None)
                return None
            due = now + min(self.initial * (1 << (failures - 1)), self.maximum)
            self._attempts[key] = _Attempt(failures, due)
            return due

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._attempts.pop(key, None)

    def due(self) -> list[Hashable]:
        """The keys whose time has come (they stay recorded until they succeed or give up)."""
        now = self.clock.now()
        with self._lock:
            return [key for key, attempt in self._attempts.items() if attempt.due <= now]

    def postpone(self, key: Hashable, until: datetime.datetime) -> None:
        with self._lock:
            attempt = self._attempts.get(key)
            if attempt is not None:
                attempt.due = until

    def next_due(self) -> datetime.datetime | None:
        with self._lock:
            dues = [attempt.due for attempt in self._attempts.values()]
        return min(dues) if dues else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._attempts)
