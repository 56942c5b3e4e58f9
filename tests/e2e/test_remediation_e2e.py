"""Diagnosis and remediation end to end: the tests play the kubelet (pod status and Events), kopf runs.

The credential is a static one for a real registry (Debian's docker-registry with htpasswd auth), so the
ambiguous case is settled by a real probe.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import pytest

from regcred.kube import KubeApi
from regcred.workloads import REMEDIATED_ANNOTATION, RESTARTED_AT_ANNOTATION
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually
from tests.registry.harness import (
    PASSWORD,
    REPO,
    TAG,
    USERNAME,
    Registry,
    needs_registry,
)

pytestmark = [pytest.mark.e2e, needs_registry]
NS = "shop"


@pytest.fixture
def shop(cluster: Cluster, registry: Registry) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": USERNAME, "password": PASSWORD})
    cluster.namespace(NS, {"pulls-from": "private"})
    return cluster


def credential_spec(registry: Registry, **remediation: Any) -> dict[str, Any]:
    return {
        "provider": {"static": {"registry": registry.host,
                                "secretRef": {"namespace": "regcred-system", "name": "robot"}}},
        "secretName": "private-pull",
        "namespaces": {"selector": {"matchLabels": {"pulls-from": "private"}}},
        "remediation": {"strategy": "RolloutRestart", "cooldown": "10m", **remediation},
    }


def start(shop: Cluster, operator: OperatorFactory, registry: Registry, **remediation: Any) -> None:
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({registry.host})))
    shop.apply_credential("private", credential_spec(registry, **remediation))
    eventually(lambda: _equal(shop.condition("private")["status"], "True"))


def workload(shop: Cluster, kind: str, name: str, image: str, **spec: Any) -> dict[str, Any]:
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}[kind]
    body = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": NS, "annotations": {}},
            "spec": {"selector": {"matchLabels": {"app": name}}, **spec,
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}
    created: dict[str, Any] = shop.api_request("POST", f"/apis/apps/v1/namespaces/{NS}/{plural}", body)
    return created


def stuck_pod(shop: Cluster, owner: dict[str, Any], image: str, message: str, *, via_replicaset: bool = True,
              name: str | None = None) -> dict[str, Any]:
    """A pod of ``owner`` (``{}``: a bare pod), and its status as the kubelet writes it after a failed pull.

    On a real cluster the controllers make the pods (a Deployment's through its ReplicaSet): the next
    pod of the workload that the kubelet has not reported on yet is taken. On the emulated API the
    test plays the controllers.
    """
    if shop.real and owner:
        pod = _next_pod(shop, owner)
        name = pod["metadata"]["name"]
        created = pod
    else:
        created = _pod_as_a_controller_makes_it(shop, owner, name, via_replicaset=via_replicaset)
        name = created["metadata"]["name"]
    shop.api_request("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}/status", {"status": {
        "phase": "Pending",
        "containerStatuses": [{"name": "app", "image": image, "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}],
    }})
    return created


def _next_pod(shop: Cluster, owner: dict[str, Any]) -> dict[str, Any]:
    """The workload's next pod the kubelet has not reported on; when there is none, one more replica."""
    app = owner["metadata"]["name"]
    try:
        return eventually(lambda: _unreported_pod(shop, app), timeout=5)
    except AssertionError:
        plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}[owner["kind"]]
        path = f"/apis/apps/v1/namespaces/{NS}/{plural}/{app}"
        replicas = shop.api_request("GET", path)["spec"].get("replicas", 1)
        shop.api_request("PATCH", path, {"spec": {"replicas": replicas + 1}})
        return eventually(lambda: _unreported_pod(shop, app), timeout=20)


def _unreported_pod(shop: Cluster, app: str) -> dict[str, Any]:
    """A pod of the workload labelled app=<app>, made by its controller, with no container status yet."""
    pods = shop.api_request("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}")["items"]
    fresh = [p for p in pods if not (p.get("status") or {}).get("containerStatuses")
             and not p["metadata"].get("deletionTimestamp")]
    assert fresh, f"no new pod of {app} yet"
    result: dict[str, Any] = fresh[0]
    return result


