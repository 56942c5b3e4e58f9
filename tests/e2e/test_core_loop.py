"""A static RegistryCredential end to end: fan-out, keeping up, conflicts, invalid specs, cleanup."""

from __future__ import annotations

import base64
import datetime
import json
import time
from typing import Any

import kubernetes
import pytest

from regcred.clock import ManualClock
from regcred.models import DOCKER_HUB_HOST
from tests.e2e.harness import OPERATOR_USER_AGENTS, TEST_SETTINGS, Cluster, OperatorFactory, eventually

pytestmark = pytest.mark.e2e

CREDENTIAL = "hub"
SELECTOR = "regcred.dev/credential=hub"


def static_spec(**overrides: Any) -> dict[str, Any]:
    return {
        "provider": {"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
        "secretName": "hub-pull",
        "namespaces": {
            "names": ["payments"], "selector": {"matchLabels": {"team": "shop"}}, "exclude": ["kube-system"],
        },
        "serviceAccounts": ["default"],
        **overrides,
    }


@pytest.fixture
def shop(cluster: Cluster) -> Cluster:
    """regcred-system with the source Secret; payments (by name); two team=shop namespaces; three not selected."""
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "hub", {"username": "acme-ci", "password": "dckr_pat_1"})
    cluster.namespace("payments")
    cluster.namespace("shop-a", {"team": "shop"})
    cluster.namespace("shop-b", {"team": "shop"}, accounts=("default", "builder"))
    cluster.namespace("kube-system", {"team": "shop"})
    cluster.namespace("ops", {"team": "ops"})
    cluster.core.patch_namespaced_service_account("default", "payments", {"imagePullSecrets": [{"name": "legacy"}]})
    return cluster


SELECTED = {"payments", "shop-a", "shop-b"}


def test_secrets_appear_in_exactly_the_selected_namespaces(shop: Cluster, operator: OperatorFactory) -> None:
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())

    eventually(lambda: _assert_equal(set(shop.secrets(SELECTOR)), SELECTED))
    for namespace in SELECTED:
        config = shop.dockerconfig(namespace, "hub-pull")
        assert list(config["auths"]) == [DOCKER_HUB_HOST]
        entry = config["auths"][DOCKER_HUB_HOST]
        assert (entry["username"], entry["password"]) == ("acme-ci", "dckr_pat_1")
        assert base64.b64decode(entry["auth"]) == b"acme-ci:dckr_pat_1"
        labels = shop.core.read_namespaced_secret("hub-pull", namespace).metadata.labels
        assert labels == {"app.kubernetes.io/managed-by": "regcred-operator", "regcred.dev/credential": "hub"}

    assert shop.pull_secrets("payments") == ["legacy", "hub-pull"]  # the existing entry is kept
    assert shop.pull_secrets("shop-b") == ["hub-pull"]
    assert shop.pull_secrets("shop-b", "builder") == []  # only the listed ServiceAccounts
    assert shop.pull_secrets("ops") == []

    def ready() -> None:
        status = shop.credential(CREDENTIAL)["status"]
        assert status["observedGeneration"] == shop.credential(CREDENTIAL)["metadata"]["generation"]
        assert status["namespaces"] == {"selected": 3, "synced": 3, "failed": 0, "conflicts": 0}
        assert status["registries"] == [DOCKER_HUB_HOST]
        assert status["provider"] == "static"
        assert shop.condition(CREDENTIAL)["status"] == "True"
    eventually(ready)
    assert shop.posted("Ready"), "a Ready event is posted on the transition"
    assert "dckr_pat_1" not in str(shop.credential(CREDENTIAL)["status"])
    assert all("dckr_pat_1" not in (e.message or "") for e in shop.events())


