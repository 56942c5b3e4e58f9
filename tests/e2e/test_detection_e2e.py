"""Detection that loses no pod: stuck pods from before start-up, API errors in a sweep, and the rate limit.

The tests play the kubelet (pod status) and, on the emulated API, the controllers. The pods carry no pull
secret of their own and their ServiceAccount carries the credential's Secret when the operator acts: a
restart gives the new pods that Secret (ServiceAccount admission copies it), so a restart is the right
remedy whatever else the diagnosis weighs. The registry itself is never contacted (a 401 needs no probe).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.kube import KubeApi
from regcred.workloads import RESTARTED_AT_ANNOTATION
from regcred_sandbox import EmulatedCluster
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually
from tests.e2e.test_operations_e2e import ROOT, OperatorProcess

pytestmark = [pytest.mark.e2e]
NS = "shop"
HOST = "registry.example.com"
IMAGE = f"{HOST}/team/app:v1"
START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)


@pytest.fixture
def shop(cluster: Cluster) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": "robot", "password": "s3cret"})
    cluster.namespace(NS, {"pulls-from": "private"})
    return cluster


def credential(**spec: Any) -> dict[str, Any]:
    return {"provider": {"static": {"registry": HOST, "secretRef": {"namespace": "regcred-system", "name": "robot"}}},
            "secretName": "private-pull", "namespaces": {"selector": {"matchLabels": {"pulls-from": "private"}}},
            "remediation": {"strategy": "RolloutRestart"}, **spec}


def unauthorized(image: str = IMAGE) -> str:
    return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to resolve '
            f'reference "{image}": failed to authorize: failed to fetch oauth token: unexpected status: '
            "401 Unauthorized")


def stuck_deployments(shop: Cluster, names: list[str], *, stuck: bool = True) -> dict[str, dict[str, Any]]:
    """Deployments whose one pod each failed to pull with a 401 (`stuck=False`: not yet); {name: its pod}."""
    deployments = {name: shop.api_request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": IMAGE}]}}}}) for name in names}
    pods = {}
    for name, deployment in deployments.items():
        pod = eventually(lambda name=name: _pod_of(shop, name), timeout=30) if shop.real else _play_controllers(
            shop, deployment)
        if stuck:
            report_stuck(shop, pod)
        pods[name] = pod
    return pods


def report_stuck(shop: Cluster, pod: dict[str, Any]) -> None:
    """The pod's status as the kubelet writes it after a pull refused with a 401."""
    shop.api_request("PATCH", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/status", {"status": {
        "phase": "Pending",
        "containerStatuses": [{"name": "app", "image": IMAGE, "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"waiting": {"reason": "ErrImagePull", "message": unauthorized()}}}]}})


def _pod_of(shop: Cluster, app: str) -> dict[str, Any]:
    items = shop.api_request("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}")["items"]
    assert items, f"no pod of {app} yet"
    assert not (items[0]["spec"].get("imagePullSecrets")), "the test needs pods without pull secrets"
    pod: dict[str, Any] = items[0]
    return pod


def _play_controllers(shop: Cluster, deployment: dict[str, Any]) -> dict[str, Any]:
    """What the Deployment and ReplicaSet controllers make: a ReplicaSet and its pod (no pull secrets)."""
    name = deployment["metadata"]["name"]
    replicaset = shop.api_request("POST", f"/apis/apps/v1/namespaces/{NS}/replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{name}-rs", "namespace": NS, "ownerReferences": [_owner(deployment)]},
        "spec": {"selector": deployment["spec"]["selector"], "template": deployment["spec"]["template"]}})
    pod: dict[str, Any] = shop.api_request("POST", f"/api/v1/namespaces/{NS}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-pod", "namespace": NS, "labels": {"app": name},
                     "ownerReferences": [_owner(replicaset)]},
        "spec": {"containers": [{"name": "app", "image": IMAGE}]}})
    return pod


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True}


def restarted(shop: Cluster, name: str) -> str | None:
    template = shop.api_request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")["spec"]["template"]
    value: str | None = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT_ANNOTATION)
    return value


def restarted_ones(shop: Cluster, names: list[str]) -> list[str]:
    return [name for name in names if restarted(shop, name)]


def pending(shop: Cluster) -> int | None:
    value: int | None = shop.credential("private").get("status", {}).get("remediationsPending")
    return value


def ready(shop: Cluster) -> None:
    assert shop.condition("private")["status"] == "True"


