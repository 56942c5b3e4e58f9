"""`python -m regcred_sandbox.demo`: the operator's main job on an emulated cluster, in about ten seconds.

An emulated Kubernetes API (for trying and testing, not a cluster) gets a few namespaces and a Docker Hub
token in a Secret; a `static` RegistryCredential then fans it out. The demo prints what appeared where,
shows the operator keeping up (a new namespace, a deleted Secret), and prints the credential's status.
No secret value is printed.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from regcred import GROUP, PLURAL, VERSION
from regcred.config import Settings
from regcred.dockerconfig import DATA_KEY
from regcred.embedded import EmbeddedOperator
from regcred.imageref import ImageRef
from regcred.kube import MERGE_PATCH, KubeApi, KubeError
from regcred.manifests import load_crd
from regcred.probe import Credentials, Prober, ProbeResult, Verdict
from regcred.runtime import Runtime
from regcred_sandbox import EmulatedCluster
from regcred_sandbox.kubelet import deployment_with_pod, report_pull_failure, restarted_at
from regcred_sandbox.stuck_pod import CAUSES

T = TypeVar("T")
ROTATED = "dckr_pat_demo-rotated"

EXAMPLE = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "RegistryCredential",
    "metadata": {"name": "dockerhub"},
    "spec": {
        "provider": {
            "static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub-token"}},
        },
        "secretName": "dockerhub-pull",
        "namespaces": {
            "names": ["payments"], "selector": {"matchLabels": {"team": "shop"}}, "exclude": ["kube-system"],
        },
        "serviceAccounts": ["default"],
    },
}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"gave up waiting for {what}")


def run_demo(team_namespaces: int = 6, *, keep: bool = False) -> int:
    print(__doc__)
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())
        kube = KubeApi(cluster.api_client())
        os.environ["KUBECONFIG"] = cluster.kubeconfig_path  # kopf logs in through the kubeconfig
        print(f"Emulated API server at {cluster.url}  (try: KUBECONFIG={cluster.kubeconfig_path} kubectl get ns)\n")

        teams = [f"shop-{i}" for i in range(1, team_namespaces + 1)]
        for name, labels in [("regcred-system", {}), ("payments", {}), ("kube-system", {"team": "shop"}),
                             ("unrelated", {"team": "ops"}), *((t, {"team": "shop"}) for t in teams)]:
            create_namespace(kube, name, labels)
        kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hub-token"},
            "data": {"username": _b64("acme-ci"), "password": _b64("dckr_pat_demo-not-a-real-token")},
        })
        kube.request("PATCH", "/api/v1/namespaces/payments/serviceaccounts/default",
                     body={"imagePullSecrets": [{"name": "existing-entry"}]},
                     content_type="application/merge-patch+json")

        # Short debounce so the demo reads well; everything else as in production.
        runtime = Runtime.create(settings=Settings(debounce=datetime.timedelta(seconds=0.1)),
                                 kubeconfig=cluster.kubeconfig_path)
        with EmbeddedOperator(runtime):
            print("Applying this RegistryCredential:\n")
            print(yaml.safe_dump(EXAMPLE, sort_keys=False))
            started = time.monotonic()
            kube.request("POST", f"/apis/{GROUP}/{VERSION}/{PLURAL}", body=EXAMPLE)
            expected = {"payments", *teams}
            wait_for("the Secrets", lambda: expected <= secret_namespaces(kube))
            print(f"Secrets written in {time.monotonic() - started:.2f}s:\n")
            print_secrets(kube)
            print_service_accounts(kube, sorted(expected))

            print("\nKeeping up: a new namespace labelled team=shop ...")
            started = time.monotonic()
            create_namespace(kube, "shop-new", {"team": "shop"})
            wait_for("the new namespace's Secret", lambda: "shop-new" in secret_namespaces(kube))
            print(f"  shop-new got its Secret after {time.monotonic() - started:.2f}s")

            print("Keeping up: someone deletes the Secret in payments ...")
            started = time.monotonic()
            kube.delete_secret("payments", "dockerhub-pull")
            wait_for("the restored Secret", lambda: "payments" in secret_namespaces(kube))
            print(f"  restored after {time.monotonic() - started:.2f}s")

            show_remediation(kube, runtime)

            status = wait_for("an up-to-date status", lambda: fresh_status(kube, len(expected) + 1))
            print("\nkubectl get regcred dockerhub -o yaml  (status):\n")
            print(yaml.safe_dump({"status": status}, sort_keys=False))
            kubectl = shutil.which("kubectl", path=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
            if kubectl:
                print("$ kubectl get registrycredentials\n")
                sys.stdout.flush()
                subprocess.run([kubectl, "get", "registrycredentials"], check=False, timeout=30)  # noqa: S603
            if keep:
                keep_running(cluster.kubeconfig_path)
    return 0


def keep_running(kubeconfig: str) -> None:
    """The sandbox: the emulated cluster and the operator stay up until Ctrl-C (or SIGTERM)."""
    print(f"""
