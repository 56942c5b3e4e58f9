"""kopf in this process, in its own thread and loop, against the emulated API server."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kopf
import pytest

from regcred_sandbox import EmulatedCluster

T = TypeVar("T")
GADGETS = ("example.dev", "v1", "gadgets")
FINALIZER = "example.dev/cleanup"
HANDLED = "kopf.zalando.org/last-handled-configuration"


def eventually(check: Callable[[], T], timeout: float = 10) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.02)


@contextlib.contextmanager
def running(cluster: EmulatedCluster, registry: kopf.OperatorRegistry,
            settings: kopf.OperatorSettings) -> Iterator[None]:
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        info: kopf.ConnectionInfo = cluster.connection_info()
        return info

    settings.persistence.finalizer = FINALIZER
    settings.posting.enabled = False
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(kopf.operator(registry=registry, settings=settings, standalone=True, clusterwide=True,
                                      stop_flag=stop))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=target, name="kopf", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "kopf did not stop"
        assert not errors, errors


@pytest.mark.parametrize("initial_streaming", [False, True], ids=["list-then-watch", "initial-streaming"])
def test_handlers_run_and_the_finalizer_holds_deletion(
        cluster: EmulatedCluster, custom: Any, initial_streaming: bool) -> None:
    registry = kopf.OperatorRegistry()
    settings = kopf.OperatorSettings()
    settings.watching.initial_streaming = initial_streaming
    seen: list[tuple[str, str, Any]] = []
    release = threading.Event()

    @kopf.on.create(*GADGETS, id="created", registry=registry)
    def created(name: str, spec: kopf.Spec, **_: Any) -> dict[str, Any]:
        seen.append(("create", name, spec.get("size")))
        return {"seen": True}

    @kopf.on.update(*GADGETS, registry=registry)
    def updated(name: str, spec: kopf.Spec, **_: Any) -> None:
        seen.append(("update", name, spec.get("size")))

    @kopf.on.delete(*GADGETS, registry=registry)
    def deleted(name: str, **_: Any) -> None:
        if not release.is_set():
            raise kopf.TemporaryError("not yet", delay=0.1)
        seen.append(("delete", name, None))

    custom.create_namespaced_custom_object(*GADGETS[:2], "default", GADGETS[2], {
        "metadata": {"name": "before"}, "spec": {"size": 0}})  # exists before the operator starts
    with running(cluster, registry, settings):
        custom.create_namespaced_custom_object(*GADGETS[:2], "default", GADGETS[2], {
            "metadata": {"name": "g1"}, "spec": {"size": 1}})
        eventually(lambda: _assert(("create", "g1", 1) in seen and ("create", "before", 0) in seen))
        g1 = eventually(lambda: _finalized(cluster, "g1"))
        eventually(lambda: _assert(_finalized(cluster, "g1").get("status", {}).get("created") == {"seen": True}))
        assert g1["metadata"]["generation"] == 1  # kopf's writes touch only metadata and status

        custom.patch_namespaced_custom_object(*GADGETS[:2], "default", GADGETS[2], "g1", {"spec": {"size": 2}})
        eventually(lambda: _assert(("update", "g1", 2) in seen))

        custom.delete_namespaced_custom_object(*GADGETS[:2], "default", GADGETS[2], "g1")
        time.sleep(0.3)  # the delete handler keeps failing: the finalizer holds the object
        held = cluster.get_object("gadgets.example.dev", "g1", "default")
        assert held is not None and held["metadata"]["deletionTimestamp"]

        release.set()
        eventually(lambda: _assert(cluster.get_object("gadgets.example.dev", "g1", "default") is None))
        assert ("delete", "g1", None) in seen


def test_server_side_label_selectors_filter_what_kopf_sees(cluster: EmulatedCluster, custom: Any) -> None:
    registry = kopf.OperatorRegistry()
    settings = kopf.OperatorSettings()
    settings.watching.label_selectors["example.dev", "gadgets"] = "managed=yes"
    seen: list[str] = []

    @kopf.on.event(*GADGETS, registry=registry)
    def event(name: str, **_: Any) -> None:
        seen.append(name)

    @kopf.on.create(*GADGETS, registry=registry)
    def created(**_: Any) -> None:
        pass

    with running(cluster, registry, settings):
        for name, labels in [("ignored", {}), ("wanted", {"managed": "yes"}), ("other", {"managed": "no"})]:
            custom.create_namespaced_custom_object(*GADGETS[:2], "default", GADGETS[2], {
                "metadata": {"name": name, "labels": labels}, "spec": {}})
        eventually(lambda: _assert(HANDLED in _annotations(cluster, "wanted")))
        time.sleep(0.2)

    assert set(seen) == {"wanted"}
    assert HANDLED not in _annotations(cluster, "ignored")  # never seen, so never touched
    assert HANDLED not in _annotations(cluster, "other")
    streams = [r for r in cluster.requests if r.resource == "gadgets" and r.verb in ("list", "watch")]
    assert streams and all(r.params["labelSelector"] == "managed=yes" for r in streams)


def _assert(condition: bool) -> None:
    assert condition


def _finalized(cluster: EmulatedCluster, name: str) -> dict[str, Any]:
    obj = cluster.get_object("gadgets.example.dev", name, "default")
    assert obj is not None and FINALIZER in obj["metadata"].get("finalizers", [])
    return obj


def _annotations(cluster: EmulatedCluster, name: str) -> dict[str, str]:
    obj = cluster.get_object("gadgets.example.dev", name, "default")
    assert obj is not None
    return dict(obj["metadata"].get("annotations", {}))
