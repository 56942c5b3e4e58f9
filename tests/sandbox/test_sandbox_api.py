"""The emulated API server through the official client: CRUD semantics as a real API server has them."""

from __future__ import annotations

import base64
from typing import Any

import kubernetes
import pytest

from regcred_sandbox import EmulatedCluster
from tests.sandbox.conftest import WIDGETS_CRD, raw, status_of

ApiException = kubernetes.client.ApiException


def gadget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.dev/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": spec}


# -- Discovery ------------------------------------------------------------------------------------


def test_core_discovery_has_the_right_scopes_and_verbs(cluster: EmulatedCluster) -> None:
    status, api = raw(cluster, "GET", "/api")
    assert status == 200 and api["versions"] == ["v1"]
    status, core = raw(cluster, "GET", "/api/v1")
    assert core["groupVersion"] == "v1"
    resources = {r["name"]: r for r in core["resources"]}
    assert resources["namespaces"]["namespaced"] is False
    assert resources["secrets"]["namespaced"] is True
    assert {"list", "watch", "patch"} <= set(resources["serviceaccounts"]["verbs"])
    assert "pods/status" in resources and "secrets/status" not in resources
    status, version = raw(cluster, "GET", "/version")
    assert status == 200 and version["major"] == "1"


def test_a_crd_is_served_once_installed_or_posted(cluster: EmulatedCluster, client: Any) -> None:
    status, group = raw(cluster, "GET", "/apis/example.dev/v1")
    gadgets = next(r for r in group["resources"] if r["name"] == "gadgets")
    assert gadgets["namespaced"] is True and gadgets["kind"] == "Gadget" and gadgets["shortNames"] == ["gd"]
    assert any(r["name"] == "gadgets/status" for r in group["resources"])

    extensions = kubernetes.client.ApiextensionsV1Api(client)
    extensions.create_custom_resource_definition(WIDGETS_CRD)
    status, group = raw(cluster, "GET", "/apis/example.dev/v1")
    widgets = next(r for r in group["resources"] if r["name"] == "widgets")
    assert widgets["namespaced"] is False
    crd = extensions.read_custom_resource_definition("widgets.example.dev")
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"

    custom = kubernetes.client.CustomObjectsApi(client)
    custom.create_cluster_custom_object("example.dev", "v1", "widgets", {"metadata": {"name": "w"}})
    assert custom.get_cluster_custom_object("example.dev", "v1", "widgets", "w")["kind"] == "Widget"

    extensions.delete_custom_resource_definition("widgets.example.dev")
    status, _ = raw(cluster, "GET", "/apis/example.dev/v1/widgets")
    assert status == 404


def test_a_malformed_crd_is_rejected(cluster: EmulatedCluster) -> None:
    bad = {**WIDGETS_CRD, "metadata": {"name": "wrong.example.dev"}}
    status, body = raw(cluster, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad)
    assert status == 422 and body["reason"] == "Invalid"


# -- Create, read, errors -------------------------------------------------------------------------


