"""The command line as a person meets it: version, help, exit codes, what `run` logs at its default level.

Each command runs as its own process (`python -m regcred.cli`), as a shell would start it.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regcred.cli import RUN_ENVIRONMENT
from regcred.kube import KubeApi
from regcred.manifests import load_crd
from regcred_sandbox import EmulatedCluster

ROOT = Path(__file__).resolve().parents[1]


def regcred(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regcred.cli", *args], capture_output=True, text=True,
                          env=env if env is not None else dict(os.environ), cwd=ROOT, timeout=timeout, check=False)


def without_cluster(tmp_path: Path) -> dict[str, str]:
    """An environment with no kubeconfig and no in-cluster ServiceAccount."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    return {**env, "HOME": str(tmp_path)}


@pytest.fixture
def cluster() -> Iterator[EmulatedCluster]:
    with EmulatedCluster() as emulated:
        yield emulated


def test_version() -> None:
    result = regcred("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"regcred \d+\.\d+\.\d+\S*\n", result.stdout)


def test_run_help_lists_every_environment_variable_the_settings_read() -> None:
    read = set(re.findall(r'"(REGCRED_[A-Z_]+)"', (ROOT / "operator" / "regcred" / "config.py").read_text()))
    assert read == {name for name, _ in RUN_ENVIRONMENT if name.startswith("REGCRED_")}
    help_text = regcred("run", "--help").stdout
    for name, _ in RUN_ENVIRONMENT:
        assert name in help_text
    assert "--log-level" in help_text and "--log-format" in help_text


def test_run_without_a_cluster_exits_with_a_sentence(tmp_path: Path) -> None:
    result = regcred("run", env=without_cluster(tmp_path), timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("regcred run: no cluster to run against")
    assert "KUBECONFIG" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_the_crd_exits_with_a_sentence(cluster: EmulatedCluster) -> None:
    result = regcred("run", env={**os.environ, "KUBECONFIG": cluster.kubeconfig_path}, timeout=30)
    assert result.returncode == 2
    assert "the RegistryCredential CRD (registrycredentials.regcred.dev) is not installed" in result.stderr
    assert "kubectl apply -f crds/" in result.stderr


def test_doctor_exit_codes(cluster: EmulatedCluster, tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig_path}
    KubeApi(cluster.api_client()).request("POST", "/api/v1/namespaces", body={"metadata": {"name": "shop"}})
    healthy = regcred("doctor", "-n", "shop", env=env)
    assert (healthy.returncode, healthy.stdout) == (0, "No pod in namespace shop is stuck pulling an image. ✓\n")

    unknown = regcred("doctor", "-n", "no-such-namespace", env=env)
    assert unknown.returncode == 2
    assert unknown.stderr == "regcred doctor: namespace 'no-such-namespace' does not exist\n"

    unreachable = tmp_path / "unreachable.kubeconfig"
    unreachable.write_text(Path(cluster.kubeconfig_path).read_text().replace(
        f":{cluster.api_client().configuration.host.rsplit(':', 1)[1]}", ":1"))
    down = regcred("doctor", "-n", "shop", "--kubeconfig", str(unreachable), env=without_cluster(tmp_path))
    assert down.returncode == 2
    assert down.stderr.startswith("regcred doctor: cannot reach the Kubernetes API")
    assert len(down.stderr.splitlines()) == 1  # a sentence, not a traceback

    no_config = regcred("doctor", "-n", "shop", env=without_cluster(tmp_path))
    assert no_config.returncode == 2
    assert no_config.stderr.startswith("regcred doctor: cannot load a kubeconfig")

    wrong_context = regcred("doctor", "-n", "shop", "--context", "nope", env=env)
    assert wrong_context.returncode == 2
    assert "nope" in wrong_context.stderr

    assert "2  could not check" in regcred("doctor", "--help").stdout


@pytest.mark.parametrize("args", [("doctor", "-A"), ("doctor", "--help"), ("--help",)])
def test_output_into_a_reader_that_leaves(cluster: EmulatedCluster, args: tuple[str, ...]) -> None:
    """`regcred doctor | head -1`: the reader is gone before the output is written; no BrokenPipeError."""
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig_path}
    process = subprocess.Popen([sys.executable, "-m", "regcred.cli", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(60)
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr


def test_the_default_log_says_what_changed_and_little_else(cluster: EmulatedCluster, tmp_path: Path) -> None:
    """An end-to-end run at the default level: a credential fanned out to three namespaces, a new namespace, a
    rotated password, then a clean stop. One line per reconciliation that changed something, none for kopf's
    handler bookkeeping or health checks, no warning (the shutdown included), no secret."""
    kube = KubeApi(cluster.api_client())
    cluster.install_crd(load_crd())
    for name in ("regcred-system", "web", "api", "batch"):
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name, "labels": {"pulls": "hub"}}})
    kube.request("POST", "/api/v1/namespaces/regcred-system/secrets", body={"metadata": {"name": "hub"}, "data": {
        "username": base64.b64encode(b"acme-ci").decode(), "password": base64.b64encode(b"dckr_pat_1").decode()}})
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig_path, "REGCRED_PEERING_NAME": "", "REGCRED_METRICS_PORT": "0",
           "REGCRED_DEBOUNCE_SECONDS": "0.05", "REGCRED_REMEDIATION": "false"}
    log = tmp_path / "run.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "regcred.cli", "run", "--liveness",
                                    "http://127.0.0.1:0/healthz"], env=env, cwd=ROOT, stdout=output,
                                   stderr=subprocess.STDOUT, text=True)
    try:
        kube.request("POST", "/apis/regcred.dev/v1alpha1/registrycredentials", body={
            "apiVersion": "regcred.dev/v1alpha1", "kind": "RegistryCredential", "metadata": {"name": "hub"},
            "spec": {"provider": {"static": {"registry": "docker.io",
                                             "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
                     "secretName": "hub-pull", "namespaces": {"selector": {"matchLabels": {"pulls": "hub"}}},
                     "serviceAccounts": []}})
        _wait_for(lambda: "Secrets created 4" in log.read_text(), log)
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "jobs", "labels": {"pulls": "hub"}}})
        _wait_for(lambda: "Secrets created 1" in log.read_text(), log)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    lines = log.read_text().splitlines()
    changes = [line for line in lines if "Credential hub:" in line]
    assert len(changes) == 2, lines
    assert "Secrets created 4" in changes[0] and "Secrets created 1" in changes[1]
    assert not [line for line in lines if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)], lines
    assert not [line for line in lines if "Handler" in line or "healthz" in line], lines
    assert "dckr_pat_1" not in log.read_text()
    assert len(lines) <= 6, lines  # the two changes, and kopf's start-up/shutdown notices at most


def _wait_for(condition: object, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not logged in {timeout} s:\n{log.read_text()}")
        time.sleep(0.1)
