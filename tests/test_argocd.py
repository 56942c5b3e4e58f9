"""Argo CD repository credential templates (spec.argocd): written, refreshed, repaired and removed by the
Reconciler over the in-memory API, and never mistaken for a pull Secret."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import types
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest

from regcred import argocd, metrics
from regcred.clock import ManualClock
from regcred.handlers.cluster import managed_secret_changed
from regcred.models import DOCKER_HUB_HOST, ArgoCdSpec, SpecError, parse_credential
from regcred.providers import Token
from regcred.reconcile import Reconciler
from regcred.status import READY
from tests.reconcile_scene import NAME, NOW, REGISTRY, Cloud, Kube, credential, scene_reconciler

TEAMS = ("team-a", "team-b")
TEMPLATE = ("argocd", f"regcred-{NAME}")


class CountingKube(Kube):
    """Records every Secret write as (verb, namespace, name)."""

    def __init__(self, namespaces: tuple[str, ...]) -> None:
        super().__init__(namespaces)
        self.writes: list[tuple[str, str, str]] = []

    def create_secret(self, namespace: str, body: Any) -> dict[str, Any]:
        self.writes.append(("create", namespace, body["metadata"]["name"]))
        return super().create_secret(namespace, body)

    def patch_secret(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        self.writes.append(("patch", namespace, name))
        return super().patch_secret(namespace, name, patch)

    def delete_secret(self, namespace: str, name: str) -> None:
        self.writes.append(("delete", namespace, name))
        super().delete_secret(namespace, name)

    def in_argocd(self) -> list[tuple[str, str, str]]:
        return [w for w in self.writes if w[1] == "argocd"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def reconcilers(clock: ManualClock) -> Iterator[Callable[[Kube], Reconciler]]:
    """Reconcilers over the in-memory API, minting on `clock` (closed after the test)."""
    made: list[Reconciler] = []

    def make(kube: Kube) -> Reconciler:
        made.append(scene_reconciler(kube, clock, Cloud(clock=clock)))
        return made[-1]
    yield make
    for reconciler in made:
        reconciler.close()


@pytest.fixture
def kube() -> CountingKube:
    return CountingKube(TEAMS)


@pytest.fixture
def reconciler(kube: Kube, reconcilers: Callable[[Kube], Reconciler]) -> Reconciler:
    return reconcilers(kube)


def with_argocd(**argocd_spec: Any) -> dict[str, Any]:
    return credential(argocd={"namespace": "argocd", **argocd_spec})


def fields(secret: dict[str, Any] | None) -> dict[str, str]:
    assert secret is not None
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_the_template_holds_what_argo_cd_reads_and_a_resync_writes_nothing(
        kube: CountingKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(with_argocd())
    template = kube.secrets[TEMPLATE]
    assert template["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repo-creds"
    assert fields(template) == {"type": "helm", "enableOCI": "true", "url": REGISTRY, "username": "AWS",
                                "password": "token-1"}
    assert kube.status[NAME]["argocd"] == {"namespace": "argocd", "secrets": [TEMPLATE[1]], "synced": True}
    assert kube.condition(READY)["status"] == "True"
    # The pull Secrets are where they were, and the template is none of them.
    assert {ns for ns, name in kube.secrets if name == "pull"} == set(TEAMS)

    kube.writes.clear()
    reconciler.reconcile(with_argocd())
    assert kube.writes == []


def test_a_refresh_patches_the_template_once(
        kube: CountingKube, clock: ManualClock, reconciler: Reconciler) -> None:
    reconciler.reconcile(with_argocd())
    kube.writes.clear()
    patches = metrics.SECRETS_WRITTEN.labels(NAME, "patch")._value.get()
    clock.advance(datetime.timedelta(hours=9))  # past the refresh time of the 12-hour token: a new one
    reconciler.reconcile(with_argocd())
    assert kube.in_argocd() == [("patch", *TEMPLATE)]
    assert fields(kube.secrets[TEMPLATE])["password"] == "token-2"
    # Counted with the pull Secrets' patches in regcred_secrets_written_total.
    assert metrics.SECRETS_WRITTEN.labels(NAME, "patch")._value.get() - patches == len(TEAMS) + 1


def test_an_edited_or_deleted_template_is_restored(kube: CountingKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(with_argocd())
    kube.patch_secret(*TEMPLATE, {"data": {"url": base64.b64encode(b"elsewhere.example").decode()}})
    reconciler.reconcile(with_argocd())
    assert fields(kube.secrets[TEMPLATE])["url"] == REGISTRY
    kube.delete_secret(*TEMPLATE)
    reconciler.reconcile(with_argocd())
    assert fields(kube.secrets[TEMPLATE])["password"] == "token-1"


def test_the_watch_wakes_the_credential_for_a_changed_or_deleted_template_only(
        kube: CountingKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(with_argocd())
    kicked: list[str] = []
    memo = kopf.Memo(runtime=types.SimpleNamespace(reconciler=reconciler,
                                                   wakeups=types.SimpleNamespace(kick=kicked.append)))

    def event(type_: str, secret: dict[str, Any]) -> None:
        asyncio.run(managed_secret_changed(event={"type": type_}, body=kopf.Body(secret), memo=memo))

    ours = kube.secrets[TEMPLATE]
    event("MODIFIED", ours)  # the operator's own write
    assert kicked == []
    edited = copy.deepcopy(ours)
    edited["data"]["url"] = base64.b64encode(b"elsewhere.example").decode()
    event("MODIFIED", edited)
    event("DELETED", ours)
    assert kicked == [NAME, NAME]


def test_dropping_argocd_from_the_spec_deletes_the_template(kube: CountingKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(with_argocd())
    reconciler.reconcile(credential(generation=2))
    assert TEMPLATE not in kube.secrets
    assert kube.status[NAME].get("argocd") is None
    assert {ns for ns, name in kube.secrets if name == "pull"} == set(TEAMS)


def test_someone_elses_secret_of_that_name_is_left_alone_and_reported(
        kube: CountingKube, reconciler: Reconciler) -> None:
    theirs = {"metadata": {"namespace": "argocd", "name": TEMPLATE[1], "labels": {"team": "platform"}},
              "type": "Opaque", "data": {"url": base64.b64encode(b"theirs.example").decode()}}
    kube.put_secret(theirs)
    reconciler.reconcile(with_argocd())
    assert kube.secrets[TEMPLATE] == theirs
    status = kube.status[NAME]["argocd"]
    assert (status["synced"], status["reason"]) == (False, "SecretConflict")
    ready = kube.condition(READY)
    assert (ready["status"], ready["reason"]) == ("False", "ArgoCdSecretConflict")
    assert "token-1" not in str(kube.status[NAME]) and "token-1" not in str(kube.events)
    # Their Secret survives the credential's deletion too.
    reconciler.cleanup(NAME, with_argocd())
    assert kube.secrets[TEMPLATE] == theirs


def test_cleanup_deletes_the_template(kube: CountingKube, reconciler: Reconciler) -> None:
    reconciler.reconcile(with_argocd())
    reconciler.cleanup(NAME, with_argocd())
    assert kube.secrets == {}


def test_a_template_in_a_selected_namespace_is_no_pull_secret(reconcilers: Callable[[Kube], Reconciler]) -> None:
    kube = CountingKube((*TEAMS, "argocd"))  # Argo CD's namespace receives the pull Secret as well
    selected = reconcilers(kube)
    selected.reconcile(with_argocd())
    assert {("argocd", "pull"), TEMPLATE} <= set(kube.secrets)
    kube.writes.clear()
    selected.reconcile(with_argocd())
    assert kube.writes == []  # neither deleted as a stray pull Secret nor rewritten


def test_one_template_per_host_without_url_and_one_with_it() -> None:
    token = Token(hosts=("111.dkr.ecr.eu-west-1.amazonaws.com", "222.dkr.ecr.eu-west-1.amazonaws.com"),
                  username="AWS", password="p", expires_at=None)
    per_host = argocd.desired("ecr", ArgoCdSpec(), token, NOW, None)
    assert sorted(t.url for t in per_host.templates) == sorted(token.hosts)
    names = [t.name for t in per_host.templates]
    assert len(set(names)) == 2 and all(n.startswith("regcred-ecr-") for n in names)
    # A host keeps its template's name whatever the other hosts are.
    others = Token(hosts=(token.hosts[0], "333.dkr.ecr.eu-west-1.amazonaws.com"), username="AWS", password="p",
                   expires_at=None)
    alone = argocd.desired("ecr", ArgoCdSpec(), others, NOW, None)
    assert per_host.templates[0].name in {t.name for t in alone.templates}
    one = argocd.desired("ecr", ArgoCdSpec(url="111.dkr.ecr.eu-west-1.amazonaws.com/charts", name="charts"), token,
                         NOW, None)
    assert [(t.name, t.url) for t in one.templates] == [("charts", "111.dkr.ecr.eu-west-1.amazonaws.com/charts")]
    hub = argocd.desired("hub", ArgoCdSpec(), Token(hosts=(DOCKER_HUB_HOST,), username="u", password="p",
                                                    expires_at=None), NOW, None)
    assert [t.url for t in hub.templates] == ["registry-1.docker.io"]  # where Helm talks OCI to Docker Hub


@pytest.mark.parametrize(("argocd_spec", "wrong"), [
    ({"namespace": "Argo CD"}, "spec.argocd.namespace"),
    ({"url": "oci://registry.example.com/charts"}, "spec.argocd.url"),
    ({"url": "https://registry.example.com"}, "spec.argocd.url"),
    ({"name": "pull"}, "must differ from spec.secretName"),
    ({"name": "Not_A_Name"}, "spec.argocd.name"),
    ("argocd", "spec.argocd must be an object"),
])
def test_a_wrong_argocd_block_is_a_sentence(argocd_spec: Any, wrong: str) -> None:
    with pytest.raises(SpecError, match=wrong):
        parse_credential(NAME, credential(argocd=argocd_spec)["spec"])


def test_the_defaults() -> None:
    spec = parse_credential(NAME, credential(argocd={})["spec"])
    assert spec.argocd == ArgoCdSpec(namespace="argocd", url=None, name=None)
    assert parse_credential(NAME, credential()["spec"]).argocd is None
