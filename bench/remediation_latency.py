"""Detection-to-remediation latency on the emulated cluster. Prints figures; asserts nothing.

The kubelet's part is played here: a pod of a Deployment gets an `ErrImagePull` / 401 status; the figure
is the time until the operator has rolled the Deployment (its pod-template annotation is there).

    .venv/bin/python bench/remediation_latency.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import base64
import datetime
import os
import statistics
import time

from regcred import GROUP, PLURAL, VERSION
from regcred.config import Settings
from regcred.embedded import EmbeddedOperator
from regcred.kube import KubeApi
from regcred.manifests import load_crd
from regcred.runtime import Runtime
from regcred_sandbox import EmulatedCluster
from regcred_sandbox.kubelet import deployment_with_pod, report_pull_failure, restarted_at

HOST = "registry.example.com"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        kube = KubeApi(cluster.api_client())
        os.environ["KUBECONFIG"] = cluster.kubeconfig_path
        for name in ("regcred-system", "shop"):
            kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
        kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={"metadata": {"name": "robot"}, "data": {
            "username": base64.b64encode(b"robot").decode(), "password": base64.b64encode(b"pw").decode()}})
        # No global rate limit here: it is the latency of one remediation that is measured.
        settings = Settings(debounce=datetime.timedelta(seconds=0.05), remediations_per_minute=10_000)
        # The pods have been failing since before the credential existed: a restart gives them a Secret they
        # did not have (a failure with the credential in place is reported on the credential instead).
        before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
        with EmbeddedOperator(Runtime.create(settings=settings, kubeconfig=cluster.kubeconfig_path)):
            kube.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body={
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": "r"},
                "spec": {"provider": {"static": {"registry": HOST, "secretRef": {"namespace": "regcred-system",
                                                                                  "name": "robot"}}},
                         "secretName": "pull", "namespaces": {"names": ["shop"]}, "serviceAccounts": []}})
            while not kube.list_secrets(label_selector="regcred.dev/credential=r"):
                time.sleep(0.02)
            time.sleep(0.5)
            latencies = [one_round(kube, i, before) for i in range(args.rounds)]
    print(f"detection-to-remediation over {args.rounds} rounds: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p90 {sorted(latencies)[int(len(latencies) * 0.9) - 1] * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")


def one_round(kube: KubeApi, index: int, failed_at: datetime.datetime) -> float:
    name, image = f"web-{index}", f"{HOST}/app:v1"
    pod = deployment_with_pod(kube, "shop", name, image, "pull")
    started = time.perf_counter()
    report_pull_failure(kube, "shop", pod, image, f'failed to pull and unpack image "{image}": 401 Unauthorized',
                        at=failed_at)
    while not restarted_at(kube, "shop", name):
        time.sleep(0.005)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
