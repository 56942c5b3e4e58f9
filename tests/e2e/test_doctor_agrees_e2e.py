"""`regcred doctor` and the operator agree on the same pods: one table of pod situations, fed to both.

Each row builds a pod, on the emulated API and on the real control plane (the test plays the kubelet; on
the emulated API also the controllers and the ServiceAccount admission plugin), with a RegistryCredential
serving the namespace from a real registry (Debian's docker-registry, htpasswd, plain HTTP on 127.0.0.1).
The operator's side is the Remediator itself, handling the pod as its watch would: what it decided is read
from what it did (its Events on the workload, the credential's status). The doctor's side is its JSON
output. Both must name the same cause and action, with the same sentence; after the operator acted, the
doctor reports what it did.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
from typing import Any

import pytest

from regcred import CREDENTIAL_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred import dockerconfig as dc
from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.doctor import run_doctor
from regcred.fanout import CONTENT_HASH_ANNOTATION, format_time, parse_time
from regcred.imageref import ImageRef
from regcred.kube import MERGE_PATCH, KubeApi
from regcred.models import parse_credential
from regcred.probe import Prober
from regcred.providers.base import Token
from regcred.reconcile import Reconciler
from regcred.remediation import Remediator
from regcred.serving import Serving
from tests.e2e.harness import Cluster
from tests.e2e.test_remediation_e2e import stuck_pod as kubelet_reports
from tests.e2e.test_remediation_e2e import workload
from tests.registry.harness import PASSWORD, REPO, TAG, USERNAME, Registry, needs_registry

pytestmark = [pytest.mark.e2e, needs_registry]

NS = "shop"
CREDENTIAL = "private"
SECRET = "private-pull"
UNSERVED = "127.0.0.1:1"  # a registry no credential serves (nothing listens there: the doctor's probe fails fast)
# The operator's Event reasons, and the action each says it decided.
ACTIONS = {"Remediated": "remediate", "NotRemediated": "remediate", "RemediationDryRun": "remediate",
           "RestartWouldNotHelp": "explain", "PullSecretNotInTemplate": "explain", "CredentialRejected": "rejected"}


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    action: str  # what both must decide
    cause: str
    tag: str = TAG
    kind: str = "Deployment"  # the pod's controller: Deployment (through a ReplicaSet), Job, or Pod (bare)
    reason: str = "ErrImagePull"
    message: str = "unauthorized"  # a key of MESSAGES: the container status's waiting message
    event: str | None = "unauthorized"  # a key of MESSAGES: the pod's Failed Event (None: no Event)
    event_at: str = "before"  # before | after the credential in place was written
    # The ServiceAccount carries the Secret when the pod is made (admission copies it into a pod that lists
    # no pull secrets of its own), or only after (the pod lacks it).
    attached_before_the_pod: bool = True
    template_secrets: tuple[str, ...] = ()
    password: str = PASSWORD  # of the credential in place
    registry: str | None = None  # None: the served registry
    job: dict[str, Any] = dataclasses.field(default_factory=dict)
    next: str | None = None  # how the doctor's "next" starts, before the operator acts
    deleting: bool = False  # the pod is being deleted (held by a finalizer)
    shared: bool = False  # another credential shares the Secret (regcred.shared), for another registry


ROWS = [
    Row("unauthorized-before-the-revision", "remediate", "unauthorized", next="restart Deployment shop/web"),
    Row("unauthorized-after-the-revision-is-rejected", "rejected", "unauthorized", event_at="after",
        password="wrong-password-4711"),
    Row("not-found", "explain", "not_found", tag="v2", message="not_found", event="not_found"),
    Row("ambiguous-image-exists", "remediate", "unauthorized", message="ambiguous", event="ambiguous"),
    Row("ambiguous-image-missing", "explain", "unauthorized", tag="v9", message="ambiguous", event="ambiguous"),
    Row("template-with-its-own-pull-secrets", "explain", "unauthorized", template_secrets=("other-pull",)),
    Row("lacks-the-service-accounts-secret", "remediate", "unauthorized", attached_before_the_pod=False,
        event_at="after"),
    Row("registry-not-served", "ignore", "unauthorized", registry=UNSERVED),
    Row("pre-1.32-back-off-with-a-failed-event", "remediate", "unauthorized", reason="ImagePullBackOff",
        message="backoff"),
    Row("job-without-retries-to-spare", "remediate", "unauthorized", kind="Job", job={"backoffLimit": 0},
        next="nothing: regcred-operator leaves the Job alone"),
    Row("bare-pod", "remediate", "unauthorized", kind="Pod", next="nothing: the pod has no controller"),
    Row("pod-being-deleted", "ignore", "unauthorized", deleting=True),
    Row("shared-secret-unauthorized-before-the-revision", "remediate", "unauthorized", shared=True,
        next="restart Deployment shop/web"),
    Row("shared-secret-rejected", "rejected", "unauthorized", event_at="after", password="wrong-password-4711",
        shared=True),
]
SHARING = "another"  # first by name: its name is the shared Secret's label
SHARING_REGISTRY = "registry.another.example"


def messages(image: str) -> dict[str, str]:
    ref = ImageRef.parse(image)
    return {
        "unauthorized": (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to '
                         f'resolve reference "{image}": unexpected status from HEAD request to http://{ref.registry}'
                         f"/v2/{ref.repository}/manifests/{ref.reference}: 401 Unauthorized"),
        "not_found": (f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to '
                      f'resolve reference "{image}": {image}: not found'),
        "ambiguous": (f"Error response from daemon: pull access denied for {ref.registry}/{ref.repository}, "
                      "repository does not exist or may require 'docker login': denied: requested access to the "
                      "resource is denied"),
        "backoff": f'Back-off pulling image "{image}"',
    }


def credential_in_place(kube: KubeApi, registry: Registry, password: str, *, shared: bool = False
                        ) -> tuple[Serving, datetime.datetime]:
    """The RegistryCredential, its Secret in the namespace, and the operator's view of it (reconcile.Serving);
    ``shared``: with another credential's entry in the same Secret, as the operator composes it."""
    spec = {"provider": {"static": {"registry": registry.host,
                                    "secretRef": {"namespace": "regcred-system", "name": "robot"}}},
            "secretName": SECRET, "namespaces": {"names": [NS]},
            "remediation": {"strategy": "RolloutRestart", "cooldown": "10m"}}
    for name, registry_host in ((CREDENTIAL, registry.host), *([(SHARING, SHARING_REGISTRY)] if shared else [])):
        kube.request("POST", "/apis/regcred.dev/v1alpha1/registrycredentials", body={
            "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": name},
            "spec": {**spec, "provider": {"static": {**spec["provider"]["static"], "registry": registry_host}}}})
    token = Token(hosts=(registry.host,), username=USERNAME, password=password, expires_at=None)
    content = dc.render(token)
    revision = dc.content_hash(content)
    if shared:
        content = dc.compose([dc.render(Token(hosts=(SHARING_REGISTRY,), username="another", password="another-1",
                                              expires_at=None)), content])
    secret = kube.request("POST", f"/api/v1/namespaces/{NS}/secrets", body={
        "metadata": {"name": SECRET, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                                                CREDENTIAL_LABEL: SHARING if shared else CREDENTIAL},
                     "annotations": {CONTENT_HASH_ANNOTATION: dc.content_hash(content)}},
        "type": dc.SECRET_TYPE, "data": dc.encode_data(content)})
    since = parse_time(secret["metadata"]["creationTimestamp"])
    assert since is not None
    kube.patch_credential_status(CREDENTIAL, {"lastRefreshTime": format_time(since), "registries": [registry.host]})
    if shared:
        kube.patch_credential_status(SHARING, {"lastRefreshTime": format_time(since),
                                               "registries": [SHARING_REGISTRY]})
    body = kube.read_credential(CREDENTIAL)
    return Serving(body, parse_credential(CREDENTIAL, spec), frozenset({NS}), token, revision, since), since


