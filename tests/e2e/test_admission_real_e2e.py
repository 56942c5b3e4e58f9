"""The chart's ValidatingAdmissionPolicy (`admissionPolicy.enabled`) enforced by a real API server.

RBAC lets the operator write any Secret and patch any field of a workload it may patch; the policy
narrows that to Secrets carrying its label and to `regcred.dev/` annotations. The first test sends the
requests by hand, as the chart's ServiceAccount and as an administrator, first without the policy (all
allowed: the policy, not RBAC, is what denies) and then with it. The second runs the operator with the
policy in place through a fan-out, drift repair, remediation (a Deployment rolled, a Job's pod deleted
and recorded) and clean-up, and fails on any request the server refused it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from regcred import GROUP, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLURAL, VERSION
from regcred.kube import MERGE_PATCH, KubeApi, KubeError
from regcred.workloads import REMEDIATED_ANNOTATION, RESTARTED_AT_ANNOTATION, REVISION_ANNOTATION
from tests.control_plane import ControlPlane
from tests.e2e.harness import (
    TEST_SETTINGS,
    Cluster,
    OperatorFactory,
    b64,
    chart_identity,
    chart_identity_objects,
    eventually,
)
from tests.e2e.test_remediation_e2e import (
    NS,
    credential_spec,
    pod_replaced,
    read,
    restarted,
    stuck_pod,
    unauthorized,
    workload,
)
from tests.registry.harness import PASSWORD, REPO, TAG, USERNAME, Registry, needs_registry

pytestmark = [pytest.mark.e2e, pytest.mark.real_only]

POLICY_VALUES = {"admissionPolicy": {"enabled": True}}
POLICY_KINDS = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
MANAGED = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
PROBE_NS = "policy-probe"  # where the probe that waits for the policy to take effect writes (dry run)
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/web"
JOB = f"/apis/batch/v1/namespaces/{NS}/jobs/migrate"
ACCOUNT = f"/api/v1/namespaces/{NS}/serviceaccounts/builder"


def secret(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
            "type": "Opaque", "data": {"k": "dg=="}}


def deployment() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"},
                         "annotations": {"team.example/owner": "shop"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"},
                                               "annotations": {"team.example/config-hash": "1"}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.example.test/web:1"}]}}}}


def rollable(kind: str, name: str) -> dict[str, Any]:
    """A StatefulSet or DaemonSet: rolled by the same pod-template annotation as a Deployment."""
    containers = [{"name": "app", "image": f"registry.example.test/{name}:1"}]
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}}


def job() -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": NS},
            "spec": {"suspend": True, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "app", "image": "registry.example.test/db:1"}]}}}}


def patch(kube: KubeApi, path: str, body: dict[str, Any]) -> None:
    kube.request("PATCH", path, body=body, content_type=MERGE_PATCH)


def template_annotations(annotations: dict[str, str | None]) -> dict[str, Any]:
    return {"spec": {"template": {"metadata": {"annotations": annotations}}}}


def annotations(values: dict[str, str | None]) -> dict[str, Any]:
    return {"metadata": {"annotations": values}}


def denied(call: Callable[[], object]) -> str:
    """The policy's message for a request it denied (403 Forbidden: the validations' reason)."""
    with pytest.raises(KubeError) as caught:
        call()
    assert caught.value.status == 403, caught.value
    assert "ValidatingAdmissionPolicy" in caught.value.message, caught.value.message
    return caught.value.message


def wait_until_effective(kube: KubeApi) -> str:
    """A policy is compiled and picked up by the API server's admission plugin asynchronously: send a
    request it denies (a dry run: nothing is stored) until it is denied."""

    def probe() -> str:
        try:
            kube.request("POST", f"/api/v1/namespaces/{PROBE_NS}/secrets", query={"dryRun": "All"},
                         body={"metadata": {"name": "probe"}, "data": {}})
        except KubeError as error:
            if error.status == 403:
                return error.message
            raise
        raise AssertionError("the policy does not deny yet")

    return eventually(probe, timeout=60, interval=0.5)


def type_checking(kube: KubeApi, name: str) -> dict[str, Any]:
    """The policy's status.typeChecking, once the controller that checks it got to it."""

    def checked() -> dict[str, Any]:
        status = kube.request("GET", f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{name}")
        result: dict[str, Any] = status["status"]["typeChecking"]
        return result

    return eventually(checked, timeout=30, interval=0.2)


def create_policy(plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    """The policy and its binding (chart_identity creates whichever of the chart's objects are missing)."""
    chart_identity(plane, [m for m in objects if m["kind"] in POLICY_KINDS or m["kind"] == "ServiceAccount"])


def test_the_policy_confines_the_operators_writes_and_no_one_elses(control_plane: ControlPlane) -> None:
    objects = chart_identity_objects(POLICY_VALUES)
    assert {m["kind"] for m in objects} >= POLICY_KINDS
    _, token = chart_identity(control_plane, [m for m in objects if m["kind"] not in POLICY_KINDS])
    admin, operator = KubeApi(control_plane.api_client()), KubeApi(control_plane.api_client(token))
    for namespace in (NS, PROBE_NS):
        admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    admin.request("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", body={"metadata": {"name": "builder"}})
    admin.request("POST", "/apis/apps/v1/namespaces/shop/deployments", body=deployment())
    admin.request("POST", "/apis/batch/v1/namespaces/shop/jobs", body=job())
    admin.request("POST", "/apis/apps/v1/namespaces/shop/statefulsets", body=rollable("StatefulSet", "db"))
    admin.request("POST", "/apis/apps/v1/namespaces/shop/daemonsets", body=rollable("DaemonSet", "agent"))

    # Without the policy, RBAC alone lets the operator write any Secret and patch any field.
    operator.request("POST", SECRETS, body=secret("unlabelled-before"))
    patch(operator, DEPLOYMENT, {"spec": {"replicas": 2}})
    operator.request("DELETE", f"{SECRETS}/unlabelled-before")

    create_policy(control_plane, objects)
    assert "regcred-operator may only create Secrets labelled" in wait_until_effective(operator)
    # The API server type-checked every expression against the schemas of the matched kinds: no warning.
    (policy,) = [m for m in objects if m["kind"] == "ValidatingAdmissionPolicy"]
    assert type_checking(admin, policy["metadata"]["name"]) == {}

    # Secrets: only with the label, before and after.
    admin.request("POST", SECRETS, body=secret("foreign"))
    admin.request("POST", SECRETS, body=secret("managed", MANAGED))
    message = denied(lambda: operator.request("POST", SECRETS, body=secret("unlabelled")))
    assert "regcred-operator may only create Secrets labelled app.kubernetes.io/managed-by=regcred-operator" in message
    denied(lambda: operator.request("POST", SECRETS, body=secret("other", {MANAGED_BY_LABEL: "Helm"})))
    assert "update" in denied(lambda: patch(operator, f"{SECRETS}/foreign", {"data": {"k": "eA=="}}))
    denied(lambda: patch(operator, f"{SECRETS}/foreign", {"metadata": {"labels": MANAGED}}))  # adopting it
    assert "delete" in denied(lambda: operator.request("DELETE", f"{SECRETS}/foreign"))
    denied(lambda: patch(operator, f"{SECRETS}/managed", {"metadata": {"labels": {MANAGED_BY_LABEL: None}}}))
    operator.request("POST", SECRETS, body=secret("pull", {**MANAGED, f"{GROUP}/credential": "private"}))
    patch(operator, f"{SECRETS}/managed", {"data": {"k": "eA=="}, "metadata": {"annotations": {"a": "b"}}})
    operator.request("DELETE", f"{SECRETS}/managed")

    # ServiceAccounts: imagePullSecrets and regcred.dev/ annotations only.
    # (merge patches guarded by the resourceVersion, as regcred/accounts.py writes them)
    version = operator.request("GET", ACCOUNT)["metadata"]["resourceVersion"]
    patch(operator, ACCOUNT, {"metadata": {"resourceVersion": version, "annotations": {
        f"{GROUP}/attached-secrets": '{"private": "pull"}'}}, "imagePullSecrets": [{"name": "pull"}]})
    denied(lambda: patch(operator, ACCOUNT, {"automountServiceAccountToken": False}))
    denied(lambda: patch(operator, ACCOUNT, {"secrets": [{"name": "pull"}]}))
    denied(lambda: patch(operator, ACCOUNT, {"metadata": {"labels": {"team": "other"}}}))

    # Workloads: regcred.dev/ annotations of the pod template and of the workload itself, as remediation
    # writes them (regcred/workloads.py rollout_patch, record_patch).
    patch(operator, DEPLOYMENT, {**annotations({REMEDIATED_ANNOTATION: "{}"}),
                                 **template_annotations({RESTARTED_AT_ANNOTATION: "2026-01-01T00:00:00Z",
                                                         REVISION_ANNOTATION: "abc"})})
    patch(operator, JOB, annotations({REMEDIATED_ANNOTATION: "{}"}))
    for path in (f"/apis/apps/v1/namespaces/{NS}/statefulsets/db", f"/apis/apps/v1/namespaces/{NS}/daemonsets/agent"):
        patch(operator, path, template_annotations({RESTARTED_AT_ANNOTATION: "2026-01-01T00:00:00Z"}))
        denied(lambda path=path: patch(operator, path, {"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "evil.example/x:1"}]}}}}))
        denied(lambda path=path: patch(operator, path, {"spec": {"revisionHistoryLimit": 1}}))
    message = denied(lambda: patch(operator, DEPLOYMENT, {"spec": {"replicas": 3}}))
    assert "regcred-operator may only change regcred.dev/ annotations of Deployment shop/web" in message
    denied(lambda: patch(operator, DEPLOYMENT, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "evil.example/web:1"}]}}}}))
    denied(lambda: patch(operator, DEPLOYMENT, {"spec": {"paused": True}}))  # a field the Deployment lacked
    denied(lambda: patch(operator, DEPLOYMENT, template_annotations({"team.example/config-hash": "2"})))
    denied(lambda: patch(operator, DEPLOYMENT, template_annotations({"team.example/config-hash": None})))
    denied(lambda: patch(operator, DEPLOYMENT, template_annotations({"team.example/new": "1"})))
    denied(lambda: patch(operator, DEPLOYMENT, {"spec": {"template": {"metadata": {"labels": {"tier": "x"}}}}}))
    denied(lambda: patch(operator, DEPLOYMENT, annotations({"team.example/owner": "someone"})))
    denied(lambda: patch(operator, DEPLOYMENT, annotations({f"{GROUP}/remediate": "true"})))  # the owner's opt-out
    denied(lambda: patch(operator, DEPLOYMENT, {"metadata": {"labels": {"app": "other"}}}))
    denied(lambda: patch(operator, JOB, {"spec": {"suspend": False}}))

    # Pods: only those a controller owns (a stuck pod of a Job, a ReplicaSet, ...), never a bare one.
    admin.request("POST", f"/api/v1/namespaces/{NS}/pods", body={
        "metadata": {"name": "bare"}, "spec": {"containers": [{"name": "app", "image": "registry.example.test/x:1"}]}})
    assert "pods that a controller owns" in denied(
        lambda: operator.request("DELETE", f"/api/v1/namespaces/{NS}/pods/bare"))
    owned = eventually(lambda: _one(admin.request("GET", f"/api/v1/namespaces/{NS}/pods",
                                                  query={"labelSelector": "app=web"})["items"]), timeout=30)
    operator.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{owned['metadata']['name']}")

    # The binding names only the operator: an administrator (or anyone else) is not confined.
    admin.request("POST", SECRETS, body=secret("unlabelled"))
    patch(admin, f"{SECRETS}/foreign", {"metadata": {"labels": MANAGED}})
    patch(admin, f"{SECRETS}/pull", {"metadata": {"labels": {MANAGED_BY_LABEL: None}}})
    admin.request("DELETE", f"{SECRETS}/unlabelled")
    admin.request("DELETE", f"/api/v1/namespaces/{NS}/pods/bare")
    patch(admin, DEPLOYMENT, {"spec": {"replicas": 3, "template": {"metadata": {"annotations": {
        "team.example/config-hash": "2"}}}}})
    admin.request("PUT", ACCOUNT, body={**operator.request("GET", ACCOUNT), "automountServiceAccountToken": False})
    patch(admin, JOB, {"spec": {"suspend": False}})