def test_keeping_up_with_namespaces_and_drift(shop: Cluster, operator: OperatorFactory) -> None:
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: _assert_equal(set(shop.secrets(SELECTOR)), SELECTED))

    shop.namespace("shop-new", {"team": "shop"})  # a new namespace
    eventually(lambda: _assert_equal(shop.pull_secrets("shop-new"), ["hub-pull"]))
    assert "shop-new" in shop.secrets(SELECTOR)

    shop.relabel("ops", {"team": "shop"})  # relabelled into the selection
    eventually(lambda: _assert_in("ops", shop.secrets(SELECTOR)))
    eventually(lambda: _assert_equal(shop.pull_secrets("ops"), ["hub-pull"]))

    shop.relabel("shop-a", {"team": None})  # relabelled out: the Secret and the entry go
    eventually(lambda: _assert_not_in("shop-a", shop.secrets(SELECTOR)))
    eventually(lambda: _assert_equal(shop.pull_secrets("shop-a"), []))

    shop.core.delete_namespaced_secret("hub-pull", "shop-b")  # deleted by someone: restored
    eventually(lambda: _assert_in("shop-b", shop.secrets(SELECTOR)))

    shop.core.patch_namespaced_secret("hub-pull", "payments", {"data": {".dockerconfigjson": base64.b64encode(
        b'{"auths":{}}').decode()}})  # edited by someone: restored
    eventually(lambda: _assert_equal(
        shop.dockerconfig("payments", "hub-pull")["auths"][DOCKER_HUB_HOST]["password"], "dckr_pat_1"))


def test_a_spec_change_is_applied(shop: Cluster, operator: OperatorFactory) -> None:
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: _assert_equal(set(shop.secrets(SELECTOR)), SELECTED))

    shop.apply_credential(CREDENTIAL, static_spec(secretName="pull", namespaces={"names": ["ops"]},
                                                  serviceAccounts=["*"]))
    eventually(lambda: _assert_equal({ns: s.metadata.name for ns, s in shop.secrets(SELECTOR).items()},
                                     {"ops": "pull"}))
    eventually(lambda: _assert_equal(shop.pull_secrets("ops"), ["pull"]))
    eventually(lambda: _assert_equal(shop.pull_secrets("payments"), ["legacy"]))
    credential = shop.credential(CREDENTIAL)
    eventually(lambda: _assert_equal(
        shop.credential(CREDENTIAL)["status"]["observedGeneration"], credential["metadata"]["generation"]))


def test_an_unmanaged_secret_of_that_name_is_left_alone_and_reported(shop: Cluster, operator: OperatorFactory) -> None:
    shop.core.create_namespaced_secret("shop-a", {"metadata": {"name": "hub-pull"}, "data": {"mine": "eA=="}})
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())

    eventually(lambda: _assert_equal(shop.condition(CREDENTIAL)["reason"], "SecretConflict"))
    status = shop.credential(CREDENTIAL)["status"]
    assert status["namespaces"] == {"selected": 3, "synced": 2, "failed": 0, "conflicts": 1}
    assert status["failedNamespaces"][0]["namespace"] == "shop-a"
    assert shop.condition(CREDENTIAL)["status"] == "False"
    assert "shop-a" in shop.condition(CREDENTIAL)["message"]
    untouched = shop.core.read_namespaced_secret("hub-pull", "shop-a")
    assert untouched.data == {"mine": "eA=="}
    assert not (untouched.metadata.labels or {})
    assert shop.pull_secrets("shop-a") == []  # not attached where the Secret is someone else's
    assert shop.posted("SecretConflict")


def test_deleting_the_credential_removes_what_it_wrote(shop: Cluster, operator: OperatorFactory) -> None:
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: _assert_equal(shop.pull_secrets("payments"), ["legacy", "hub-pull"]))

    shop.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", CREDENTIAL)

    def gone() -> None:
        try:
            shop.credential(CREDENTIAL)
        except kubernetes.client.ApiException as error:
            assert error.status == 404  # noqa: PT017 - polled, so pytest.raises cannot be used
        else:
            raise AssertionError("the credential is still there (its finalizer was not removed)")
    eventually(gone)
    assert shop.secrets(SELECTOR) == {}
    assert shop.pull_secrets("payments") == ["legacy"]
    assert shop.pull_secrets("shop-a") == []