def stuck_pod(shop: Cluster, row: Row, image: str, since: datetime.datetime) -> dict[str, Any]:
    """The row's pod, made by its controller (or played so on the emulated API), with the pull failure the
    kubelet reports: the waiting state, and the Failed Event at the row's time."""
    texts = messages(image)
    if row.kind == "Pod":
        pod = shop.api_request("POST", f"/api/v1/namespaces/{NS}/pods", {
            "metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "app", "image": image}], **(
                {} if shop.real else {"imagePullSecrets": [{"name": n} for n in shop.pull_secrets(NS)]})}})
    else:
        owner = workload(shop, row.kind, "web" if row.kind == "Deployment" else "migrate", image,
                         template_secrets=row.template_secrets, **row.job)
        pod = kubelet_reports(shop, owner, image, texts[row.message], reason=row.reason, error="",
                              via_replicaset=row.kind == "Deployment")
    if row.event is not None:
        at = format_time(since + (datetime.timedelta(minutes=2) if row.event_at == "after"
                                  else -datetime.timedelta(hours=1)))
        shop.api_request("POST", f"/api/v1/namespaces/{NS}/events", {
            "metadata": {"name": f"{pod['metadata']['name']}.pull"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "namespace": NS,
                               "uid": pod["metadata"]["uid"]},
            "reason": "Failed", "type": "Warning", "message": f'Failed to pull image "{image}": {texts[row.event]}',
            "source": {"component": "kubelet", "host": "node-1"}, "firstTimestamp": at, "lastTimestamp": at,
            "count": 1})
    status = {"phase": "Pending", "containerStatuses": [{
        "name": "app", "image": image, "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": row.reason, "message": texts[row.message]}}}]}
    path = f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}"
    updated: dict[str, Any] = shop.api_request("PATCH", f"{path}/status", {"status": status})
    if row.deleting:
        shop.api_request("PATCH", path, {"metadata": {"finalizers": ["example.com/hold"]}})
        shop.api_request("DELETE", path)
        updated = shop.api_request("GET", path)
        assert updated["metadata"].get("deletionTimestamp")
    return updated


