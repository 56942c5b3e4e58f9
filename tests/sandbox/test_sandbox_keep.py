"""`scripts/demo.sh --keep`: the demo, then a sandbox that answers kubectl and recovers a pod made to fail."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from regcred.kube import KubeApi, load_api_client
from regcred.workloads import RESTARTED_AT_ANNOTATION
from tests.sandbox.test_sandbox_kubectl import KUBECTL

ROOT = Path(__file__).resolve().parents[2]


def test_the_sandbox_answers_kubectl_and_recovers_a_pod_made_to_fail(tmp_path: Path) -> None:
    demo = subprocess.Popen([sys.executable, "-m", "regcred_sandbox.demo", "--keep", "--namespaces", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HOME": str(tmp_path)})
    try:
        kubeconfig = _kubeconfig_from(demo)
        env = {**os.environ, "KUBECONFIG": kubeconfig, "HOME": str(tmp_path)}
        if KUBECTL:
            listed = subprocess.run([KUBECTL, "get", "registrycredentials"], env=env, capture_output=True, text=True,
                                    timeout=30, check=True)
            assert re.search(r"^dockerhub\s+static\s+True\s+Ready\b", listed.stdout, re.MULTILINE), listed.stdout

        made = subprocess.run([sys.executable, "-m", "regcred_sandbox.stuck_pod", "shop-web", "-n", "shop-2",
                               "--cause", "unauthorized"], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=60, check=True)
        assert "pod shop-2/shop-web-7f9c4 of Deployment shop-web is stuck pulling" in made.stdout

        kube = KubeApi(load_api_client(kubeconfig))
        deadline = time.monotonic() + 30
        while True:  # the operator restarts the Deployment: its pod failed before the credential in place
            template = kube.request("GET", "/apis/apps/v1/namespaces/shop-2/deployments/shop-web")["spec"]["template"]
            if RESTARTED_AT_ANNOTATION in ((template.get("metadata") or {}).get("annotations") or {}):
                break
            assert time.monotonic() < deadline, "the sandbox's operator did not restart the Deployment"
            time.sleep(0.2)

        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
        assert demo.returncode == 0, output
        assert "Stopping the sandbox." in output
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)


def _kubeconfig_from(demo: subprocess.Popen[str], timeout: float = 120) -> str:
    """Read the demo's output until the sandbox says where its kubeconfig is."""
    assert demo.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    for line in demo.stdout:
        seen.append(line)
        found = re.search(r"export KUBECONFIG=(\S+)", line)
        if found:
            return found.group(1)
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError("the demo ended without keeping the sandbox running:\n" + "".join(seen))
