"""Fault injection, latency, request records, and calling the cluster from many threads."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import kubernetes
import pytest

from regcred_sandbox import EmulatedCluster, RequestRecord
from tests.sandbox.conftest import status_of

ApiException = kubernetes.client.ApiException


def test_a_fault_answers_with_a_status_and_does_not_write(cluster: EmulatedCluster, core: Any) -> None:
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}})
    fault = cluster.inject_fault(method="PATCH", resource="secrets", status=500, times=1)

    with pytest.raises(ApiException) as info:
        core.patch_namespaced_secret("s", "default", {"metadata": {"labels": {"a": "1"}}})
    body = status_of(info.value)
    assert (body["code"], body["reason"]) == (500, "InternalError")
    assert core.read_namespaced_secret("s", "default").metadata.labels is None  # not applied

    patched = core.patch_namespaced_secret("s", "default", {"metadata": {"labels": {"a": "1"}}})  # once only
    assert patched.metadata.labels == {"a": "1"}
    assert fault.hits == 1


def test_faults_match_verbs_names_namespaces_and_subresources(cluster: EmulatedCluster, core: Any) -> None:
    core.create_namespace({"metadata": {"name": "other"}})
    for namespace in ("default", "other"):
        core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}})
    cluster.inject_fault(method="get", resource="secrets", namespace="other", name="s", status=403, times=None)

    assert core.read_namespaced_secret("s", "default").metadata.name == "s"
    for _ in range(2):
        with pytest.raises(ApiException) as info:
            core.read_namespaced_secret("s", "other")
        assert status_of(info.value)["reason"] == "Forbidden"
    assert len(core.list_namespaced_secret("other").items) == 1  # a list is not a get

    cluster.clear_faults()
    assert core.read_namespaced_secret("s", "other").metadata.name == "s"

    core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})
    cluster.inject_fault(resource="pods/status", status=409)
    core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"a": "b"}}})  # not the subresource
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    assert status_of(info.value)["reason"] == "Conflict"


def test_a_rate_limit_fault_says_when_to_retry(cluster: EmulatedCluster) -> None:
    cluster.inject_fault(method="list", resource="namespaces", status=429)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(cluster.url + "/api/v1/namespaces", timeout=5)  # noqa: S310  # our own URL
    assert info.value.code == 429 and info.value.headers["Retry-After"] == "1"
    assert json.loads(info.value.read())["reason"] == "TooManyRequests"


def test_latency_delays_every_request(cluster: EmulatedCluster, core: Any) -> None:
    cluster.latency = 0.2
    started = time.monotonic()
    core.list_namespace()
    assert time.monotonic() - started >= 0.2
    cluster.latency = 0
    started = time.monotonic()
    core.list_namespace()
    assert time.monotonic() - started < 0.2


def test_requests_are_recorded_with_kubernetes_verbs(cluster: EmulatedCluster, core: Any) -> None:
    cluster.reset_requests()
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}})
    core.patch_namespaced_secret("s", "default", {"metadata": {"labels": {"a": "b"}}})
    core.replace_namespaced_secret("s", "default", core.read_namespaced_secret("s", "default"))
    core.list_secret_for_all_namespaces()
    core.delete_namespaced_secret("s", "default")
    with pytest.raises(ApiException):
        core.read_namespaced_secret("s", "default")
    core.delete_collection_namespaced_secret("default")

    assert [(r.method, r.verb, r.namespace, r.name, r.status) for r in cluster.requests] == [
        ("POST", "create", "default", None, 201),
        ("PATCH", "patch", "default", "s", 200),
        ("GET", "get", "default", "s", 200),
        ("PUT", "update", "default", "s", 200),
        ("GET", "list", None, None, 200),
        ("DELETE", "delete", "default", "s", 200),
        ("GET", "get", "default", "s", 404),
        ("DELETE", "deletecollection", "default", None, 200),
    ]
    assert cluster.requests[0] == RequestRecord(
        method="POST", verb="create", group="", version="v1", resource="secrets", subresource=None,
        namespace="default", name=None, status=201, path="/api/v1/namespaces/default/secrets",
        user_agent="OpenAPI-Generator/37.0.1/python")
    cluster.reset_requests()
    assert cluster.requests == []


def test_many_threads_at_once(cluster: EmulatedCluster) -> None:
    errors: list[BaseException] = []

    def work(index: int) -> None:
        client = cluster.api_client()
        try:
            core = kubernetes.client.CoreV1Api(client)
            core.create_namespace({"metadata": {"name": f"ns-{index}"}})
            for item in range(10):
                core.create_namespaced_secret(f"ns-{index}", {"metadata": {"name": f"s{item}"}})
                cluster.latency = 0.001 * (item % 2)  # the knobs are safe to turn from anywhere
                assert cluster.requests
        except BaseException as e:
            errors.append(e)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cluster.list_objects("secrets")) == 80
    assert cluster.get_object("namespaces", "ns-3") is not None


def _chaos_round(cluster: EmulatedCluster, seed: int) -> list[int]:
    """100 creates by one client (through the operator's own KubeApi: a reset is a KubeError there), with
    a tenth of them failed by chaos; the statuses each got (0: no answer)."""
    from regcred.kube import USER_AGENT, KubeApi, KubeError

    client = cluster.api_client()
    client.user_agent = USER_AGENT
    kube = KubeApi(client, timeout=(2.0, 2.0))
    cluster.chaos(0.1, seed=seed, user_agent=USER_AGENT)
    statuses = []
    for i in range(100):
        try:
            kube.create_secret("default", {"metadata": {"name": f"s{seed}-{i}"}})
            statuses.append(201)
        except KubeError as error:
            statuses.append(error.status)
    cluster.chaos(0)
    return statuses


def test_chaos_fails_a_seeded_tenth_with_a_mix_of_statuses_and_resets(cluster: EmulatedCluster, core: Any) -> None:
    first = _chaos_round(cluster, seed=7)
    failed = [s for s in first if s != 201]
    assert 4 <= len(failed) <= 20 and set(failed) <= {429, 500, 409, 0}
    assert 0 in failed, "a reset reaches the client as no answer"
    written = {s.metadata.name for s in core.list_namespaced_secret("default").items}
    assert written == {f"s7-{i}" for i, s in enumerate(first) if s == 201}  # a failed create is not applied
    records = [r for r in cluster.requests if r.method == "POST"]
    assert [r.status for r in records] == first  # a reset is recorded with status 0

    assert _chaos_round(cluster, seed=8) != first  # another seed, other faults
    cluster.reset_requests()
    core.delete_collection_namespaced_secret("default")
    assert _chaos_round(cluster, seed=7) == first  # the same seed, the same faults
    core.list_namespaced_secret("default")  # other clients are never failed
    assert all(r.status == 200 for r in cluster.requests if r.method == "GET")
