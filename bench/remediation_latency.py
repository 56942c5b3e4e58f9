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
from regcred.sandbox import EmulatedCluster
from regcred.workloads import RESTARTED_AT_ANNOTATION

HOST = "registry.example.com"
MERGE = "application/merge-patch+json"


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
        with EmbeddedOperator(Runtime.create(settings=settings, kubeconfig=cluster.kubeconfig_path)):
            kube.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body={
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": "r"},
                "spec": {"provider": {"static": {"registry": HOST, "secretRef": {"namespace": "regcred-system",
                                                                                  "name": "robot"}}},
                         "secretName": "pull", "namespaces": {"names": ["shop"]}, "serviceAccounts": []}})
            while not kube.list_secrets(label_selector="regcred.dev/credential=r"):
                time.sleep(0.02)
            time.sleep(0.5)
            latencies = [one_round(kube, i) for i in range(args.rounds)]
    print(f"detection-to-remediation over {args.rounds} rounds: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p90 {sorted(latencies)[int(len(latencies) * 0.9) - 1] * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")


def one_round(kube: KubeApi, index: int) -> float:
    name, image = f"web-{index}", f"{HOST}/app:v1"
    deployment = kube.request("POST", "/apis/apps/v1/namespaces/shop/deployments", body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}}})
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": deployment["metadata"]["uid"],
             "controller": True}
    kube.request("POST", "/api/v1/namespaces/shop/pods", body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-0", "ownerReferences": [owner]},
        "spec": {"containers": [{"name": "app", "image": image}], "imagePullSecrets": [{"name": "pull"}]}})
    started = time.perf_counter()
    kube.request("PATCH", f"/api/v1/namespaces/shop/pods/{name}-0/status", content_type=MERGE, body={"status": {
        "phase": "Pending", "containerStatuses": [{"name": "app", "image": image, "state": {"waiting": {
            "reason": "ErrImagePull",
            "message": f'failed to pull and unpack image "{image}": 401 Unauthorized'}}}]}})
    while True:
        template = kube.request("GET", f"/apis/apps/v1/namespaces/shop/deployments/{name}")["spec"]["template"]
        if RESTARTED_AT_ANNOTATION in (template.get("metadata", {}).get("annotations") or {}):
            return time.perf_counter() - started
        time.sleep(0.005)


if __name__ == "__main__":
    main()
