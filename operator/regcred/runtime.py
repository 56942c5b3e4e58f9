"""What one operator process holds: settings, the API layer, the reconciler, the clock, the wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from regcred import metrics
from regcred.clock import Clock, SystemClock
from regcred.config import Settings
from regcred.kube import KubeApi, load_api_client
from regcred.reconcile import Reconciler
from regcred.remediation import Remediator
from regcred.sources import SourceWatcher, referenced_secrets

logger = logging.getLogger("regcred")


@dataclasses.dataclass
class Wakeups:
    """One event per credential, set by watch events (namespaces, managed Secrets, spec changes).

    asyncio events are not thread-safe: kick only from the event loop (async kopf handlers).
    """

    events: dict[str, asyncio.Event] = dataclasses.field(default_factory=dict)
    # The spec generation each credential's loop last took up: an event of a generation already being applied
    # (the credential's own ADDED event at start-up, its status writes) wakes nobody.
    generations: dict[str, object] = dataclasses.field(default_factory=dict)

    def register(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    def unregister(self, name: str) -> None:
        self.events.pop(name, None)
        self.generations.pop(name, None)

    def taken(self, name: str, generation: object) -> None:
        self.generations[name] = generation

    def new_generation(self, name: str, generation: object) -> bool:
        return self.generations.get(name) != generation

    def kick(self, name: str) -> None:
        event = self.events.get(name)
        if event is not None:
            event.set()

    @property
    def active(self) -> bool:
        """Whether this replica acts: credential daemons run only on the active replica (kopf stops them
        when peering pauses it, and starts them again when it takes over)."""
        return bool(self.events)


@dataclasses.dataclass
class Runtime:
    settings: Settings
    kube: KubeApi
    reconciler: Reconciler
    clock: Clock
    wakeups: Wakeups = dataclasses.field(default_factory=Wakeups)
    remediator: Remediator = dataclasses.field(init=False)
    sources: SourceWatcher = dataclasses.field(init=False)
    _metrics_server: object | None = dataclasses.field(default=None, init=False)
    _work_task: asyncio.Task[None] | None = dataclasses.field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        self.remediator = Remediator(self.kube, self.reconciler.served, self.reconciler.reporter, self.settings,
                                     self.clock, self.reconciler.tokens.prober)
        self.sources = SourceWatcher(
            lambda: self.kube.for_watches(self.settings.max_source_watches + 1), self._kick_from_thread,
            max_watches=self.settings.max_source_watches, retry_initial=self.settings.retry_initial.total_seconds(),
            retry_max=self.settings.retry_max.total_seconds(),
        )

    def track_sources(self, name: str, credential: Mapping[str, Any]) -> None:
        """Watch the Secrets this credential reads (from the event loop: a change wakes the credential up)."""
        self._loop = asyncio.get_running_loop()
        self.sources.track(name, referenced_secrets(credential))

    def _kick_from_thread(self, name: str) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the operator is stopping
                loop.call_soon_threadsafe(self.wakeups.kick, name)

    # How long the work loop sleeps (real time) while this replica is a standby, before looking again.
    standby_poll_seconds = 1.0
    # When nothing waits, the work loop still looks this often (operator clock).
    idle_wake = datetime.timedelta(minutes=5)

    def start_work(self) -> None:
        """Start the loop that works through waiting remediation work, in the running event loop."""
        if self._work_task is None and self.settings.remediation_enabled:
            loop = asyncio.get_running_loop()
            wake = asyncio.Event()

            def notify() -> None:
                loop.call_soon_threadsafe(wake.set)

            self.remediator.notify = notify
            self._work_task = loop.create_task(self._work(wake), name="regcred-remediation-work")

    async def stop_work(self) -> None:
        task, self._work_task = self._work_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _work(self, wake: asyncio.Event) -> None:
        """Sleep (on the operator's clock) until a retry is due or the rate limit's window frees, or new work
        arrives; then do what is due. Only while this replica is active: a standby leaves it to the other."""
        while True:
            wake.clear()
            due = self.remediator.next_due()
            await self.clock.sleep_until(due if due is not None else self.clock.now() + self.idle_wake, wake)
            if not self.wakeups.active:
                await asyncio.sleep(self.standby_poll_seconds)
                continue
            try:
                await asyncio.to_thread(self.remediator.work_due)
            except Exception:  # never let the loop die: what failed stays queued and is tried again
                logger.exception("Working through waiting remediations failed.")
                await asyncio.sleep(self.standby_poll_seconds)

    def forget(self, name: str) -> None:
        """A credential's loop stopped: drop what is cached for it; with no loop left (paused, or no credential),
        the remediation memory too. Rebuilt by the reconciliations once the loops run again."""
        self.reconciler.forget(name)
        if not self.wakeups.active:
            self.remediator.reset()
            self.reconciler.view.clear()

    @classmethod
    def create(cls, *, settings: Settings | None = None, clock: Clock | None = None,
               kubeconfig: str | None = None) -> Runtime:
        settings = settings or Settings.from_env()
        clock = clock or SystemClock()
        kube = KubeApi(load_api_client(kubeconfig, pool_size=settings.write_concurrency + 4),
                       namespaces=settings.watch_namespaces, timeout=settings.api_timeout)
        return cls(settings=settings, kube=kube, reconciler=Reconciler(kube, settings, clock), clock=clock)

    def start_metrics(self) -> None:
        if self.settings.metrics_port and self._metrics_server is None:
            self._metrics_server = metrics.serve(self.settings.metrics_port, self.settings.metrics_address)

    def close(self) -> None:
        self.sources.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()  # type: ignore[attr-defined]
            self._metrics_server = None
        self.reconciler.close()
        self.kube.api_client.close()  # type: ignore[no-untyped-call]
