"""What one cluster event costs: the operator's requests for a namespace nobody selects, one that one credential
selects, and an unrelated ServiceAccount edit, with many credentials converged (issue 12's first rows).

Prints figures; asserts nothing. The operator runs embedded (the same kopf handlers as `regcred run`) against
the emulated API; requests are counted from the emulator's log by the operator's User-Agent (its own client's and
kopf's), watches excluded. Each event is followed by a marker the operator must act on (a namespace that the
first credential selects), so the count covers everything the event caused.

    PYTHONPATH=operator:. .venv/bin/python bench/event_cost.py                 # 50 credentials x 40 namespaces
    PYTHONPATH=operator:. .venv/bin/python bench/event_cost.py --credentials 10 --namespaces 200
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import itertools
import os
import time
from collections.abc import Callable

from regcred import GROUP, PLURAL, VERSION
from regcred.clock import SystemClock
from regcred.config import Settings
from regcred.embedded import EmbeddedOperator
from regcred.kube import USER_AGENT, KubeApi
from regcred.manifests import load_crd
from regcred.reconcile import Reconciler
from regcred.runtime import Runtime
from regcred_sandbox import EmulatedCluster

KOPF = "kopf/"
_markers = itertools.count()


def wait(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the operator did not get there in time")
        time.sleep(0.05)


def operator_requests(cluster: EmulatedCluster) -> collections.Counter[str]:
    return collections.Counter(f"{r.verb} {r.resource}" for r in cluster.requests
                               if (r.user_agent == USER_AGENT or r.user_agent.startswith(KOPF)) and r.verb != "watch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--credentials", type=int, default=50)
    parser.add_argument("--namespaces", type=int, default=40, help="namespaces per credential")
    args = parser.parse_args()

    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        kube = KubeApi(cluster.api_client())
        os.environ["KUBECONFIG"] = cluster.kubeconfig_path
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "regcred-system"}})
        kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={"metadata": {"name": "hub"}, "data": {
            "username": base64.b64encode(b"robot").decode(), "password": base64.b64encode(b"unused").decode()}})
        for c in range(args.credentials):
            for n in range(args.namespaces):
                name = f"team-{c}-{n}"
                kube.request("POST", "/api/v1/namespaces",
                             body={"metadata": {"name": name, "labels": {"team": str(c)}}})
                kube.request("POST", f"/api/v1/namespaces/{name}/serviceaccounts",
                             body={"metadata": {"name": "default"}})
        settings = Settings(debounce=datetime.timedelta(seconds=0.05), remediation_enabled=False)
        clock = SystemClock()
        client = cluster.api_client()
        client.user_agent = USER_AGENT  # as `regcred run` sets it: the request log tells the operator's apart
        operator = KubeApi(client)
        runtime = Runtime(settings=settings, kube=operator, reconciler=Reconciler(operator, settings, clock),
                          clock=clock)
        with EmbeddedOperator(runtime):
            started = time.monotonic()
            for c in range(args.credentials):
                kube.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body={
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": f"c{c}"},
                    "spec": {"provider": {"static": {"registry": "docker.io",
                                                     "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
                             "secretName": "pull", "namespaces": {"selector": {"matchLabels": {"team": str(c)}}},
                             "serviceAccounts": ["default"]}})
            total = args.credentials * args.namespaces
            wait(lambda: len(kube.list_secrets(label_selector="regcred.dev/credential")) == total)
            wait(lambda: all(len((runtime.reconciler.served.get(f"c{c}") or _NONE).namespaces) == args.namespaces
                             for c in range(args.credentials)))
            print(f"{args.credentials} credentials x {args.namespaces} namespaces converged in "
                  f"{time.monotonic() - started:.1f}s\n")
            time.sleep(1)

            def measure(what: str, event: Callable[[], None]) -> None:
                cluster.reset_requests()
                event()
                marker = f"marker-{next(_markers)}"  # selected by c0: the operator has handled what came before
                kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": marker, "labels": {"team": "0"}}})
                wait(lambda: kube.read_secret(marker, "pull") is not None)
                time.sleep(0.3)
                counts = operator_requests(cluster)
                print(f"{what:<45} {sum(counts.values()):>4} requests  {dict(sorted(counts.items()))}")

            measure("a namespace that nothing selects", lambda: kube.request(
                "POST", "/api/v1/namespaces", body={"metadata": {"name": "nobody", "labels": {"team": "none"}}}))
            measure("an unrelated ServiceAccount edited", lambda: kube.request(
                "PATCH", "/api/v1/namespaces/team-1-1/serviceaccounts/default",
                body={"metadata": {"labels": {"edited": "yes"}}}, content_type="application/merge-patch+json"))
            measure("nothing (the baseline: the marker alone)", lambda: None)
            print("\nEach row includes the marker's own cost (the baseline row); the event's cost is the difference.")


class _NoServing:
    namespaces: frozenset[str] = frozenset()


_NONE = _NoServing()


if __name__ == "__main__":
    main()