def _pod_as_a_controller_makes_it(shop: Cluster, owner: dict[str, Any], name: str | None, *,
                                  via_replicaset: bool) -> dict[str, Any]:
    name = name or f"{owner['metadata']['name']}-{uuid.uuid4().hex[:5]}"
    controller = owner
    if via_replicaset:
        replicaset = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                      "metadata": {"name": f"{owner['metadata']['name']}-5d9", "namespace": NS,
                                   "ownerReferences": [_owner(owner)]},
                      "spec": {"selector": owner["spec"]["selector"], "template": owner["spec"]["template"]}}
        try:
            controller = shop.api_request("POST", f"/apis/apps/v1/namespaces/{NS}/replicasets", replicaset)
        except Exception:
            controller = shop.api_request(
                "GET", f"/apis/apps/v1/namespaces/{NS}/replicasets/{owner['metadata']['name']}-5d9")
    labels = owner["spec"]["template"]["metadata"]["labels"] if owner else {}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS, "labels": labels,
                        "ownerReferences": [_owner(controller)] if owner else []},
           "spec": {"containers": [{"name": "app", "image": owner_image(owner) if owner else "busybox"}],
                    "imagePullSecrets": [{"name": "private-pull"}]}}
    created: dict[str, Any] = shop.api_request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
    return created


def owner_image(owner: dict[str, Any]) -> str:
    image: str = owner["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def pod_replaced(shop: Cluster, pod: dict[str, Any]) -> None:
    """The pod is gone, or a pod of that name is another one (a StatefulSet recreates db-0 at once)."""
    current = KubeApi(shop.client).get_or_none(f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}")
    assert current is None or current["metadata"]["uid"] != pod["metadata"]["uid"]


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True}


def unauthorized(registry: Registry, image: str) -> str:
    return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to resolve '
            f'reference "{image}": failed to authorize: failed to fetch anonymous token: unexpected status '
            f"from GET request to http://{registry.host}/token: 401 Unauthorized")


def read(shop: Cluster, kind: str, name: str) -> dict[str, Any]:
    plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}[kind]
    result: dict[str, Any] = shop.api_request("GET", f"/apis/apps/v1/namespaces/{NS}/{plural}/{name}")
    return result


def restarted(shop: Cluster, kind: str, name: str) -> str | None:
    template = read(shop, kind, name)["spec"]["template"]["metadata"]
    return (template.get("annotations") or {}).get(RESTARTED_AT_ANNOTATION)


