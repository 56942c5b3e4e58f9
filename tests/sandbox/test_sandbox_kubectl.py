"""A real kubectl against the emulated API server."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from regcred_sandbox import EmulatedCluster

KUBECTL = str(pathlib.Path(sys.executable).parent / "kubectl")
if not pathlib.Path(KUBECTL).exists():
    KUBECTL = shutil.which("kubectl") or ""
pytestmark = pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed")

Kubectl = Callable[..., str]

MANIFESTS = textwrap.dedent("""
    apiVersion: v1
    kind: Namespace
    metadata: {name: team-a, labels: {team: a}}
    ---
    apiVersion: v1
    kind: ServiceAccount
    metadata: {name: builder, namespace: team-a}
    imagePullSecrets: [{name: legacy}]
    ---
    apiVersion: v1
    kind: Secret
    metadata: {name: pull, namespace: team-a, labels: {app: demo}}
    type: kubernetes.io/dockerconfigjson
    data: {.dockerconfigjson: e30=}
    ---
    apiVersion: example.dev/v1
    kind: Gadget
    metadata: {name: g1, namespace: team-a}
    spec: {size: 3}
""")


@pytest.fixture
def kubectl(cluster: EmulatedCluster, tmp_path: pathlib.Path) -> Kubectl:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": cluster.kubeconfig_path}

    def run(*args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run([KUBECTL, *args], input=stdin, env=env, capture_output=True, text=True,
                                timeout=30, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout + result.stderr
    return run


def test_apply_get_label_delete(kubectl: Kubectl, cluster: EmulatedCluster) -> None:
    out = kubectl("apply", "--validate=false", "-f", "-", stdin=MANIFESTS)
    assert "namespace/team-a created" in out and "gadget.example.dev/g1 created" in out
    out = kubectl("apply", "--validate=false", "-f", "-", stdin=MANIFESTS)
    assert "namespace/team-a unchanged" in out and "gadget.example.dev/g1 unchanged" in out

    out = kubectl("get", "ns")
    assert "team-a" in out and "Active" in out and "kube-system" in out
    out = kubectl("get", "secrets", "-A")
    assert "team-a" in out and "pull" in out and "kubernetes.io/dockerconfigjson" in out
    sa: dict[str, Any] = json.loads(kubectl("get", "sa", "builder", "-n", "team-a", "-o", "json"))
    assert sa["imagePullSecrets"] == [{"name": "legacy"}]

    kubectl("label", "ns", "team-a", "tier=web")
    kubectl("label", "gadget", "g1", "-n", "team-a", "tier=web")
    assert kubectl("get", "ns", "-l", "tier=web", "-o", "name").split() == ["namespace/team-a"]
    assert kubectl("get", "gd", "-A", "-l", "tier=web", "-o", "name").split() == ["gadget.example.dev/g1"]

    kubectl("delete", "secret", "pull", "-n", "team-a")
    assert cluster.get_object("secrets", "pull", "team-a") is None
    kubectl("delete", "ns", "team-a")
    assert cluster.get_object("namespaces", "team-a") is None
    assert cluster.list_objects("gadgets.example.dev") == []


def test_typed_create_commands_and_their_errors(kubectl: Kubectl, cluster: EmulatedCluster) -> None:
    # kubectl create <kind> sends protobuf; the emulator reads it for these kinds.
    kubectl("create", "namespace", "dup")
    kubectl("create", "secret", "generic", "token", "-n", "dup", "--from-literal=password=s3cret")
    kubectl("create", "secret", "docker-registry", "pull", "-n", "dup", "--docker-server=r.example",
            "--docker-username=u", "--docker-password=p")
    kubectl("create", "serviceaccount", "builder", "-n", "dup")
    kubectl("create", "configmap", "settings", "-n", "dup", "--from-literal=k=v")
    secret = cluster.get_object("secrets", "token", "dup")
    assert secret is not None and secret["type"] == "Opaque"
    assert secret["data"] == {"password": "czNjcmV0"}
    pull = cluster.get_object("secrets", "pull", "dup")
    assert pull is not None and pull["type"] == "kubernetes.io/dockerconfigjson"
    assert cluster.get_object("serviceaccounts", "builder", "dup") is not None
    assert (cluster.get_object("configmaps", "settings", "dup") or {}).get("data") == {"k": "v"}

    out = kubectl("create", "namespace", "dup", check=False)
    assert "Error from server (AlreadyExists)" in out and 'namespaces "dup" already exists' in out
    out = kubectl("get", "secret", "missing", check=False)
    assert 'Error from server (NotFound): secrets "missing" not found' in out


def test_printer_columns_of_a_custom_resource(kubectl: Kubectl, custom: Any) -> None:
    custom.create_namespaced_custom_object("example.dev", "v1", "default", "gadgets", {
        "metadata": {"name": "g1"}, "spec": {"size": 7}})
    custom.patch_namespaced_custom_object_status("example.dev", "v1", "default", "gadgets", "g1", {"status": {
        "conditions": [{"type": "Ready", "status": "True"}], "expirationTime": "2000-01-01T00:00:00Z"}})
    header, row = kubectl("get", "gadgets").splitlines()
    assert header.split() == ["NAME", "READY", "EXPIRES", "SIZE"]
    name, ready, expires, size = row.split()
    assert (name, ready, size) == ("g1", "True", "7") and expires.endswith("y")
