"""Fixtures for the end-to-end tests: an emulated cluster with the CRD, and an operator to start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from regcred.manifests import load_crd
from regcred_sandbox import EmulatedCluster
from tests.e2e.harness import Cluster, OperatorFactory
from tests.registry.harness import Registry, make_signing_key, running_registry


@pytest.fixture
def emulated() -> Iterator[EmulatedCluster]:
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        yield cluster


@pytest.fixture
def cluster(emulated: EmulatedCluster) -> Cluster:
    return Cluster(emulated)


@pytest.fixture
def operator(emulated: EmulatedCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[OperatorFactory]:
    factory = OperatorFactory(emulated, monkeypatch)
    yield factory
    factory.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A real registry (Debian's docker-registry, htpasswd auth) holding the test images; see needs_registry."""
    with running_registry("htpasswd", tmp_path, make_signing_key()) as reg:
        yield reg
