"""A first sync under failing API requests, on the emulated cluster. Prints figures; asserts nothing.

For each fault rate, a fresh emulated cluster with N namespaces (a `default` ServiceAccount in each) gets one
static RegistryCredential; the operator runs in this process (the very handlers `regcred run` runs, its API
client made as `regcred run` makes it). The emulator fails that share of the operator's own requests (its
User-Agent; kopf's watches are left alone) with 429 (Retry-After: 1), 500, 409 on writes, or a connection
closed unanswered, drawn from a fixed seed. Measured: the time from creating the credential until every
namespace has its Secret and every `default` ServiceAccount lists it, and the operator's requests until then.

    .venv/bin/python bench/chaos.py                      # N = 200; 0 %, 5 %, 10 %
    .venv/bin/python bench/chaos.py --namespaces 1000 --rates 0 0.1 0.2 --latency 0.005
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import logging
import os
import time

from regcred import GROUP, PLURAL, VERSION
from regcred.config import Settings
from regcred.embedded import EmbeddedOperator
from regcred.kube import USER_AGENT, KubeApi
from regcred.manifests import load_crd
from regcred.runtime import Runtime
from regcred_sandbox import EmulatedCluster

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
PULL_SECRET = "hub-pull"  # noqa: S105 - a Secret's name


@dataclasses.dataclass
class Run:
    seconds: float
    requests: int  # the operator's own client's (kopf's watches and patches not included)
    kopf_requests: int
    writes: int  # the operator's writes the server applied (2xx)
    needed: int  # what the state needs: N Secrets and N ServiceAccount updates
    failed: int  # the operator's requests answered 409, 429, 5xx or not at all (a 404 is an answer)
    injected: int  # of which chaos failed


def populate(kube: KubeApi, namespaces: list[str]) -> None:
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "regcred-system"}})
    kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={"metadata": {"name": "hub"}, "data": {
        "username": base64.b64encode(b"acme-ci").decode(), "password": base64.b64encode(b"dckr_pat_1").decode()}})
    for name in namespaces:
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name, "labels": {"bench": "yes"}}})
        kube.request("POST", f"/api/v1/namespaces/{name}/serviceaccounts", body={"metadata": {"name": "default"}})


def converged(cluster: EmulatedCluster, size: int) -> bool:
    """Read on the server's loop, not over HTTP: polling does not show in the request log."""
    secrets = [s for s in cluster.list_objects("secrets") if s["metadata"]["name"] == PULL_SECRET]
    accounts = [a for a in cluster.list_objects("serviceaccounts")
                if [r.get("name") for r in a.get("imagePullSecrets") or []] == [PULL_SECRET]]
    return len(secrets) == size and len(accounts) == size


def bench(size: int, rate: float, latency: float, seed: int, timeout: float) -> Run | None:
    namespaces = [f"team-{i:05d}" for i in range(size)]
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        kube = KubeApi(cluster.api_client())
        populate(kube, namespaces)
        os.environ["KUBECONFIG"] = cluster.kubeconfig_path  # how kopf logs in
        settings = Settings(debounce=datetime.timedelta(seconds=0.05), metrics_port=0)
        with EmbeddedOperator(Runtime.create(settings=settings, kubeconfig=cluster.kubeconfig_path)):
            cluster.latency = latency
            chaos = cluster.chaos(rate, seed=seed, user_agent=USER_AGENT)
            cluster.reset_requests()
            started = time.perf_counter()
            kube.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body={
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": "hub"},
                "spec": {"provider": {"static": {"registry": "docker.io",
                                                 "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
                         "secretName": PULL_SECRET, "namespaces": {"selector": {"matchLabels": {"bench": "yes"}}},
                         "serviceAccounts": ["default"]}})
            while not converged(cluster, size):
                if time.perf_counter() - started > timeout:
                    return None
                time.sleep(0.02)
            seconds = time.perf_counter() - started
            records = cluster.requests
            injected = chaos.failed
            cluster.chaos(0)
    own = [r for r in records if r.user_agent == USER_AGENT]
    return Run(
        seconds=seconds, requests=len(own), kopf_requests=len(records) - len(own) - 1,  # not the credential's POST
        writes=sum(1 for r in own if r.method in WRITES and 200 <= r.status < 300
                   and r.resource in ("secrets", "serviceaccounts") and r.namespace != "regcred-system"),
        needed=2 * size, failed=sum(1 for r in own if r.status in (0, 409, 429) or r.status >= 500), injected=injected,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespaces", type=int, default=200)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.05, 0.10])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="give up on a run after this many seconds")
    args = parser.parse_args()
    for name in ("kopf", "regcred"):  # every failed request is a warning: thousands of lines
        logging.getLogger(name).setLevel(logging.ERROR)
    print(f"{args.namespaces} namespaces; per-request latency {args.latency * 1000:.1f} ms; seed {args.seed}; "
          f"write concurrency {Settings().write_concurrency}; resync {Settings().resync_interval}")
    print(f"{'faults':>6}  {'converged s':>11} {'requests':>9} {'failed':>7} {'injected':>8} {'writes':>7} "
          f"{'needed':>7} {'kopf reqs':>9}")
    for rate in args.rates:
        run = bench(args.namespaces, rate, args.latency, args.seed, args.timeout)
        if run is None:
            print(f"{rate:>6.0%}  did not converge in {args.timeout:.0f} s")
            continue
        print(f"{rate:>6.0%}  {run.seconds:>11.2f} {run.requests:>9} {run.failed:>7} {run.injected:>8} "
              f"{run.writes:>7} {run.needed:>7} {run.kopf_requests:>9}")


if __name__ == "__main__":
    main()
