"""Several credentials, one pull Secret (regcred.shared): composed from the operator's own records, one patch
per namespace when one of them changes, a conflict on a host reported on both, and a deletion that takes out
only its own entries."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from regcred import dockerconfig as dc
from regcred.clock import ManualClock
from regcred.diagnosis import secret_in_place
from regcred.fanout import ATTACHED_ANNOTATION, SHARED_BY_ANNOTATION
from regcred.providers import Token
from regcred.reconcile import Reconciler
from regcred.status import READY
from tests.reconcile_scene import NOW, Cloud, Kube, scene_reconciler

TEAMS = ("team-a", "team-b", "team-c")
ALPHA, BETA = "a.example.com", "b.example.com"


def static(name: str, registry: str, namespaces: list[str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": 1},
            "spec": {"secretName": "pull", "namespaces": {"names": namespaces}, "serviceAccounts": ["default"],
                     "provider": {"static": {"registry": registry,
                                             "secretRef": {"namespace": "regcred-system", "name": name}}}}}


@pytest.fixture
def kube() -> Kube:
    kube = Kube(TEAMS)
    for namespace in TEAMS:
        kube.put_service_account({"metadata": {"namespace": namespace, "name": "default"}})
    for name, password in (("alpha", "pa"), ("beta", "pb"), ("gamma", "pg")):
        kube.put_source_secret("regcred-system", name, {"username": name.encode(), "password": password.encode()})
    kube.credentials = [static("alpha", ALPHA, ["team-a", "team-b"]), static("beta", BETA, ["team-b", "team-c"])]
    return kube


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def reconciler(kube: Kube, clock: ManualClock) -> Iterator[Reconciler]:
    reconciler = scene_reconciler(kube, clock, Cloud(clock=clock))
    yield reconciler
    reconciler.close()


def auths(kube: Kube, namespace: str) -> dict[str, Any]:
    secret = kube.pull_secret(namespace)
    assert secret is not None, f"no Secret in {namespace}"
    return json.loads(dc.decode_data(secret) or b"")["auths"]  # type: ignore[no-any-return]


def reconcile_all(reconciler: Reconciler, kube: Kube) -> int:
    return sum(reconciler.reconcile(body).writes for body in kube.credentials)


def test_credentials_sharing_a_name_compose_one_secret_where_both_select(kube: Kube, reconciler: Reconciler) -> None:
    reconcile_all(reconciler, kube)

    assert set(auths(kube, "team-a")) == {ALPHA}
    assert set(auths(kube, "team-b")) == {ALPHA, BETA}
    assert set(auths(kube, "team-c")) == {BETA}
    assert auths(kube, "team-b")[BETA]["password"] == "pb"
    shared = kube.pull_secret("team-b") or {}
    assert shared["metadata"]["labels"]["regcred.dev/credential"] == "alpha"
    assert shared["metadata"]["annotations"][SHARED_BY_ANNOTATION] == "alpha,beta"
    assert SHARED_BY_ANNOTATION not in (kube.pull_secret("team-c") or {})["metadata"]["annotations"]
    # An unshared Secret is exactly what a credential writes on its own.
    assert dc.decode_data(kube.pull_secret("team-c") or {}) == dc.render(
        Token(hosts=(BETA,), username="beta", password="pb", expires_at=None))
    for name in ("alpha", "beta"):
        assert kube.condition(READY, name)["status"] == "True"
    # The ServiceAccount carries the Secret once, claimed by both: it stays while either does.
    account = kube.service_accounts[("team-b", "default")]
    assert account["imagePullSecrets"] == [{"name": "pull"}]
    assert json.loads(account["metadata"]["annotations"][ATTACHED_ANNOTATION]) == {"alpha": "pull", "beta": "pull"}
    assert reconcile_all(reconciler, kube) == 0  # converged: nothing to write
    assert (kube.status["alpha"]["sharedWith"], kube.status["beta"]["sharedWith"]) == (["beta"], ["alpha"])


def test_after_a_restart_the_first_credential_keeps_the_others_entries(
        kube: Kube, reconciler: Reconciler, clock: ManualClock) -> None:
    reconcile_all(reconciler, kube)
    written = kube.pull_secret("team-b")
    restarted = scene_reconciler(kube, clock, Cloud(clock=clock))  # knows nothing held
    try:
        assert restarted.reconcile(kube.credentials[1]).writes == 0  # beta first: alpha's entry comes from its store
        assert kube.pull_secret("team-b") == written
    finally:
        restarted.close()


def test_one_credential_changing_costs_one_patch_per_namespace_it_is_in(kube: Kube, reconciler: Reconciler) -> None:
    reconcile_all(reconciler, kube)
    kube.put_source_secret("regcred-system", "beta", {"username": b"beta", "password": b"rotated"})

    assert reconciler.reconcile(kube.credentials[1]).writes == 2  # team-b and team-c
    assert auths(kube, "team-b")[BETA]["password"] == "rotated"
    assert auths(kube, "team-b")[ALPHA]["password"] == "pa"
    assert reconciler.reconcile(kube.credentials[0]).writes == 0  # alpha finds its Secrets as they must be


def test_what_a_tenant_writes_into_a_shared_secret_is_not_kept(kube: Kube, reconciler: Reconciler) -> None:
    reconcile_all(reconciler, kube)
    secret = kube.pull_secret("team-b") or {}
    entries = auths(kube, "team-b")
    entries["evil.example.com"] = {"username": "x", "password": "y"}
    secret["data"] = dc.encode_data(json.dumps({"auths": entries}).encode())
    secret["metadata"]["annotations"][SHARED_BY_ANNOTATION] = "alpha,beta,ghost"
    kube.put_secret(secret)

    assert reconciler.reconcile(kube.credentials[0]).writes == 1
    assert set(auths(kube, "team-b")) == {ALPHA, BETA}
    assert (kube.pull_secret("team-b") or {})["metadata"]["annotations"][SHARED_BY_ANNOTATION] == "alpha,beta"


def test_two_credentials_giving_one_host_is_a_conflict_reported_on_both(kube: Kube, reconciler: Reconciler) -> None:
    kube.credentials.append(static("gamma", ALPHA, ["team-b"]))
    reconcile_all(reconciler, kube)
    reconcile_all(reconciler, kube)  # alpha learns of gamma's token once gamma has one

    assert auths(kube, "team-b")[ALPHA]["password"] == "pa"  # the first by name
    for name, other in (("alpha", "gamma"), ("gamma", "alpha")):
        ready = kube.condition(READY, name)
        assert (ready["status"], ready["reason"]) == ("False", "HostConflict")
        assert f"{ALPHA} is also given by {other}" in ready["message"]
        assert "the entry of alpha is written" in ready["message"]
    assert kube.condition(READY, "beta")["status"] == "True"


def test_deleting_one_takes_out_only_its_entries(kube: Kube, reconciler: Reconciler) -> None:
    reconcile_all(reconciler, kube)
    alpha = kube.credentials.pop(0)
    reconciler.view.credential_event({**alpha, "metadata": {**alpha["metadata"], "deletionTimestamp": NOW.isoformat()}},
                                     deleted=False)

    reconciler.cleanup("alpha", alpha)

    assert kube.pull_secret("team-a") is None
    assert set(auths(kube, "team-b")) == {BETA}
    shared = kube.pull_secret("team-b") or {}
    assert shared["metadata"]["labels"]["regcred.dev/credential"] == "beta"  # found by beta's LIST from now on
    assert SHARED_BY_ANNOTATION not in shared["metadata"]["annotations"]
    assert kube.service_accounts[("team-a", "default")]["imagePullSecrets"] == []
    assert kube.service_accounts[("team-b", "default")]["imagePullSecrets"] == [{"name": "pull"}]
    assert reconciler.reconcile(kube.credentials[0]).writes == 0
    assert "sharedWith" not in kube.status["beta"]


def test_a_credential_leaving_a_namespace_takes_its_entries_out_of_the_secret_there(
        kube: Kube, reconciler: Reconciler) -> None:
    reconcile_all(reconciler, kube)
    kube.credentials[0] = static("alpha", ALPHA, ["team-a"])
    reconciler.view.credential_event(kube.credentials[0], deleted=False)

    assert reconciler.reconcile(kube.credentials[0]).writes == 1
    assert set(auths(kube, "team-b")) == {BETA}
    assert (kube.pull_secret("team-b") or {})["metadata"]["labels"]["regcred.dev/credential"] == "beta"


def test_a_watch_event_wakes_every_sharing_credential_unless_it_is_the_operators_own_write(
        kube: Kube, reconciler: Reconciler) -> None:
    reconcile_all(reconciler, kube)
    secret = kube.pull_secret("team-b") or {}
    assert reconciler.concerned_by_secret(secret, deleted=False) == []
    assert reconciler.concerned_by_secret(secret, deleted=True) == ["alpha", "beta"]
    edited = {**secret, "data": {".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()}}
    assert reconciler.concerned_by_secret(edited, deleted=False) == ["alpha", "beta"]


def test_a_credentials_revision_is_judged_by_its_own_entries_in_a_shared_secret(
        kube: Kube, reconciler: Reconciler) -> None:
    reconcile_all(reconciler, kube)
    served = reconciler.served.get("beta")
    assert served is not None
    assert secret_in_place(kube.pull_secret("team-b"), served.revision, served.token.hosts)
    assert secret_in_place(kube.pull_secret("team-c"), served.revision, served.token.hosts)
    assert not secret_in_place(kube.pull_secret("team-a"), served.revision, served.token.hosts)


def test_credentials_of_one_secret_name_in_different_namespaces_share_nothing(
        kube: Kube, reconciler: Reconciler) -> None:
    """Teams that each name their pull Secret `pull`, for the same registry, in their own namespaces: as before
    sharing existed, no conflict, nothing shared, each LISTs only its own Secrets."""
    kube.credentials = [static("alpha", ALPHA, ["team-a"]), static("gamma", ALPHA, ["team-b", "team-c"])]
    lists: list[str] = []
    list_secrets = kube.list_secrets

    def counting(*, label_selector: str, also: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        lists.append(label_selector)
        return list_secrets(label_selector=label_selector, also=also)

    kube.list_secrets = counting  # type: ignore[method-assign]
    reconcile_all(reconciler, kube)
    reconcile_all(reconciler, kube)

    assert auths(kube, "team-a")[ALPHA]["password"] == "pa"
    assert auths(kube, "team-b")[ALPHA]["password"] == "pg"
    for name in ("alpha", "gamma"):
        assert kube.condition(READY, name)["status"] == "True"
        assert "sharedWith" not in kube.status[name]
    assert all(" in (" not in selector for selector in lists), lists


def test_a_pass_wakes_those_it_shares_with_when_that_changes_and_only_then(
        kube: Kube, reconciler: Reconciler) -> None:
    alpha, beta = kube.credentials
    assert reconciler.reconcile(alpha).wake == frozenset()  # beta has no token yet: nothing shared
    assert reconciler.reconcile(beta).wake == {"alpha"}  # alpha's status must now name beta
    assert reconciler.reconcile(alpha).wake == {"beta"}
    assert reconciler.reconcile(beta).wake == frozenset()  # both have seen it
    assert reconciler.reconcile(alpha).wake == frozenset()
    kube.credentials[1] = static("beta", BETA, ["team-c"])  # beta leaves the namespace they shared
    reconciler.view.credential_event(kube.credentials[1], deleted=False)
    assert reconciler.reconcile(kube.credentials[1]).wake == {"alpha"}
    assert set(auths(kube, "team-b")) == {ALPHA}


def test_an_edited_secret_wakes_only_the_credentials_whose_entries_belong_there(
        kube: Kube, reconciler: Reconciler) -> None:
    kube.credentials.append(static("gamma", "c.example.com", ["team-c"]))  # same Secret name, shares team-c only
    reconcile_all(reconciler, kube)
    secret = kube.pull_secret("team-a") or {}
    edited = {**secret, "data": {".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()}}
    assert reconciler.concerned_by_secret(edited, deleted=False) == ["alpha"]
    assert reconciler.concerned_by_secret(kube.pull_secret("team-c") or {}, deleted=True) == ["beta", "gamma"]
