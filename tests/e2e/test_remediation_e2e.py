"""Diagnosis and remediation end to end: the tests play the kubelet (pod status and Events), kopf runs.

The credential is a static one for a real registry (Debian's docker-registry with htpasswd auth), so the
ambiguous case, and whether the credential in place is refused, are settled by a real probe. A restart
happens only when the pod failed with another Secret than the one it would get now: most stories start
with pods stuck before the credential exists (`before_the_credential`), or rotate the credential.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import uuid
from typing import Any

import pytest

from regcred.kube import KubeApi
from regcred.workloads import REMEDIATED_ANNOTATION, RESTARTED_AT_ANNOTATION
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, b64, eventually
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
    run_operator(operator, registry)
    apply(shop, registry, **remediation)


def run_operator(operator: OperatorFactory, registry: Registry) -> None:
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({registry.host})))


def apply(shop: Cluster, registry: Registry, **remediation: Any) -> None:
    shop.apply_credential("private", credential_spec(registry, **remediation))
    eventually(lambda: _equal(shop.condition("private")["status"], "True"))


def workload(shop: Cluster, kind: str, name: str, image: str, *, template_secrets: tuple[str, ...] = (),
             **spec: Any) -> dict[str, Any]:
    api, plural = PATHS[kind]
    pod_spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}]}
    if template_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in template_secrets]
    selector = {"selector": {"matchLabels": {"app": name}}} if kind != "Job" else {}
    if kind == "Job":
        pod_spec["restartPolicy"] = "Never"
    body = {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": NS, "annotations": {}},
            "spec": {**selector, **spec, "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}}
    created: dict[str, Any] = shop.api_request("POST", f"/apis/{api}/namespaces/{NS}/{plural}", body)
    return created


PATHS = {"Deployment": ("apps/v1", "deployments"), "StatefulSet": ("apps/v1", "statefulsets"),
         "DaemonSet": ("apps/v1", "daemonsets"), "Job": ("batch/v1", "jobs")}


def stuck_pod(shop: Cluster, owner: dict[str, Any], image: str, message: str, *, via_replicaset: bool = True,
              name: str | None = None, reason: str = "ErrImagePull", error: str | None = None) -> dict[str, Any]:
    """A pod of ``owner`` (``{}``: a bare pod), and its status as the kubelet writes it after a failed pull.

    ``error``: the pull error the kubelet also posts as the pod's Failed Event (None: no Event; by
    default the message itself, as an ErrImagePull status and its Event carry the same error).
    On a real cluster the controllers make the pods (a Deployment's through its ReplicaSet): the next
    pod of the workload that the kubelet has not reported on yet is taken. On the emulated API the
    test plays the controllers (and the ServiceAccount admission plugin).
    """
    if shop.real and owner:
        pod = _next_pod(shop, owner)
        name = pod["metadata"]["name"]
        created = pod
    else:
        created = _pod_as_a_controller_makes_it(shop, owner, name, via_replicaset=via_replicaset)
        name = created["metadata"]["name"]
    if error is None and reason == "ErrImagePull":
        error = message
    if error:
        failed_event(shop, created, image, error)
    report(shop, created, image, reason, message)
    return created


def report(shop: Cluster, pod: dict[str, Any], image: str, reason: str, message: str) -> None:
    """The kubelet writes the container's waiting state (ErrImagePull after a failed pull, then ImagePullBackOff)."""
    shop.api_request("PATCH", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/status", {"status": {
        "phase": "Pending",
        "containerStatuses": [{"name": "app", "image": image, "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"waiting": {"reason": reason, "message": message}}}],
    }})


def failed_event(shop: Cluster, pod: dict[str, Any], image: str, error: str) -> None:
    """The kubelet's Warning Event after a failed pull (pkg/kubelet/images/image_manager.go: reason Failed)."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = pod["metadata"]
    shop.api_request("POST", f"/api/v1/namespaces/{NS}/events", {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}", "namespace": NS},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": metadata["name"], "namespace": NS,
                           "uid": metadata["uid"], "fieldPath": "spec.containers{app}"},
        "reason": "Failed", "type": "Warning", "message": f'Failed to pull image "{image}": {error}',
        "source": {"component": "kubelet", "host": "node-1"}, "firstTimestamp": now, "lastTimestamp": now,
        "count": 1})


def backoff(image: str) -> str:
    """The kubelet's waiting message while it backs off, before Kubernetes 1.32."""
    return f'Back-off pulling image "{image}"'


def _next_pod(shop: Cluster, owner: dict[str, Any]) -> dict[str, Any]:
    """The workload's next pod the kubelet has not reported on; when there is none, one more replica."""
    app = owner["metadata"]["name"]
    try:
        return eventually(lambda: _unreported_pod(shop, app), timeout=5)
    except AssertionError:
        api, plural = PATHS[owner["kind"]]
        path = f"/apis/{api}/namespaces/{NS}/{plural}/{app}"
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
    # As the ServiceAccount admission plugin does: the template's pull secrets, or when it lists none the
    # ServiceAccount's (plugin/pkg/admission/serviceaccount/admission.go).
    secrets = (owner["spec"]["template"]["spec"].get("imagePullSecrets") if owner else None) or [
        {"name": n} for n in shop.pull_secrets(NS)]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS, "labels": labels,
                        "ownerReferences": [_owner(controller)] if owner else []},
           "spec": {"containers": [{"name": "app", "image": owner_image(owner) if owner else "busybox"}],
                    "imagePullSecrets": secrets}}
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
    api, plural = PATHS[kind]
    result: dict[str, Any] = shop.api_request("GET", f"/apis/{api}/namespaces/{NS}/{plural}/{name}")
    return result


