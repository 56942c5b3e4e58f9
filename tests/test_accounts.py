"""ServiceAccounts as a unit: one write per account carries every credential's entry whose Secret is in place,
writes of one account never race, a stale view costs a read and loses nobody's entry."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from regcred.accounts import AccountWriter
from regcred.fanout import ATTACHED_ANNOTATION
from regcred.kube import KubeError
from regcred.models import CredentialSpec, parse_credential
from regcred.view import ClusterView
from tests.fake_kube import FakeKube

NAMESPACES = tuple(f"team-{i}" for i in range(20))


def spec(name: str, *, accounts: tuple[str, ...] = ("default",)) -> CredentialSpec:
    return parse_credential(name, {
        "provider": {"static": {"registry": f"{name}.example.com",
                                "secretRef": {"namespace": "regcred-system", "name": name}}},
        "secretName": f"{name}-pull", "namespaces": {"names": list(NAMESPACES)},
        "serviceAccounts": list(accounts)})


class Kube(FakeKube):
    """Counts ServiceAccount patches and reads; fails the patches of chosen namespaces."""

    def __init__(self) -> None:
        super().__init__()
        self.patches: list[tuple[str, str]] = []
        self.reads = 0
        self.refusing: set[str] = set()
        self._count = threading.Lock()
        for namespace in NAMESPACES:
            self.put_service_account({"metadata": {"namespace": namespace, "name": "default"}})
            self.put_service_account({"metadata": {"namespace": namespace, "name": "builder"}})

    def patch_service_account(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        with self._count:
            self.patches.append((namespace, name))
        if namespace in self.refusing:
            raise KubeError(403, "Forbidden", "serviceaccounts is forbidden")
        return super().patch_service_account(namespace, name, patch)

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        with self._count:
            self.reads += 1
        return super().read_service_account(namespace, name)

    def pull_secrets(self, namespace: str, name: str = "default") -> list[str]:
        return [e["name"] for e in self.service_accounts[(namespace, name)].get("imagePullSecrets") or []]

    def attached(self, namespace: str, name: str = "default") -> dict[str, str]:
        raw = (self.service_accounts[(namespace, name)]["metadata"].get("annotations") or {}).get(ATTACHED_ANNOTATION)
        return json.loads(raw) if raw else {}


@pytest.fixture
def kube() -> Kube:
    return Kube()


@pytest.fixture
def view(kube: Kube) -> ClusterView:
    view = ClusterView()
    view.replace_accounts(kube.list_service_accounts(), view.mark())
    return view


@pytest.fixture
def writer(kube: Kube, view: ClusterView) -> Iterator[AccountWriter]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        yield AccountWriter(kube, view, pool)


def test_credentials_attaching_together_write_each_account_once(kube: Kube, writer: AccountWriter) -> None:
    specs = [spec(f"c{i}") for i in range(5)]
    for each in specs:  # every credential's Secret is in place everywhere
        writer.narrow(each, NAMESPACES)
    with concurrent.futures.ThreadPoolExecutor(5) as passes:
        results = list(passes.map(lambda each: writer.sync(each, frozenset(NAMESPACES)), specs))

    assert all(failed == [] for failed, _ in results)
    assert sorted(kube.patches) == sorted((ns, "default") for ns in NAMESPACES)  # 20 writes, not 100
    assert sum(changed for _, changed in results) == len(NAMESPACES)
    for namespace in NAMESPACES:
        assert sorted(kube.pull_secrets(namespace)) == sorted(f"c{i}-pull" for i in range(5))
        assert kube.attached(namespace) == {f"c{i}": f"c{i}-pull" for i in range(5)}
        assert kube.pull_secrets(namespace, "builder") == []  # nobody asked for it


def test_another_credentials_entry_is_added_only_where_its_secret_is(kube: Kube, writer: AccountWriter) -> None:
    first, second = spec("first"), spec("second")
    writer.narrow(first, NAMESPACES)
    writer.narrow(second, ["team-1"])  # being created elsewhere
    writer.offer("second", "team-2")  # ... and now written in team-2

    writer.sync(first, frozenset(NAMESPACES))

    assert kube.pull_secrets("team-1") == ["first-pull", "second-pull"]
    assert kube.pull_secrets("team-2") == ["first-pull", "second-pull"]
    assert kube.pull_secrets("team-3") == ["first-pull"]
    writer.withdraw("second")  # deleted: no later write adds it
    writer.sync(spec("third"), frozenset(NAMESPACES))
    assert "second-pull" not in kube.pull_secrets("team-3")


def test_a_stale_view_costs_one_read_and_keeps_what_a_person_added(
        kube: Kube, view: ClusterView, writer: AccountWriter) -> None:
    account = kube.read_service_account("team-0", "default")
    account["imagePullSecrets"] = [{"name": "mine"}]
    kube.put_service_account(account)  # the watch event has not come yet
    kube.reads = 0

    failed, changed = writer.sync(spec("hub"), frozenset(["team-0"]))

    assert (failed, changed) == ([], 1)
    assert kube.pull_secrets("team-0") == ["mine", "hub-pull"]
    assert kube.reads == 1 and kube.patches == [("team-0", "default"), ("team-0", "default")]  # 409, then done
    assert view.account("team-0", "default") is not None
    assert view.account("team-0", "default").pull_secrets == ("mine", "hub-pull")  # type: ignore[union-attr]


def test_detaching_removes_only_the_credentials_own_entries(kube: Kube, writer: AccountWriter) -> None:
    account = kube.read_service_account("team-0", "default")
    account["imagePullSecrets"] = [{"name": "mine"}]
    kube.put_service_account(account)
    writer.view.account_event(kube.read_service_account("team-0", "default"), deleted=False)
    hub, other = spec("hub"), spec("other")
    writer.narrow(other, NAMESPACES)
    writer.sync(hub, frozenset(NAMESPACES))
    assert kube.pull_secrets("team-0") == ["mine", "hub-pull", "other-pull"]

    writer.withdraw("hub")
    failed, changed = writer.detach_everywhere("hub")

    assert (failed, changed) == ([], len(NAMESPACES))
    assert kube.pull_secrets("team-0") == ["mine", "other-pull"]
    assert all(kube.attached(ns) == {"other": "other-pull"} for ns in NAMESPACES)


def test_a_refused_write_costs_only_its_namespace(kube: Kube, writer: AccountWriter) -> None:
    kube.refusing = {"team-3"}

    failed, changed = writer.sync(spec("hub"), frozenset(NAMESPACES))

    assert [(f.namespace, f.reason) for f in failed] == [("team-3", "Forbidden")]
    assert changed == len(NAMESPACES) - 1
    assert kube.pull_secrets("team-3") == [] and kube.pull_secrets("team-4") == ["hub-pull"]


def test_a_namespace_left_alone_is_not_touched_and_a_deselected_one_is_detached(
        kube: Kube, writer: AccountWriter) -> None:
    hub = spec("hub", accounts=("*",))
    writer.sync(hub, frozenset(NAMESPACES))
    assert kube.pull_secrets("team-5", "builder") == ["hub-pull"]
    kube.patches.clear()

    writer.sync(hub, frozenset(NAMESPACES) - {"team-5", "team-6"}, leave=frozenset({"team-6"}))

    assert sorted(kube.patches) == [("team-5", "builder"), ("team-5", "default")]
    assert kube.pull_secrets("team-5") == [] and kube.pull_secrets("team-6") == ["hub-pull"]