def test_a_missing_source_secret_says_so_and_leaves_written_secrets_alone(
    shop: Cluster, operator: OperatorFactory
) -> None:
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: _assert_equal(set(shop.secrets(SELECTOR)), SELECTED))
    before = {ns: s.data for ns, s in shop.secrets(SELECTOR).items()}

    shop.core.delete_namespaced_secret("hub", "regcred-system")
    shop.namespace("shop-c", {"team": "shop"})  # wakes the credential up
    eventually(lambda: _assert_equal(shop.condition(CREDENTIAL)["reason"], "SourceSecretNotFound"))
    condition = shop.condition(CREDENTIAL)
    assert condition["status"] == "False"
    assert "regcred-system/hub does not exist" in condition["message"]
    assert "left unchanged" in condition["message"]
    assert {ns: s.data for ns, s in shop.secrets(SELECTOR).items()} == before
    assert shop.posted("SourceSecretNotFound")


@pytest.mark.parametrize(
    ("spec", "reason", "words"),
    [
        (static_spec(namespaces={"selector": {"matchExpressions": [{"key": "team", "operator": "Near"}]}}),
         "InvalidSpec", "operator must be In, NotIn, Exists or DoesNotExist"),
        (static_spec(provider={"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system",
                                                                                  "name": "absent"}}}),
         "SourceSecretNotFound", "regcred-system/absent does not exist"),
        (static_spec(provider={"ghcr": {"username": "ci-bot"}}),
         "InvalidSpec", "needs exactly one of tokenSecretRef (a PAT) or app (a GitHub App)"),
    ],
    ids=["bad-selector", "missing-source-secret", "ghcr-without-token-or-app"],
)
def test_invalid_specs_give_ready_false_with_a_reason(
    shop: Cluster, operator: OperatorFactory, spec: dict[str, Any], reason: str, words: str
) -> None:
    operator.start()
    if shop.real and reason == "InvalidSpec":
        # A real API server enforces the CRD's schema: the object never reaches the operator, whose own
        # check stays for what a schema cannot say (and for API servers that skip validation).
        with pytest.raises(kubernetes.client.ApiException) as refused:
            shop.apply_credential(CREDENTIAL, spec)
        assert refused.value.status == 422
        assert "spec." in json.loads(refused.value.body)["message"]
        return
    shop.apply_credential(CREDENTIAL, spec)
    eventually(lambda: _assert_equal(shop.condition(CREDENTIAL)["reason"], reason))
    condition = shop.condition(CREDENTIAL)
    assert condition["status"] == "False"
    assert words in condition["message"]
    assert shop.secrets(SELECTOR) == {}
    assert shop.posted(reason)


def _assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert_in(item: object, container: Any) -> None:
    assert item in container


def _assert_not_in(item: object, container: Any) -> None:
    assert item not in container


def test_a_resync_with_nothing_changed_writes_nothing(shop: Cluster, operator: OperatorFactory) -> None:
    clock = ManualClock(datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC))
    runtime = operator.start(clock=clock)
    shop.apply_credential(CREDENTIAL, static_spec(serviceAccounts=["*"]))
    eventually(lambda: _assert_equal(shop.condition(CREDENTIAL)["status"], "True"))
    # The first pass posts its Events after its status write: it is over once the Ready Event is there.
    eventually(lambda: _assert_equal(bool(shop.events("Ready")), True))

    shop.backend.reset_requests()
    clock.advance(TEST_SETTINGS.resync_interval)  # the resync: every namespace and ServiceAccount LISTed again
    eventually(lambda: _assert_equal(runtime.reconciler._full_at.get(CREDENTIAL), clock.now()))
    operator_requests = [(r.verb, r.resource, r.namespace, r.name) for r in shop.backend.requests
                         if r.user_agent in OPERATOR_USER_AGENTS]
    assert ("list", "namespaces", None, None) in operator_requests
    assert [r for r in operator_requests if r[0] in ("create", "update", "patch", "delete")] == []