def test_created_objects_get_server_metadata(core: Any) -> None:
    secret = core.create_namespaced_secret("default", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    meta = secret.metadata
    assert meta.uid and meta.resource_version and meta.creation_timestamp
    assert meta.generation == 1
    assert secret.data == {"k": base64.b64encode(b"v").decode()}  # stringData is write-only
    assert secret.type == "Opaque"
    namespace = core.read_namespace("default")
    assert namespace.metadata.labels["kubernetes.io/metadata.name"] == "default"
    assert namespace.status.phase == "Active"


def test_resource_versions_increase_with_every_write(core: Any) -> None:
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    second = core.patch_namespaced_config_map("c", "default", {"data": {"a": "2"}})
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    unchanged = core.patch_namespaced_config_map("c", "default", {"data": {"a": "2"}})
    assert unchanged.metadata.resource_version == second.metadata.resource_version  # no-op writes are free


def test_generate_name(core: Any) -> None:
    made = {core.create_namespaced_secret("default", {"metadata": {"generateName": "tok-"}}).metadata.name
            for _ in range(3)}
    assert len(made) == 3 and all(name.startswith("tok-") and len(name) == 9 for name in made)
    with pytest.raises(ApiException) as info:
        core.create_namespaced_secret("default", {"metadata": {}})
    assert status_of(info.value)["reason"] == "Invalid"


@pytest.mark.parametrize(("call", "code", "reason"), [
    (lambda core: core.read_namespaced_secret("missing", "default"), 404, "NotFound"),
    (lambda core: core.create_namespaced_secret("nowhere", {"metadata": {"name": "s"}}), 404, "NotFound"),
    (lambda core: core.create_namespace({"metadata": {"name": "default"}}), 409, "AlreadyExists"),
    (lambda core: core.create_namespace({"metadata": {"name": "Not_Valid"}}), 422, "Invalid"),
    (lambda core: core.list_namespaced_secret("default", label_selector="a in (b"), 400, "BadRequest"),
    (lambda core: core.delete_namespaced_secret("missing", "default"), 404, "NotFound"),
])
def test_errors_have_standard_reasons(core: Any, call: Any, code: int, reason: str) -> None:
    with pytest.raises(ApiException) as info:
        call(core)
    body = status_of(info.value)
    assert (body["code"], body["reason"], body["status"]) == (code, reason, "Failure")
    assert body["message"]


def test_not_found_details_and_message(core: Any) -> None:
    with pytest.raises(ApiException) as info:
        core.read_namespaced_secret("missing", "default")
    body = status_of(info.value)
    assert body["message"] == 'secrets "missing" not found'
    assert body["details"] == {"name": "missing", "group": "", "kind": "secrets"}


def test_unknown_urls_and_methods(cluster: EmulatedCluster) -> None:
    assert raw(cluster, "GET", "/apis/nope.dev/v1/things")[0] == 404
    status, body = raw(cluster, "POST", "/api/v1/namespaces/default/secrets/named", {"metadata": {}})
    assert status == 405 and body["reason"] == "MethodNotAllowed"
    assert raw(cluster, "PUT", "/api/v1/namespaces/default/secrets", {"metadata": {}})[0] == 405


# -- Updates and conflicts ------------------------------------------------------------------------


def test_replace_with_a_stale_resource_version_conflicts(core: Any) -> None:
    created = core.create_namespaced_service_account("default", {"metadata": {"name": "sa"}})
    core.patch_namespaced_service_account("sa", "default", {"metadata": {"labels": {"a": "b"}}})

    created.image_pull_secrets = [{"name": "pull"}]
    with pytest.raises(ApiException) as info:
        core.replace_namespaced_service_account("sa", "default", created)
    assert info.value.status == 409 and status_of(info.value)["reason"] == "Conflict"

    fresh = core.read_namespaced_service_account("sa", "default")
    fresh.image_pull_secrets = [{"name": "pull"}]
    replaced = core.replace_namespaced_service_account("sa", "default", fresh)
    assert [ref.name for ref in replaced.image_pull_secrets] == ["pull"]
    assert replaced.metadata.labels == {"a": "b"}


def test_a_merge_patch_with_a_stale_resource_version_conflicts(custom: Any) -> None:
    created = custom.create_namespaced_custom_object("example.dev", "v1", "default", "gadgets", gadget("g"))
    custom.patch_namespaced_custom_object("example.dev", "v1", "default", "gadgets", "g", {"spec": {"size": 1}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"size": 2}}
    with pytest.raises(ApiException) as info:
        custom.patch_namespaced_custom_object("example.dev", "v1", "default", "gadgets", "g", stale)
    assert status_of(info.value)["reason"] == "Conflict"


def test_a_failed_json_patch_test_is_invalid(cluster: EmulatedCluster, core: Any) -> None:
    core.create_namespaced_secret("default", {"metadata": {"name": "s", "finalizers": ["a"]}})
    path = "/api/v1/namespaces/default/secrets/s"
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
           {"op": "remove", "path": "/metadata/finalizers/0"}]
    status, body = raw(cluster, "PATCH", path, ops, "application/json-patch+json")
    assert (status, body["reason"]) == (422, "Invalid")
    assert core.read_namespaced_secret("s", "default").metadata.finalizers == ["a"]

    current = core.read_namespaced_secret("s", "default").metadata.resource_version
    ops[0]["value"] = current
    status, body = raw(cluster, "PATCH", path, ops, "application/json-patch+json")
    assert status == 200 and "finalizers" not in body["metadata"]


