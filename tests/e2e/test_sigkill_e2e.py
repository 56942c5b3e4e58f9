"""`regcred run` killed with SIGKILL again and again, in the middle of a fan-out and of remediation.

The operator is its own process (`regcred run`, standalone) against the emulated API; the credential is a
GitHub App's installation token from a local stand-in for GitHub, so every mint is counted, and a token
lives an hour on the real clock. A restarted process finds the token it recorded in its namespace
(regcred-system) and the remediations recorded on the workloads: one mint in all, at most one restart per
workload for the credential's revision.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from regcred.kube import USER_AGENT
from regcred.workloads import RESTARTED_AT_ANNOTATION
from regcred_sandbox import EmulatedCluster
from tests.e2e import test_remediation_e2e as remediation
from tests.e2e.harness import Cluster, eventually
from tests.e2e.test_operations_e2e import OperatorProcess
from tests.providers.github_server import FakeGitHub, serve

pytestmark = [pytest.mark.e2e, pytest.mark.emulated_only]  # the request log counts the writes
CREDENTIAL, SECRET, LABELS = "ghcr", "ghcr-pull", {"pulls-from": "ghcr"}
SELECTOR = f"regcred.dev/credential={CREDENTIAL}"
IMAGE = "ghcr.io/acme/web:1"
UNAUTHORIZED = (f'rpc error: code = Unknown desc = failed to pull and unpack image "{IMAGE}": failed to resolve '
                f'reference "{IMAGE}": failed to authorize: failed to fetch oauth token: unexpected status from GET '
                "request to https://ghcr.io/token?scope=repository%3Aacme%2Fweb%3Apull: 401 Unauthorized")


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with serve(FakeGitHub()) as server:
        yield server


@pytest.fixture
def ghcr(cluster: Cluster, github: FakeGitHub) -> Cluster:
    """regcred-system with a GitHub App's private key; the App and its installation known to the stand-in."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    github.app_keys["12345"] = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    github.installations.add("67890")
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "gh-app", {"private-key.pem": key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()})
    return cluster


@pytest.fixture
def processes(ghcr: Cluster, github: FakeGitHub, tmp_path: Path) -> Iterator[Callable[[], OperatorProcess]]:
    """Starts `regcred run` (standalone, remediation on); every process is stopped at the end."""
    started: list[OperatorProcess] = []

    def start() -> OperatorProcess:
        process = OperatorProcess(
            emulated(ghcr).kubeconfig_path, 0, tmp_path / f"operator-{len(started)}.log",
            REGCRED_PEERING_NAME="", REGCRED_REMEDIATION="true", REGCRED_STATE_NAMESPACE="regcred-system",
            REGCRED_GITHUB_API_URL=github.api_url, REGCRED_RETRY_INITIAL_SECONDS="1", REGCRED_RETRY_MAX_SECONDS="2")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def emulated(cluster: Cluster) -> EmulatedCluster:
    assert isinstance(cluster.backend, EmulatedCluster)
    return cluster.backend


def apply(cluster: Cluster) -> None:
    cluster.apply_credential(CREDENTIAL, {
        "provider": {"ghcr": {"app": {"appId": 12345, "installationId": 67890,
                                      "privateKeySecretRef": {"namespace": "regcred-system", "name": "gh-app"}}}},
        "secretName": SECRET,
        "namespaces": {"selector": {"matchLabels": LABELS}},
        "serviceAccounts": ["default"],
        "remediation": {"strategy": "RolloutRestart", "cooldown": "10m"},
    })


def operator_writes(cluster: Cluster, method: str, resource: str) -> list[Any]:
    return [r for r in emulated(cluster).requests if r.user_agent == USER_AGENT and r.method == method
            and r.resource == resource and 200 <= r.status < 300]


