"""How long a backlog of stuck workloads takes to drain under the global rate limit. Prints figures; asserts nothing.

N Deployments (200 by default) each have a pod stuck on a 401 before the operator starts; the credential is
applied and its first serving sweeps them all. The rate limit (REGCRED_REMEDIATIONS_PER_MINUTE, default 10)
lets the first ones through and queues the rest; the operator's clock (a ManualClock) is moved forward in
steps whenever the operator has nothing left to do now, so minutes of operator time take seconds.

    .venv/bin/python bench/remediation_backlog.py [--deployments 200] [--per-minute 10] [--step 5]
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import os
import time
from typing import Any

from regcred import GROUP, PLURAL, VERSION
from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.embedded import EmbeddedOperator
from regcred.kube import MERGE_PATCH, KubeApi
from regcred.manifests import load_crd
from regcred.reconcile import Reconciler
from regcred.runtime import Runtime
from regcred_sandbox import EmulatedCluster

HOST = "registry.example.com"
IMAGE = f"{HOST}/team/app:v1"
NS = "shop"
START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--per-minute", type=int, default=Settings().remediations_per_minute)
    parser.add_argument("--step", type=float, default=5, help="seconds of operator time per clock advance")
    args = parser.parse_args()
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        kube = KubeApi(cluster.api_client())
        os.environ["KUBECONFIG"] = cluster.kubeconfig_path
        for name in ("regcred-system", NS):
            kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
        kube.request("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", body={"metadata": {"name": "default"}})
        kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={"metadata": {"name": "robot"}, "data": {
            "username": base64.b64encode(b"robot").decode(), "password": base64.b64encode(b"pw").decode()}})
        names = [f"web-{i:03d}" for i in range(args.deployments)]
        for name in names:
            stuck_deployment(kube, name)

        clock = ManualClock(START)
        settings = dataclasses.replace(Settings(metrics_port=0, peering_name=""), debounce=datetime.timedelta(
            seconds=0.05), remediations_per_minute=args.per_minute)
        api = KubeApi(cluster.api_client())
        runtime = Runtime(settings=settings, kube=api, reconciler=Reconciler(api, settings, clock), clock=clock)
        with EmbeddedOperator(runtime):
            started = time.perf_counter()
            kube.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body={
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": "r"},
                "spec": {"provider": {"static": {"registry": HOST, "secretRef": {"namespace": "regcred-system",
                                                                                  "name": "robot"}}},
                         "secretName": "pull", "namespaces": {"names": [NS]}}})
            remediator = runtime.remediator
            # The first serving's sweep: the first ones through, the rest queued.
            while len(remediator.actions) + len(remediator.backlog) < args.deployments:
                time.sleep(0.01)
            swept = time.perf_counter() - started
            first_batch = len(remediator.actions)
            while pending(kube) != len(remediator.backlog):  # the status catches up
                time.sleep(0.01)
            status_lag = time.perf_counter() - started - swept
            pending_seen = pending(kube)
            advances = 0
            while len(remediator.actions) < args.deployments:
                if remediator.limiter.next_free() > clock.now():  # nothing the operator may do now
                    clock.advance(datetime.timedelta(seconds=args.step))
                    advances += 1
                time.sleep(0.01)
            wall = time.perf_counter() - started
            operator_time = clock.now() - START
            while pending(kube) != 0:  # the status catches up
                time.sleep(0.01)
    print(f"{args.deployments} stuck Deployments, limit {args.per_minute}/min, clock step {args.step:g}s:")
    print(f"  first serving's sweep: {swept * 1000:.0f} ms (wall) to restart {first_batch} and queue "
          f"{args.deployments - first_batch}; status.remediationsPending {pending_seen}, "
          f"{status_lag * 1000:.0f} ms later")
    print(f"  drained in {operator_time.total_seconds() / 60:.1f} min of operator time "
          f"({advances} clock advances), {wall:.1f} s wall; restarts {len(remediator.actions)}, "
          f"distinct {len(set(remediator.actions))}, dropped {args.deployments - len(set(remediator.actions))}")


def stuck_deployment(kube: KubeApi, name: str) -> None:
    """A Deployment, its ReplicaSet and its pod (no pull secret of its own), stuck on a 401."""
    deployment = kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": IMAGE}]}}}})
    replicaset = kube.request("POST", f"/apis/apps/v1/namespaces/{NS}/replicasets", body={
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{name}-rs", "ownerReferences": [owner(deployment)]},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": deployment["spec"]["template"]}})
    kube.request("POST", f"/api/v1/namespaces/{NS}/pods", body={
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-pod", "labels": {"app": name}, "ownerReferences": [owner(replicaset)]},
        "spec": {"containers": [{"name": "app", "image": IMAGE}]}})
    kube.request("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}-pod/status", content_type=MERGE_PATCH, body={
        "status": {"phase": "Pending", "containerStatuses": [{"name": "app", "image": IMAGE, "state": {"waiting": {
            "reason": "ErrImagePull", "message": f'failed to pull and unpack image "{IMAGE}": 401 Unauthorized'}}}]}})


def owner(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True}


def pending(kube: KubeApi) -> int | None:
    status = kube.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}/r").get("status") or {}
    value: int | None = status.get("remediationsPending")
    return value


if __name__ == "__main__":
    main()
