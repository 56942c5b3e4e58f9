"""The writer without an API server: what it writes, that a failed write costs only its namespace, that
someone else's Secret is left alone, and how the write back-off grows and honours Retry-After."""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator

import pytest

from regcred import dockerconfig as dc
from regcred.clock import ManualClock
from regcred.fanout import SecretContent, plan_secrets
from regcred.kube import KubeError
from regcred.providers import Token
from regcred.writer import SecretWriter, WriteBackoff
from tests.reconcile_scene import NAME, NOW, REGISTRY, SETTINGS, Kube

CONTENT = dc.render(Token(hosts=(REGISTRY,), username="AWS", password="p", expires_at=None))
DESIRED = SecretContent(credential=NAME, secret_name="pull", content=CONTENT, provider_hash="h", minted_at=NOW,
                        expires_at=None)
TEAMS = ["team-a", "team-b", "team-c"]


@pytest.fixture
def kube() -> Kube:
    return Kube()


@pytest.fixture
def writer(kube: Kube) -> Iterator[SecretWriter]:
    writer = SecretWriter(kube, SETTINGS)  # type: ignore[arg-type]
    yield writer
    writer.close()


def _write(kube: Kube, writer: SecretWriter, targets: list[str]) -> list[str]:
    """Plan against what is there and apply: the namespaces that failed."""
    managed = kube.list_secrets(label_selector=f"regcred.dev/credential={NAME}")
    return [f.namespace for f in writer.apply(plan_secrets(DESIRED, targets, managed), NAME, DESIRED)]


def test_the_secret_is_written_in_every_target_and_deleted_where_no_longer_wanted(
        kube: Kube, writer: SecretWriter) -> None:
    assert _write(kube, writer, TEAMS) == []
    for namespace in TEAMS:
        secret = kube.pull_secret(namespace)
        assert secret is not None and dc.decode_data(secret) == CONTENT
    assert _write(kube, writer, ["team-a"]) == []
    assert [kube.pull_secret(ns) is not None for ns in TEAMS] == [True, False, False]


def test_a_failed_write_costs_only_its_namespace(kube: Kube, writer: SecretWriter) -> None:
    kube.failing["team-b"] = KubeError(500, "InternalError", "etcd is unhappy", retry_after=3)
    failed = writer.apply(plan_secrets(DESIRED, TEAMS, []), NAME, DESIRED)
    assert [(f.namespace, f.reason, f.retry_after) for f in failed] == [("team-b", "InternalError", 3)]
    assert "Could not create Secret team-b/pull" in failed[0].message
    assert kube.pull_secret("team-a") is not None and kube.pull_secret("team-c") is not None


def test_a_forbidden_write_says_so(kube: Kube, writer: SecretWriter) -> None:
    kube.failing["team-a"] = KubeError(403, "Forbidden: namespaced", "no")
    [failed] = writer.apply(plan_secrets(DESIRED, ["team-a"], []), NAME, DESIRED)
    assert failed.reason == "Forbidden"


def test_someone_elses_secret_of_that_name_is_left_alone(kube: Kube, writer: SecretWriter) -> None:
    theirs = {"metadata": {"namespace": "team-a", "name": "pull"}, "type": "Opaque", "data": {"x": "eQ=="}}
    kube.put_secret(theirs)
    [failed] = writer.apply(plan_secrets(DESIRED, ["team-a"], []), NAME, DESIRED)
    assert failed.reason == "SecretConflict" and "left alone" in failed.message
    assert kube.pull_secret("team-a") == theirs


def test_our_own_secret_missed_by_a_lagging_list_is_patched_not_reported(kube: Kube, writer: SecretWriter) -> None:
    assert _write(kube, writer, ["team-a"]) == []
    secret = kube.pull_secret("team-a")
    assert secret is not None
    secret["data"] = {dc.DATA_KEY: "e30="}  # edited to "{}"
    # Planned as if the LIST had not shown it: a create, which meets our own Secret.
    assert writer.apply(plan_secrets(DESIRED, ["team-a"], []), NAME, DESIRED) == []
    assert dc.decode_data(kube.pull_secret("team-a") or {}) == CONTENT


def test_the_write_back_off_doubles_to_a_minute_and_starts_afresh_after_a_clean_pass() -> None:
    backoff = WriteBackoff(ManualClock(NOW), random.Random(0))
    delays = [backoff.delay(NAME, [None]).total_seconds() for _ in range(8)]
    for delay, full in zip(delays, [1, 2, 4, 8, 16, 32, 60, 60], strict=True):
        assert 0.8 * full <= delay <= full
    backoff.succeeded(NAME)
    assert backoff.delay(NAME, [None]).total_seconds() <= 1


def test_retry_after_holds_every_pass_back_until_then() -> None:
    clock = ManualClock(NOW)
    backoff = WriteBackoff(clock, random.Random(0))
    assert backoff.delay(NAME, [None, 20.0, 5.0]) == datetime.timedelta(seconds=20)
    assert backoff.waiting(NAME, clock.now()) == NOW + datetime.timedelta(seconds=20)
    assert backoff.waiting("other", clock.now()) is None
    clock.advance(datetime.timedelta(seconds=20))
    assert backoff.waiting(NAME, clock.now()) is None
    # Whatever the server asks, a credential waits at most a minute before its next pass.
    backoff.delay(NAME, [3600.0])
    assert backoff.waiting(NAME, clock.now()) == clock.now() + datetime.timedelta(minutes=1)