def doctor(kube: KubeApi, prober: Prober, now: datetime.datetime, pod: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    assert run_doctor(NS, pod, "json", kube=kube, prober=prober, out=out, err=err, now=now) == 1, err.getvalue()
    (report,) = json.loads(out.getvalue())
    assert PASSWORD not in out.getvalue() and "wrong-password-4711" not in out.getvalue()
    return report  # type: ignore[no-any-return]


def operator_verdict(kube: KubeApi) -> tuple[str, str | None, str | None]:
    """(action, cause, the Event's message) as the operator's own effects tell them."""
    events = [e for e in kube.request("GET", f"/api/v1/namespaces/{NS}/events")["items"]
              if e.get("reason") in ACTIONS]
    if not events:
        return "ignore", None, None
    (event,) = events  # one Event about the pod's workload (or the bare pod)
    status = kube.read_credential(CREDENTIAL).get("status") or {}
    if status.get("remediations"):
        cause = status["remediations"][0]["reason"]
    else:
        (cause,) = (status.get("pullFailures") or {}).keys()
    return ACTIONS[event["reason"]], cause, event["message"]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_doctor_and_the_operator_agree(cluster: Cluster, registry: Registry, row: Row) -> None:
    kube = KubeApi(cluster.client)
    cluster.namespace(NS)
    attach = {"imagePullSecrets": [{"name": SECRET}]}
    if row.attached_before_the_pod:
        kube.request("PATCH", f"/api/v1/namespaces/{NS}/serviceaccounts/default", body=attach,
                     content_type=MERGE_PATCH)
    serving, since = credential_in_place(kube, registry, row.password, shared=row.shared)
    image = f"{row.registry or registry.host}/{REPO}:{row.tag}"
    pod = stuck_pod(cluster, row, image, since)
    name = pod["metadata"]["name"]
    if not row.attached_before_the_pod:  # the operator attached its Secret after the pod was made
        kube.request("PATCH", f"/api/v1/namespaces/{NS}/serviceaccounts/default", body=attach,
                     content_type=MERGE_PATCH)
    now = since + datetime.timedelta(minutes=10)
    prober = Prober(insecure_registries={registry.host, UNSERVED}, timeout=5)

    seen_by_doctor = doctor(kube, prober, now, name)["verdict"]

    settings = Settings(insecure_registries=frozenset({registry.host}))
    clock = ManualClock(now)
    reconciler = Reconciler(kube, settings, clock, prober=prober)
    reconciler.served.serve(serving)
    remediator = Remediator(kube, reconciler.served, reconciler.reporter, settings, clock, prober)
    remediator.handle_pod(pod)
    action, cause, message = operator_verdict(kube)

    assert (seen_by_doctor["action"], seen_by_doctor["cause"]) == (row.action, row.cause), json.dumps(seen_by_doctor)
    assert seen_by_doctor["fix"]  # and a fix for people, whatever the operator does
    assert action == seen_by_doctor["action"]
    if action == "ignore":
        assert seen_by_doctor["credential"] is None and seen_by_doctor["next"] == "nothing"
        if row.deleting:
            assert seen_by_doctor["why"].startswith("The pod is being deleted")
            cluster.api_request("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}", {"metadata": {"finalizers": None}})
        return
    assert seen_by_doctor["credential"] == CREDENTIAL
    assert cause == seen_by_doctor["cause"]
    # The operator's own sentence (the doctor hides user names from the probe's detail).
    assert message is not None and seen_by_doctor["why"] in message.replace(f"user {USERNAME!r}", "the Secret's user")
    if row.next is not None:
        assert seen_by_doctor["next"].startswith(row.next), seen_by_doctor["next"]

    # Afterwards the doctor says what the operator did.
    after = doctor(kube, prober, now, name)
    assert (after["verdict"]["action"], after["verdict"]["cause"]) == (row.action, row.cause)
    if remediator.actions:
        assert after["verdict"]["done"] and after["verdict"]["done"][-1].startswith("remediated Deployment shop/web")
        assert after["verdict"]["next"].startswith("nothing more: it was already restarted")
    if action == "rejected":
        assert any("CredentialRejected=True" in line for line in after["verdict"]["done"])
