"""A registry that echoes the credential it was sent, in an error long enough that the cut of a message falls
in the middle of it: no part of the credential reaches the credential's status, its Events, the operator's
log lines (at --debug), or `regcred doctor`'s text and JSON.

The registry is scripted (it answers every request with 401 and an error that quotes the password, or
base64 of user:password as the Basic header carried it); the credential's spec.verify probes it, so the
registry's words become the VerificationFailed condition, Event and log line; then a pod stuck pulling from
it with the same credential is diagnosed by the doctor.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Iterator

import pytest

from regcred.doctor import run_doctor
from regcred.kube import KubeApi
from regcred.probe import Prober
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually
from tests.e2e.test_remediation_e2e import NS, report
from tests.registry.harness import ScriptedServer

pytestmark = pytest.mark.e2e

USERNAME = "echo-robot"
PASSWORD = "Ech0ed-pa55word-of-the-r0bot-account"
BASIC = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
IMAGE_PATH = "team/app"
CUT = 200  # the characters of a registry's message a probe keeps (regcred.probe._TEXT_LIMIT)


def pieces(secret: str, size: int = 8) -> set[str]:
    """Every ``size`` characters of ``secret``: a part of it long enough to matter contains one."""
    return {secret[start:start + size] for start in range(len(secret) - size + 1)}


@pytest.fixture
def echoing() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@pytest.mark.parametrize("echoed", [PASSWORD, BASIC], ids=["password", "basic-auth"])
def test_no_part_of_an_echoed_credential_is_shown(
    cluster: Cluster, operator: OperatorFactory, echoing: ScriptedServer, echoed: str,
    debug_logging: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    host = echoing.host
    # The echoed secret starts 20 characters before the cut: cutting first would keep 19 of them.
    message = "authentication failed: " + "." * (CUT - 20 - len("authentication failed: ") - 1) + f" {echoed} denied"
    assert message.index(echoed) == CUT - 20
    echoing.route("/v2/", 401, {"WWW-Authenticate": 'Basic realm="echo"'})
    echoing.route(f"/v2/{IMAGE_PATH}/manifests/v1", 401, {"WWW-Authenticate": f'Basic realm="{message}"'},
                  {"errors": [{"code": "UNAUTHORIZED", "message": message}]})
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": USERNAME, "password": PASSWORD})
    cluster.namespace("web", {"pulls-from": "echo"})
    debug_logging.clear()
    capsys.readouterr()

    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({host})))
    cluster.apply_credential("echo", {
        "provider": {"static": {"registry": host, "secretRef": {"namespace": "regcred-system", "name": "robot"}}},
        "secretName": "echo-pull",
        "namespaces": {"selector": {"matchLabels": {"pulls-from": "echo"}}},
        "verify": {"image": f"{host}/{IMAGE_PATH}:v1"},
    })
    eventually(lambda: _equal(cluster.condition("echo")["reason"], "VerificationFailed"))
    eventually(lambda: _equal(bool(cluster.events("VerificationFailed")), True))
    assert echoing.seen and "authentication failed" in cluster.condition("echo")["message"]
    operator.stop()
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.__dict__!r}" for r in debug_logging.records)
    assert "authentication failed" in logged  # the registry's words were logged: the scan proves something
    printed = capsys.readouterr()

    # The doctor, on a pod stuck pulling from that registry with the same credential.
    cluster.namespace(NS)
    config = {"auths": {host: {"username": USERNAME, "password": PASSWORD, "auth": BASIC}}}
    cluster.core.create_namespaced_secret(NS, {
        "metadata": {"name": "echo-pull"}, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}})
    image = f"{host}/{IMAGE_PATH}:v1"
    pod = cluster.api_request("POST", f"/api/v1/namespaces/{NS}/pods", {
        "metadata": {"name": "stuck"},
        "spec": {"containers": [{"name": "app", "image": image}], "imagePullSecrets": [{"name": "echo-pull"}]}})
    report(cluster, pod, image, "ErrImagePull", f"failed to pull {image}: 401 Unauthorized")
    doctor_outputs = []
    for output in ("text", "json"):
        out = io.StringIO()
        prober = Prober(insecure_registries={host}, timeout=5)
        assert run_doctor(NS, None, output, kube=KubeApi(cluster.client), prober=prober, out=out, err=out) == 1
        doctor_outputs.append(out.getvalue())
    assert "authentication failed" in doctor_outputs[0]  # the registry's words are shown

    shown = {
        "status": json.dumps(cluster.credential("echo")["status"]),
        "Events": "\n".join(f"{e.reason} {e.message}" for e in cluster.events()),
        "log lines": logged + printed.out + printed.err,
        "doctor text": doctor_outputs[0],
        "doctor JSON": doctor_outputs[1] + json.dumps(json.loads(doctor_outputs[1])),  # escaped and decoded
    }
    leaks = {f"{where}: part of {name}": sorted(piece for piece in pieces(secret) if piece in text)
             for where, text in shown.items()
             for name, secret in (("the password", PASSWORD), ("base64 of user:password", BASIC))}
    shown_parts = sorted(where for where, leaked in leaks.items() if leaked)
    assert not shown_parts, f"{shown_parts}: {leaks}"


def _equal(actual: object, expected: object) -> None:
    assert actual == expected