def kill_after(cluster: Cluster, process: OperatorProcess, method: str, resource: str, count: int) -> int:
    """SIGKILL the process as soon as the request log shows ``count`` of its writes; how many there were then."""
    deadline = time.monotonic() + 60
    while len(operator_writes(cluster, method, resource)) < count:
        assert process.process.poll() is None, process.text()[-3000:]
        assert time.monotonic() < deadline, f"no {count} {method} {resource} in a minute:\n{process.text()[-3000:]}"
        time.sleep(0.005)
    process.kill()
    return len(operator_writes(cluster, method, resource))


def exact_fan_out(cluster: Cluster, namespaces: set[str]) -> None:
    assert set(cluster.secrets(SELECTOR)) == namespaces
    attached = {(a.metadata.namespace, a.metadata.name): [r.name for r in a.image_pull_secrets]
                for a in cluster.core.list_service_account_for_all_namespaces().items if a.image_pull_secrets}
    assert attached == {(ns, "default"): [SECRET] for ns in namespaces}
    assert cluster.condition(CREDENTIAL)["status"] == "True"


def mints(github: FakeGitHub) -> int:
    return sum(1 for r in github.requests if r.method == "POST" and r.path.endswith("/access_tokens"))


def test_killed_during_a_fan_out_it_converges_with_one_mint(
    ghcr: Cluster, github: FakeGitHub, processes: Callable[[], OperatorProcess]
) -> None:
    namespaces = {f"team-{i:03d}" for i in range(200)}
    for name in sorted(namespaces):
        ghcr.namespace(name, LABELS)
    emulated(ghcr).latency = 0.01  # a fan-out of seconds, not of a blink: room to kill in the middle of it
    apply(ghcr)
    seen = [kill_after(ghcr, processes(), "POST", "secrets", count) for count in (20, 70, 120, 160)]
    processes()
    eventually(lambda: exact_fan_out(ghcr, namespaces), timeout=60, interval=0.5)

    assert all(count < 200 for count in seen), f"every kill came in the middle of the fan-out: {seen}"
    assert mints(github) == 1 and len(github.issued) == 1
    secrets = ghcr.secrets(SELECTOR)
    assert {s.data[".dockerconfigjson"] for s in secrets.values()} == {
        secrets["team-000"].data[".dockerconfigjson"]}  # one token everywhere
    # Each namespace's Secret created once, each ServiceAccount updated once: a kill never doubled a write.
    creates = collections.Counter(r.namespace for r in operator_writes(ghcr, "POST", "secrets")
                                  if r.namespace != "regcred-system")
    assert creates == dict.fromkeys(namespaces, 1)
    assert collections.Counter(r.namespace for r in operator_writes(ghcr, "PATCH", "serviceaccounts")) == \
        dict.fromkeys(namespaces, 1)


def test_killed_during_remediation_each_workload_is_restarted_once(
    ghcr: Cluster, github: FakeGitHub, processes: Callable[[], OperatorProcess]
) -> None:
    """Five Deployments with a pod stuck (401) from before the credential existed: each gets one rollout
    restart for the revision, however often the operator dies in between."""
    ghcr.namespace(remediation.NS, LABELS)
    names = [f"web-{i}" for i in range(5)]
    for name in names:
        deployment = remediation.workload(ghcr, "Deployment", name, IMAGE)
        remediation.stuck_pod(ghcr, deployment, IMAGE, UNAUTHORIZED)
    emulated(ghcr).latency = 0.02
    apply(ghcr)
    seen = [kill_after(ghcr, processes(), "PATCH", "deployments", count) for count in (1, 3)]
    processes()

    def all_restarted() -> None:
        assert all(remediation.restarted(ghcr, "Deployment", name) for name in names)
    eventually(all_restarted, timeout=60, interval=0.5)
    time.sleep(3)  # a second restart of any of them would show now
    restarts = collections.Counter(r.name for r in operator_writes(ghcr, "PATCH", "deployments"))
    assert restarts == dict.fromkeys(names, 1), f"kills after {seen} restarts"
    assert all(RESTARTED_AT_ANNOTATION in remediation.read(ghcr, "Deployment", n)["spec"]["template"]["metadata"]
               ["annotations"] for n in names)
    assert mints(github) == 1
