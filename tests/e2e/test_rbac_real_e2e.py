"""The chart's RBAC enforced by a real API server.

Every end-to-end test on the real backend already runs the operator as the chart's ServiceAccount bound
to the chart's rendered ClusterRole, and fails on any 403 (tests/e2e/harness.py, OperatorFactory). This
module adds namespaces mode (a ClusterRole for the cluster-scoped kinds, Roles in the watched namespaces,
peering per namespace) and shows that a rule missing from the chart is caught.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from regcred import GROUP, PLURAL, VERSION
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, chart_identity_objects, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.real_only]

PEERING_CRDS = Path(__file__).resolve().parents[2] / "crds" / "kopf-peering.yaml"
PEERING_NAME = "regcred-operator"
WATCHED = ("shop", "web")
SELECTOR = "regcred.dev/credential=private"


def spec() -> dict[str, Any]:
    return {
        "provider": {"static": {"registry": "registry.example.test",
                                "secretRef": {"namespace": "regcred-system", "name": "robot"}}},
        "secretName": "private-pull",
        "namespaces": {"selector": {"matchLabels": {"pulls-from": "private"}}},
        "serviceAccounts": ["*"],
    }


def test_namespaces_mode_needs_nothing_beyond_the_charts_roles(cluster: Cluster, operator: OperatorFactory) -> None:
    for crd in yaml.safe_load_all(PEERING_CRDS.read_text()):
        if crd:
            cluster.backend.install_crd(crd)
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": "robot", "password": "s3cret"})
    for namespace in WATCHED:
        cluster.namespace(namespace, {"pulls-from": "private"}, accounts=("default", "builder"))
        cluster.custom.create_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", {
            "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING_NAME}})
    cluster.namespace("outside", {"pulls-from": "private"})  # selected by the label, but not served

    rbac = chart_identity_objects({"watchNamespaces": list(WATCHED)})
    assert {m["kind"] for m in rbac} >= {"ClusterRole", "Role", "RoleBinding"}
    # A short peering lifetime: a replica waits one on a just-created peering object (regcred.peering).
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, peering_name=PEERING_NAME, watch_namespaces=WATCHED,
                                                peering_lifetime_seconds=2), rbac=rbac)
    cluster.apply_credential("private", spec())

    eventually(lambda: _equal(set(cluster.secrets(SELECTOR)), set(WATCHED)), timeout=20)
    eventually(lambda: _assert("private-pull" in cluster.pull_secrets("web", "builder")))
    eventually(lambda: _equal(cluster.condition("private")["status"], "True"))
    # Drift in a served namespace is repaired.
    cluster.core.delete_namespaced_secret("private-pull", "web")
    eventually(lambda: _assert("web" in cluster.secrets(SELECTOR)))
    # Deletion: the finalizer cleans up what it wrote, ServiceAccount entries included.
    cluster.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "private")
    eventually(lambda: _equal(cluster.secrets(SELECTOR), {}))
    eventually(lambda: _assert("private-pull" not in cluster.pull_secrets("web", "builder")))
    assert operator.forbidden() == []


def test_a_rule_missing_from_the_chart_is_caught(cluster: Cluster, operator: OperatorFactory) -> None:
    """The check every real end-to-end test relies on: a 403 in the audit log is reported."""
    rbac = chart_identity_objects()
    (role,) = [m for m in rbac if m["kind"] == "ClusterRole"]
    for rule in role["rules"]:
        if rule["resources"] == ["secrets"]:
            rule["verbs"] = [verb for verb in rule["verbs"] if verb != "create"]
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": "robot", "password": "s3cret"})
    cluster.namespace("shop", {"pulls-from": "private"})
    operator.start(rbac=rbac)
    cluster.apply_credential("private", spec())

    eventually(lambda: _assert(any(f.startswith("create core secrets shop/") for f in operator.forbidden())))
    eventually(lambda: _equal(cluster.credential("private")["status"]["namespaces"]["failed"], 1))
    operator.expect_forbidden = True  # this test is about the 403


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert(value: object) -> None:
    assert value