The sandbox keeps running (the emulated cluster and the operator). In another shell:

  export KUBECONFIG={kubeconfig}
  kubectl get registrycredentials,secrets -A
  python -m regcred_sandbox.stuck_pod shop-web -n shop-2 --cause unauthorized   # a pod that fails pulling
  regcred doctor -n shop-2                                                        # why, and what happens
  kubectl get events -n shop-2

(--cause: {", ".join(sorted(CAUSES))}.) Stop it with Ctrl-C.""", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    print("Stopping the sandbox.", flush=True)


class DemoHub(Prober):
    """Docker Hub as the demo plays it (no network): the old token is refused, the rotated one can pull
    acme/web; acme/api:v2 does not exist."""

    def probe(self, image: ImageRef | str, credentials: Credentials | None = None) -> ProbeResult:
        ref = ImageRef.parse(image) if isinstance(image, str) else image
        if credentials is None or credentials[1] != ROTATED:
            return ProbeResult(Verdict.UNAUTHORIZED, 401, f"docker.io rejected the credentials for {ref} (401).")
        if ref.tag == "v2":
            return ProbeResult(Verdict.NOT_FOUND, 404, f"{ref} does not exist.")
        return ProbeResult(Verdict.OK, 200, f"{ref} exists.")


def show_remediation(kube: KubeApi, runtime: Runtime) -> None:
    """Two pods stuck pulling (the demo plays the kubelet and Docker Hub): one on an expired token, one on a
    wrong tag. The expired token is reported on the credential, not "fixed" by restarts; once the token
    is rotated, the pod that failed with the old one is restarted once; the wrong tag is explained."""
    runtime.remediator.prober = DemoHub()
    print("\nPods stuck pulling. The kubelet reports two pods in shop-1 stuck in ErrImagePull:")
    stories = {
        "web": ("acme/web:1.4", 'failed to pull and unpack image "docker.io/acme/web:1.4": failed to resolve '
                "reference: pulling from host registry-1.docker.io failed with status code [manifests 1.4]: "
                "401 Unauthorized"),
        "api": ("acme/api:v2", 'rpc error: code = NotFound desc = failed to pull and unpack image '
                '"docker.io/acme/api:v2": failed to resolve reference "docker.io/acme/api:v2": '
                "docker.io/acme/api:v2: not found"),
    }
    for name, (image, message) in stories.items():
        pod = deployment_with_pod(kube, "shop-1", name, image, "dockerhub-pull")
        report_pull_failure(kube, "shop-1", pod, image, message)
        print(f"  {name}: {image}  kubelet: {message[:90]}...")
    rejected = wait_for("the rejected credential", lambda: _condition(kube, "CredentialRejected", "True"))
    print(f"\nThe token in place is what failed, so nothing is restarted; the credential says:\n"
          f"  CredentialRejected=True  {rejected['message'][:160]}...")
    print("\nThe Docker Hub token is rotated in its Secret; the operator, which watches that Secret, refreshes "
          "every namespace ...")
    kube.request("PATCH", "/api/v1/namespaces/regcred-system/secrets/hub-token", content_type=MERGE_PATCH,
                 body={"data": {"password": _b64(ROTATED)}})
    rotated = time.monotonic()
    wait_for("the refreshed Secret", lambda: _password_is(kube, "shop-1", ROTATED))
    print(f"  the rotated token is in shop-1 after {time.monotonic() - rotated:.1f}s")
    wait_for("the remediation", lambda: restarted_at(kube, "shop-1", "web"))
    wait_for("the explanation", lambda: _events(kube, "shop-1", "RestartWouldNotHelp"))
    print("\nWhat the operator did (Events on the workloads):")
    for reason in ("Remediated", "RestartWouldNotHelp"):
        for event in _events(kube, "shop-1", reason):
            involved = event["involvedObject"]
            print(f"  {involved['kind']}/{involved['name']}  {reason}: {event['message']}")
    print(f"  Deployment web restarted: {restarted_at(kube, 'shop-1', 'web')}; "
          f"Deployment api restarted: {bool(restarted_at(kube, 'shop-1', 'api'))} (a restart would not help)")


def _condition(kube: KubeApi, type_: str, status: str) -> dict[str, Any] | None:
    for condition in credential_status(kube).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == status:
            return dict(condition)
    return None


def _events(kube: KubeApi, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.list_all(f"/api/v1/namespaces/{namespace}/events") if e.get("reason") == reason]


def _password_is(kube: KubeApi, namespace: str, password: str) -> bool:
    secret = kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets/dockerhub-pull")
    config = json.loads(base64.b64decode(secret["data"][DATA_KEY]))
    return any(entry.get("password") == password for entry in config["auths"].values())


def create_namespace(kube: KubeApi, name: str, labels: dict[str, str]) -> None:
    try:
        kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": name, "labels": labels}})
    except KubeError as error:  # kube-system and default exist from the start
        if not error.conflict:
            raise
        kube.request("PATCH", f"/api/v1/namespaces/{name}", body={"metadata": {"labels": labels}},
                     content_type="application/merge-patch+json")
    # A real cluster's controller-manager adds the `default` ServiceAccount to every new namespace.
    try:
        kube.request("POST", f"/api/v1/namespaces/{name}/serviceaccounts",
                     body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
    except KubeError as error:
        if not error.conflict:
            raise


def secret_namespaces(kube: KubeApi) -> set[str]:
    return {s["metadata"]["namespace"] for s in kube.list_secrets(label_selector="regcred.dev/credential=dockerhub")}


def credential_status(kube: KubeApi) -> dict[str, Any]:
    status: dict[str, Any] = kube.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}/dockerhub").get("status") or {}
    return status


def fresh_status(kube: KubeApi, synced: int) -> dict[str, Any] | None:
    status = credential_status(kube)
    return status if (status.get("namespaces") or {}).get("synced") == synced else None


def print_secrets(kube: KubeApi) -> None:
    print(f"  {'NAMESPACE':<16} {'SECRET':<16} {'TYPE':<32} {'REGISTRY HOSTS (auths)':<32} EXPIRES")
    for secret in sorted(kube.list_secrets(label_selector="regcred.dev/credential=dockerhub"),
                         key=lambda s: s["metadata"]["namespace"]):
        config = json.loads(base64.b64decode(secret["data"][DATA_KEY]))
        expires = secret["metadata"]["annotations"].get("regcred.dev/expiration-time", "never (static)")
        print(f"  {secret['metadata']['namespace']:<16} {secret['metadata']['name']:<16} {secret['type']:<32} "
              f"{', '.join(config['auths']):<32} {expires}")
    print("  (not in: regcred-system, kube-system (excluded), unrelated (team=ops))")


def print_service_accounts(kube: KubeApi, namespaces: list[str]) -> None:
    print("\n  ServiceAccount default, imagePullSecrets:")
    for namespace in namespaces:
        account = kube.read_service_account(namespace, "default")
        print(f"    {namespace:<14} {[e['name'] for e in account.get('imagePullSecrets') or []]}")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m regcred_sandbox.demo",
        description="Run the operator against an emulated cluster with an example credential.")
    parser.add_argument("--namespaces", type=int, default=6, help="how many team namespaces to create")
    parser.add_argument("--keep", action="store_true",
                        help="keep the emulated cluster and the operator running afterwards: a sandbox to try "
                             "kubectl, regcred doctor and remediation in (python -m regcred_sandbox.stuck_pod)")
    args = parser.parse_args(argv)
    return run_demo(team_namespaces=args.namespaces, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
