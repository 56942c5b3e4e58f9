"""Fixtures for the registry probe tests: real registries (see harness.py) and a scripted HTTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.registry.harness import (
    Registry,
    ScriptedServer,
    SigningKey,
    make_signing_key,
    registry_installed,
    running_registry,
)

_NEEDS_REGISTRY = {"registry", "open_registry"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if registry_installed() or os.environ.get("CI"):  # in CI a missing registry is a failure, not a skip
        return
    skip = pytest.mark.skip(reason="docker-registry or htpasswd missing: run `bash scripts/install-registry.sh`")
    here = Path(__file__).parent
    for item in items:
        # The hook sees every test of the session: only touch ours.
        if item.path.is_relative_to(here) and _NEEDS_REGISTRY & set(getattr(item, "fixturenames", ())):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return make_signing_key()


@pytest.fixture(scope="module", params=["htpasswd", "token"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey
) -> Iterator[Registry]:
    """A registry with auth, in both flavours, holding REPO with tags TAG, OCI_TAG and INDEX_TAG."""
    with running_registry(request.param, tmp_path_factory.mktemp(f"registry-{request.param}"), signing_key) as reg:
        yield reg


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> Iterator[Registry]:
    """A registry without auth (its /v2/ answers 200), holding the same images."""
    with running_registry("open", tmp_path_factory.mktemp("registry-open"), signing_key) as reg:
        yield reg


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()
