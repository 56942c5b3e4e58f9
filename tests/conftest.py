"""Shared fixtures: AWS through moto in server mode and a real control plane, on 127.0.0.1 only."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from tests.control_plane import ControlPlane, Etcd, assets_folder

_AMBIENT_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ECR",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_ECR_PUBLIC",
    "MOTO_ACCOUNT_ID",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)


@pytest.fixture(autouse=True)
def nothing_held() -> Iterator[None]:
    """The secrets an operator held (regcred.redact.HELD) die with its process: here, with its test (a short
    test password such as "wrong" would otherwise be hidden from every later test's messages)."""
    from regcred.redact import HELD

    yield
    HELD.clear()


@pytest.fixture(autouse=True)
def no_pat_checks() -> Iterator[None]:
    """The GitHub PAT checks an operator remembers (regcred.providers.ghcr.PAT_CHECKS) die with its test too:
    a later test's fake GitHub may listen on the same port and answer differently for the same PAT."""
    from regcred.providers.ghcr import PAT_CHECKS

    yield
    PAT_CHECKS.clear()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """An empty AWS credential chain: no environment keys, no ~/.aws files, no instance metadata."""
    for name in _AMBIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-such-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-such-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Logging as `regcred run --debug` configures it, put back afterwards; caplog catches DEBUG on the root."""
    from regcred import logs  # imports kopf: only for the tests that use this

    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    saved = {name: logging.getLogger(name).level for name in (*logs.QUIET_LOGGERS, "asyncio")}
    saved_filters = {handler: list(handler.filters) for handler in root.handlers}
    caplog.set_level(logging.DEBUG)
    logs.configure(debug=True)
    caplog.set_level(logging.DEBUG)  # whatever configure did to the root, caplog still sees everything
    try:
        yield caplog
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for handler, filters in saved_filters.items():
            handler.filters[:] = filters
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger("asyncio").propagate = True


# -- The real control plane (tests/control_plane.py) ------------------------------------------------------


@pytest.fixture(scope="session")
def control_plane_assets() -> Path:
    """The folder with etcd, kube-apiserver and kube-controller-manager (KUBEBUILDER_ASSETS).

    scripts/test.sh builds them and sets it; under CI a missing control plane fails instead of skipping.
    """
    folder = assets_folder()
    if folder is None:
        message = ("no control-plane binaries: run `export KUBEBUILDER_ASSETS=$(bash scripts/control-plane.sh)` "
                   "(scripts/test.sh does)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def shared_etcd(control_plane_assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """One etcd for the session; each test's control plane keeps its objects under its own prefix."""
    with Etcd(control_plane_assets, tmp_path_factory.mktemp("etcd")) as etcd:
        yield etcd


@pytest.fixture
def control_plane(control_plane_assets: Path, shared_etcd: Etcd) -> Iterator[ControlPlane]:
    """A fresh, empty real cluster (kube-apiserver + kube-controller-manager) for one test."""
    with ControlPlane(control_plane_assets, shared_etcd) as plane:
        yield plane