def test_pods_stuck_before_the_operator_starts_are_remediated_after_start_up(
    shop: Cluster, operator: OperatorFactory
) -> None:
    """The operator restarts while pods are stuck: its first reconciliation writes nothing (the Secret is already
    in place), and the pods' watch events come before the credential is served. The sweep at start-up finds them."""
    shop.apply_credential("private", credential(serviceAccounts=[]))
    operator.start()
    eventually(lambda: ready(shop))
    operator.stop()

    # While no operator runs: pods get stuck, the credential now asks for the default ServiceAccount, and its
    # source Secret is briefly gone (so the operator's first look at the pods comes before it serves anything).
    pods = stuck_deployments(shop, ["web", "api"])
    shop.apply_credential("private", credential(serviceAccounts=["default"]))
    # A count of waiting remediations left by the previous process, whose queue died with it.
    shop.api_request("PATCH", "/apis/regcred.dev/v1alpha1/registrycredentials/private/status",
                     {"status": {"remediationsPending": 7}})
    shop.core.delete_namespaced_secret("robot", "regcred-system")
    runtime = operator.start()
    eventually(lambda: _equal(shop.condition("private", "TokenReady")["status"], "False"))
    time.sleep(1)  # the pods' events from kopf's first listing have been handled, with nothing serving them
    assert restarted_ones(shop, ["web", "api"]) == []
    shop.source_secret("regcred-system", "robot", {"username": "robot", "password": "s3cret"})

    eventually(lambda: _equal(restarted_ones(shop, ["web", "api"]), ["web", "api"]), timeout=20)
    assert sorted(runtime.remediator.actions) == ["RolloutRestart Deployment shop/api",
                                                  "RolloutRestart Deployment shop/web"]
    assert shop.pull_secrets(NS) == ["private-pull"]
    eventually(lambda: _equal(pending(shop), 0))
    assert all(not p["spec"].get("imagePullSecrets") for p in pods.values())


FAULTS = {
    "an owner read": dict(method="GET", resource="replicasets", name="web-1-rs"),
    "a workload patch": dict(method="PATCH", resource="deployments", name="web-1"),
    "the LIST of pods": dict(method="list", resource="pods"),
}


@pytest.mark.emulated_only  # injected API faults exist only on the emulator
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_an_api_error_in_a_sweep_loses_no_pod(shop: Cluster, operator: OperatorFactory, backend: EmulatedCluster,
                                              fault: str) -> None:
    names = ["web-0", "web-1", "web-2"]
    stuck_deployments(shop, names)
    runtime = operator.start()
    time.sleep(0.5)  # the pods' first events: nothing serves them yet, the sweep will have to find them
    injected = backend.inject_fault(**FAULTS[fault], status=500, namespace=None if fault.startswith("the") else NS,
                                    times=2)
    shop.apply_credential("private", credential())

    eventually(lambda: _equal(restarted_ones(shop, names), names), timeout=20)
    assert injected.hits == 2  # the fault was met, twice in a row, and the pod behind it was still tried again
    assert sorted(runtime.remediator.actions) == [f"RolloutRestart Deployment shop/{n}" for n in names]
    if fault != "the LIST of pods":  # the others were not held up by the one that failed
        assert runtime.remediator.actions[-1] == "RolloutRestart Deployment shop/web-1"


def test_the_rate_limit_defers_and_never_drops(shop: Cluster, operator: OperatorFactory) -> None:
    names = [f"web-{i:02d}" for i in range(25)]
    stuck_deployments(shop, names)
    clock = ManualClock(START)
    settings: Settings = dataclasses.replace(TEST_SETTINGS, remediations_per_minute=10)
    runtime = operator.start(clock=clock, settings=settings)
    shop.apply_credential("private", credential())

    eventually(lambda: _equal(len(restarted_ones(shop, names)), 10), timeout=30)
    eventually(lambda: _equal(pending(shop), 15))
    time.sleep(1)  # the operator's clock stands still: nothing more may happen
    first = restarted_ones(shop, names)
    assert len(first) == 10
    # The 15 held back, in the order they were held back (the sweep's and the pod events' order of arrival).
    waiting = [key[3] for key in runtime.remediator.backlog.waiting()]
    assert sorted(first + waiting) == names

    clock.advance(datetime.timedelta(seconds=61))
    eventually(lambda: _equal(sorted(restarted_ones(shop, names)), sorted(first + waiting[:10])), timeout=30)
    eventually(lambda: _equal(pending(shop), 5))
    time.sleep(0.5)
    assert len(restarted_ones(shop, names)) == 20
    clock.advance(datetime.timedelta(seconds=61))
    eventually(lambda: _equal(restarted_ones(shop, names), names), timeout=30)
    eventually(lambda: _equal(pending(shop), 0))
    # Oldest first, none twice, none dropped.
    assert runtime.remediator.actions[10:] == [f"RolloutRestart Deployment shop/{n}" for n in waiting]
    assert sorted(runtime.remediator.actions) == [f"RolloutRestart Deployment shop/{n}" for n in names]
    assert len(runtime.remediator.backlog) == 0
    kube = KubeApi(shop.client)
    assert len(kube.list_all(f"/api/v1/namespaces/{NS}/events", fieldSelector="reason=Remediated")) == 25


