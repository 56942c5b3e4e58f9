"""The chart's RBAC, proven rather than guessed.

The operator runs end to end against the emulated API (kopf embedded, peering on, exactly as the chart
configures it) through every scenario that makes it call the API: a credential attached to every
ServiceAccount, a new namespace, a deleted managed Secret, a spec change, a conflict, remediation of
a Deployment, a DaemonSet, an OrderedReady StatefulSet, a Job and an ownerless ReplicaSet, an explained
failure, Events, and the credential's deletion through the finalizer. Every request the operator made
(its own client's user agent and kopf's) must be allowed by the rendered default ClusterRole, and every
rule of that ClusterRole must have been used.

The emulated API runs no RBAC itself: this test is what checks the rules.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import importlib.metadata
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from regcred.clock import SystemClock
from regcred.embedded import EmbeddedOperator
from regcred.kube import USER_AGENT, KubeApi
from regcred.manifests import load_crd
from regcred.reconcile import Reconciler
from regcred.runtime import Runtime
from regcred_sandbox import EmulatedCluster
from regcred_sandbox.protocol import RequestRecord
from tests.deploy.chart_tools import ROOT, SCENARIOS, of_kind, render, rule_triples
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually

pytestmark = pytest.mark.e2e

PEERING_CRDS = ROOT / "crds" / "kopf-peering.yaml"
PEERING_NAME = "regcred-operator"
KOPF_USER_AGENT = f"kopf/{importlib.metadata.version('kopf')}"  # as kopf sends it
REGISTRY = "registry.example.test"  # never contacted: an `unauthorized` message needs no probe
NS = "shop"
ARGOCD, TEMPLATE = "argocd", "regcred-private"  # where the credential's Argo CD template goes, and its name
# Namespaces mode serves these (the scenarios use all of them).
WATCHED = ("shop", "web", "legacy", "new-team")

# Rules a real cluster needs that the emulated scenarios cannot exercise. Keep this short; each says why.
NOT_EXERCISED: dict[tuple[str, str, str], str] = {
    # ServiceAccounts are written from what the watch told (regcred/accounts.py); one is read only when that
    # was stale (409 Conflict), a race the scenarios do not provoke (tests/test_accounts.py does).
    ("", "serviceaccounts", "get"): "read again after a 409 Conflict",
}

Triple = tuple[str, str, str]


# -- the scenarios -----------------------------------------------------------------------------------


def unauthorized(image: str) -> str:
    return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to resolve '
            f'reference "{image}": pull access denied, repository does not exist or may require authorization: '
            f"authorization failed: no basic auth credentials: 401 Unauthorized")


def not_found(image: str) -> str:
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to resolve '
            f'reference "{image}": {image}: not found')


class Scenarios:
    """What users and the controllers do to the cluster; each step waits for the operator's answer."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = self.cluster.api_request(method, path, body)
        return result

    def workload(self, kind: str, plural: str, api: str, name: str, **spec: Any) -> dict[str, Any]:
        template = {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": f"{REGISTRY}/team/{name}:1"}]}}
        body = {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": NS},
                "spec": {"selector": {"matchLabels": {"app": name}}, **spec, "template": template}}
        return self.request("POST", f"/apis/{api}/namespaces/{NS}/{plural}", body)

    def stuck_pod(self, owner: dict[str, Any] | None, name: str, message: str) -> None:
        """A pod as its controller makes it, then its status as the kubelet writes it after a failed pull."""
        image = f"{REGISTRY}/team/{name.split('-')[0]}:1"
        owners = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                   "uid": owner["metadata"]["uid"], "controller": True}] if owner else []
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": NS, "ownerReferences": owners},
               "spec": {"containers": [{"name": "app", "image": image}],
                        "imagePullSecrets": [{"name": "private-pull"}]}}
        created = self.request("POST", f"/api/v1/namespaces/{NS}/pods", pod)
        # The kubelet's Failed Event: these pulls have failed for an hour, since before the credential existed,
        # so a restart gives the pods a Secret they did not have (no probe: the registry is never contacted).
        an_hour_ago = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.request("POST", f"/api/v1/namespaces/{NS}/events", {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.failed", "namespace": NS},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name, "namespace": NS,
                               "uid": created["metadata"]["uid"]},
            "reason": "Failed", "type": "Warning", "message": f'Failed to pull image "{image}": {message}',
            "source": {"component": "kubelet"}, "firstTimestamp": an_hour_ago, "lastTimestamp": an_hour_ago})
        self.request("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}/status", {"status": {
            "phase": "Pending",
            "containerStatuses": [{"name": "app", "image": image, "imageID": "", "ready": False, "restartCount": 0,
                                   "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}],
        }})

    def remediated(self, api: str, plural: str, name: str) -> None:
        annotations = self.request("GET", f"/apis/{api}/namespaces/{NS}/{plural}/{name}")["metadata"].get(
            "annotations") or {}
        assert "regcred.dev/remediated" in annotations

    def run(self) -> None:
        c = self.cluster
        c.namespace("regcred-system")
        c.source_secret("regcred-system", "robot", {"username": "robot", "password": "s3cret"})
        c.namespace(NS, {"pulls-from": "private"}, accounts=("default", "builder"))
        c.namespace("web", {"pulls-from": "private"})
        c.namespace("legacy", {"pulls-from": "private"})
        c.source_secret("legacy", "private-pull", {"token": "not ours"})  # a conflict
        # Argo CD's namespace, not served in namespaces mode, holding someone else's Secret of the template's name.
        c.namespace(ARGOCD)
        c.source_secret(ARGOCD, TEMPLATE, {"url": "theirs.example"})

        # A credential attached to every ServiceAccount of the selected namespaces.
        spec: dict[str, Any] = {
            "provider": {"static": {"registry": REGISTRY,
                                    "secretRef": {"namespace": "regcred-system", "name": "robot"}}},
            "secretName": "private-pull",
            "namespaces": {"selector": {"matchLabels": {"pulls-from": "private"}}},
            "serviceAccounts": ["*"],
            "remediation": {"strategy": "RolloutRestart", "cooldown": "10m"},
            "argocd": {"namespace": ARGOCD},
        }
        c.apply_credential("private", spec)
        eventually(lambda: _equal(c.credential("private")["status"]["namespaces"]["conflicts"], 1))
        eventually(lambda: _equal(c.credential("private")["status"]["argocd"]["reason"], "SecretConflict"))
        c.core.delete_namespaced_secret(TEMPLATE, ARGOCD)  # theirs goes: the next pass writes the template
        eventually(lambda: _assert("private-pull" in c.pull_secrets(NS, "builder")))

        # A new namespace, then drift: a managed Secret deleted by someone.
        c.namespace("new-team", {"pulls-from": "private"})
        eventually(lambda: _assert(c.dockerconfig("new-team", "private-pull")["auths"][REGISTRY]))
        eventually(lambda: _equal(_template(c)["url"], REGISTRY))
        c.core.delete_namespaced_secret("private-pull", "web")
        eventually(lambda: _assert(c.dockerconfig("web", "private-pull")))
        tampered = base64.b64encode(json.dumps({"auths": {REGISTRY: {"auth": "eDp5"}}}).encode()).decode()
        c.core.patch_namespaced_secret("private-pull", "web", {"data": {".dockerconfigjson": tampered}})
        eventually(lambda: _equal(c.dockerconfig("web", "private-pull")["auths"][REGISTRY]["password"], "s3cret"))

        # A rotated password and a spec change: the token store is updated, a namespace excluded loses its Secret.
        c.core.patch_namespaced_secret("robot", "regcred-system", {"data": {"password": base64.b64encode(
            b"s3cret-2").decode()}})
        spec["namespaces"]["exclude"] = ["new-team"]
        c.apply_credential("private", spec)
        eventually(lambda: _assert("new-team" not in c.secrets("regcred.dev/credential=private")))
        eventually(lambda: _equal(c.dockerconfig("web", "private-pull")["auths"][REGISTRY]["password"], "s3cret-2"))
        eventually(lambda: _equal(_template(c)["password"], "s3cret-2"))

        # Remediation: one stuck pod per kind of workload, and a failure that a restart cannot fix.
        web = self.workload("Deployment", "deployments", "apps/v1", "web")
        replicaset = self.request("POST", f"/apis/apps/v1/namespaces/{NS}/replicasets", {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-5d9", "namespace": NS, "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": web["metadata"]["uid"],
                 "controller": True}]},
            "spec": {"selector": web["spec"]["selector"], "template": web["spec"]["template"]}})
        self.stuck_pod(replicaset, "web-5d9-x1", unauthorized(f"{REGISTRY}/team/web:1"))
        agent = self.workload("DaemonSet", "daemonsets", "apps/v1", "agent")
        self.stuck_pod(agent, "agent-x1", unauthorized(f"{REGISTRY}/team/agent:1"))
        db = self.workload("StatefulSet", "statefulsets", "apps/v1", "db", serviceName="db")
        self.stuck_pod(db, "db-0", unauthorized(f"{REGISTRY}/team/db:1"))
        job = self.request("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": NS},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "app", "image": f"{REGISTRY}/team/migrate:1"}]}}}})
        self.stuck_pod(job, "migrate-x1", unauthorized(f"{REGISTRY}/team/migrate:1"))
        orphan = self.request("POST", f"/apis/apps/v1/namespaces/{NS}/replicasets", {
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "orphan", "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": "orphan"}},
                     "template": {"metadata": {"labels": {"app": "orphan"}}, "spec": {"containers": [
                         {"name": "app", "image": f"{REGISTRY}/team/orphan:1"}]}}}})
        self.stuck_pod(orphan, "orphan-x1", unauthorized(f"{REGISTRY}/team/orphan:1"))
        typo = self.workload("Deployment", "deployments", "apps/v1", "typo")
        self.stuck_pod(typo, "typo-x1", not_found(f"{REGISTRY}/team/typo:1"))

        eventually(lambda: self.remediated("apps/v1", "deployments", "web"))
        eventually(lambda: self.remediated("apps/v1", "daemonsets", "agent"))
        eventually(lambda: self.remediated("apps/v1", "statefulsets", "db"))
        eventually(lambda: self.remediated("batch/v1", "jobs", "migrate"))
        eventually(lambda: self.remediated("apps/v1", "replicasets", "orphan"))
        eventually(lambda: _assert({"db-0", "migrate-x1", "orphan-x1"}.isdisjoint(c.pod_names(NS))))
        eventually(lambda: _assert(c.events("RestartWouldNotHelp")))
        eventually(lambda: _equal(len(c.credential("private")["status"].get("remediations") or []), 5))

        # Deletion: the finalizer removes the Secrets and the ServiceAccount entries.
        c.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", "private")
        eventually(lambda: _equal(c.secrets("regcred.dev/credential=private"), {}))
        eventually(lambda: _equal(self.request("GET", "/apis/regcred.dev/v1alpha1/registrycredentials")["items"], []))
        assert "private-pull" not in c.pull_secrets(NS, "builder")


