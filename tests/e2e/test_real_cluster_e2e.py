"""What only a real cluster shows: the controllers, admission and garbage collection acting on what the operator did.

Every test asserts what a user would notice. Those that need a controller (deployment, job, garbage collector)
skip on the emulated backend and say why; the ServiceAccount admission rule and the namespace lifecycle are
emulated, so those tests run on both. The kubelet is played by the tests (pod status through /status).

The credential is a static one for a registry nothing pulls from: only the kubelet's messages mention it.
The operator restarts a workload only when a new pod would use another Secret than the one its stuck pod
failed with, so a story that needs a restart starts with pods stuck before the credential is attached
(`operator.start()`, the workload and its failed pull, then `attach`): admission gives their replacements the
Secret they lacked. Which stuck pods are restarted, explained or reported, with a real registry to probe, is
tests/e2e/test_remediation_e2e.py's subject (templates listing their own pull secrets, Jobs without retries).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Collection
from typing import Any

import kubernetes
import pytest

from regcred.fanout import CONTENT_HASH_ANNOTATION
from regcred.kube import KubeApi
from regcred.workloads import RESTARTED_AT_ANNOTATION, REVISION_ANNOTATION
from tests.e2e.harness import OPERATOR_USER_AGENTS, Cluster, OperatorFactory, eventually

pytestmark = pytest.mark.e2e

REGISTRY = "registry.regcred.test"
IMAGE = f"{REGISTRY}/team/app:1.0"
NS = "shop"
CREDENTIAL = "private"
SECRET = "private-pull"
SELECTOR = f"regcred.dev/credential={CREDENTIAL}"
CONTROLLER_TIMEOUT = 30  # the controller-manager on two busy cores


def credential_spec(name: str = CREDENTIAL, registry: str = REGISTRY, secret: str = SECRET) -> dict[str, Any]:
    return {
        "provider": {"static": {"registry": registry, "secretRef": {"namespace": "regcred-system", "name": "robot"}}},
        "secretName": secret,
        "namespaces": {"selector": {"matchLabels": {"pulls-from": "private"}}},
        "remediation": {"strategy": "RolloutRestart", "cooldown": "10m"},
    }


@pytest.fixture
def shop(cluster: Cluster) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": "robot", "password": "s3cret"})
    cluster.namespace(NS, {"pulls-from": "private"}, accounts=("default", "builder"))
    return cluster


def start(shop: Cluster, operator: OperatorFactory) -> None:
    """The operator running, the credential Ready and its secret attached to `default` in the shop."""
    operator.start()
    attach(shop)


def attach(shop: Cluster) -> None:
    """The credential applied: Ready, and its secret attached to `default` in the shop, so admission gives it to
    pods created from now on; pods stuck before lack it (a restart gives their replacements another Secret)."""
    shop.apply_credential(CREDENTIAL, credential_spec())
    eventually(lambda: _equal(shop.condition(CREDENTIAL)["status"], "True"))
    eventually(lambda: _equal(shop.pull_secrets(NS), [SECRET]))


def needs_controllers(shop: Cluster, what: str) -> None:
    if not shop.real:
        pytest.skip(f"the emulated API runs no controllers: {what}")


# -- Workloads and their pods, as a user and the kubelet make them ---------------------------------------------


def deployment(shop: Cluster, name: str, **pod_spec: Any) -> dict[str, Any]:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": IMAGE}], **pod_spec}}}}
    created: dict[str, Any] = shop.api_request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", body)
    return created


def job(shop: Cluster, name: str, backoff_limit: int) -> dict[str, Any]:
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": backoff_limit, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "app", "image": IMAGE}]}}}}
    created: dict[str, Any] = shop.api_request("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", body)
    return created


def items(shop: Cluster, path: str, selector: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = shop.api_request(
        "GET", f"{path}?labelSelector={urllib.parse.quote(selector)}")["items"]
    return found


def pods(shop: Cluster, selector: str) -> list[dict[str, Any]]:
    return items(shop, f"/api/v1/namespaces/{NS}/pods", selector)


def replicasets(shop: Cluster, app: str) -> list[dict[str, Any]]:
    return items(shop, f"/apis/apps/v1/namespaces/{NS}/replicasets", f"app={app}")


def new_pod(shop: Cluster, selector: str, seen: Collection[str] = ()) -> dict[str, Any]:
    """A live pod matching the selector whose uid is not in ``seen`` (made by a controller on a real cluster)."""
    def check() -> dict[str, Any]:
        fresh = [p for p in pods(shop, selector)
                 if p["metadata"]["uid"] not in seen and not p["metadata"].get("deletionTimestamp")]
        assert fresh, f"no new pod for {selector} yet"
        return fresh[0]
    return eventually(check, timeout=CONTROLLER_TIMEOUT)


def deployment_pod(shop: Cluster, owner: dict[str, Any]) -> dict[str, Any]:
    """The Deployment's pod: its ReplicaSet's on a real cluster; on the emulated API, made as they would make it
    (a ReplicaSet with the template, a pod created from it, so the emulated admission sees the template's spec)."""
    app = owner["metadata"]["name"]
    if shop.real:
        return new_pod(shop, f"app={app}")
    template = owner["spec"]["template"]
    replicaset = shop.api_request("POST", f"/apis/apps/v1/namespaces/{NS}/replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{app}-5d9", "labels": template["metadata"]["labels"],
                     "ownerReferences": [_owner(owner)]},
        "spec": {"replicas": 1, "selector": owner["spec"]["selector"], "template": template}})
    created: dict[str, Any] = shop.api_request("POST", f"/api/v1/namespaces/{NS}/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{app}-5d9-x7k2p", "labels": template["metadata"]["labels"],
                     "ownerReferences": [_owner(replicaset)]},
        "spec": template["spec"]})
    return created