def test_a_full_backlog_says_so_and_finds_the_rest_once_it_has_room(
    shop: Cluster, operator: OperatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"web-{i:02d}" for i in range(15)]
    stuck_deployments(shop, names)
    clock = ManualClock(START)
    settings = dataclasses.replace(TEST_SETTINGS, remediations_per_minute=10, remediation_backlog_size=3)
    operator.start(clock=clock, settings=settings)
    shop.apply_credential("private", credential())

    eventually(lambda: _equal(len(restarted_ones(shop, names)), 10), timeout=30)
    eventually(lambda: _equal(pending(shop), 3))
    # The queue can fill (pending = 3) a moment before the last workloads find it full and say so.
    eventually(lambda: _in("The remediation backlog is full (3 workloads wait", caplog.text))
    time.sleep(0.5)
    assert len(restarted_ones(shop, names)) == 10
    clock.advance(datetime.timedelta(seconds=61))  # the 3 queued, then a sweep finds the 2 that found it full
    eventually(lambda: _equal(restarted_ones(shop, names), names), timeout=30)
    eventually(lambda: _equal(pending(shop), 0))


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _in(part: str, text: str) -> None:
    assert part in text


FAST_RETRIES = {"REGCRED_RETRY_INITIAL_SECONDS": "1", "REGCRED_RETRY_MAX_SECONDS": "2"}


def test_a_replica_that_takes_over_sweeps_the_pods_stuck_meanwhile(shop: Cluster, tmp_path: Path) -> None:
    """The active replica dies; pods get stuck while no replica acts; the standby takes over. Its first look at
    the pods (kopf's listing on resuming) comes before it serves the credential (the source Secret is briefly
    gone), and its first reconciliation writes nothing: the sweep when it starts serving finds them."""
    for crd in yaml.safe_load_all((ROOT / "crds" / "kopf-peering.yaml").read_text()):
        shop.backend.install_crd(crd)
    shop.api_request("POST", "/apis/kopf.dev/v1/clusterkopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "regcred-operator"}})
    pods = stuck_deployments(shop, ["web"], stuck=False)  # before the ServiceAccount carries the Secret
    kubeconfig = shop.backend.kubeconfig_path
    replicas = []
    try:
        active = OperatorProcess(kubeconfig, 200, tmp_path / "active.log", REGCRED_REMEDIATION="true", **FAST_RETRIES)
        replicas.append(active)
        eventually(lambda: _equal(len(_peers(shop)), 1), timeout=30)
        standby = OperatorProcess(kubeconfig, 100, tmp_path / "standby.log", REGCRED_REMEDIATION="true", **FAST_RETRIES)
        replicas.append(standby)
        eventually(lambda: _equal(len(_peers(shop)), 2), timeout=30)
        shop.apply_credential("private", credential())
        eventually(lambda: _equal(shop.pull_secrets(NS), ["private-pull"]), timeout=30)
        assert "Resuming operations" not in standby.text()  # it starts paused (mandatory peering)

        active.kill()
        shop.core.delete_namespaced_secret("robot", "regcred-system")
        report_stuck(shop, pods["web"])
        eventually(lambda: _in("Resuming operations after the pause", standby.text()), timeout=45)
        eventually(lambda: _equal(shop.condition("private", "TokenReady")["status"], "False"), timeout=30)
        time.sleep(1)  # the standby's first look at the pods: nothing it serves yet
        assert restarted(shop, "web") is None
        shop.source_secret("regcred-system", "robot", {"username": "robot", "password": "s3cret"})
        eventually(lambda: _assert(restarted(shop, "web")), timeout=30)
    finally:
        for replica in replicas:
            replica.stop()


def _peers(cluster: Cluster) -> dict[str, Any]:
    body = cluster.api_request("GET", "/apis/kopf.dev/v1/clusterkopfpeerings/regcred-operator")
    status: dict[str, Any] = body.get("status") or {}
    return status


def _in(item: str, text: str) -> None:
    assert item in text


def _assert(value: object) -> None:
    assert value