def test_strategic_merge_patches_merge_lists_by_key(core: Any) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "side", "image": "side:1"},
    ]}}
    core.create_namespaced_pod("default", pod)
    patched = core.patch_namespaced_pod("p", "default", {"spec": {"containers": [
        {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "3"}, {"name": "A", "$patch": "delete"}]},
    ]}})
    containers = {c.name: c for c in patched.spec.containers}
    assert set(containers) == {"app", "side"}
    assert containers["app"].image == "app:2"
    assert [(e.name, e.value) for e in containers["app"].env] == [("B", "3")]

    patched = core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "1"}}})
    patched = core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": None, "y": "2"}}})
    assert patched.metadata.labels == {"y": "2"}


def test_service_account_image_pull_secrets_are_replaced_not_merged(core: Any) -> None:
    # As on a real server: ServiceAccount.imagePullSecrets has no patch merge key.
    core.create_namespaced_service_account("default", {"metadata": {"name": "sa"},
                                                       "imagePullSecrets": [{"name": "theirs"}]})
    patched = core.patch_namespaced_service_account("sa", "default", {"imagePullSecrets": [{"name": "ours"}]})
    assert [ref.name for ref in patched.image_pull_secrets] == ["ours"]


def test_a_new_pod_without_pull_secrets_gets_its_service_accounts(core: Any) -> None:
    # The ServiceAccount admission plugin's rule (plugin/pkg/admission/serviceaccount/admission.go): on create
    # only, and only for a pod that lists no imagePullSecrets of its own.
    core.create_namespaced_service_account("default", {"metadata": {"name": "default"},
                                                       "imagePullSecrets": [{"name": "a"}, {"name": "b"}]})
    core.create_namespaced_service_account("default", {"metadata": {"name": "builder"},
                                                       "imagePullSecrets": [{"name": "c"}]})
    containers = [{"name": "app", "image": "busybox"}]
    plain = core.create_namespaced_pod("default", {"metadata": {"name": "plain"}, "spec": {"containers": containers}})
    assert plain.spec.service_account_name == "default"
    assert [ref.name for ref in plain.spec.image_pull_secrets] == ["a", "b"]
    built = core.create_namespaced_pod("default", {"metadata": {"name": "built"}, "spec": {
        "containers": containers, "serviceAccountName": "builder"}})
    assert [ref.name for ref in built.spec.image_pull_secrets] == ["c"]
    own = core.create_namespaced_pod("default", {"metadata": {"name": "own"}, "spec": {
        "containers": containers, "imagePullSecrets": [{"name": "mine"}]}})
    assert [ref.name for ref in own.spec.image_pull_secrets] == ["mine"]

    core.patch_namespaced_service_account("default", "default", {"imagePullSecrets": [{"name": "later"}]})
    assert [ref.name for ref in core.read_namespaced_pod("plain", "default").spec.image_pull_secrets] == ["a", "b"]


def test_merge_patches_replace_lists_and_crds_refuse_strategic_merge(cluster: EmulatedCluster, custom: Any) -> None:
    custom.create_namespaced_custom_object("example.dev", "v1", "default", "gadgets", gadget("g", items=[1, 2]))
    patched = custom.patch_namespaced_custom_object("example.dev", "v1", "default", "gadgets", "g",
                                                    {"spec": {"items": [3]}})
    assert patched["spec"]["items"] == [3]
    status, body = raw(cluster, "PATCH", "/apis/example.dev/v1/namespaces/default/gadgets/g",
                       {"spec": {"items": [4]}}, "application/strategic-merge-patch+json")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


# -- Status subresource and generation -----------------------------------------------------------


def test_status_is_separated_for_resources_with_a_status_subresource(custom: Any) -> None:
    args = ("example.dev", "v1", "default", "gadgets")
    created = custom.create_namespaced_custom_object(*args, {**gadget("g", size=1), "status": {"phase": "x"}})
    assert "status" not in created and created["metadata"]["generation"] == 1

    patched = custom.patch_namespaced_custom_object(*args, "g", {"status": {"phase": "ignored"},
                                                                 "metadata": {"labels": {"a": "b"}}})
    assert "status" not in patched and patched["metadata"]["generation"] == 1  # metadata only

    patched = custom.patch_namespaced_custom_object_status(*args, "g", {"status": {"phase": "Ready"},
                                                                        "spec": {"size": 99}})
    assert patched["status"] == {"phase": "Ready"} and patched["spec"] == {"size": 1}
    assert patched["metadata"]["generation"] == 1

    patched = custom.patch_namespaced_custom_object(*args, "g", {"spec": {"size": 2}})
    assert patched["metadata"]["generation"] == 2 and patched["status"] == {"phase": "Ready"}

    current = custom.get_namespaced_custom_object(*args, "g")
    current["spec"]["size"] = 3
    current["status"] = {"phase": "ignored-again"}
    replaced = custom.replace_namespaced_custom_object(*args, "g", current)
    assert replaced["metadata"]["generation"] == 3 and replaced["status"] == {"phase": "Ready"}