def _owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def unauthorized(image: str = IMAGE) -> str:
    """containerd's message for a registry that refused the pull's credentials."""
    return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to resolve '
            f'reference "{image}": pulling from host {REGISTRY} failed with status code [manifests 1.0]: '
            "401 Unauthorized")


def fail_pull(shop: Cluster, pod: dict[str, Any], message: str | None = None) -> None:
    """The pod's status as the kubelet writes it after a failed pull."""
    shop.api_request("PATCH", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/status", {"status": {
        "phase": "Pending",
        "containerStatuses": [{"name": "app", "image": IMAGE, "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"waiting": {"reason": "ErrImagePull",
                                                     "message": message or unauthorized()}}}]}})


def pull_secrets_of(pod: dict[str, Any]) -> list[str]:
    return [ref["name"] for ref in pod["spec"].get("imagePullSecrets") or []]


def read(shop: Cluster, path: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = KubeApi(shop.client).get_or_none(path)
    return found


def operator_writes(shop: Cluster, namespace: str) -> list[tuple[str, str, int]]:
    """(verb, resource, HTTP status) of the operator's writes into a namespace, from the request log (the
    emulator's, or the real server's audit log)."""
    return [(r.verb, r.resource, r.status) for r in shop.backend.requests
            if r.namespace == namespace and r.user_agent in OPERATOR_USER_AGENTS
            and r.verb in ("create", "update", "patch", "delete")]


def only_cleanup(writes: list[tuple[str, str, int]]) -> None:
    """Writes into a terminating namespace: at most the operator's own clean-up (its Secret deleted, its entry
    taken off the ServiceAccount), each done once; never a create; nothing refused but the races with the
    namespace controller (404 gone already, 409 changed under us)."""
    assert {(verb, resource) for verb, resource, _ in writes} <= {("delete", "secrets"), ("patch", "serviceaccounts")}
    done = [(verb, resource) for verb, resource, status in writes if status < 400]
    assert len(done) == len(set(done)), writes
    assert all(status < 400 or status in (404, 409) for _, _, status in writes), writes


def conditions(shop: Cluster, name: str = CREDENTIAL) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"])
            for c in shop.credential(name).get("status", {}).get("conditions", [])}


# -- 1. A restart really rolls --------------------------------------------------------------------------------


