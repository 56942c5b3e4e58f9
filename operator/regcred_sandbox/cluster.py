"""
An emulated Kubernetes cluster for trying and testing: the API server in its own thread and loop.

Sync clients (the ``kubernetes`` client, ``kubectl``) and kopf (in yet another thread) all talk
to it over real HTTP on 127.0.0.1; the methods here are safe to call from any thread.
"""

import asyncio
import json
import pathlib
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp.web

from regcred_sandbox import patches
from regcred_sandbox.protocol import RESET, Chaos, Fault, RequestRecord
from regcred_sandbox.server import DEFAULT_NAMESPACES, ApiServer

T = TypeVar('T')


class EmulatedCluster:
    """
    The emulated API server, started on entering and stopped on exiting::

        with EmulatedCluster() as cluster:
            subprocess.run(['kubectl', 'get', 'ns'], env={'KUBECONFIG': cluster.kubeconfig_path})
    """

    def __init__(
            self, *,
            history_limit: int = 10_000,
            bookmark_interval: float = 60.0,
            namespaces: Iterable[str] = DEFAULT_NAMESPACES,
    ) -> None:
        """
        ``history_limit``: watch events kept per resource (older resourceVersions answer 410 Expired);
        ``bookmark_interval``: seconds between BOOKMARK events on idle watches that allow them;
        ``namespaces``: the namespaces that exist from the start, as in a fresh real cluster.
        """
        self._history_limit = history_limit
        self._bookmark_interval = bookmark_interval
        self._namespaces = tuple(namespaces)
        self._server: ApiServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self._tmpdir: pathlib.Path | None = None
        self._failure: BaseException | None = None

    # -- Lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("The emulated cluster is already started.")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name='emulated-k8s-api', daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30) or self._failure is not None:
            self.stop()
            raise RuntimeError("The emulated API server did not start.") from self._failure
        self._tmpdir = pathlib.Path(tempfile.mkdtemp(prefix='regcred-sandbox-'))
        pathlib.Path(self.kubeconfig_path).write_text(json.dumps(self.kubeconfig(), indent=2))

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._thread = self._loop = self._stopping = self._tmpdir = None

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as e:
            self._failure = e
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = server = ApiServer(history_limit=self._history_limit,
                                          bookmark_interval=self._bookmark_interval, namespaces=self._namespaces)
        # handler_cancellation: a client that disconnects from a watch ends its stream at once.
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(server, handler_cancellation=True, access_log=None),
                                          shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(('127.0.0.1', 0))
        self._port = sock.getsockname()[1]
        await aiohttp.web.SockSite(runner, sock).start()
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await runner.cleanup()

    def _call(self, fn: Callable[[ApiServer], T]) -> T:
        """Run a function on the server's loop (where all the state lives) and wait for its result."""
        server, loop = self.server, self._loop
        assert loop is not None

        async def call() -> T:
            return fn(server)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    # -- Connection details -------------------------------------------------------------------

    @property
    def server(self) -> ApiServer:
        if self._server is None:
            raise RuntimeError("The emulated cluster is not started.")
        return self._server

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("The emulated cluster is not started.")
        return f'http://127.0.0.1:{self._port}'

    @property
    def kubeconfig_path(self) -> str:
        if self._tmpdir is None:
            raise RuntimeError("The emulated cluster is not started.")
        return str(self._tmpdir / 'kubeconfig')

    def kubeconfig(self, namespace: str = 'default') -> dict[str, Any]:
        return {
            'apiVersion': 'v1',
            'kind': 'Config',
            'clusters': [{'name': 'emulated', 'cluster': {'server': self.url}}],
            'users': [{'name': 'emulated', 'user': {}}],
            'contexts': [{'name': 'emulated',
                          'context': {'cluster': 'emulated', 'user': 'emulated', 'namespace': namespace}}],
            'current-context': 'emulated',
        }

    def connection_info(self) -> Any:
        """A ``kopf.ConnectionInfo`` for a ``@kopf.on.login()`` handler: ``return cluster.connection_info()``.

        (kopf's default login reads ``$KUBECONFIG`` through the ``kubernetes`` client, which captures
        the variable when first imported: setting it later in a test has no effect.)
        """
        import kopf

        return kopf.ConnectionInfo(server=self.url)

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for this cluster (close it when done)."""
        import kubernetes.client  # only the tests need the official client

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    # -- Resources and objects ----------------------------------------------------------------

    def install_crd(self, crd: Mapping[str, Any]) -> dict[str, Any]:
        """Create (or replace) a CustomResourceDefinition; its resource is served at once."""
        body = patches.clone(dict(crd))
        created: dict[str, Any] = patches.clone(self._call(lambda server: server.apply(body)))
        return created

    def get_object(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """An object by resource (``secrets``, ``regcredentials.regcred.dev``), name, namespace."""
        def get(server: ApiServer) -> dict[str, Any] | None:
            obj = server.find_store(resource).get(namespace, name)
            copy: dict[str, Any] | None = None if obj is None else patches.clone(obj)
            return copy
        return self._call(get)

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self._call(lambda server: [patches.clone(obj) for obj in server.objects_of(resource, namespace)])

    # -- Knobs and observations ---------------------------------------------------------------

    @property
    def latency(self) -> float:
        return self.server.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self.server.latency = float(value)

    def inject_fault(
            self,
            method: str | None = None,
            resource: str | None = None,
            status: int = 500,
            times: int | None = 1,
            namespace: str | None = None,
            name: str | None = None,
            *,
            message: str | None = None,
            stall: float = 0.0,
            user_agent: str | None = None,
    ) -> Fault:
        """
        Answer the next ``times`` matching requests (``None``: all) with ``status`` and a Status body.

        The write is not applied. ``stall`` holds each answer that many seconds first (status 0: then
        serves the request as usual); ``user_agent`` limits it to one client's requests. ``method`` is an
        HTTP method or a Kubernetes verb; ``resource`` a plural, optionally with its group and subresource:
        ``pods/status``, ``regcredentials.regcred.dev``. A plural also matches its subresources.
        """
        fault = Fault(status=status, method=method, resource=resource, namespace=namespace, name=name,
                      times=times, message=message, stall=stall, user_agent=user_agent)
        self.server.add_fault(fault)
        return fault

    def chaos(
            self,
            rate: float,
            statuses: Iterable[int] = (429, 500, 409, RESET),
            *,
            seed: int = 0,
            user_agent: str | None = None,
    ) -> Chaos:
        """
        Fail a random ``rate`` (0.1: a tenth) of the requests, each with a status drawn from ``statuses``
        (429 comes with Retry-After: 1; ``RESET``, i.e. 0: the connection is closed unanswered). Only
        ``user_agent``'s requests (a prefix; ``None``: all), never a watch; a read never gets a 409 (a 500
        instead). Deterministic for a ``seed``. ``rate`` 0 (or clear_faults) ends it; the returned
        :class:`Chaos` counts the requests it failed.
        """
        chaos = Chaos(rate=rate, statuses=tuple(statuses), seed=seed, user_agent=user_agent)
        self.server.chaos = chaos if rate > 0 else None
        return chaos

    def clear_faults(self) -> None:
        with self.server.lock:
            self.server.faults.clear()
            self.server.chaos = None

    @property
    def requests(self) -> list[RequestRecord]:
        with self.server.lock:
            return list(self.server.records)

    def reset_requests(self) -> None:
        with self.server.lock:
            self.server.records.clear()
