"""Shared pull Secrets benchmark: two credentials that name the same Secret, in N namespaces, against the emulated
API with per-request latency; beside them, one credential with a Secret of its own, as the unshared reference.

Prints figures; asserts nothing. Measured per pass (the Reconciler, as the operator runs it): the writes and the
time of the first syncs, of one credential's rotation (the issue's "one patch per namespace"), of the other
credential's pass after it (nothing left to write), and of a no-change resync shared and unshared (what
composing costs). Writes are Secret writes in the target namespaces (not the token store, status or Events).

    .venv/bin/python bench/shared_secret.py                     # N = 500, 2000 at 5 ms
    .venv/bin/python bench/shared_secret.py --sizes 100 --latency 0
"""

from __future__ import annotations

import argparse
import base64
import datetime
import time
from typing import Any

from regcred import GROUP, PLURAL, VERSION
from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.kube import KubeApi
from regcred.manifests import load_crd
from regcred.reconcile import Reconciler
from regcred_sandbox import EmulatedCluster

WRITE_VERBS = {"create", "update", "patch", "delete"}
CREDENTIALS = {"alpha": ("registries", "a.example.com"), "beta": ("registries", "b.example.com"),
               "alone": ("alone-pull", "c.example.com")}


def populate(cluster: EmulatedCluster, namespaces: list[str]) -> KubeApi:
    kube = KubeApi(cluster.api_client())
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "regcred-system"}})
    for name in CREDENTIALS:
        source(kube, name, f"{name}-1", create=True)
    for namespace in namespaces:
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace, "labels": {"bench": "yes"}}})
    for name, (secret_name, registry) in CREDENTIALS.items():
        kube.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body={
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": name},
            "spec": {"provider": {"static": {"registry": registry,
                                             "secretRef": {"namespace": "regcred-system", "name": name}}},
                     "secretName": secret_name, "namespaces": {"selector": {"matchLabels": {"bench": "yes"}}},
                     "serviceAccounts": []}})
    return kube


def source(kube: KubeApi, name: str, password: str, *, create: bool = False) -> None:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in (("username", name), ("password", password))}
    if create:
        kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={"metadata": {"name": name},
                                                                                 "data": data})
    else:
        kube.request("PATCH", f"/api/v1/namespaces/regcred-system/secrets/{name}", body={"data": data},
                     content_type="application/merge-patch+json")


def bench(size: int, latency: float) -> list[tuple[str, float, int]]:
    namespaces = [f"team-{i:05d}" for i in range(size)]
    rows: list[tuple[str, float, int]] = []
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        kube = populate(cluster, namespaces)
        clock = ManualClock(datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC))
        settings = Settings()
        reconciler = Reconciler(kube, settings, clock)
        cluster.latency = latency

        def run(label: str, name: str) -> None:
            body: dict[str, Any] = kube.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}/{name}")
            cluster.reset_requests()
            started = time.perf_counter()
            reconciler.reconcile(body)
            seconds = time.perf_counter() - started
            writes = sum(1 for r in cluster.requests if r.verb in WRITE_VERBS and r.resource == "secrets"
                         and r.namespace != "regcred-system")
            rows.append((label, seconds, writes))

        run("alone: first sync", "alone")
        run("alpha: first sync", "alpha")
        run("beta: first sync (joins)", "beta")
        run("alpha: after beta", "alpha")
        source(kube, "beta", "beta-2")
        run("beta: rotation", "beta")
        run("alpha: after the rotation", "alpha")
        clock.advance(settings.resync_interval)  # full passes: every namespace and credential LISTed again
        run("alone: no-change resync", "alone")
        run("alpha: no-change resync", "alpha")
        reconciler.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--latency", type=float, default=0.005, help="seconds added to every API request")
    args = parser.parse_args()
    print(f"per-request latency {args.latency * 1000:.1f} ms; operator write concurrency "
          f"{Settings().write_concurrency}\n")
    print(f"{'N':>6}  {'pass':<28} {'wall s':>8} {'writes':>7}")
    for size in args.sizes:
        for label, seconds, writes in bench(size, args.latency):
            print(f"{size:>6}  {label:<28} {seconds:>8.2f} {writes:>7}")
        print()


if __name__ == "__main__":
    main()