def restarted(shop: Cluster, kind: str, name: str) -> str | None:
    template = read(shop, kind, name)["spec"]["template"]["metadata"]
    return (template.get("annotations") or {}).get(RESTARTED_AT_ANNOTATION)


def test_a_pod_stuck_before_the_credential_gets_exactly_one_rollout(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    pod = stuck_pod(shop, web, image, unauthorized(registry, image))
    apply(shop, registry)  # the credential arrives: the pod failed without it

    eventually(lambda: _assert(restarted(shop, "Deployment", "web")))
    assert REMEDIATED_ANNOTATION in read(shop, "Deployment", "web")["metadata"]["annotations"]
    eventually(lambda: _assert(shop.events("Remediated")))
    status = eventually(lambda: _with(shop.credential("private")["status"], "remediations"))
    assert status["remediations"][0]["kind"] == "Deployment"
    assert status["remediations"][0]["action"] == "RolloutRestart"
    assert status["remediations"][0]["reason"] == "unauthorized"
    first = restarted(shop, "Deployment", "web")

    # The same pod flips between ErrImagePull and ImagePullBackOff at each retry: nothing more happens.
    report(shop, pod, image, "ImagePullBackOff", backoff(image))
    report(shop, pod, image, "ErrImagePull", unauthorized(registry, image))
    # Another pod that failed with the credential in place (which works): a restart would change nothing.
    time.sleep(1.1)  # Event times have second precision: a failure in the revision's own second decides nothing
    stuck_pod(shop, web, image, unauthorized(registry, image))
    eventually(lambda: _assert(shop.events("RestartWouldNotHelp")))
    assert "failed with the credential in place" in shop.events("RestartWouldNotHelp")[0].message
    assert restarted(shop, "Deployment", "web") == first  # once per credential revision
    status = shop.credential("private")["status"]
    assert len(status["remediations"]) == 1
    assert status.get("pullFailures") == {"unauthorized": 1}  # the second pod, counted once


def test_a_pre_1_32_back_off_is_diagnosed_from_the_pods_failed_events(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image, missing = f"{registry.host}/{REPO}:{TAG}", f"{registry.host}/{REPO}:v2"
    web, api = workload(shop, "Deployment", "web", image), workload(shop, "Deployment", "api", missing)
    # The status says only "Back-off pulling image"; the cause is in the pod's Failed Event.
    stuck_pod(shop, web, image, backoff(image), reason="ImagePullBackOff", error=unauthorized(registry, image))
    gone = f'rpc error: code = NotFound desc = failed to pull and unpack image "{missing}": not found'
    api_pod = stuck_pod(shop, api, missing, backoff(missing), reason="ImagePullBackOff", error=gone)
    apply(shop, registry)

    eventually(lambda: _assert(restarted(shop, "Deployment", "web")))
    eventually(lambda: _equal(shop.credential("private")["status"].get("remediations", [{}])[0].get("reason"),
                              "unauthorized"))
    eventually(lambda: _assert(shop.events("RestartWouldNotHelp")))
    (event,) = shop.events("RestartWouldNotHelp")
    assert event.involved_object.name == "api"
    assert "v2 does not exist" in event.message
    assert restarted(shop, "Deployment", "api") is None
    # The kubelet retries: ErrImagePull with the error, then the back-off again. One diagnosis, counted once.
    report(shop, api_pod, missing, "ErrImagePull", gone)
    report(shop, api_pod, missing, "ImagePullBackOff", backoff(missing))
    time.sleep(1)
    assert len(shop.events("RestartWouldNotHelp")) == 1
    assert shop.credential("private")["status"]["pullFailures"] == {"not_found": 1}


def test_the_1_32_back_off_message_carries_the_cause(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    stuck_pod(shop, web, image, f"{backoff(image)}: ErrImagePull: {unauthorized(registry, image)}",
              reason="ImagePullBackOff", error="")  # no Event left: the status says it all
    apply(shop, registry)
    eventually(lambda: _assert(restarted(shop, "Deployment", "web")))
    eventually(lambda: _equal(shop.credential("private")["status"].get("remediations", [{}])[0].get("reason"),
                              "unauthorized"))


def rejected_credential(shop: Cluster, operator: OperatorFactory, registry: Registry) -> dict[str, Any]:
    """A credential with a wrong password, and a pod that fails with it in place."""
    shop.core.patch_namespaced_secret("robot", "regcred-system", {"data": {"password": b64("wrong")}})
    start(shop, operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    stuck_pod(shop, web, image, unauthorized(registry, image))
    rejected = eventually(lambda: _status_is(shop.condition("private", "CredentialRejected"), "True"), timeout=20)
    assert rejected["reason"] == "RegistryRejected"
    assert registry.host in rejected["message"] and f"{NS}/" in rejected["message"]
    return web


def test_a_credential_that_failed_and_was_not_changed_is_reported_not_restarted(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    rejected_credential(shop, operator, registry)
    eventually(lambda: _assert([e for e in shop.events("CredentialRejected")
                                if e.involved_object.kind == "RegistryCredential"]))
    time.sleep(1)
    assert restarted(shop, "Deployment", "web") is None
    assert not shop.events("Remediated")
    assert "remediations" not in shop.credential("private")["status"]


def test_after_a_real_refresh_the_rejected_credentials_pod_is_restarted_once(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    web = rejected_credential(shop, operator, registry)
    time.sleep(1)  # the next revision is written in a later second than the pod's failure
    shop.core.patch_namespaced_secret("robot", "regcred-system", {"data": {"password": b64(PASSWORD)}})
    shop.namespace("elsewhere")  # any namespace event wakes the credential up

    eventually(lambda: _assert(restarted(shop, "Deployment", "web")), timeout=20)
    eventually(lambda: _equal(shop.condition("private", "CredentialRejected")["status"], "False"))
    first = restarted(shop, "Deployment", "web")
    image = f"{registry.host}/{REPO}:{TAG}"
    time.sleep(1.1)  # Event times have second precision: a failure in the revision's own second decides nothing
    stuck_pod(shop, web, image, unauthorized(registry, image))  # a pod of the new revision fails too
    eventually(lambda: _assert(shop.events("RestartWouldNotHelp")))
    assert restarted(shop, "Deployment", "web") == first
    assert len(shop.credential("private")["status"]["remediations"]) == 1


def test_a_deployment_with_its_own_template_pull_secrets_is_explained_not_restarted(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image, template_secrets=("team-pull",))
    stuck_pod(shop, web, image, unauthorized(registry, image))
    apply(shop, registry)

    eventually(lambda: _assert(shop.events("PullSecretNotInTemplate")))
    (event,) = shop.events("PullSecretNotInTemplate")
    assert event.involved_object.kind == "Deployment"
    assert "Add private-pull to the template's imagePullSecrets, or remove the template's list" in event.message
    assert restarted(shop, "Deployment", "web") is None


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
    run_operator(operator, registry)
    ambiguous = ("Error response from daemon: pull access denied for {0}, repository does not exist or may "
                 "require 'docker login': denied: requested access to the resource is denied")
    exists, missing = f"{registry.host}/{REPO}:{TAG}", f"{registry.host}/team/nothing:{TAG}"
    good = workload(shop, "Deployment", "good", exists)
    gone = workload(shop, "Deployment", "gone", missing)
    stuck_pod(shop, good, exists, ambiguous.format(exists.rsplit(":", 1)[0]))
    stuck_pod(shop, gone, missing, ambiguous.format(missing.rsplit(":", 1)[0]))
    apply(shop, registry)

    eventually(lambda: _assert(restarted(shop, "Deployment", "good")))  # the image exists: a credential problem
    eventually(lambda: _assert(shop.events("RestartWouldNotHelp")))
    assert restarted(shop, "Deployment", "gone") is None
    assert "does not exist" in shop.events("RestartWouldNotHelp")[0].message


def test_opt_out_by_annotation_is_honoured(shop: Cluster, operator: OperatorFactory, registry: Registry) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    shop.api_request("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web",
                          {"metadata": {"annotations": {"regcred.dev/remediate": "false"}}})
    stuck_pod(shop, web, image, unauthorized(registry, image))
    apply(shop, registry)
    eventually(lambda: _assert(shop.events("NotRemediated")))
    assert "turned off" in shop.events("NotRemediated")[0].message
    assert restarted(shop, "Deployment", "web") is None


def test_once_per_revision_and_cooldown_survive_an_operator_restart(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    stuck_pod(shop, web, image, unauthorized(registry, image))
    apply(shop, registry)
    eventually(lambda: _assert(restarted(shop, "Deployment", "web")))
    first = restarted(shop, "Deployment", "web")
    operator.stop()

    run_operator(operator, registry)
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
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    db = workload(shop, "StatefulSet", "db", image, serviceName="db")
    pod = stuck_pod(shop, db, image, unauthorized(registry, image), via_replicaset=False, name="db-0")
    apply(shop, registry)
    eventually(lambda: _assert(restarted(shop, "StatefulSet", "db")))
    eventually(lambda: pod_replaced(shop, pod))


def test_delete_pods_deletes_only_stuck_controller_owned_pods(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    healthy = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-healthy", "namespace": NS},
               "spec": {"containers": [{"name": "app", "image": image}]}}
    shop.api_request("POST", f"/api/v1/namespaces/{NS}/pods", healthy)
    stuck_pod(shop, {}, image, unauthorized(registry, image), via_replicaset=False, name="bare")
    stuck = stuck_pod(shop, web, image, unauthorized(registry, image), name="web-stuck")
    apply(shop, registry, strategy="DeletePods")

    eventually(lambda: pod_replaced(shop, stuck))
    eventually(lambda: _assert(shop.events("NotRemediated")))  # the bare pod: reported, never deleted
    assert {"web-healthy", "bare"} <= shop.pod_names(NS)
    assert restarted(shop, "Deployment", "web") is None  # DeletePods does not roll the Deployment


def test_a_job_without_retries_to_spare_is_not_made_to_fail(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    migrate = workload(shop, "Job", "migrate", image, backoffLimit=0)
    pod = stuck_pod(shop, migrate, image, unauthorized(registry, image), via_replicaset=False)
    apply(shop, registry)

    eventually(lambda: _assert(shop.events("NotRemediated")))
    (event,) = shop.events("NotRemediated")
    assert event.involved_object.kind == "Job"
    assert "spec.backoffLimit 0" in event.message and "could make the Job fail" in event.message
    time.sleep(1)
    assert pod["metadata"]["name"] in shop.pod_names(NS)  # not deleted
    conditions = read(shop, "Job", "migrate").get("status", {}).get("conditions") or []
    assert not [c for c in conditions if c["type"] in ("Failed", "FailureTarget") and c["status"] == "True"]


def test_a_job_with_retries_to_spare_gets_its_stuck_pod_replaced(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    migrate = workload(shop, "Job", "migrate", image)  # backoffLimit 6 by default
    pod = stuck_pod(shop, migrate, image, unauthorized(registry, image), via_replicaset=False)
    apply(shop, registry)
    eventually(lambda: pod_replaced(shop, pod))
    eventually(lambda: _assert(shop.events("Remediated")))


def test_an_on_delete_daemonset_gets_its_stuck_pod_deleted(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    if shop.real:  # the DaemonSet controller makes a pod for each node: one node object (no kubelet)
        shop.api_request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                    "metadata": {"name": "node-1"}})
        # The NodeTaint admission plugin (plugin/pkg/admission/nodetaint) taints a new node not-ready:NoSchedule,
        # which daemon pods do not tolerate; with no kubelet to make it ready, the test lifts it.
        shop.api_request("PATCH", "/api/v1/nodes/node-1", {"spec": {"taints": None}})
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    agent = workload(shop, "DaemonSet", "agent", image, updateStrategy={"type": "OnDelete"})
    pod = stuck_pod(shop, agent, image, unauthorized(registry, image), via_replicaset=False)
    apply(shop, registry)

    eventually(lambda: pod_replaced(shop, pod))
    eventually(lambda: _assert(shop.events("Remediated")))
    (event,) = [e for e in shop.events("Remediated") if e.involved_object.kind == "DaemonSet"]
    assert "OnDelete" in event.message and "the DaemonSet recreates it" in event.message
    assert restarted(shop, "DaemonSet", "agent") is None  # no template change: it would replace nothing


def test_a_paused_deployment_gets_its_stuck_pod_deleted(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    pod = stuck_pod(shop, web, image, unauthorized(registry, image))
    # Paused after its ReplicaSet was made (a Deployment paused from the start makes none).
    shop.api_request("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/web", {"spec": {"paused": True}})
    apply(shop, registry)

    eventually(lambda: pod_replaced(shop, pod))
    eventually(lambda: _assert(shop.events("Remediated")))
    assert "paused" in shop.events("Remediated")[0].message
    assert restarted(shop, "Deployment", "web") is None
    if shop.real:  # the ReplicaSet made a new pod, though the Deployment is paused
        eventually(lambda: _unreported_pod(shop, "web"), timeout=20)


def test_a_rollout_that_leaves_the_stuck_pod_in_place_is_reported(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    runtime = operator.start(settings=dataclasses.replace(TEST_SETTINGS,
                                                          insecure_registries=frozenset({registry.host})))
    runtime.remediator.effect_grace = datetime.timedelta(seconds=1)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    pod = stuck_pod(shop, web, image, unauthorized(registry, image))
    apply(shop, registry)
    eventually(lambda: _assert(restarted(shop, "Deployment", "web")))

    # No new pod becomes ready (nothing runs them here), so the rollout never removes the stuck one; the
    # kubelet keeps retrying it.
    time.sleep(1.5)
    report(shop, pod, image, "ImagePullBackOff", backoff(image))
    eventually(lambda: _assert(shop.events("RemediationIneffective")))
    kinds = {e.involved_object.kind for e in shop.events("RemediationIneffective")}
    assert kinds == {"Deployment", "RegistryCredential"}
    assert "is still there" in shop.events("RemediationIneffective")[0].message
    eventually(lambda: _equal(shop.credential("private")["status"]["remediations"][0].get("result"), "Ineffective"))


def test_a_rollout_is_recorded_as_done_once_the_stuck_pod_is_replaced(
    shop: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    run_operator(operator, registry)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(shop, "Deployment", "web", image)
    stuck = stuck_pod(shop, web, image, unauthorized(registry, image))
    apply(shop, registry)
    eventually(lambda: _assert(restarted(shop, "Deployment", "web")))
    entry = eventually(lambda: _with(shop.credential("private")["status"], "remediations"))["remediations"][0]
    assert (entry["action"], entry.get("result")) == ("RolloutRestart", "Pending")  # not done until the pod goes

    if shop.real:  # the kubelet starts the new pod: the deployment controller then removes the stuck one
        fresh = eventually(lambda: _unreported_pod(shop, "web"), timeout=20)
        running(shop, fresh)
    else:  # no deployment controller: the test removes the old pod as it would
        shop.core.delete_namespaced_pod(stuck["metadata"]["name"], NS)
    eventually(lambda: pod_replaced(shop, stuck), timeout=30)
    eventually(lambda: _equal(shop.credential("private")["status"]["remediations"][0].get("result"), "Replaced"))
    assert len(shop.credential("private")["status"]["remediations"]) == 1


def running(shop: Cluster, pod: dict[str, Any]) -> None:
    """The pod's status as the kubelet writes it once its container runs and is ready."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    shop.api_request("PATCH", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/status", {"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                       {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "app", "image": owner_image_of(pod), "imageID": "", "ready": True,
                               "restartCount": 0, "started": True, "state": {"running": {"startedAt": now}}}],
    }})


def owner_image_of(pod: dict[str, Any]) -> str:
    image: str = pod["spec"]["containers"][0]["image"]
    return image


def _with(status: dict[str, Any], key: str) -> dict[str, Any]:
    assert key in status, status
    return status


def _status_is(condition: dict[str, Any], status: str) -> dict[str, Any]:
    assert condition["status"] == status, condition
    return condition


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert(value: object) -> None:
    assert value
