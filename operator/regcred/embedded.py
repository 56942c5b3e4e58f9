"""Run the operator inside this process, in a thread with its own event loop.

For the demo, the tests and the benchmark: they prepare a Runtime (cluster, clock, settings) and
run the very same kopf handlers that `regcred run` runs.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

import kopf

import regcred.handlers  # noqa: F401 - registers the handlers with kopf
from regcred.runtime import Runtime


class EmbeddedOperator:
    def __init__(self, runtime: Runtime, *, startup_timeout: float = 30) -> None:
        self.runtime = runtime
        self.startup_timeout = startup_timeout
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="regcred-operator", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            namespaces = list(self.runtime.settings.watch_namespaces)  # as `regcred run` chooses its mode
            asyncio.run(kopf.operator(
                clusterwide=not namespaces, namespaces=namespaces, memo=kopf.Memo(runtime=self.runtime),
                stop_flag=self._stop, ready_flag=self._ready,
            ))
        except BaseException as error:  # reported to the caller of stop()
            self.error = error
            self._ready.set()

    def start(self) -> EmbeddedOperator:
        self._thread.start()
        if not self._ready.wait(self.startup_timeout) or self.error is not None:
            raise RuntimeError(f"the operator did not start: {self.error!r}")
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop in time")

    def __enter__(self) -> EmbeddedOperator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
