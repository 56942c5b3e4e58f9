"""regcred.sources without kopf or a cluster: which Secrets are watched, who is woken up, and recovery."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from regcred.kube import KubeError
from regcred.models import parse_credential
from regcred.sources import Ref, SourceWatcher, referenced_secrets


class FakeStream:
    def __init__(self, events: queue.Queue[dict[str, Any] | None]) -> None:
        self.events = events

    def close(self) -> None:
        self.events.put(None)


class FakeApi:
    """Each Secret's watch yields what a test puts in its queue; None ends the stream."""

    def __init__(self) -> None:
        self.queues: dict[Ref, queue.Queue[dict[str, Any] | None]] = {}
        self.lists: list[Ref] = []
        self.watches: list[tuple[Ref, str]] = []
        self.fail_lists = 0
        self.lock = threading.Lock()

    def events(self, ref: Ref) -> queue.Queue[dict[str, Any] | None]:
        with self.lock:
            return self.queues.setdefault(ref, queue.Queue())

    def secret_list_version(self, namespace: str, name: str) -> str:
        self.lists.append((namespace, name))
        if self.fail_lists:
            self.fail_lists -= 1
            raise KubeError(403, "Forbidden", "secrets is forbidden")
        return "10"

    def watch_secret(self, namespace: str, name: str, resource_version: str, *, timeout_seconds: int,
                     on_open: Callable[[Any], None] | None = None) -> Iterator[dict[str, Any]]:
        ref = (namespace, name)
        self.watches.append((ref, resource_version))
        events = self.events(ref)
        if on_open is not None:
            on_open(FakeStream(events))
        while (event := events.get()) is not None:
            yield event


def event(type_: str, rv: str, **obj: Any) -> dict[str, Any]:
    return {"type": type_, "object": {"metadata": {"name": "hub", "resourceVersion": rv}, **obj}}


def wait_for(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def watcher() -> Iterator[tuple[SourceWatcher, FakeApi, list[str]]]:
    api, kicked = FakeApi(), []
    watching = SourceWatcher(lambda: api, kicked.append, max_watches=2, retry_initial=0.05, retry_max=0.1)
    yield watching, api, kicked
    watching.close()


HUB = ("regcred-system", "hub")
KEYS = ("regcred-system", "aws-keys")


def test_every_provider_names_the_secrets_it_reads() -> None:
    def refs(provider: dict[str, Any]) -> frozenset[Ref]:
        return parse_credential("c", {"provider": provider, "secretName": "p", "namespaces": {"names": ["a"]}}
                                ).source_secrets

    assert refs({"static": {"registry": "docker.io", "secretRef": {"namespace": "s", "name": "hub"}}}) == {("s", "hub")}
    assert refs({"ecr": {"region": "eu-west-1"}}) == frozenset()  # the ambient chain: no Secret
    assert refs({"ecr": {"region": "eu-west-1", "credentialsSecretRef": {"namespace": "s", "name": "k"}}}) == {
        ("s", "k")}
    assert refs({"ghcr": {"tokenSecretRef": {"namespace": "s", "name": "pat"}}}) == {("s", "pat")}
    assert refs({"ghcr": {"app": {"appId": 1, "installationId": 2,
                                  "privateKeySecretRef": {"namespace": "s", "name": "app"}}}}) == {("s", "app")}
    assert refs({"gar": {"registries": ["europe-docker.pkg.dev"],
                         "credentialsSecretRef": {"namespace": "s", "name": "sa"}}}) == {("s", "sa")}
    assert referenced_secrets({"metadata": {"name": "bad"}, "spec": {"provider": {}}}) == frozenset()


def test_one_watch_per_secret_wakes_every_credential_that_reads_it(
    watcher: tuple[SourceWatcher, FakeApi, list[str]],
) -> None:
    watching, api, kicked = watcher
    watching.track("a", [HUB])
    watching.track("b", [HUB])
    wait_for(lambda: len(api.watches) == 1)
    assert api.watches == [(HUB, "10")]  # watched from the LIST's resourceVersion
    assert kicked == []  # the first LIST wakes nobody: the credentials read the Secret themselves

    api.events(HUB).put(event("MODIFIED", "11"))
    wait_for(lambda: sorted(kicked) == ["a", "b"])
    api.events(HUB).put(event("BOOKMARK", "12"))
    api.events(HUB).put(None)  # the server ends the stream: resumed from the last resourceVersion seen
    wait_for(lambda: len(api.watches) == 2)
    assert api.watches[1] == (HUB, "12")
    assert sorted(kicked) == ["a", "b"]

    watching.forget("a")
    assert watching.watched == {HUB}
    watching.forget("b")
    assert watching.watched == frozenset()


def test_too_old_a_resource_version_lists_again_and_wakes_the_readers(
    watcher: tuple[SourceWatcher, FakeApi, list[str]],
) -> None:
    watching, api, kicked = watcher
    watching.track("a", [HUB])
    wait_for(lambda: len(api.watches) == 1)
    api.events(HUB).put({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})
    wait_for(lambda: len(api.watches) == 2)
    assert api.lists == [HUB, HUB]
    assert kicked == ["a"]  # a change may have gone unseen between the two


def test_the_number_of_watches_is_bounded(
    watcher: tuple[SourceWatcher, FakeApi, list[str]], caplog: pytest.LogCaptureFixture,
) -> None:
    watching, _, _ = watcher
    watching.track("a", [HUB, KEYS])
    watching.track("b", [("team", "pat")])
    assert len(watching.watched) == 2
    watching.track("c", [("team", "other")])
    assert len(watching.watched) == 2
    assert len([r for r in caplog.records if "only 2 are watched" in r.getMessage()]) == 1  # once, not per change
    watching.forget("b")
    watching.forget("c")
    assert watching.watched == {HUB, KEYS}


def test_a_refused_watch_backs_off_logs_once_and_recovers(
    watcher: tuple[SourceWatcher, FakeApi, list[str]], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="regcred")
    watching, api, kicked = watcher
    api.fail_lists = 4
    watching.track("a", [HUB])
    wait_for(lambda: len(api.watches) == 1)
    assert len(api.lists) == 5
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "Cannot watch source Secret regcred-system/hub (403 Forbidden)" in m]) == 1
    assert any("Watching source Secret regcred-system/hub again" in m for m in messages)
    assert kicked == []  # never listed before: nothing was missed


def test_close_ends_every_watch(watcher: tuple[SourceWatcher, FakeApi, list[str]]) -> None:
    watching, api, _ = watcher
    watching.track("a", [HUB, KEYS])
    wait_for(lambda: len(api.watches) == 2)
    threads = [t for t in threading.enumerate() if t.name.startswith("regcred-source-")]
    watching.close()
    assert not any(t.is_alive() for t in threads)
    watching.track("b", [HUB])  # after close: nothing starts again
    assert watching.watched == frozenset()
