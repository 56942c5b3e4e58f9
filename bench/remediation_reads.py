"""What a remediation sweep reads from the API server, by verb and resource. Prints figures; asserts nothing.

N stuck pods (200 by default) of Deployments (2 pods each, through a ReplicaSet) over M namespaces (50), each
pulling from one of C registries (3), each served by its own credential in every namespace. The pods failed
with a 401 before the credentials existed (they lack the pull Secret their ServiceAccount now carries), so
every one is fixable; with --own-secret they list the Secret themselves (their template then decides
nothing). The credentials are reconciled (Secrets written, ServiceAccounts patched); then a fresh Remediator
sweeps all credentials twice, with the default rate limit (most workloads wait in the backlog). Only the
operator's own requests (User-Agent regcred.kube.USER_AGENT) made during each sweep are counted.

    .venv/bin/python bench/remediation_reads.py [--pods 200] [--namespaces 50] [--credentials 3]
        [--pods-per-deployment 2] [--per-minute 10] [--own-secret]
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import datetime
import time

from regcred import GROUP, PLURAL, VERSION
from regcred.clock import SystemClock
from regcred.config import Settings
from regcred.kube import USER_AGENT, KubeApi
from regcred.manifests import load_crd
from regcred.reconcile import Reconciler
from regcred.remediation import Remediator
from regcred_sandbox import EmulatedCluster
from regcred_sandbox.kubelet import stuck_replicaset_pods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--credentials", type=int, default=3)
    parser.add_argument("--pods-per-deployment", type=int, default=2)
    parser.add_argument("--per-minute", type=int, default=Settings().remediations_per_minute)
    parser.add_argument("--own-secret", action="store_true",
                        help="the pods list their credential's Secret themselves (their template then decides nothing)")
    args = parser.parse_args()
    hosts = [f"registry-{i}.example.com" for i in range(args.credentials)]
    namespaces = [f"team-{i:03d}" for i in range(args.namespaces)]
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        setup = KubeApi(cluster.api_client())
        for name in ("regcred-system", *namespaces):
            setup.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
        for namespace in namespaces:
            setup.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                          body={"metadata": {"name": "default"}})
        robot = {"username": base64.b64encode(b"robot").decode(), "password": base64.b64encode(b"pw").decode()}
        setup.request("POST", "/api/v1/namespaces/regcred-system/secrets",
                      body={"metadata": {"name": "robot"}, "data": robot})
        failed_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        deployments = (args.pods + args.pods_per_deployment - 1) // args.pods_per_deployment
        made = 0
        for index in range(deployments):
            namespace, host = namespaces[index % len(namespaces)], hosts[index % len(hosts)]
            pods = min(args.pods_per_deployment, args.pods - made)
            stuck_replicaset_pods(setup, namespace, f"web-{index:04d}", f"{host}/team/app:v1", pods, failed_at,
                                  pull_secret=f"pull-{index % len(hosts)}" if args.own_secret else None)
            made += pods

        client = cluster.api_client()
        client.user_agent = USER_AGENT  # the operator's requests, told apart from the set-up's
        kube = KubeApi(client)
        settings = dataclasses.replace(Settings(metrics_port=0, peering_name=""),
                                       remediations_per_minute=args.per_minute)
        clock = SystemClock()
        reconciler = Reconciler(kube, settings, clock)
        for index, host in enumerate(hosts):
            body = setup.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body={
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": f"r{index}"},
                "spec": {"provider": {"static": {"registry": host, "secretRef": {"namespace": "regcred-system",
                                                                                  "name": "robot"}}},
                         "secretName": f"pull-{index}", "namespaces": {"names": namespaces}}})
            reconciler.reconcile(body)
        remediator = Remediator(kube, reconciler.served, reconciler.reporter, settings, clock, reconciler.tokens.prober)
        print(f"{args.pods} stuck pods of {deployments} Deployments in {args.namespaces} namespaces, "
              f"{args.credentials} credentials, limit {args.per_minute}/min:")
        for label in ("first sweep (fresh operator)", "second sweep"):
            cluster.reset_requests()
            started = time.perf_counter()
            remediator.sweep()
            wall = time.perf_counter() - started
            mine = [r for r in cluster.requests if r.user_agent == USER_AGENT]
            counts = collections.Counter(f"{r.verb} {r.resource}" for r in mine)
            reads = sum(n for key, n in counts.items() if key.split()[0] in ("get", "list"))
            print(f"  {label}: {len(mine)} requests ({reads} reads) in {wall * 1000:.0f} ms; restarted "
                  f"{len(remediator.actions)}, waiting {len(remediator.backlog)}")
            for key, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
                print(f"    {count:6d}  {key}")
        reconciler.close()


if __name__ == "__main__":
    main()