def test_a_rollout_restart_makes_a_new_replicaset_whose_pod_carries_the_credential_revision(
    shop: Cluster, operator: OperatorFactory
) -> None:
    needs_controllers(shop, "the deployment controller is what turns the operator's patch into a new ReplicaSet")
    operator.start()
    web = deployment(shop, "web")
    first = deployment_pod(shop, web)
    (old_set,) = replicasets(shop, "web")
    fail_pull(shop, first)  # stuck before the credential: it pulled with no secret at all
    assert pull_secrets_of(first) == []
    attach(shop)

    secret = shop.api_request("GET", f"/api/v1/namespaces/{NS}/secrets/{SECRET}")
    revision = secret["metadata"]["annotations"][CONTENT_HASH_ANNOTATION]

    def new_replicaset() -> dict[str, Any]:
        rolled = [rs for rs in replicasets(shop, "web") if rs["metadata"]["uid"] != old_set["metadata"]["uid"]]
        assert len(rolled) == 1, "no new ReplicaSet yet"
        return rolled[0]
    rolled = eventually(new_replicaset, timeout=CONTROLLER_TIMEOUT)
    annotations = rolled["spec"]["template"]["metadata"]["annotations"]
    assert annotations[REVISION_ANNOTATION] == revision
    assert RESTARTED_AT_ANNOTATION in annotations

    pod = new_pod(shop, "app=web", {first["metadata"]["uid"]})
    assert pod["metadata"]["ownerReferences"][0]["uid"] == rolled["metadata"]["uid"]
    assert pod["metadata"]["annotations"][REVISION_ANNOTATION] == revision
    assert pull_secrets_of(pod) == [SECRET]  # admission gave it the attached secret: this pull can succeed

    def rolling() -> None:  # `kubectl rollout status` shows one updated replica
        status = shop.api_request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/web")["status"]
        assert status.get("updatedReplicas") == 1
    eventually(rolling, timeout=CONTROLLER_TIMEOUT)
    eventually(lambda: _equal([r["action"] for r in shop.credential(CREDENTIAL)["status"].get("remediations") or []],
                              ["RolloutRestart"]))


# -- 2. ServiceAccount admission --------------------------------------------------------------------------------


def test_only_pods_created_after_the_attachment_without_pull_secrets_of_their_own_get_the_secret(
    shop: Cluster, operator: OperatorFactory
) -> None:
    # kubernetes plugin/pkg/admission/serviceaccount/admission.go, Admit: on create, `if
    # len(pod.Spec.ImagePullSecrets) == 0` the ServiceAccount's entries are copied; otherwise the pod keeps its own.
    def pod(name: str, **spec: Any) -> dict[str, Any]:
        created: dict[str, Any] = shop.api_request("POST", f"/api/v1/namespaces/{NS}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": IMAGE}], **spec}})
        return created

    early = pod("early")  # before the operator attached anything
    start(shop, operator)
    late = pod("late")
    own = pod("own", imagePullSecrets=[{"name": "team-pull"}])
    built = pod("built", serviceAccountName="builder")  # an account the credential does not attach to

    assert pull_secrets_of(late) == [SECRET]
    assert pull_secrets_of(own) == ["team-pull"]
    assert pull_secrets_of(built) == []
    early_now = shop.api_request("GET", f"/api/v1/namespaces/{NS}/pods/early")
    assert pull_secrets_of(early) == pull_secrets_of(early_now) == []  # admission runs on create only


def test_a_deployment_whose_template_lists_its_own_pull_secrets_never_gets_the_attached_one(
    shop: Cluster, operator: OperatorFactory
) -> None:
    needs_controllers(shop, "the pods must be made from the template by the ReplicaSet controller")
    start(shop, operator)
    legacy = deployment(shop, "legacy", imagePullSecrets=[{"name": "team-pull"}])
    plain = deployment(shop, "plain")
    assert pull_secrets_of(deployment_pod(shop, legacy)) == ["team-pull"]
    assert pull_secrets_of(deployment_pod(shop, plain)) == [SECRET]


# -- 3. Namespace deletion ----------------------------------------------------------------------------------------


