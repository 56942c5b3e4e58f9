"""Running it for real: Prometheus metrics over HTTP, and peering failover between two operator processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SELECTOR = "regcred.dev/credential=hub"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hub(cluster: Cluster) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "hub", {"username": "acme-ci", "password": "dckr_pat_1"})
    for name in ("web", "api"):
        cluster.namespace(name, {"team": "shop"})
    return cluster


SPEC = {
    "provider": {"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
    "secretName": "hub-pull",
    "namespaces": {"selector": {"matchLabels": {"team": "shop"}}},
}


def scrape(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def test_metrics_are_scraped_over_http(hub: Cluster, operator: OperatorFactory) -> None:
    port = free_port()
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, metrics_port=port, metrics_address="127.0.0.1"))
    hub.apply_credential("hub", SPEC)
    eventually(lambda: _equal(hub.condition("hub")["status"], "True"))

    def series() -> None:
        text = scrape(port)
        assert 'regcred_credential_ready{credential="hub"} 1.0' in text
        assert 'regcred_namespaces{credential="hub",state="synced"} 2.0' in text
        assert 'regcred_namespaces{credential="hub",state="conflicts"} 0.0' in text
        assert 'regcred_refresh_total{credential="hub",result="success"}' in text
        assert 'regcred_secrets_written_total{credential="hub",verb="create"}' in text
    eventually(series)
    assert "dckr_pat_1" not in scrape(port)

    hub.core.delete_namespaced_secret("hub", "regcred-system")  # the next refresh fails
    hub.namespace("more", {"team": "shop"})
    eventually(lambda: _in('regcred_credential_ready{credential="hub"} 0.0', scrape(port)))
    assert 'regcred_refresh_total{credential="hub",result="failure"}' in scrape(port)


# -- peering --------------------------------------------------------------------------------------

class OperatorProcess:
    """`regcred run` as its own process, the way a replica in the cluster runs it."""

    def __init__(self, kubeconfig: str, priority: int, log: Path, **settings: str) -> None:
        env = {**os.environ, "KUBECONFIG": kubeconfig, "REGCRED_PEERING_NAME": "regcred-operator",
               "REGCRED_PEERING_PRIORITY": str(priority), "REGCRED_PEERING_LIFETIME_SECONDS": "4",
               "REGCRED_METRICS_PORT": "0", "REGCRED_DEBOUNCE_SECONDS": "0.05", "REGCRED_REMEDIATION": "false",
               **settings}
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "regcred.cli", "run", "--verbose"], env=env, cwd=ROOT,
            stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def peered(hub: Cluster) -> Cluster:
    for crd in yaml.safe_load_all((ROOT / "crds" / "kopf-peering.yaml").read_text()):
        hub.backend.install_crd(crd)
    hub.api_request("POST", "/apis/kopf.dev/v1/clusterkopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "regcred-operator"}})
    return hub


@pytest.fixture
def replicas(peered: Cluster, tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    started: list[OperatorProcess] = []
    yield started
    for replica in started:
        replica.stop()


def test_a_standby_replica_takes_over_when_the_active_one_dies(
    peered: Cluster, replicas: list[OperatorProcess], tmp_path: Path
) -> None:
    kubeconfig = peered.backend.kubeconfig_path
    active = OperatorProcess(kubeconfig, 200, tmp_path / "active.log")
    replicas.append(active)
    eventually(lambda: _equal(len(_peers(peered)), 1), timeout=30)
    standby = OperatorProcess(kubeconfig, 100, tmp_path / "standby.log")
    replicas.append(standby)
    eventually(lambda: _equal(len(_peers(peered)), 2), timeout=30)

    peered.apply_credential("hub", SPEC)
    eventually(lambda: _equal(set(peered.secrets(SELECTOR)), {"web", "api"}), timeout=30)
    assert "Resuming operations" not in standby.text()  # it starts paused (mandatory peering) and stays so

    active.kill()  # no goodbye: its peering entry must expire (4 s) before the standby acts
    peered.core.delete_namespaced_secret("hub-pull", "web")
    peered.namespace("new-team", {"team": "shop"})
    eventually(lambda: _equal(set(peered.secrets(SELECTOR)), {"web", "api", "new-team"}), timeout=45)
    assert "Resuming operations after the pause" in standby.text()
    assert "dckr_pat_1" not in standby.text() + active.text()


def _peers(cluster: Cluster) -> dict[str, Any]:
    body = cluster.api_request("GET", "/apis/kopf.dev/v1/clusterkopfpeerings/regcred-operator")
    status: dict[str, Any] = body.get("status") or {}
    return status


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _in(item: str, text: str) -> None:
    assert item in text

