"""The watch handlers wake a credential for what others did, never for its own writes (also those of a pass
still in flight, whose result is not recorded yet), and for what a pass in flight did not see."""

from __future__ import annotations

import asyncio
import datetime
import types
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest

from regcred import dockerconfig as dc
from regcred.clock import ManualClock
from regcred.fanout import SecretContent, attach_update
from regcred.handlers.cluster import managed_secret_changed, namespace_changed, service_account_changed
from regcred.models import parse_credential
from regcred.providers import Token
from regcred.reconcile import Reconciler
from regcred.serving import Serving, ServingRegistry
from regcred.view import ClusterView
from tests import reconcile_scene as scene
from tests.fake_kube import FakeKube
from tests.reconcile_scene import SETTINGS

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
SPEC = parse_credential("hub", {
    "provider": {"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
    "secretName": "hub-pull", "namespaces": {"names": ["old", "new"]}, "serviceAccounts": ["default"]})


def content(password: str) -> SecretContent:
    token = Token(hosts=("docker.io",), username="robot", password=password, expires_at=None)
    return SecretContent("hub", "hub-pull", dc.render(token), "p1", NOW, None)


class Wakeups:
    def __init__(self) -> None:
        self.kicked: list[str] = []

    def kick(self, name: str) -> None:
        self.kicked.append(name)


def runtime(served: ServingRegistry) -> Any:
    reconciler = Reconciler(FakeKube(), SETTINGS, ManualClock(NOW))  # type: ignore[arg-type]
    reconciler.served = served
    return types.SimpleNamespace(reconciler=reconciler, wakeups=Wakeups(), settings=SETTINGS)


def handled(handler: Callable[..., Any], body: dict[str, Any], served: ServingRegistry) -> list[str]:
    """The credentials an ADDED event woke."""
    memo = kopf.Memo(runtime=runtime(served))
    asyncio.run(handler(event={"type": "ADDED"}, body=kopf.Body(body), memo=memo))
    kicked: list[str] = memo["runtime"].wakeups.kicked
    return kicked


def secret_event(secret: dict[str, Any], served: ServingRegistry) -> list[str]:
    return handled(managed_secret_changed, secret, served)


def test_the_first_pass_is_not_woken_by_the_secrets_it_writes() -> None:
    served = ServingRegistry()
    written = content("new")
    served.begin("hub", SPEC, frozenset({"old", "new"}))
    served.writing("hub", dc.content_hash(written.content))

    assert secret_event(written.body("new"), served) == []
    assert secret_event(content("forged").body("new"), served) == ["hub"]  # someone else's edit still wakes it


def test_a_rotation_is_not_woken_by_its_own_patches_but_once_it_ended_a_stale_secret_wakes_it() -> None:
    served, old, new = ServingRegistry(), content("old"), content("new")
    served.serve(Serving({}, SPEC, frozenset({"old"}), Token(("docker.io",), "robot", "old", None),
                         dc.content_hash(old.content)))
    served.begin("hub", SPEC, frozenset({"old"}))
    served.writing("hub", dc.content_hash(new.content))
    assert secret_event(new.body("old"), served) == []

    served.serve(Serving({}, SPEC, frozenset({"old"}), Token(("docker.io",), "robot", "new", None),
                         dc.content_hash(new.content)))
    served.end("hub")
    assert secret_event(old.body("old"), served) == ["hub"]


def test_a_pass_adding_a_namespace_is_not_woken_by_its_own_account_write() -> None:
    served = ServingRegistry()
    served.serve(Serving({}, SPEC, frozenset({"old"}), Token(("docker.io",), "robot", "x", None), "r1"))
    served.begin("hub", SPEC, frozenset({"old", "new"}))
    served.writing("hub", "r1")
    account = attach_update({"metadata": {"namespace": "new", "name": "default"}}, "hub", "hub-pull")
    memo = kopf.Memo(runtime=runtime(served))

    asyncio.run(service_account_changed(event={"type": "MODIFIED"}, body=kopf.Body(account), memo=memo))
    assert memo["runtime"].wakeups.kicked == []

    served.end("hub")  # the pass failed before recording "new": the entry there is not its own now
    asyncio.run(service_account_changed(event={"type": "MODIFIED"}, body=kopf.Body(account), memo=memo))
    assert memo["runtime"].wakeups.kicked == ["hub"]


def test_an_account_appearing_where_a_first_pass_in_flight_writes_wakes_it_unless_it_carries_the_entry() -> None:
    served = ServingRegistry()
    served.begin("hub", SPEC, frozenset({"old", "new"}))  # its first pass: nothing served yet
    bare = {"metadata": {"namespace": "new", "name": "default"}}

    assert handled(service_account_changed, bare, served) == ["hub"]  # the pass may have synced the accounts first
    assert handled(service_account_changed, attach_update(bare, "hub", "hub-pull") or {}, served) == []


def test_a_pass_leaving_a_namespace_is_not_woken_by_its_own_detach() -> None:
    served = ServingRegistry()
    served.serve(Serving({}, SPEC, frozenset({"old", "new"}), Token(("docker.io",), "robot", "x", None), "r1"))
    served.begin("hub", SPEC, frozenset({"old"}))

    assert handled(service_account_changed, {"metadata": {"namespace": "new", "name": "default"}}, served) == []


# -- whole passes, with watch events delivered at a chosen moment of the pass ----------------------------------

NEW_NAMESPACE = {"metadata": {"name": "team-new", "labels": {"team": "a"}}, "status": {"phase": "Active"}}


class Watches:
    """What kopf does with the watch events: hands them to the handlers, which kick the credentials' loops."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.runtime = types.SimpleNamespace(reconciler=reconciler, wakeups=Wakeups(), settings=scene.SETTINGS)

    @property
    def kicked(self) -> list[str]:
        kicked: list[str] = self.runtime.wakeups.kicked
        return kicked

    def namespace_created(self, kube: scene.Kube) -> None:
        """A namespace the credential selects, then its `default` ServiceAccount (as the controller-manager)."""
        kube.namespaces.append(NEW_NAMESPACE)
        asyncio.run(namespace_changed(event={"type": "ADDED"}, body=kopf.Body(NEW_NAMESPACE),
                                      memo=kopf.Memo(runtime=self.runtime)))
        self.account_created(kube)

    def account_created(self, kube: scene.Kube) -> None:
        kube.put_service_account({"metadata": {"namespace": "team-new", "name": "default"}})
        account = kube.service_accounts[("team-new", "default")]
        asyncio.run(service_account_changed(event={"type": "ADDED"}, body=kopf.Body(account),
                                            memo=kopf.Memo(runtime=self.runtime)))

    def loop(self, reconciler: Reconciler) -> None:
        """The credential's loop: a pass, and one more for each time it was woken meanwhile."""
        for _ in range(3):
            self.kicked.clear()
            reconciler.reconcile(scene.credential())
            if not self.kicked:
                return


@pytest.fixture
def kube() -> scene.Kube:
    kube = scene.Kube(("team-a",))
    kube.put_service_account({"metadata": {"namespace": "team-a", "name": "default"}})
    return kube


@pytest.fixture
def reconciler(kube: scene.Kube) -> Iterator[Reconciler]:
    clock = ManualClock(scene.NOW)
    reconciler = scene.scene_reconciler(kube, clock, scene.Cloud(clock=clock))
    yield reconciler
    reconciler.close()


def assert_served(kube: scene.Kube) -> None:
    """The new namespace has the Secret, and its `default` ServiceAccount the entry."""
    assert kube.pull_secret("team-new") is not None
    assert kube.service_accounts[("team-new", "default")].get("imagePullSecrets") == [{"name": "pull"}]


def once(action: Callable[[], None]) -> Callable[[], None]:
    done: list[bool] = []

    def first_time() -> None:
        if not done:
            done.append(True)
            action()
    return first_time


def test_a_namespace_created_during_the_first_pass_gets_its_secret_and_entry(
        kube: scene.Kube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    watches = Watches(reconciler)
    created = once(lambda: watches.namespace_created(kube))
    list_secrets = kube.list_secrets

    def listing_secrets(**query: Any) -> list[dict[str, Any]]:  # the pass has read the namespaces by then
        created()
        return list_secrets(**query)
    monkeypatch.setattr(kube, "list_secrets", listing_secrets)

    watches.loop(reconciler)
    assert_served(kube)


def test_a_namespace_created_just_as_the_first_pass_reads_the_namespaces_is_not_missed(
        kube: scene.Kube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    watches = Watches(reconciler)
    created = once(lambda: watches.namespace_created(kube))
    namespaces = reconciler.view.namespaces

    def read_then_created() -> Any:  # the event is handled after the pass read the view, before it went on
        read = namespaces()
        created()
        return read
    monkeypatch.setattr(reconciler.view, "namespaces", read_then_created)

    watches.loop(reconciler)
    assert_served(kube)


def test_an_account_created_after_the_first_pass_synced_the_accounts_gets_its_entry(
        kube: scene.Kube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    kube.namespaces.append(NEW_NAMESPACE)  # there from the start, its ServiceAccount not yet
    watches = Watches(reconciler)
    created = once(lambda: watches.account_created(kube))
    patch_service_account = kube.patch_service_account

    def patching(namespace: str, name: str, patch: Any) -> dict[str, Any]:  # the pass has read the accounts
        created()
        return patch_service_account(namespace, name, patch)
    monkeypatch.setattr(kube, "patch_service_account", patching)

    watches.loop(reconciler)
    assert_served(kube)


def test_the_credentials_own_events_do_not_wake_it_only_a_new_generation_does() -> None:
    from regcred.handlers.credentials import notice_spec_change
    from regcred.runtime import Wakeups

    wakeups = Wakeups()
    wake = wakeups.register("hub")
    wakeups.taken("hub", 1)  # the loop took generation 1 up (and is applying it)
    memo = kopf.Memo(runtime=types.SimpleNamespace(wakeups=wakeups, reconciler=types.SimpleNamespace(
        view=ClusterView())))

    def event(generation: int, status: dict[str, Any]) -> bool:
        body = kopf.Body({"metadata": {"name": "hub", "generation": generation}, "status": status})
        asyncio.run(notice_spec_change(event={"type": "MODIFIED"}, name="hub", body=body, memo=memo))
        woken = wake.is_set()
        wake.clear()
        return woken

    assert not event(1, {})  # its ADDED event at start-up, before any status was written
    assert not event(1, {"observedGeneration": 1})  # its own status write
    assert event(2, {"observedGeneration": 1})  # the spec changed