def test_a_deleted_namespace_leaves_the_counts_and_nothing_is_recreated_in_it_while_it_terminates(
    shop: Cluster, operator: OperatorFactory
) -> None:
    shop.namespace("shop-2", {"pulls-from": "private"})
    start(shop, operator)
    eventually(lambda: _equal(set(shop.secrets(SELECTOR)), {NS, "shop-2"}))
    eventually(lambda: _equal(shop.credential(CREDENTIAL)["status"]["namespaces"],
                              {"selected": 2, "synced": 2, "failed": 0, "conflicts": 0}))
    ready_since = shop.condition(CREDENTIAL)["lastTransitionTime"]
    # Something with a finalizer keeps the namespace Terminating, as a PVC or a custom resource would.
    shop.api_request("POST", "/api/v1/namespaces/shop-2/configmaps",
                     {"metadata": {"name": "held", "finalizers": ["test/hold"]}})
    shop.backend.reset_requests()

    shop.core.delete_namespace("shop-2")
    eventually(lambda: _equal(set(shop.secrets(SELECTOR)), {NS}), timeout=CONTROLLER_TIMEOUT)
    eventually(lambda: _equal(shop.credential(CREDENTIAL)["status"]["namespaces"],
                              {"selected": 1, "synced": 1, "failed": 0, "conflicts": 0}))
    time.sleep(2)  # room for a retry loop to show
    assert shop.api_request("GET", "/api/v1/namespaces/shop-2")["status"]["phase"] == "Terminating"
    only_cleanup(operator_writes(shop, "shop-2"))

    shop.core.patch_namespaced_config_map("held", "shop-2", {"metadata": {"finalizers": None}})

    def gone() -> None:
        try:
            shop.core.read_namespace("shop-2")
        except kubernetes.client.ApiException as error:
            assert error.status == 404  # noqa: PT017 - polled
        else:
            raise AssertionError("shop-2 is still there")
    eventually(gone, timeout=60)
    status = shop.credential(CREDENTIAL)["status"]
    assert status["namespaces"] == {"selected": 1, "synced": 1, "failed": 0, "conflicts": 0}
    assert not status.get("failedNamespaces")
    assert conditions(shop) == {"Ready": ("True", "Ready"), "TokenReady": ("True", "TokenValid"),
                                "SecretsSynced": ("True", "AllNamespacesSynced"),
                                "TokenExpiring": ("False", "NotExpiringSoon")}
    assert shop.condition(CREDENTIAL)["lastTransitionTime"] == ready_since  # Ready never flickered
    only_cleanup(operator_writes(shop, "shop-2"))
    assert shop.secrets(SELECTOR)[NS].metadata.namespace == NS


# -- 4. Owners and garbage collection ------------------------------------------------------------------------------


def test_the_finalizer_not_the_garbage_collector_removes_the_secrets_whatever_the_propagation(
    shop: Cluster, operator: OperatorFactory
) -> None:
    shop.source_secret("regcred-system", "mirror", {"username": "robot", "password": "m1rror"})
    start(shop, operator)
    mirror = credential_spec("mirror", "mirror.regcred.test", "mirror-pull")
    mirror["provider"]["static"]["secretRef"]["name"] = "mirror"
    shop.apply_credential("mirror", mirror)
    eventually(lambda: _equal(shop.pull_secrets(NS), [SECRET, "mirror-pull"]))
    for name in (SECRET, "mirror-pull"):  # nothing for the garbage collector to follow
        assert "ownerReferences" not in shop.api_request("GET", f"/api/v1/namespaces/{NS}/secrets/{name}")["metadata"]

    # kubectl delete --cascade=foreground / --cascade=orphan: the garbage collector adds and removes its own
    # finalizer next to the operator's.
    shop.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", CREDENTIAL,
                                             propagation_policy="Foreground")
    shop.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", "mirror",
                                             propagation_policy="Orphan")

    def gone() -> None:
        names = {c["metadata"]["name"] for c in shop.api_request(
            "GET", "/apis/regcred.dev/v1alpha1/registrycredentials")["items"]}
        assert names == set(), f"{names} still there"
    eventually(gone, timeout=CONTROLLER_TIMEOUT)
    assert shop.core.list_namespaced_secret(NS, label_selector="app.kubernetes.io/managed-by=regcred-operator"
                                            ).items == []
    assert shop.pull_secrets(NS) == []