@needs_registry
def test_the_operator_does_its_job_within_the_policy(
    cluster: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    """Fan-out, ServiceAccounts, drift repair, remediation (a rollout, a Job's pod deleted and recorded)
    and clean-up: nothing the operator does is refused by the policy."""
    rbac = chart_identity_objects(POLICY_VALUES)
    cluster.namespace(PROBE_NS)
    probe = KubeApi(operator.api_client(rbac))  # the chart's identity, policy included
    wait_until_effective(probe)
    operator.expect_forbidden = True  # the probe was refused on purpose; every other refusal fails below
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": USERNAME, "password": PASSWORD})
    cluster.namespace(NS, {"pulls-from": "private"})
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({registry.host})),
                   rbac=rbac)
    image = f"{registry.host}/{REPO}:{TAG}"
    web = workload(cluster, "Deployment", "web", image)
    migrate = workload(cluster, "Job", "migrate", image)
    stuck_pod(cluster, web, image, unauthorized(registry, image))
    job_pod = stuck_pod(cluster, migrate, image, unauthorized(registry, image), via_replicaset=False)
    cluster.apply_credential("private", credential_spec(registry))

    eventually(lambda: _equal(cluster.condition("private")["status"], "True"), timeout=30)
    eventually(lambda: _assert("private-pull" in cluster.pull_secrets(NS)))
    eventually(lambda: _assert(restarted(cluster, "Deployment", "web")), timeout=30)
    assert REMEDIATED_ANNOTATION in read(cluster, "Deployment", "web")["metadata"]["annotations"]
    eventually(lambda: pod_replaced(cluster, job_pod), timeout=30)
    eventually(lambda: _assert(REMEDIATED_ANNOTATION in read(cluster, "Job", "migrate")["metadata"]["annotations"]))
    # Drift: an edited pull Secret is patched back.
    cluster.core.patch_namespaced_secret("private-pull", NS, {"data": {".dockerconfigjson": b64("{}")}})
    eventually(lambda: _assert(registry.host in cluster.dockerconfig(NS, "private-pull")["auths"]))
    # Deletion: the Secret is deleted and the ServiceAccount entry removed.
    cluster.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "private")
    eventually(lambda: _equal(cluster.secrets(f"{GROUP}/credential=private"), {}), timeout=20)
    eventually(lambda: _assert("private-pull" not in cluster.pull_secrets(NS)))
    operator.stop()
    refused = operator.forbidden()
    assert any(f" {PROBE_NS}/" in line for line in refused)
    assert [line for line in refused if f" {PROBE_NS}/" not in line] == []


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert(value: object) -> None:
    assert value


def _one(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert items
    return items[0]