def test_a_namespace_costs_only_the_credentials_that_select_it(shop: Cluster, operator: OperatorFactory) -> None:
    """Between resyncs, events are judged against what the watches told: a namespace that no credential selects
    wakes none of them and costs no request; one that a credential selects costs that credential's few."""
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec(serviceAccounts=["*"]))
    shop.apply_credential("other", static_spec(secretName="other-pull",
                                               namespaces={"selector": {"matchLabels": {"team": "web"}}}))
    eventually(lambda: _assert_equal(shop.condition(CREDENTIAL)["status"], "True"))
    eventually(lambda: _assert_equal(shop.condition("other")["status"], "True"))
    time.sleep(0.5)  # the events of the first sync (the operator's own writes) pass without waking anyone

    shop.backend.reset_requests()
    shop.namespace("elsewhere", {"team": "ops"})  # selected by neither: its events come first in the stream
    shop.namespace("shop-c", {"team": "shop"})  # selected by hub only
    eventually(lambda: _assert_equal(shop.pull_secrets("shop-c"), ["hub-pull"]))
    requests = [(r.verb, r.resource, r.namespace, r.name) for r in shop.backend.requests
                if r.user_agent in OPERATOR_USER_AGENTS and r.verb != "watch"]
    assert not [r for r in requests if r[2] == "elsewhere"]
    assert not [r for r in requests if r[0] == "list" and r[1] in ("namespaces", "serviceaccounts")]
    secrets_lists = [r for r in requests if r[:2] == ("list", "secrets")]
    assert len(secrets_lists) <= 2, requests  # hub's pass (twice at most: the namespace, then its account)
    assert ("create", "secrets", "shop-c") in {r[:3] for r in requests}  # (an audit log also names it)
    assert ("patch", "serviceaccounts", "shop-c", "default") in requests


def test_gitops_tools_see_their_spec_untouched(shop: Cluster, operator: OperatorFactory) -> None:
    """Argo CD / Flux compare the spec they applied: the operator writes only status and its own metadata."""
    shop.apply_credential(CREDENTIAL, static_spec())
    applied = shop.credential(CREDENTIAL)["spec"]  # as stored: a real server adds the schema's defaults
    operator.start()
    eventually(lambda: _assert_equal(shop.condition(CREDENTIAL)["status"], "True"))
    shop.namespace("shop-new", {"team": "shop"})
    shop.core.delete_namespaced_secret("hub-pull", "shop-a")
    eventually(lambda: _assert_in("shop-a", shop.secrets(SELECTOR)))

    credential = shop.credential(CREDENTIAL)
    assert credential["metadata"]["generation"] == 1  # the API server bumps it on any spec write
    assert credential["spec"] == applied
    assert not credential["metadata"].get("labels")
    owned = {key for key in credential["metadata"].get("annotations", {})}
    assert all(key.startswith("regcred.dev/") for key in owned)
    assert credential["metadata"]["finalizers"] == ["regcred.dev/cleanup"]


def test_a_service_account_patch_from_a_stale_view_is_refused_not_applied(shop: Cluster) -> None:
    """What regcred/accounts.py relies on, on both servers: a merge patch that names the resourceVersion it was
    computed from is refused (409) once the account changed, so a person's entry is never overwritten."""
    from regcred.kube import KubeApi, KubeError

    kube = KubeApi(shop.client)
    seen = kube.read_service_account("shop-a", "default")["metadata"]["resourceVersion"]
    kube.patch_service_account("shop-a", "default", {"imagePullSecrets": [{"name": "mine"}]})  # a person

    with pytest.raises(KubeError) as refused:
        kube.patch_service_account("shop-a", "default", {"metadata": {"resourceVersion": seen},
                                                         "imagePullSecrets": [{"name": "hub-pull"}]})

    assert refused.value.conflict
    assert shop.pull_secrets("shop-a") == ["mine"]
