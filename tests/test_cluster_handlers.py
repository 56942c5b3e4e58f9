"""The watch handlers wake a credential for what others did, never for its own writes (also those of a pass
still in flight, whose result is not recorded yet)."""

from __future__ import annotations

import asyncio
import datetime
import types
from typing import Any

import kopf

from regcred import dockerconfig as dc
from regcred.clock import ManualClock
from regcred.fanout import SecretContent, attach_update
from regcred.handlers.cluster import managed_secret_changed, service_account_changed
from regcred.models import parse_credential
from regcred.providers import Token
from regcred.reconcile import Reconciler
from regcred.serving import Serving, ServingRegistry
from regcred.view import ClusterView
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


def secret_event(secret: dict[str, Any], served: ServingRegistry) -> list[str]:
    memo = kopf.Memo(runtime=runtime(served))
    asyncio.run(managed_secret_changed(event={"type": "ADDED"}, body=kopf.Body(secret), memo=memo))
    kicked: list[str] = memo["runtime"].wakeups.kicked
    return kicked


def test_the_first_pass_is_not_woken_by_the_secrets_it_writes() -> None:
    served = ServingRegistry()
    written = content("new")
    served.begin("hub", dc.content_hash(written.content), frozenset({"old", "new"}))

    assert secret_event(written.body("new"), served) == []
    assert secret_event(content("forged").body("new"), served) == ["hub"]  # someone else's edit still wakes it


def test_a_rotation_is_not_woken_by_its_own_patches_but_once_it_ended_a_stale_secret_wakes_it() -> None:
    served, old, new = ServingRegistry(), content("old"), content("new")
    served.serve(Serving({}, SPEC, frozenset({"old"}), Token(("docker.io",), "robot", "old", None),
                         dc.content_hash(old.content)))
    served.begin("hub", dc.content_hash(new.content), frozenset({"old"}))
    assert secret_event(new.body("old"), served) == []

    served.serve(Serving({}, SPEC, frozenset({"old"}), Token(("docker.io",), "robot", "new", None),
                         dc.content_hash(new.content)))
    served.end("hub")
    assert secret_event(old.body("old"), served) == ["hub"]


def test_a_pass_adding_a_namespace_is_not_woken_by_its_own_account_write() -> None:
    served = ServingRegistry()
    served.serve(Serving({}, SPEC, frozenset({"old"}), Token(("docker.io",), "robot", "x", None), "r1"))
    served.begin("hub", "r1", frozenset({"old", "new"}))
    account = attach_update({"metadata": {"namespace": "new", "name": "default"}}, "hub", "hub-pull")
    memo = kopf.Memo(runtime=runtime(served))

    asyncio.run(service_account_changed(event={"type": "MODIFIED"}, body=kopf.Body(account), memo=memo))
    assert memo["runtime"].wakeups.kicked == []

    served.end("hub")  # the pass failed before recording "new": the entry there is not its own now
    asyncio.run(service_account_changed(event={"type": "MODIFIED"}, body=kopf.Body(account), memo=memo))
    assert memo["runtime"].wakeups.kicked == ["hub"]


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