# -- running them ----------------------------------------------------------------------------------


# A replica resumes only once the (just created) peering object is a lifetime old (regcred.peering): short.
PEERING_LIFETIME = 2


def peering_crds() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(PEERING_CRDS.read_text()) if doc]


@pytest.fixture(scope="module")
def operator_requests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RequestRecord]]:
    """The API requests of one operator replica (peering on) through all the scenarios, stop included."""
    del tmp_path_factory
    with EmulatedCluster() as emulated, pytest.MonkeyPatch.context() as monkeypatch:
        emulated.install_crd(load_crd())
        for crd in peering_crds():
            emulated.install_crd(crd)
        cluster = Cluster(emulated)
        cluster.custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {
            "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING_NAME}})
        factory = OperatorFactory(emulated, monkeypatch)
        factory.start(settings=dataclasses.replace(TEST_SETTINGS, peering_name=PEERING_NAME,
                                                   peering_lifetime_seconds=PEERING_LIFETIME))
        try:
            # This replica registered in the peering object: kopf runs in peering mode, not standalone.
            eventually(lambda: _assert(cluster.api_request(
                "GET", f"/apis/kopf.dev/v1/clusterkopfpeerings/{PEERING_NAME}").get("status")))
            Scenarios(cluster).run()
        finally:
            factory.stop()
        yield [r for r in emulated.requests if r.user_agent in (USER_AGENT, KOPF_USER_AGENT)]


@pytest.fixture(scope="module")
def namespaced_requests() -> Iterator[list[RequestRecord]]:
    """The same scenarios with the operator serving only WATCHED (REGCRED_WATCH_NAMESPACES), peering on."""
    with EmulatedCluster() as emulated, pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("KUBECONFIG", emulated.kubeconfig_path)  # how kopf itself logs in
        emulated.install_crd(load_crd())
        for crd in peering_crds():
            emulated.install_crd(crd)
        cluster = Cluster(emulated)
        for namespace in WATCHED:
            cluster.namespace(namespace)
            cluster.api_request("POST", f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings", {
                "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING_NAME}})
        settings = dataclasses.replace(TEST_SETTINGS, peering_name=PEERING_NAME, watch_namespaces=WATCHED,
                                       peering_lifetime_seconds=PEERING_LIFETIME)
        client = emulated.api_client()
        client.user_agent = USER_AGENT
        kube = KubeApi(client, namespaces=WATCHED)
        runtime = Runtime(settings=settings, kube=kube, reconciler=Reconciler(kube, settings, SystemClock()),
                          clock=SystemClock())
        operator = EmbeddedOperator(runtime).start()  # namespaced mode: settings.watch_namespaces
        try:
            eventually(lambda: _assert(all(cluster.api_request(
                "GET", f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{PEERING_NAME}").get("status")
                for ns in WATCHED)))
            Scenarios(cluster).run()
        finally:
            operator.stop()
        yield [r for r in emulated.requests if r.user_agent in (USER_AGENT, KOPF_USER_AGENT)]


def triple(record: RequestRecord) -> Triple | None:
    """The (apiGroup, resource[/subresource], verb) that RBAC checks for a request; None for discovery."""
    if not record.resource:
        return None  # /api, /apis, /version: non-resource URLs, allowed to every user (system:discovery)
    verb = {"post": "create", "put": "update"}.get(record.verb, record.verb)
    resource = f"{record.resource}/{record.subresource}" if record.subresource else record.resource
    return record.group, resource, verb


def used(records: list[RequestRecord]) -> dict[Triple, list[str]]:
    out: dict[Triple, list[str]] = {}
    for record in records:
        key = triple(record)
        if key is not None:
            out.setdefault(key, []).append(f"{record.method} {record.path} -> {record.status}")
    return out


def cluster_role(values: dict[str, Any]) -> dict[str, Any]:
    (role,) = of_kind(render(values), "ClusterRole")
    return role


# -- the checks ------------------------------------------------------------------------------------


def test_the_operator_made_requests_with_both_user_agents(operator_requests: list[RequestRecord]) -> None:
    agents = {r.user_agent for r in operator_requests}
    assert agents == {USER_AGENT, KOPF_USER_AGENT}, agents


def test_every_request_is_allowed_by_the_default_cluster_role(operator_requests: list[RequestRecord]) -> None:
    allowed = rule_triples(cluster_role(SCENARIOS["default"]))
    denied = {key: paths[:3] for key, paths in used(operator_requests).items() if key not in allowed}
    assert not denied, f"requests the ClusterRole would deny: {denied}"


def test_every_rule_of_the_default_cluster_role_is_used(operator_requests: list[RequestRecord]) -> None:
    granted = rule_triples(cluster_role(SCENARIOS["default"]))
    unused = granted - set(used(operator_requests)) - set(NOT_EXERCISED)
    assert not unused, f"rules no scenario needed (drop them, or say why in NOT_EXERCISED): {sorted(unused)}"


def test_the_not_exercised_list_names_only_granted_rules() -> None:
    assert set(NOT_EXERCISED) <= rule_triples(cluster_role(SCENARIOS["default"]))


def test_remediation_off_drops_every_pod_and_workload_rule() -> None:
    on = rule_triples(cluster_role(SCENARIOS["default"]))
    off = rule_triples(cluster_role(SCENARIOS["remediation-off"]))
    dropped = on - off
    assert not {t for t in off if t[1] in ("pods", "deployments", "daemonsets", "statefulsets", "replicasets",
                                          "jobs") or t[0] in ("apps", "batch")}
    # What remediation alone reads: a namespace's opt-out annotation and a credential's remediation history.
    assert {("", "namespaces", "get"), ("regcred.dev", "registrycredentials", "get")} <= dropped
    assert off < on


def test_remediation_off_rules_are_what_the_scenarios_used_without_remediation(
    operator_requests: list[RequestRecord],
) -> None:
    """Whatever the remediation-off role keeps, the scenarios used; and it keeps all the fan-out needs."""
    off = rule_triples(cluster_role(SCENARIOS["remediation-off"]))
    remediation_only = {("", "pods"), ("apps",), ("batch",)}
    needed = {
        key for key in used(operator_requests)
        if (key[0], key[1]) not in remediation_only and (key[0],) not in remediation_only
        and key not in {("", "namespaces", "get"), ("regcred.dev", "registrycredentials", "get"),
                        ("", "events", "list")}  # a stuck pod's Failed Events
    }
    assert needed <= off, f"missing without remediation: {sorted(needed - off)}"
    assert off - set(NOT_EXERCISED) <= set(used(operator_requests))


def test_namespaces_mode_splits_the_rules_into_cluster_and_namespace_scopes() -> None:
    objects = render(SCENARIOS["namespaces-mode"])
    default = rule_triples(cluster_role(SCENARIOS["default"]))
    cluster_wide = rule_triples(cluster_role(SCENARIOS["namespaces-mode"]))
    assert {t[1] for t in cluster_wide} == {
        "registrycredentials", "registrycredentials/status", "namespaces", "customresourcedefinitions"}
    roles = {(r["metadata"]["namespace"]): rule_triples(r) for r in of_kind(objects, "Role")}
    bindings = {(b["metadata"]["namespace"]) for b in of_kind(objects, "RoleBinding")}
    assert set(roles) == bindings == {"team-a", "team-b", "default", "regcred-system"}
    namespaced_default = {t for t in default if t[1] not in {r for _, r, _ in cluster_wide}}
    peering = {("kopf.dev", "clusterkopfpeerings", "list"), ("kopf.dev", "clusterkopfpeerings", "watch"),
               ("kopf.dev", "clusterkopfpeerings", "create"), ("kopf.dev", "clusterkopfpeerings/status", "patch")}
    for watched in ("team-a", "team-b"):
        assert roles[watched] == (namespaced_default - peering) | {
            ("kopf.dev", "kopfpeerings", "list"), ("kopf.dev", "kopfpeerings", "watch"),
            ("kopf.dev", "kopfpeerings", "create"), ("kopf.dev", "kopfpeerings/status", "patch")}
    assert roles["default"] == {("", "events", "create")}  # the events namespace
    # The credentials' source Secrets (read, and watched by name), and the operator's token store (regcred.store).
    assert roles["regcred-system"] == {("", "secrets", "get"), ("", "secrets", "create"), ("", "secrets", "patch"),
                                       ("", "secrets", "delete"), ("", "secrets", "list"), ("", "secrets", "watch")}


def test_no_peering_rules_without_peering() -> None:
    objects = render(SCENARIOS["standalone"])
    granted = set().union(*(rule_triples(r) for r in of_kind(objects, "ClusterRole") + of_kind(objects, "Role")))
    assert not {t for t in granted if t[0] == "kopf.dev"}


def namespaces_mode_roles() -> tuple[set[Triple], dict[str, set[Triple]]]:
    """The namespaces-mode ClusterRole's rules, and each namespace's Role rules, as rendered."""
    objects = render({"watchNamespaces": list(WATCHED), "rbac": {"argocdNamespaces": [ARGOCD]}})
    (role,) = of_kind(objects, "ClusterRole")
    return rule_triples(role), {r["metadata"]["namespace"]: rule_triples(r) for r in of_kind(objects, "Role")}


def test_namespaces_mode_allows_every_request_where_it_was_made(namespaced_requests: list[RequestRecord]) -> None:
    cluster_wide, roles = namespaces_mode_roles()
    denied: dict[str, list[str]] = {}
    for record in namespaced_requests:
        key = triple(record)
        if key is None or key in cluster_wide or key in roles.get(record.namespace or "", set()):
            continue
        denied.setdefault(f"{key} in {record.namespace or 'the cluster scope'}", []).append(
            f"{record.method} {record.path}")
    assert not denied, f"requests the namespaces-mode RBAC would deny: {denied}"


def test_namespaces_mode_grants_only_what_was_used(namespaced_requests: list[RequestRecord]) -> None:
    cluster_wide, roles = namespaces_mode_roles()
    used_where: dict[str, set[Triple]] = {}
    for record in namespaced_requests:
        key = triple(record)
        if key is not None:
            used_where.setdefault(record.namespace or "", set()).add(key)
    unused = {"the ClusterRole": cluster_wide - used_where.get("", set()) - set(NOT_EXERCISED)}
    watched_use = set().union(*(used_where.get(ns, set()) for ns in WATCHED))
    for namespace, granted in roles.items():
        seen = watched_use if namespace in WATCHED else used_where.get(namespace, set())
        unused[f"the Role in {namespace}"] = granted - seen - set(NOT_EXERCISED)
    assert not any(unused.values()), f"rules no scenario needed: { {k: sorted(v) for k, v in unused.items() if v} }"


def _template(cluster: Cluster) -> dict[str, str]:
    data = cluster.core.read_namespaced_secret(TEMPLATE, ARGOCD).data or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert(value: object) -> None:
    assert value

