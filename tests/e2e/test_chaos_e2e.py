"""A tenth of the operator's requests failing: the exact desired state, and not one write more than needed.

The emulator fails a seeded random 10 % of the operator's own requests (its User-Agent: kopf's watches are
left alone) with 429 (Retry-After: 1), 500, 409 on writes, or a connection closed without an answer. A
failed request is not applied. The resync period is five minutes, so convergence within the `eventually`
timeout comes from the operator's own retries.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

from regcred.kube import USER_AGENT
from regcred_sandbox import EmulatedCluster
from tests.e2e.harness import Cluster, OperatorFactory, eventually
from tests.e2e.test_core_loop import CREDENTIAL, static_spec

pytestmark = [pytest.mark.e2e, pytest.mark.emulated_only]  # chaos is the emulator's

SELECTOR = f"regcred.dev/credential={CREDENTIAL}"
TEAM = {"team": "chaos"}
STATE_NAMESPACE = "regcred-system"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def chaos_spec() -> dict[str, Any]:
    return static_spec(namespaces={"selector": {"matchLabels": TEAM}}, serviceAccounts=["default"])


def emulated(cluster: Cluster) -> EmulatedCluster:
    assert isinstance(cluster.backend, EmulatedCluster)
    return cluster.backend


def successful_writes(cluster: Cluster) -> collections.Counter[tuple[str, str]]:
    """(method, resource) of the operator's writes the server applied, on Secrets and ServiceAccounts outside
    its own namespace (where it records its token)."""
    return collections.Counter(
        (r.method, r.resource) for r in emulated(cluster).requests
        if r.user_agent == USER_AGENT and r.method in WRITES and 200 <= r.status < 300
        and r.resource in ("secrets", "serviceaccounts") and r.namespace != STATE_NAMESPACE)


def failed_requests(cluster: Cluster) -> int:
    return sum(1 for r in emulated(cluster).requests if r.user_agent == USER_AGENT and r.status in (0, 409, 429, 500))


def exact_state(cluster: Cluster, selected: set[str]) -> None:
    """The Secret in exactly the selected namespaces, all alike; `default` of each of them lists it exactly once,
    no other ServiceAccount lists it; Ready."""
    secrets = cluster.secrets(SELECTOR)
    assert set(secrets) == selected
    assert len({tuple(sorted(s.data.items())) for s in secrets.values()}) == 1
    attached = {}
    for account in cluster.core.list_service_account_for_all_namespaces().items:
        refs = [ref.name for ref in account.image_pull_secrets or []]
        if refs:
            attached[(account.metadata.namespace, account.metadata.name)] = refs
    assert attached == {(ns, "default"): ["hub-pull"] for ns in selected}
    assert cluster.condition(CREDENTIAL)["status"] == "True"


def test_a_tenth_of_the_requests_failing_costs_no_extra_write(cluster: Cluster, operator: OperatorFactory) -> None:
    cluster.namespace(STATE_NAMESPACE)
    cluster.source_secret(STATE_NAMESPACE, "hub", {"username": "acme-ci", "password": "dckr_pat_1"})
    selected = {f"team-{i:03d}" for i in range(200)}
    for name in sorted(selected):
        cluster.namespace(name, TEAM)
    for i in range(3):
        cluster.namespace(f"other-{i}", {"team": "other"})
    chaos = emulated(cluster).chaos(0.1, seed=11, user_agent=USER_AGENT)

    # The first sync: 200 Secrets created, 200 ServiceAccounts updated, each exactly once.
    operator.start()
    cluster.apply_credential(CREDENTIAL, chaos_spec())
    eventually(lambda: exact_state(cluster, selected), timeout=60, interval=0.5)
    time.sleep(2)  # a write still in flight, or a retry that found nothing left to do, would show now
    assert successful_writes(cluster) == {("POST", "secrets"): 200, ("PATCH", "serviceaccounts"): 200}
    assert chaos.failed >= 40 and failed_requests(cluster) >= 40, "the faults did happen"
    assert {0, 409, 429, 500} <= {r.status for r in emulated(cluster).requests if r.user_agent == USER_AGENT}

    # Churn, still under chaos: 10 new namespaces, 5 relabelled out, 5 Secrets deleted, 5 entries dropped.
    emulated(cluster).reset_requests()
    ordered = sorted(selected)
    added = {f"late-{i}" for i in range(10)}
    relabelled, deleted, edited = set(ordered[:5]), ordered[5:10], ordered[10:15]
    for name in sorted(added):
        cluster.namespace(name, TEAM)
    for name in relabelled:
        cluster.relabel(name, {"team": "gone"})
    for name in deleted:
        cluster.core.delete_namespaced_secret("hub-pull", name)
    for name in edited:
        account = cluster.core.read_namespaced_service_account("default", name)
        account.image_pull_secrets = []
        cluster.core.replace_namespaced_service_account("default", name, account)
    selected = (selected | added) - relabelled
    eventually(lambda: exact_state(cluster, selected), timeout=60, interval=0.5)
    time.sleep(2)
    assert successful_writes(cluster) == {
        ("POST", "secrets"): len(added) + len(deleted),
        ("DELETE", "secrets"): len(relabelled),
        ("PATCH", "serviceaccounts"): len(added) + len(relabelled) + len(edited),
    }
    assert failed_requests(cluster) > 0