def test_an_auth_failure_gets_exactly_one_rollout(shop: Cluster, operator: OperatorFactory, registry: Registry
                                                  ) -> None:
    start(shop, operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    stuck_pod(shop, web, image, unauthorized(registry, image))

    eventually(lambda: _assert(restarted(shop, "Deployment", "web")))
    assert REMEDIATED_ANNOTATION in read(shop, "Deployment", "web")["metadata"]["annotations"]
    eventually(lambda: _assert(shop.events("Remediated")))
    status = shop.credential("private")["status"]
    assert status["remediations"][0]["kind"] == "Deployment"
    assert status["remediations"][0]["action"] == "RolloutRestart"
    assert status["remediations"][0]["reason"] == "unauthorized"
    first = restarted(shop, "Deployment", "web")

    stuck_pod(shop, web, image, unauthorized(registry, image))  # another pod of the same revision
    time.sleep(1)
    assert restarted(shop, "Deployment", "web") == first  # once per credential revision
    assert len(shop.credential("private")["status"]["remediations"]) == 1


def test_a_missing_tag_is_explained_and_not_restarted(shop: Cluster, operator: OperatorFactory, registry: Registry
                                                      ) -> None:
    start(shop, operator, registry)
    image = f"{registry.host}/{REPO}:v2"
    web = workload(shop, "Deployment", "web", image)
    stuck_pod(shop, web, image, f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                                f'failed to resolve reference "{image}": {image}: not found')

    eventually(lambda: _assert(shop.events("RestartWouldNotHelp")))
    (event,) = shop.events("RestartWouldNotHelp")
    assert event.involved_object.kind == "Deployment"
    assert "v2 does not exist" in event.message
    assert restarted(shop, "Deployment", "web") is None
    eventually(lambda: _equal(shop.credential("private")["status"]["pullFailures"], {"not_found": 1}))


def test_an_ambiguous_failure_is_settled_by_probing_the_registry(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    start(shop, operator, registry)
    ambiguous = ("Error response from daemon: pull access denied for {0}, repository does not exist or may "
                 "require 'docker login': denied: requested access to the resource is denied")
    exists, missing = f"{registry.host}/{REPO}:{TAG}", f"{registry.host}/team/nothing:{TAG}"
    good = workload(shop, "Deployment", "good", exists)
    gone = workload(shop, "Deployment", "gone", missing)
    stuck_pod(shop, good, exists, ambiguous.format(exists.rsplit(":", 1)[0]))
    stuck_pod(shop, gone, missing, ambiguous.format(missing.rsplit(":", 1)[0]))

    eventually(lambda: _assert(restarted(shop, "Deployment", "good")))  # the image exists: a credential problem
    eventually(lambda: _assert(shop.events("RestartWouldNotHelp")))
    assert restarted(shop, "Deployment", "gone") is None
    assert "does not exist" in shop.events("RestartWouldNotHelp")[0].message


def test_opt_out_by_annotation_is_honoured(shop: Cluster, operator: OperatorFactory, registry: Registry) -> None:
    start(shop, operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    shop.api_request("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web",
                          {"metadata": {"annotations": {"regcred.dev/remediate": "false"}}})
    stuck_pod(shop, web, image, unauthorized(registry, image))
    eventually(lambda: _assert(shop.events("NotRemediated")))
    assert "turned off" in shop.events("NotRemediated")[0].message
    assert restarted(shop, "Deployment", "web") is None


def test_once_per_revision_and_cooldown_survive_an_operator_restart(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    start(shop, operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    stuck_pod(shop, web, image, unauthorized(registry, image))
    eventually(lambda: _assert(restarted(shop, "Deployment", "web")))
    first = restarted(shop, "Deployment", "web")
    operator.stop()

    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({registry.host})))
    stuck_pod(shop, web, image, unauthorized(registry, image))
    time.sleep(1.5)
    assert restarted(shop, "Deployment", "web") == first  # recorded on the Deployment, not in memory

    # A new revision (the robot's password rotated) within the cooldown: still no second restart.
    shop.core.patch_namespaced_secret("robot", "regcred-system", {"data": {"password": "cm90YXRlZA=="}})
    shop.namespace("elsewhere")
    eventually(lambda: _assert(shop.dockerconfig(NS, "private-pull")["auths"][registry.host]["password"]
                               == "rotated"))
    stuck_pod(shop, web, image, unauthorized(registry, image))
    time.sleep(1.5)
    assert restarted(shop, "Deployment", "web") == first


def test_an_ordered_ready_statefulset_gets_its_stuck_pod_deleted(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    start(shop, operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    db = workload(shop, "StatefulSet", "db", image, serviceName="db")
    pod = stuck_pod(shop, db, image, unauthorized(registry, image), via_replicaset=False, name="db-0")
    eventually(lambda: _assert(restarted(shop, "StatefulSet", "db")))
    eventually(lambda: pod_replaced(shop, pod))


def test_delete_pods_deletes_only_stuck_controller_owned_pods(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    start(shop, operator, registry, strategy="DeletePods")
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    healthy = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-healthy", "namespace": NS},
               "spec": {"containers": [{"name": "app", "image": image}]}}
    shop.api_request("POST", f"/api/v1/namespaces/{NS}/pods", healthy)
    stuck_pod(shop, {}, image, unauthorized(registry, image), via_replicaset=False, name="bare")
    stuck = stuck_pod(shop, web, image, unauthorized(registry, image), name="web-stuck")

    eventually(lambda: pod_replaced(shop, stuck))
    eventually(lambda: _assert(shop.events("NotRemediated")))  # the bare pod: reported, never deleted
    assert {"web-healthy", "bare"} <= shop.pod_names(NS)
    assert restarted(shop, "Deployment", "web") is None  # DeletePods does not roll the Deployment


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert(value: object) -> None:
    assert value
