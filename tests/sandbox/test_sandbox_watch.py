"""Watch-streams: resourceVersion semantics, selectors, bookmarks, timeouts, history limits."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from regcred_sandbox import EmulatedCluster


def stream(cluster: EmulatedCluster, path: str, limit: int | None = None, timeout: float = 10) -> list[dict[str, Any]]:
    """Read a watch-stream over plain HTTP until it ends (or `limit` events arrived)."""
    events = []
    with urllib.request.urlopen(cluster.url + path, timeout=timeout) as response:  # noqa: S310  # our own URL
        for line in response:
            events.append(json.loads(line))
            if limit is not None and len(events) >= limit:
                break
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def test_watch_from_a_resource_version_streams_only_later_events(cluster: EmulatedCluster, core: Any) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    core.patch_namespaced_config_map("before", "default", {"data": {"a": "b"}})
    core.delete_namespaced_config_map("after", "default")

    events = stream(cluster, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}", limit=3)
    assert summary(events) == [("ADDED", "after"), ("MODIFIED", "before"), ("DELETED", "after")]
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) > int(rv)


def test_a_deleted_pod_is_first_marked_then_removed(cluster: EmulatedCluster, core: Any) -> None:
    # As a real server deletes a pod that no kubelet runs: graceful deletion with a period of 0 writes the
    # deletionTimestamp (watchers see MODIFIED), then removes it (DELETED).
    core.create_namespaced_pod("default", {"metadata": {"name": "p"},
                                           "spec": {"containers": [{"name": "a", "image": "x"}]}})
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.delete_namespaced_pod("p", "default")

    events = stream(cluster, f"/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}", limit=2)
    assert summary(events) == [("MODIFIED", "p"), ("DELETED", "p")]
    assert all(e["object"]["metadata"]["deletionTimestamp"] for e in events)
    assert events[0]["object"]["metadata"]["deletionGracePeriodSeconds"] == 0
    assert core.list_namespaced_pod("default").items == []


@pytest.mark.parametrize("rv", ["", "&resourceVersion=0"])
def test_watch_without_a_resource_version_starts_with_the_current_state(
        cluster: EmulatedCluster, core: Any, rv: str) -> None:
    for name in ("a", "b"):
        core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    events = stream(cluster, f"/api/v1/namespaces/default/configmaps?watch=1{rv}", limit=2)
    assert summary(events) == [("ADDED", "a"), ("ADDED", "b")]


def test_the_python_client_watch_and_its_watch_true(cluster: EmulatedCluster, client: Any, core: Any) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    seen: list[tuple[str, str]] = []
    watch = kubernetes.watch.Watch()
    for event in watch.stream(core.list_namespaced_config_map, "default", timeout_seconds=1):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "a")]
    assert [r.verb for r in cluster.requests if r.resource == "configmaps"][-1] == "watch"


def test_live_events_arrive_while_watching(cluster: EmulatedCluster, core: Any) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    path = f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=5"
    with urllib.request.urlopen(cluster.url + path, timeout=10) as response:  # noqa: S310  # our own URL
        core.create_namespaced_config_map("default", {"metadata": {"name": "live"}})
        event = json.loads(response.readline())
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "live")


def test_timeout_seconds_ends_the_stream(cluster: EmulatedCluster) -> None:
    started = time.monotonic()
    assert stream(cluster, "/api/v1/namespaces/default/secrets?watch=true&timeoutSeconds=1&resourceVersion=1") == []
    assert 0.9 < time.monotonic() - started < 3


def test_bookmarks_when_allowed(cluster: EmulatedCluster) -> None:
    events = stream(cluster, "/api/v1/namespaces?watch=true&allowWatchBookmarks=true&timeoutSeconds=1"
                             "&resourceVersion=1")
    assert events and events[-1]["type"] == "BOOKMARK"
    assert events[-1]["object"]["kind"] == "Namespace"
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= 1


def test_initial_events_end_with_a_bookmark(cluster: EmulatedCluster) -> None:
    events = stream(cluster, "/api/v1/namespaces?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
                             "&resourceVersionMatch=NotOlderThan", limit=5)
    assert {e["type"] for e in events[:4]} == {"ADDED"}
    assert events[4]["type"] == "BOOKMARK"
    assert events[4]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_selectors_on_watches_translate_transitions(cluster: EmulatedCluster, core: Any) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "c", "labels": {"app": "x"}}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "other", "labels": {"app": "y"}}})
    core.patch_namespaced_config_map("c", "default", {"metadata": {"labels": {"app": "y"}}})  # leaves the selection
    core.patch_namespaced_config_map("c", "default", {"metadata": {"labels": {"app": "x"}}})  # comes back
    core.patch_namespaced_config_map("c", "default", {"data": {"k": "v"}})

    events = stream(cluster, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"
                             "&labelSelector=app%3Dx", limit=3)
    assert summary(events) == [("DELETED", "c"), ("ADDED", "c"), ("MODIFIED", "c")]

    core.create_namespaced_config_map("default", {"metadata": {"name": "last"}})  # ends the next stream
    events = stream(cluster, f"/api/v1/configmaps?watch=true&resourceVersion={rv}"
                             "&fieldSelector=metadata.name!%3Dc", limit=2)
    assert summary(events) == [("ADDED", "other"), ("ADDED", "last")]


def test_a_too_old_resource_version_is_expired() -> None:
    with EmulatedCluster(history_limit=10) as cluster:
        client = cluster.api_client()
        core = kubernetes.client.CoreV1Api(client)
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        for index in range(20):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{index}"}})

        events = stream(cluster, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}")
        assert [e["type"] for e in events] == ["ERROR"]
        assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")

        with pytest.raises(kubernetes.client.ApiException) as info:  # how the Python client surfaces it
            for _ in kubernetes.watch.Watch().stream(core.list_namespaced_config_map, "default",
                                                     resource_version=rv, timeout_seconds=1):
                pass
        assert info.value.status == 410

        recent = core.list_namespaced_config_map("default").metadata.resource_version
        assert stream(cluster, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={recent}"
                               "&timeoutSeconds=1") == []
        client.close()


def test_deleting_a_crd_ends_its_watches(cluster: EmulatedCluster, client: Any) -> None:
    path = "/apis/example.dev/v1/gadgets?watch=true&resourceVersion=1&timeoutSeconds=5"

    def watch() -> Iterator[None]:
        with urllib.request.urlopen(cluster.url + path, timeout=10) as response:  # noqa: S310  # our own URL
            yield
            assert response.read() == b""

    started = time.monotonic()
    watching = watch()
    next(watching)
    kubernetes.client.ApiextensionsV1Api(client).delete_custom_resource_definition("gadgets.example.dev")
    with pytest.raises(StopIteration):
        next(watching)
    assert time.monotonic() - started < 3


def test_a_finalized_deletion_is_modified_then_deleted(cluster: EmulatedCluster, core: Any) -> None:
    core.create_namespaced_secret("default", {"metadata": {"name": "s", "finalizers": ["example.dev/hold"]}})
    rv = core.list_namespaced_secret("default").metadata.resource_version
    core.delete_namespaced_secret("s", "default")
    core.patch_namespaced_secret("s", "default", {"metadata": {"finalizers": None}})

    events = stream(cluster, f"/api/v1/namespaces/default/secrets?watch=true&resourceVersion={rv}", limit=2)
    assert summary(events) == [("MODIFIED", "s"), ("DELETED", "s")]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]
    assert "finalizers" not in events[1]["object"]["metadata"]
