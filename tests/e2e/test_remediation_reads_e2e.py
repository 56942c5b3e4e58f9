"""What a remediation sweep reads (issue 12 point 3): what many stuck pods share is read once per sweep, and a
pod that has to wait for the rate limit costs no read of its workload.

Counted in the emulated API's request log (the operator's own User-Agent): emulated only, as the real API
server's audit log would also hold the controllers' and the kubelet-less pods' noise. The credentials are
reconciled and the sweeps made by calling the Reconciler and the Remediator, without kopf, so that nothing
else the operator does is counted.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from regcred import GROUP, PLURAL, VERSION
from regcred.clock import Clock, ManualClock, SystemClock
from regcred.config import Settings
from regcred.kube import MERGE_PATCH, USER_AGENT, KubeApi
from regcred.reconcile import Reconciler
from regcred.remediation import Remediator
from regcred.workloads import OPT_OUT_ANNOTATION
from regcred_sandbox import EmulatedCluster
from regcred_sandbox.kubelet import stuck_replicaset_pods

pytestmark = [pytest.mark.e2e, pytest.mark.emulated_only]
HOST = "registry.example.com"
IMAGE = f"{HOST}/team/app:v1"
NS = "shop"
SECRET = "private-pull"


@pytest.fixture
def setup(backend: EmulatedCluster) -> KubeApi:
    kube = KubeApi(backend.api_client())
    for name in ("regcred-system", NS):
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    kube.request("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", body={"metadata": {"name": "default"}})
    kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={"metadata": {"name": "robot"}, "data": {
        "username": base64.b64encode(b"robot").decode(), "password": base64.b64encode(b"pw").decode()}})
    return kube


def remediator(backend: EmulatedCluster, setup: KubeApi, per_minute: int, kube: KubeApi | None = None,
               clock: Clock | None = None) -> Iterator[Remediator]:
    """The credential served (its Secret written, the ServiceAccount patched), and a Remediator with a fresh memory."""
    client = backend.api_client()
    client.user_agent = USER_AGENT
    kube = kube or KubeApi(client)
    settings = dataclasses.replace(Settings(metrics_port=0, peering_name=""), remediations_per_minute=per_minute)
    clock = clock or SystemClock()
    reconciler = Reconciler(kube, settings, clock)
    reconciler.reconcile(setup.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body={
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": "private"},
        "spec": {"provider": {"static": {"registry": HOST, "secretRef": {"namespace": "regcred-system",
                                                                          "name": "robot"}}},
                 "secretName": SECRET, "namespaces": {"names": [NS]}}}))
    yield Remediator(kube, reconciler.served, reconciler.reporter, settings, clock, reconciler.tokens.prober)
    reconciler.close()


def swept(backend: EmulatedCluster, remediator: Remediator) -> collections.Counter[str]:
    """The operator's requests during one sweep of every credential, as "verb resource": count."""
    backend.reset_requests()
    remediator.sweep()
    return collections.Counter(f"{r.verb} {r.resource}" for r in backend.requests if r.user_agent == USER_AGENT)


def before_the_credential() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)


def test_what_the_pods_of_one_deployment_share_is_read_once_per_sweep(backend: EmulatedCluster,
                                                                      setup: KubeApi) -> None:
    # 20 pods of one Deployment, stuck since before the credential existed (without its Secret, which their
    # ServiceAccount now carries): the same ServiceAccount, Secret and owner chain for all.
    stuck_replicaset_pods(setup, NS, "web", IMAGE, 20, before_the_credential())
    for remediating in remediator(backend, setup, per_minute=10):
        counts = swept(backend, remediating)

        assert remediating.actions == [f"RolloutRestart Deployment {NS}/web"]
        assert counts["list events"] == 20  # each pod's own pull failures
        assert counts["get serviceaccounts"] == 1
        assert counts["get secrets"] == 1
        # The owner chain: once for the decision (the template's pull secrets), once more right before the
        # restart (the once-per-revision record on the Deployment, as it is then).
        assert counts["get replicasets"] == 2
        assert counts["get deployments"] == 2
        assert counts["get namespaces"] == 2  # the opt-out: as the sweep read it, and right before acting
        assert counts["patch deployments"] == 1


