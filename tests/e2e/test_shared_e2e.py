"""Two RegistryCredentials that name the same pull Secret, end to end: one Secret where both select, each
with its own registries; one changing costs one patch per namespace; a host given by both is a conflict on
both; one deleted takes out only its own entries."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest

from tests.e2e.harness import OPERATOR_USER_AGENTS, Cluster, OperatorFactory, eventually

pytestmark = pytest.mark.e2e

MANAGED = "app.kubernetes.io/managed-by=regcred-operator"
HARBOR, QUAY = "harbor.example.com", "quay.example.com"


def static_spec(source: str, registry: str, namespaces: list[str]) -> dict[str, Any]:
    return {"provider": {"static": {"registry": registry, "secretRef": {"namespace": "regcred-system",
                                                                       "name": source}}},
            "secretName": "registries", "namespaces": {"names": namespaces}, "serviceAccounts": ["default"]}


@pytest.fixture
def teams(cluster: Cluster) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "harbor", {"username": "robot$ci", "password": "harbor-1"})
    cluster.source_secret("regcred-system", "quay", {"username": "org+puller", "password": "quay-1"})
    cluster.source_secret("regcred-system", "other-harbor", {"username": "someone", "password": "other-1"})
    for namespace in ("web", "shop", "data"):
        cluster.namespace(namespace)
    return cluster


def hosts(cluster: Cluster, namespace: str) -> dict[str, str]:
    """{registry: password} of the shared Secret in a namespace ({} when there is none)."""
    try:
        auths = cluster.dockerconfig(namespace, "registries")["auths"]
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return {}
        raise
    return {host: entry["password"] for host, entry in auths.items()}


def ready(cluster: Cluster, name: str) -> tuple[str, str]:
    condition = cluster.condition(name)
    return condition["status"], condition["reason"]


def _assert_equal(actual: Any, expected: Any) -> None:
    assert actual == expected, f"{actual!r} != {expected!r}"


def test_two_credentials_share_one_secret_then_one_is_deleted(teams: Cluster, operator: OperatorFactory) -> None:
    operator.start()
    teams.apply_credential("harbor", static_spec("harbor", HARBOR, ["web", "shop"]))
    teams.apply_credential("quay", static_spec("quay", QUAY, ["shop", "data"]))

    eventually(lambda: _assert_equal({ns: hosts(teams, ns) for ns in ("web", "shop", "data")}, {
        "web": {HARBOR: "harbor-1"}, "shop": {HARBOR: "harbor-1", QUAY: "quay-1"}, "data": {QUAY: "quay-1"}}))
    for name, other in (("harbor", "quay"), ("quay", "harbor")):
        eventually(lambda name=name: _assert_equal(ready(teams, name), ("True", "Ready")))  # type: ignore[misc]
        eventually(lambda name=name, other=other: _assert_equal(  # type: ignore[misc]
            teams.credential(name)["status"].get("sharedWith"), [other]))
    for namespace in ("web", "shop", "data"):
        eventually(lambda ns=namespace: _assert_equal(teams.pull_secrets(ns), ["registries"]))  # type: ignore[misc]

    # One of them changes: one patch in each namespace it is in (besides its record in the operator's namespace),
    # the other's entries untouched.
    time.sleep(0.5)  # the events of the first writes pass
    teams.backend.reset_requests()
    teams.core.patch_namespaced_secret("quay", "regcred-system", {"stringData": {"password": "quay-2"}})
    eventually(lambda: _assert_equal(hosts(teams, "data"), {QUAY: "quay-2"}))
    eventually(lambda: _assert_equal(hosts(teams, "shop"), {HARBOR: "harbor-1", QUAY: "quay-2"}))
    time.sleep(0.5)  # a pass of harbor woken meanwhile would have written by now
    writes = [(r.verb, r.namespace, r.name) for r in teams.backend.requests
              if r.user_agent in OPERATOR_USER_AGENTS and r.resource == "secrets"
              and r.verb in ("create", "update", "patch", "delete") and r.namespace != "regcred-system"]
    assert sorted(writes) == [("patch", "data", "registries"), ("patch", "shop", "registries")]

    # Deleted: its entries leave; the Secret stays where the other still gives entries, and stays attached.
    teams.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", "harbor")
    eventually(lambda: _assert_equal({ns: hosts(teams, ns) for ns in ("web", "shop", "data")}, {
        "web": {}, "shop": {QUAY: "quay-2"}, "data": {QUAY: "quay-2"}}))
    eventually(lambda: _assert_equal(teams.pull_secrets("web"), []))
    assert teams.pull_secrets("shop") == ["registries"]
    labels = teams.core.read_namespaced_secret("registries", "shop").metadata.labels
    assert labels["regcred.dev/credential"] == "quay"
    eventually(lambda: _assert_equal(ready(teams, "quay"), ("True", "Ready")))
    eventually(lambda: _assert_equal(teams.credential("quay")["status"].get("sharedWith"), None))


def test_a_shared_secret_edited_by_someone_is_restored_with_every_entry(
        teams: Cluster, operator: OperatorFactory) -> None:
    operator.start()
    teams.apply_credential("harbor", static_spec("harbor", HARBOR, ["shop"]))
    teams.apply_credential("quay", static_spec("quay", QUAY, ["shop"]))
    eventually(lambda: _assert_equal(hosts(teams, "shop"), {HARBOR: "harbor-1", QUAY: "quay-1"}))

    teams.core.patch_namespaced_secret("registries", "shop", {"stringData": {
        ".dockerconfigjson": '{"auths":{"evil.example.com":{"username":"x","password":"y"}}}'}})
    eventually(lambda: _assert_equal(hosts(teams, "shop"), {HARBOR: "harbor-1", QUAY: "quay-1"}))
    teams.core.delete_namespaced_secret("registries", "shop")
    eventually(lambda: _assert_equal(hosts(teams, "shop"), {HARBOR: "harbor-1", QUAY: "quay-1"}))


def test_two_credentials_giving_the_same_registry_is_a_conflict_on_both(
        teams: Cluster, operator: OperatorFactory) -> None:
    operator.start()
    teams.apply_credential("harbor", static_spec("harbor", HARBOR, ["shop"]))
    teams.apply_credential("other-harbor", static_spec("other-harbor", HARBOR, ["shop", "data"]))

    for name, other in (("harbor", "other-harbor"), ("other-harbor", "harbor")):
        eventually(lambda name=name: _assert_equal(ready(teams, name), ("False", "HostConflict")))  # type: ignore[misc]
        assert f"{HARBOR} is also given by {other}" in teams.condition(name)["message"]
    assert hosts(teams, "shop") == {HARBOR: "harbor-1"}  # the first by name
    assert hosts(teams, "data") == {HARBOR: "other-1"}  # only other-harbor is there
    assert teams.posted("HostConflict")
    assert set(teams.secrets(MANAGED)) >= {"shop", "data"}
