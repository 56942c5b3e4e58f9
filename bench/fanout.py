"""Fan-out benchmark: one credential into N namespaces against the emulated API with per-request latency.

Prints figures; asserts nothing. For each N it measures the operator's reconciliation (one LIST of
namespaces, one label-selected LIST of Secrets, parallel writes of only what differs) on a first sync, on
a no-change resync and on a token rotation, and a plain sequential get-then-create/replace loop over the
same namespaces as the baseline.

    .venv/bin/python bench/fanout.py                       # N = 100, 1000, 2000 at 5 ms
    .venv/bin/python bench/fanout.py --sizes 500 --latency 0.010
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import kubernetes
from moto.server import ThreadedMotoServer

from regcred import GROUP, PLURAL, VERSION
from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.kube import KubeApi
from regcred.manifests import load_crd
from regcred.reconcile import Reconciler
from regcred_sandbox import EmulatedCluster

WRITE_VERBS = {"create", "update", "patch", "delete"}
# moto's ECR tokens all expire at 2015-01-01T00:00Z; a clock 12 h before gives them a real ECR lifetime.
START = datetime.datetime(2014, 12, 31, 12, 0, tzinfo=datetime.UTC)


@dataclasses.dataclass
class Run:
    seconds: float
    requests: int
    writes: int
    provider_calls: int = 0


def measure(cluster: EmulatedCluster, action: Callable[[], int]) -> Run:
    cluster.reset_requests()
    started = time.perf_counter()
    provider_calls = action()
    seconds = time.perf_counter() - started
    records = cluster.requests
    return Run(seconds, len(records), sum(1 for r in records if r.verb in WRITE_VERBS), provider_calls)


def populate(cluster: EmulatedCluster, namespaces: list[str]) -> KubeApi:
    kube = KubeApi(cluster.api_client())
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "regcred-system"}})
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001", "AWS_SECRET_ACCESS_KEY": "example-secret"}
    kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={
        "metadata": {"name": "aws-keys"}, "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()}})
    for name in namespaces:
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name, "labels": {"bench": "yes"}}})
    return kube


def credential(kube: KubeApi) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": "bench"},
        "spec": {
            "provider": {"ecr": {"region": "eu-west-1",
                                 "credentialsSecretRef": {"namespace": "regcred-system", "name": "aws-keys"}}},
            "secretName": "ecr-pull",
            "namespaces": {"selector": {"matchLabels": {"bench": "yes"}}},
            "serviceAccounts": [],
        },
    }
    created: dict[str, Any] = kube.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body=body)
    return created


def baseline(api_client: kubernetes.client.ApiClient, namespaces: list[str], secret: dict[str, Any]) -> int:
    """What a simple controller does: for each namespace, GET the Secret, then create or replace it."""
    core = kubernetes.client.CoreV1Api(api_client)
    for namespace in namespaces:
        try:
            core.read_namespaced_secret("baseline-pull", namespace)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
            core.create_namespaced_secret(namespace, secret)
        else:
            core.replace_namespaced_secret("baseline-pull", namespace, secret)
    return 0


def bench(size: int, latency: float, moto_url: str) -> dict[str, Run]:
    namespaces = [f"team-{i:05d}" for i in range(size)]
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        kube = populate(cluster, namespaces)
        body = credential(kube)
        clock = ManualClock(START)
        settings = Settings(ecr_endpoint_url=moto_url, sts_endpoint_url=moto_url)
        reconciler = Reconciler(kube, settings, clock)
        cluster.latency = latency

        def reconcile() -> int:
            calls = reconciler.tokens.provider_calls
            reconciler.reconcile(kube.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}/bench"))
            return reconciler.tokens.provider_calls - calls

        runs = {"first sync": measure(cluster, reconcile), "no-change resync": measure(cluster, reconcile)}
        clock.advance(datetime.timedelta(hours=8, minutes=1))
        runs["rotation"] = measure(cluster, reconcile)
        secret = {"metadata": {"name": "baseline-pull"}, "type": "kubernetes.io/dockerconfigjson",
                  "data": {".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()}}
        runs["baseline first sync"] = measure(cluster, lambda: baseline(cluster.api_client(), namespaces, secret))
        runs["baseline resync"] = measure(cluster, lambda: baseline(cluster.api_client(), namespaces, secret))
        reconciler.close()
        del body
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 2000])
    parser.add_argument("--latency", type=float, default=0.005, help="seconds added to every API request")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        print(f"per-request latency {args.latency * 1000:.1f} ms; operator write concurrency "
              f"{Settings().write_concurrency}\n")
        print(f"{'N':>6}  {'run':<20} {'wall s':>8} {'requests':>9} {'writes':>7} {'provider calls':>15}")
        for size in args.sizes:
            runs = bench(size, args.latency, f"http://{host}:{port}")
            for label, run in runs.items():
                calls = "" if label.startswith("baseline") else str(run.provider_calls)
                print(f"{size:>6}  {label:<20} {run.seconds:>8.2f} {run.requests:>9} {run.writes:>7} {calls:>15}")
            ratio = runs["baseline first sync"].seconds / runs["first sync"].seconds
            resync_ratio = runs["baseline resync"].seconds / runs["no-change resync"].seconds
            print(f"{size:>6}  first sync {ratio:.1f}x faster than the baseline; "
                  f"no-change resync {resync_ratio:.1f}x faster\n")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