def test_pods_beyond_the_rate_limit_cost_no_read_of_their_workloads(backend: EmulatedCluster,
                                                                    setup: KubeApi) -> None:
    # Five Deployments, each with a pod that lists the Secret itself (the template's list then decides nothing)
    # and failed before the credential was written; the rate limit lets one restart through.
    for index in range(5):
        stuck_replicaset_pods(setup, NS, f"web-{index}", IMAGE, 1, before_the_credential(), pull_secret=SECRET)
    for remediating in remediator(backend, setup, per_minute=1):
        counts = swept(backend, remediating)

        assert remediating.actions == [f"RolloutRestart Deployment {NS}/web-0"]
        assert remediating.backlog.waiting() == [("private", NS, "Deployment", f"web-{i}") for i in range(1, 5)]
        assert counts["get deployments"] == 1  # only the one restarted, right before the restart
        assert counts["get serviceaccounts"] == 0  # what a replacement pod would list decides nothing here
        assert counts["get secrets"] == 1

        # Swept again: every decision is remembered, the restarted one is known done, the others still wait:
        # nothing is read but the pending pods.
        again = swept(backend, remediating)
        assert remediating.actions == [f"RolloutRestart Deployment {NS}/web-0"]
        assert len(remediating.backlog) == 4
        assert again == {"list pods": 1}


class OptingOutRightAfterARead(KubeApi):
    """The Deployment's owner opts it out just after the operator has first read it (within the sweep)."""

    def __init__(self, client: Any, setup: KubeApi) -> None:
        super().__init__(client)
        self.setup, self.opted_out = setup, False

    def read_namespaced(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = super().read_namespaced(api, plural, namespace, name)
        if plural == "deployments" and not self.opted_out:
            self.opted_out = True
            self.setup.request("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                               content_type=MERGE_PATCH,
                               body={"metadata": {"annotations": {OPT_OUT_ANNOTATION: "false"}}})
        return found


def test_a_workload_changed_after_the_sweep_read_it_is_judged_as_it_is_now(backend: EmulatedCluster,
                                                                           setup: KubeApi) -> None:
    stuck_replicaset_pods(setup, NS, "web", IMAGE, 3, before_the_credential())
    client = backend.api_client()
    client.user_agent = USER_AGENT
    for remediating in remediator(backend, setup, per_minute=10, kube=OptingOutRightAfterARead(client, setup)):
        counts = swept(backend, remediating)

        assert remediating.actions == []  # what the sweep read first said yes; the workload now says no
        assert counts["patch deployments"] == 0
        assert [e["reason"] for e in setup.list_all(f"/api/v1/namespaces/{NS}/events")
                if e["involvedObject"]["kind"] == "Deployment"] == ["NotRemediated"]
        # The fresh read replaced the sweep's copy: the other two pods are judged by it, without more reads.
        assert counts["get deployments"] == 2


def test_a_replicaset_adopted_by_another_deployment_meanwhile_gets_that_one_restarted(backend: EmulatedCluster,
                                                                                      setup: KubeApi) -> None:
    # The pod's ReplicaSet belongs to web-a when the sweep queues it (the rate limit is used up), and to web-b
    # (orphaned and adopted) when its turn comes: the remembered owner is read again, and web-b is restarted.
    stuck_replicaset_pods(setup, NS, "web-a", IMAGE, 1, before_the_credential(), pull_secret=SECRET)
    stuck_replicaset_pods(setup, NS, "web-b", IMAGE, 0, before_the_credential())
    clock = ManualClock(datetime.datetime.now(datetime.UTC))
    for remediating in remediator(backend, setup, per_minute=1, clock=clock):
        assert remediating.limiter.allow()  # the minute's one restart is gone
        swept(backend, remediating)
        assert remediating.backlog.waiting() == [("private", NS, "Deployment", "web-a")]
        web_b = setup.request("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/web-b")
        setup.request("PATCH", f"/apis/apps/v1/namespaces/{NS}/replicasets/web-a-5d9", content_type=MERGE_PATCH,
                      body={"metadata": {"ownerReferences": [{
                          "apiVersion": "apps/v1", "kind": "Deployment", "name": "web-b",
                          "uid": web_b["metadata"]["uid"], "controller": True}]}})

        clock.advance(datetime.timedelta(minutes=1))
        remediating.work_due()
        assert remediating.actions == [f"RolloutRestart Deployment {NS}/web-b"]
        assert len(remediating.backlog) == 0
