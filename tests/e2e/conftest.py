"""Fixtures for the end-to-end tests: a cluster with the CRD on each backend, and an operator to start.

Every test runs twice: on the emulated API (fast, fault injection) and on a real control plane
(kube-apiserver + kube-controller-manager, tests/control_plane.py), which is the judge. A test that
needs what only the emulator has (injected faults, latency) is marked ``emulated_only`` and says why;
one about what only a real server does (RBAC, admission, controllers) is marked ``real_only``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regcred.manifests import load_crd
from regcred_sandbox import EmulatedCluster
from tests.e2e.harness import Backend, Cluster, OperatorFactory
from tests.registry.harness import Registry, make_signing_key, running_registry

BACKENDS = ("emulated", "real")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = list(BACKENDS)
        if metafunc.definition.get_closest_marker("emulated_only"):
            backends = ["emulated"]
        if metafunc.definition.get_closest_marker("real_only"):
            backends = ["real"]
        metafunc.parametrize("backend", backends, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On the real control plane a test shares two cores with an API server, a controller manager, etcd and
    a registry: it gets one more try, and pytest's summary says so ("N rerun") — a flake stays visible."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "real":
            item.add_marker(pytest.mark.flaky(reruns=1))


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "emulated":
        with EmulatedCluster() as emulated:
            emulated.install_crd(load_crd())
            yield emulated
    else:
        real = request.getfixturevalue("control_plane")
        real.install_crd(load_crd())
        yield real


@pytest.fixture
def cluster(backend: Backend) -> Cluster:
    return Cluster(backend)


@pytest.fixture
def operator(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[OperatorFactory]:
    factory = OperatorFactory(backend, monkeypatch)
    yield factory
    factory.stop()
    if not factory.expect_forbidden:
        assert factory.forbidden() == [], "the chart's RBAC refused the operator these requests"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A real registry (Debian's docker-registry, htpasswd auth) holding the test images; see needs_registry."""
    with running_registry("htpasswd", tmp_path, make_signing_key()) as reg:
        yield reg