def test_deleted_workloads_take_their_replicasets_and_pods_along_while_the_operator_runs(
    shop: Cluster, operator: OperatorFactory
) -> None:
    needs_controllers(shop, "ReplicaSets, pods and their collection are the controllers' work")
    operator.start()
    for name in ("web", "api"):
        fail_pull(shop, deployment_pod(shop, deployment(shop, name)))  # stuck before the credential
    attach(shop)
    eventually(lambda: _equal(len(replicasets(shop, "web")) + len(replicasets(shop, "api")), 4),
               timeout=CONTROLLER_TIMEOUT)  # both rolled by the operator: a second ReplicaSet each
    eventually(lambda: _equal(len(shop.credential(CREDENTIAL)["status"].get("remediations") or []), 2))
    remediations = shop.credential(CREDENTIAL)["status"]["remediations"]
    shop.backend.reset_requests()

    apps = kubernetes.client.AppsV1Api(shop.client)
    apps.delete_namespaced_deployment("web", NS, propagation_policy="Foreground")
    apps.delete_namespaced_deployment("api", NS, propagation_policy="Background")

    def collected() -> None:
        assert pods(shop, "app in (web,api)") == []
        assert replicasets(shop, "web") == replicasets(shop, "api") == []
        assert apps.list_namespaced_deployment(NS).items == []
    eventually(collected, timeout=CONTROLLER_TIMEOUT)
    time.sleep(1)
    status = shop.credential(CREDENTIAL)["status"]
    assert status["remediations"] == remediations  # nothing restarted or deleted on the way out
    assert conditions(shop)["Ready"] == ("True", "Ready")
    assert not status.get("failedNamespaces")
    assert [w for w in operator_writes(shop, NS) if w[1] != "events"] == []


def test_a_workload_deleted_in_the_background_draws_no_warning_about_its_departing_pods(
    shop: Cluster, operator: OperatorFactory
) -> None:
    operator.start()
    web = deployment(shop, "web")
    fail_pull(shop, deployment_pod(shop, web))  # stuck before the credential: the operator rolls web
    attach(shop)
    eventually(lambda: _assert(shop.credential(CREDENTIAL)["status"].get("remediations")))
    failures = shop.credential(CREDENTIAL)["status"].get("pullFailures")
    warned = {e.metadata.uid for e in shop.events() if e.type == "Warning"}

    if shop.real:  # kubectl delete deployment web --cascade=background
        kubernetes.client.AppsV1Api(shop.client).delete_namespaced_deployment(
            "web", NS, propagation_policy="Background")
    else:  # the garbage collector's order: the owner, then its ReplicaSets, then their pods
        shop.api_request("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/web")
        for replicaset in replicasets(shop, "web"):
            shop.api_request("DELETE", f"/apis/apps/v1/namespaces/{NS}/replicasets/{replicaset['metadata']['name']}")
        for pod in pods(shop, "app=web"):
            shop.api_request("DELETE", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}")
    eventually(lambda: _equal(pods(shop, "app=web"), []), timeout=CONTROLLER_TIMEOUT)
    time.sleep(1.5)  # the operator's handling of the last pod events
    assert [f"{e.reason}: {e.message}" for e in shop.events()
            if e.type == "Warning" and e.metadata.uid not in warned] == []
    assert shop.credential(CREDENTIAL)["status"].get("pullFailures") == failures


# -- 5. Jobs ----------------------------------------------------------------------------------------------------


def job_conditions(shop: Cluster, name: str) -> dict[str, str]:
    found = read(shop, f"/apis/batch/v1/namespaces/{NS}/jobs/{name}") or {}
    return {c["type"]: c.get("reason", "") for c in (found.get("status") or {}).get("conditions") or []
            if c["status"] == "True"}


def test_a_job_with_retries_left_gets_a_new_pod_with_the_secret(shop: Cluster, operator: OperatorFactory) -> None:
    needs_controllers(shop, "the Job controller makes the replacement pod")
    operator.start()
    job(shop, "migrate", backoff_limit=2)
    stuck = new_pod(shop, "job-name=migrate")
    fail_pull(shop, stuck)  # stuck before the credential: it pulled with no secret at all
    assert pull_secrets_of(stuck) == []
    attach(shop)

    fresh = new_pod(shop, "job-name=migrate", {stuck["metadata"]["uid"]})  # after the Job's back-off (10 s)
    assert pull_secrets_of(fresh) == [SECRET]
    eventually(lambda: _equal(shop.api_request("GET", f"/apis/batch/v1/namespaces/{NS}/jobs/migrate")
                              ["status"].get("failed"), 1), timeout=CONTROLLER_TIMEOUT)  # the retry it cost
    assert "Failed" not in job_conditions(shop, "migrate")
    eventually(lambda: _equal([r["action"] for r in shop.credential(CREDENTIAL)["status"].get("remediations") or []],
                              ["DeletePods"]))


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert(value: object) -> None:
    assert value