def test_builtin_status_subresources(core: Any) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
                                           "status": {"phase": "Running"}})
    assert core.read_namespaced_pod("p", "default").status.phase == "Pending"  # status is not writable on create
    core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    assert core.read_namespaced_pod("p", "default").status.phase == "Running"


# -- Selectors and pagination ---------------------------------------------------------------------


@pytest.fixture
def labelled(core: Any) -> Any:
    for name, labels, kind in [("a", {"team": "x", "tier": "web"}, "Opaque"),
                               ("b", {"team": "y"}, "kubernetes.io/dockerconfigjson"),
                               ("c", {}, "Opaque")]:
        core.create_namespaced_secret("default", {"metadata": {"name": name, "labels": labels}, "type": kind,
                                                  **({"data": {".dockerconfigjson": "e30="}} if "docker" in kind
                                                     else {})})
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_secret("other", {"metadata": {"name": "a", "labels": {"team": "x"}}})
    return core


@pytest.mark.parametrize(("selector", "expected"), [
    ("team=x", {"default/a", "other/a"}),
    ("team==x", {"default/a", "other/a"}),
    ("team!=x", {"default/b", "default/c"}),
    ("team in (x,y)", {"default/a", "default/b", "other/a"}),
    ("team notin (x)", {"default/b", "default/c"}),
    ("team", {"default/a", "default/b", "other/a"}),
    ("!team", {"default/c"}),
    ("team=x,tier=web", {"default/a"}),
    ("team in (x, y),!tier", {"default/b", "other/a"}),
])
def test_label_selectors(labelled: Any, selector: str, expected: set[str]) -> None:
    items = labelled.list_secret_for_all_namespaces(label_selector=selector).items
    assert {f"{s.metadata.namespace}/{s.metadata.name}" for s in items} == expected


@pytest.mark.parametrize(("selector", "expected"), [
    ("metadata.name=a", {"default/a", "other/a"}),
    ("metadata.namespace=other", {"other/a"}),
    ("metadata.namespace!=other,metadata.name!=a", {"default/b", "default/c"}),
    ("type=kubernetes.io/dockerconfigjson", {"default/b"}),
    ("type!=kubernetes.io/dockerconfigjson", {"default/a", "default/c", "other/a"}),
])
def test_field_selectors(labelled: Any, selector: str, expected: set[str]) -> None:
    items = labelled.list_secret_for_all_namespaces(field_selector=selector).items
    assert {f"{s.metadata.namespace}/{s.metadata.name}" for s in items} == expected


def test_field_selectors_on_status(core: Any) -> None:
    for name in ("p1", "p2"):
        core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": {"containers": [{"name": "c"}]}})
    core.patch_namespaced_pod_status("p1", "default", {"status": {"phase": "Running"}})
    items = core.list_namespaced_pod("default", field_selector="status.phase=Running").items
    assert [p.metadata.name for p in items] == ["p1"]
    items = core.list_namespaced_pod("default", field_selector="spec.nodeName=").items
    assert len(items) == 2


def test_pagination(core: Any) -> None:
    for index in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{index}"}})
    first = core.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["c0", "c1"] and first.metadata._continue
    second = core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    third = core.list_namespaced_config_map("default", limit=2, _continue=second.metadata._continue)
    assert [c.metadata.name for c in second.items + third.items] == ["c2", "c3", "c4"]
    assert not third.metadata._continue


