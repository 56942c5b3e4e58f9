"""The operator's Events as a user finds them: with `kubectl describe`, and where the real API server accepts them.

Two ways a real server differs from a lenient one: the items of a LIST carry no kind or apiVersion (an Event
built from a listed pod must still name its kind, or `kubectl describe pod` never shows it), and an Event
about a cluster-scoped object outside `default` is accepted only when its involvedObject names that
namespace (legacyValidateEvent in Kubernetes' pkg/apis/core/validation/events.go).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from regcred import KIND
from tests.e2e.harness import TEST_SETTINGS, Backend, Cluster, OperatorFactory, eventually
from tests.e2e.test_remediation_e2e import NS, credential_spec, stuck_pod, unauthorized
from tests.registry.harness import PASSWORD, REPO, TAG, USERNAME, Registry, needs_registry

pytestmark = [pytest.mark.e2e, needs_registry]


def kubectl(backend: Backend, home: Path, *args: str) -> str:
    beside = Path(sys.executable).parent / "kubectl"
    binary = str(beside) if beside.exists() else shutil.which("kubectl")
    if not binary:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is not installed")
        pytest.skip("kubectl is not installed")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": backend.kubeconfig_path}
    result = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def describe_selector(obj: dict[str, Any], kind: str) -> str:
    """The field selector `kubectl describe` lists an object's Events with (searchEvents in kubectl's describe.go)."""
    meta = obj["metadata"]
    return (f"involvedObject.name={meta['name']},involvedObject.namespace={meta.get('namespace', '')},"
            f"involvedObject.kind={kind},involvedObject.uid={meta['uid']}")


def test_an_event_about_a_pod_found_by_the_sweep_shows_in_kubectl_describe(
    backend: Backend, cluster: Cluster, operator: OperatorFactory, registry: Registry, tmp_path: Path
) -> None:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": USERNAME, "password": PASSWORD})
    cluster.namespace(NS)  # not selected yet: the credential does not serve it
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({registry.host})))
    cluster.apply_credential("private", credential_spec(registry))
    eventually(lambda: _equal(cluster.condition("private")["status"], "True"))

    # A bare pod stuck on an auth failure while nothing serves its namespace: the pod watch lets it be.
    image = f"{registry.host}/{REPO}:{TAG}"
    pod = stuck_pod(cluster, {}, image, unauthorized(registry, image), via_replicaset=False, name="bare")
    time.sleep(1)
    # The credential now serves the namespace: its Secret is written there, and the sweep of Pending pods
    # (a LIST: items without kind) finds the pod, which has no controller to recreate it.
    cluster.relabel(NS, {"pulls-from": "private"})

    def about_the_pod() -> list[Any]:
        named = [e for e in cluster.events("NotRemediated") if e.involved_object.name == "bare"]
        assert named, "no Event about the pod yet"
        return named

    named = eventually(about_the_pod)
    found = [e for e in cluster.core.list_namespaced_event(NS, field_selector=describe_selector(pod, "Pod")).items
             if e.source.component != "kubelet"]  # the test's own kubelet Event about the failed pull
    assert {e.metadata.name for e in found} == {e.metadata.name for e in named}, [e.involved_object for e in named]
    for event in named:
        assert event.metadata.namespace == NS
        assert (event.involved_object.api_version, event.involved_object.kind) == ("v1", "Pod")
    assert "NotRemediated" in kubectl(backend, tmp_path, "describe", "pod", "bare", "-n", NS)


@pytest.mark.parametrize("events_namespace", ["default", "regcred-system"])
def test_events_about_a_credential_are_accepted_in_the_events_namespace(
    backend: Backend, cluster: Cluster, operator: OperatorFactory, registry: Registry, tmp_path: Path,
    events_namespace: str,
) -> None:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": USERNAME, "password": PASSWORD})
    cluster.namespace(NS, {"pulls-from": "private"})
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({registry.host}),
                                                events_namespace=events_namespace))
    cluster.apply_credential("private", credential_spec(registry))
    eventually(lambda: _equal(cluster.condition("private")["status"], "True"))
    credential = cluster.credential("private")

    def reasons() -> set[str]:
        events = cluster.core.list_namespaced_event(
            events_namespace, field_selector=f"involvedObject.kind={KIND},involvedObject.name=private").items
        assert events, f"no Event about the credential in {events_namespace}"
        assert all(e.involved_object.uid == credential["metadata"]["uid"] for e in events)
        return {e.reason for e in events}

    assert "TokenRefreshed" in eventually(reasons)
    if events_namespace == "default":  # where `kubectl describe` of a cluster-scoped object finds them
        assert "TokenRefreshed" in kubectl(backend, tmp_path, "describe", "registrycredential", "private")


def _equal(actual: object, expected: object) -> None:
    assert actual == expected
