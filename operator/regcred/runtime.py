"""What one operator process holds: settings, the API layer, the reconciler, the clock, the wake-ups."""

from __future__ import annotations

import asyncio
import dataclasses

from regcred import metrics
from regcred.clock import Clock, SystemClock
from regcred.config import Settings
from regcred.kube import KubeApi, load_api_client
from regcred.reconcile import Reconciler
from regcred.remediation import Remediator


@dataclasses.dataclass
class Wakeups:
    """One event per credential, set by watch events (namespaces, managed Secrets, spec changes).

    asyncio events are not thread-safe: kick only from the event loop (async kopf handlers).
    """

    events: dict[str, asyncio.Event] = dataclasses.field(default_factory=dict)

    def register(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    def unregister(self, name: str) -> None:
        self.events.pop(name, None)

    def kick(self, name: str) -> None:
        event = self.events.get(name)
        if event is not None:
            event.set()

    def kick_all(self) -> None:
        for event in self.events.values():
            event.set()


@dataclasses.dataclass
class Runtime:
    settings: Settings
    kube: KubeApi
    reconciler: Reconciler
    clock: Clock
    wakeups: Wakeups = dataclasses.field(default_factory=Wakeups)
    remediator: Remediator = dataclasses.field(init=False)
    _metrics_server: object | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        self.remediator = Remediator(self.kube, self.reconciler, self.settings, self.clock)

    @classmethod
    def create(cls, *, settings: Settings | None = None, clock: Clock | None = None,
               kubeconfig: str | None = None) -> Runtime:
        settings = settings or Settings.from_env()
        clock = clock or SystemClock()
        kube = KubeApi(load_api_client(kubeconfig, pool_size=settings.write_concurrency + 4),
                       namespaces=settings.watch_namespaces)
        return cls(settings=settings, kube=kube, reconciler=Reconciler(kube, settings, clock), clock=clock)

    def start_metrics(self) -> None:
        if self.settings.metrics_port and self._metrics_server is None:
            self._metrics_server = metrics.serve(self.settings.metrics_port, self.settings.metrics_address)

    def close(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()  # type: ignore[attr-defined]
            self._metrics_server = None
        self.reconciler.close()
        self.kube.api_client.close()  # type: ignore[no-untyped-call]