def test_list_items_carry_kind_only_for_custom_resources(cluster: EmulatedCluster, custom: Any) -> None:
    """As a real server: a builtin's List has kind and apiVersion, its items do not; a custom resource's keep them."""
    raw(cluster, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    custom.create_namespaced_custom_object("example.dev", "v1", "default", "gadgets", gadget("g"))
    for path in ("/api/v1/namespaces/default/configmaps", "/api/v1/configmaps?limit=1"):
        status, listed = raw(cluster, "GET", path)
        assert status == 200 and (listed["kind"], listed["apiVersion"]) == ("ConfigMapList", "v1")
        assert listed["items"] and all("kind" not in i and "apiVersion" not in i for i in listed["items"])
    status, one = raw(cluster, "GET", "/api/v1/namespaces/default/configmaps/c")
    assert status == 200 and (one["kind"], one["apiVersion"]) == ("ConfigMap", "v1")
    status, listed = raw(cluster, "GET", "/apis/example.dev/v1/namespaces/default/gadgets")
    assert status == 200 and [(i["kind"], i["apiVersion"]) for i in listed["items"]] == [("Gadget", "example.dev/v1")]


@pytest.mark.parametrize(("namespace", "involved", "event_time", "accepted"), [
    ("default", None, None, True),  # a cluster-scoped object's Event, the usual way
    ("kube-public", None, None, False),  # ... anywhere else: its involvedObject must name that namespace
    ("kube-public", "kube-public", None, True),
    ("default", "kube-public", None, False),  # a namespaced object's Event goes to its own namespace
    ("kube-system", None, "2026-01-01T00:00:00.000000Z", True),  # with eventTime: default or kube-system
    ("kube-public", None, "2026-01-01T00:00:00.000000Z", False),
])
def test_event_namespaces_are_validated(cluster: EmulatedCluster, namespace: str, involved: str | None,
                                        event_time: str | None, accepted: bool) -> None:
    """legacyValidateEvent in Kubernetes' pkg/apis/core/validation/events.go."""
    event: dict[str, Any] = {"metadata": {"name": "e"}, "reason": "Tested", "message": "m", "type": "Normal",
                             "involvedObject": {"apiVersion": "example.dev/v1", "kind": "Widget", "name": "w"}}
    if involved:
        event["involvedObject"]["namespace"] = involved
    if event_time:
        event.update(eventTime=event_time, reportingComponent="tests", reportingInstance="tests", action="Test")
    status, body = raw(cluster, "POST", f"/api/v1/namespaces/{namespace}/events", event)
    assert (status == 201) == accepted, body
    if not accepted:
        assert status == 422 and "does not match event.namespace" in body["message"]


# -- Deletion -------------------------------------------------------------------------------------


def test_finalizers_hold_deletion_until_removed(core: Any) -> None:
    core.create_namespaced_secret("default", {"metadata": {"name": "s", "finalizers": ["example.dev/hold"]}})
    core.delete_namespaced_secret("s", "default")
    held = core.read_namespaced_secret("s", "default")
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.deletion_grace_period_seconds == 0

    with pytest.raises(ApiException) as info:  # no new finalizers on an object being deleted
        core.patch_namespaced_secret("s", "default", {"metadata": {"finalizers": ["example.dev/hold", "more"]}})
    assert status_of(info.value)["reason"] == "Invalid"

    core.patch_namespaced_secret("s", "default", {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                                                   ["example.dev/hold"]}})
    with pytest.raises(ApiException) as info:
        core.read_namespaced_secret("s", "default")
    assert info.value.status == 404


def test_delete_preconditions(core: Any) -> None:
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}})
    options = kubernetes.client.V1DeleteOptions(preconditions={"resourceVersion": "1"})
    with pytest.raises(ApiException) as info:
        core.delete_namespaced_secret("s", "default", body=options)
    assert status_of(info.value)["reason"] == "Conflict"


def test_deleting_a_namespace_removes_its_content(core: Any) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_secret("doomed", {"metadata": {"name": "plain"}})
    core.create_namespaced_secret("doomed", {"metadata": {"name": "held", "finalizers": ["x/y"]}})
    core.create_namespaced_secret("default", {"metadata": {"name": "elsewhere"}})

    core.delete_namespace("doomed")
    assert core.read_namespace("doomed").status.phase == "Terminating"
    assert [s.metadata.name for s in core.list_namespaced_secret("doomed").items] == ["held"]
    with pytest.raises(ApiException) as info:
        core.create_namespaced_secret("doomed", {"metadata": {"name": "late"}})
    assert (info.value.status, status_of(info.value)["reason"]) == (403, "Forbidden")

    core.patch_namespaced_secret("held", "doomed", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as info:
        core.read_namespace("doomed")
    assert info.value.status == 404
    assert core.read_namespaced_secret("elsewhere", "default").metadata.name == "elsewhere"


def test_delete_collection(core: Any) -> None:
    for name, team in [("a", "x"), ("b", "x"), ("c", "y")]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": {"team": team}}})
    core.delete_collection_namespaced_config_map("default", label_selector="team=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["c"]
