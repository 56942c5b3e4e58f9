"""Whole passes of the Reconciler over the in-memory API: what is written, what the status says, when it wakes."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from regcred import dockerconfig as dc
from regcred.clock import ManualClock
from regcred.fanout import ATTACHED_ANNOTATION
from regcred.kube import KubeError
from regcred.providers import ProviderError
from regcred.reconcile import Reconciler
from regcred.status import READY, SECRETS_SYNCED, TOKEN_READY
from tests.reconcile_scene import NAME, NOW, SETTINGS, Cloud, Kube, credential, scene_reconciler

TEAMS = ("team-a", "team-b", "team-c")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def kube() -> Kube:
    kube = Kube(TEAMS)
    for namespace in TEAMS:
        kube.put_service_account({"metadata": {"namespace": namespace, "name": "default"}})
    return kube


@pytest.fixture
def cloud(clock: ManualClock) -> Cloud:
    return Cloud(clock=clock)


@pytest.fixture
def reconciler(kube: Kube, clock: ManualClock, cloud: Cloud) -> Iterator[Reconciler]:
    reconciler = scene_reconciler(kube, clock, cloud)
    yield reconciler
    reconciler.close()


def test_a_pass_writes_attaches_reports_and_wakes_at_the_refresh(
        kube: Kube, clock: ManualClock, cloud: Cloud, reconciler: Reconciler) -> None:
    outcome = reconciler.reconcile(credential())
    assert outcome.writes == 3
    for namespace in TEAMS:
        secret = kube.pull_secret(namespace)
        assert secret is not None and b"token-1" in (dc.decode_data(secret) or b"")
        account = kube.service_accounts[(namespace, "default")]
        assert account["imagePullSecrets"] == [{"name": "pull"}]
        assert NAME in account["metadata"]["annotations"][ATTACHED_ANNOTATION]
    assert kube.condition(READY)["status"] == "True"
    assert kube.status[NAME]["namespaces"] == {"selected": 3, "synced": 3, "failed": 0, "conflicts": 0}
    assert [e["reason"] for e in kube.events] == ["TokenRefreshed", "Ready"]
    served = reconciler.served.get(NAME)
    assert served is not None and served.namespaces == frozenset(TEAMS)
    assert outcome.wake_at == NOW + SETTINGS.resync_interval  # the resync comes before the refresh

    writes = kube.status_writes
    clock.advance(SETTINGS.resync_interval)
    again = reconciler.reconcile(credential())
    assert (again.writes, kube.status_writes, len(kube.events), cloud.minted) == (0, writes, 2, 1)

    # A 12-hour token is minted again 8 hours in (a third of its lifetime ahead), minus a little jitter: a pass
    # shortly before wakes at that time rather than at the resync.
    clock.advance(NOW + datetime.timedelta(hours=7, minutes=54) - clock.now())
    before = reconciler.reconcile(credential())
    assert cloud.minted == 1
    assert NOW + datetime.timedelta(hours=7, minutes=55) <= before.wake_at <= NOW + datetime.timedelta(hours=8)
    clock.advance(before.wake_at - clock.now())
    reconciler.reconcile(credential())
    assert cloud.minted == 2 and reconciler.tokens.provider_calls == 2
    assert b"token-2" in (dc.decode_data(kube.pull_secret("team-b") or {}) or b"")
    assert [e["reason"] for e in kube.events] == ["TokenRefreshed", "Ready", "TokenRefreshed"]


def test_a_failed_write_costs_only_its_namespace_and_is_retried_in_seconds(
        kube: Kube, clock: ManualClock, reconciler: Reconciler) -> None:
    kube.failing["team-b"] = KubeError(500, "InternalError", "etcd is unhappy")
    outcome = reconciler.reconcile(credential())
    assert kube.pull_secret("team-a") is not None and kube.pull_secret("team-c") is not None
    assert kube.pull_secret("team-b") is None
    assert kube.service_accounts[("team-b", "default")].get("imagePullSecrets") is None  # left for the retry
    ready = kube.condition(READY)
    assert (ready["status"], ready["reason"]) == ("False", "NamespacesFailed")
    assert kube.condition(SECRETS_SYNCED)["status"] == "False"
    assert kube.status[NAME]["failedNamespaces"][0]["namespace"] == "team-b"
    assert outcome.wake_at <= NOW + datetime.timedelta(seconds=1)

    del kube.failing["team-b"]
    clock.advance(outcome.wake_at - clock.now())
    reconciler.reconcile(credential())
    assert kube.pull_secret("team-b") is not None
    assert kube.condition(READY)["status"] == "True"
    assert [e["reason"] for e in kube.events] == ["TokenRefreshed", "NamespacesFailed", "Ready"]


def test_a_failed_mint_writes_nothing_says_why_and_backs_off(
        kube: Kube, clock: ManualClock, cloud: Cloud, reconciler: Reconciler) -> None:
    cloud.error = ProviderError("The role cannot be assumed.", reason="AssumeRoleFailed")
    first = reconciler.reconcile(credential())
    assert kube.secrets == {}
    token = kube.condition(TOKEN_READY)
    assert (token["status"], token["reason"]) == ("False", "AssumeRoleFailed")
    assert "Retrying in" in kube.condition(READY)["message"]
    delays = [first.wake_at - NOW]
    for _ in range(2):
        clock.advance(delays[-1])
        now = clock.now()
        delays.append(reconciler.reconcile(credential()).wake_at - now)
    # 10 s, then 20 s, then 40 s (each shortened by at most a fifth by the jitter).
    for delay, full in zip(delays, [10, 20, 40], strict=True):
        assert 0.8 * full <= delay.total_seconds() <= full
    assert reconciler.served.get(NAME) is None


def test_an_invalid_spec_is_reported_and_serves_nothing(kube: Kube, reconciler: Reconciler) -> None:
    outcome = reconciler.reconcile(credential(secretName="Not A Name"))
    ready = kube.condition(READY)
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert kube.secrets == {} and reconciler.served.get(NAME) is None
    assert outcome.wake_at == NOW + SETTINGS.resync_interval


def test_cleanup_removes_what_the_credential_wrote(kube: Kube, reconciler: Reconciler) -> None:
    reconciler.reconcile(credential())
    reconciler.cleanup(NAME)
    assert kube.secrets == {}  # the pull Secrets and the token store
    assert all(not account.get("imagePullSecrets") for account in kube.service_accounts.values())
    assert reconciler.served.get(NAME) is None
