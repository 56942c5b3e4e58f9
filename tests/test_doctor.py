"""`regcred doctor` on the emulated cluster against a real registry (htpasswd, plain HTTP on 127.0.0.1).

The test plays the kubelet: it creates pods, writes their container statuses through `/status` and posts
the `Failed` Events. Every scenario checks the text and the JSON, and that no secret value is printed.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regcred import CREDENTIAL_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred.doctor import add_arguments, printable, remediation_record, run_doctor, run_from_args
from regcred.fanout import EXPIRATION_ANNOTATION, format_time
from regcred.imageref import ImageRef
from regcred.kube import MERGE_PATCH, KubeApi, KubeError
from regcred.probe import Credentials, Prober, ProbeResult, Verdict
from regcred.workloads import REMEDIATED_ANNOTATION
from regcred_sandbox import EmulatedCluster
from tests.registry.harness import (
    PASSWORD,
    REPO,
    TAG,
    USERNAME,
    Registry,
    make_signing_key,
    registry_installed,
    running_registry,
)

pytestmark = pytest.mark.skipif(
    not registry_installed() and not os.environ.get("CI"),
    reason="docker-registry or htpasswd missing: run `bash scripts/install-registry.sh`",
)

NS = "shop"
NOW = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)
WRONG_PASSWORD = "wrong-password-4711"
SECRETS = (PASSWORD, WRONG_PASSWORD, USERNAME,
           base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode(),
           base64.b64encode(f"{USERNAME}:{WRONG_PASSWORD}".encode()).decode())


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry("htpasswd", tmp_path_factory.mktemp("doctor-registry"), make_signing_key()) as reg:
        yield reg


@pytest.fixture
def cluster() -> Iterator[EmulatedCluster]:
    with EmulatedCluster() as emulated:
        yield emulated


@pytest.fixture
def kube(cluster: EmulatedCluster) -> Iterator[KubeApi]:
    api = KubeApi(cluster.api_client())
    api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NS}})
    api.request("POST", f"/api/v1/namespaces/{NS}/serviceaccounts", body={"metadata": {"name": "default"}})
    yield api
    api.api_client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def prober(registry: Registry) -> Prober:
    return Prober(insecure_registries={registry.host}, timeout=5)


# -- playing the kubelet and the admin ------------------------------------------------------------


def create_pod(kube: KubeApi, name: str, image: str, pull_secrets: tuple[str, ...] = ()) -> None:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}]}
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    kube.request("POST", f"/api/v1/namespaces/{NS}/pods", body={"metadata": {"name": name}, "spec": spec})


def set_waiting(kube: KubeApi, pod: str, image: str, reason: str, message: str = "", phase: str = "Pending") -> None:
    state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
    status = {"phase": phase, "containerStatuses": [
        {"name": "app", "image": image, "imageID": "", "ready": False, "restartCount": 0, "state": state},
    ]}
    kube.request("PATCH", f"/api/v1/namespaces/{NS}/pods/{pod}/status", body={"status": status},
                 content_type=MERGE_PATCH)


def post_event(kube: KubeApi, pod: str, message: str, seconds_ago: int, reason: str = "Failed") -> None:
    at = format_time(NOW - datetime.timedelta(seconds=seconds_ago))
    uid = kube.request("GET", f"/api/v1/namespaces/{NS}/pods/{pod}")["metadata"]["uid"]
    kube.request("POST", f"/api/v1/namespaces/{NS}/events", body={
        "metadata": {"name": f"{pod}.{seconds_ago}"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": NS, "uid": uid},
        "reason": reason, "message": message, "type": "Warning", "lastTimestamp": at, "firstTimestamp": at,
    })


def create_pull_secret(kube: KubeApi, name: str, host: str, password: str = PASSWORD, *,
                       expires: datetime.datetime | None = None) -> None:
    auth = base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
    config = {"auths": {host: {"username": USERNAME, "password": password, "auth": auth}}}
    metadata: dict[str, Any] = {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, CREDENTIAL_LABEL: "local"}}
    if expires is not None:
        metadata["annotations"] = {EXPIRATION_ANNOTATION: format_time(expires)}
    kube.request("POST", f"/api/v1/namespaces/{NS}/secrets", body={
        "metadata": metadata, "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    })


def attach_to_default_account(kube: KubeApi, secret: str) -> None:
    kube.request("PATCH", f"/api/v1/namespaces/{NS}/serviceaccounts/default",
                 body={"imagePullSecrets": [{"name": secret}]}, content_type=MERGE_PATCH)


def doctor(kube: KubeApi, prober: Prober, namespace: str | None = NS, pod: str | None = None
           ) -> tuple[int, str, list[dict[str, Any]], str]:
    """Runs the doctor twice, text and JSON; returns (exit code, text, parsed JSON, stderr) and checks both agree."""
    text, raw, err = io.StringIO(), io.StringIO(), io.StringIO()
    code = run_doctor(namespace, pod, "text", kube=kube, prober=prober, out=text, err=err, now=NOW)
    json_code = run_doctor(namespace, pod, "json", kube=kube, prober=prober, out=raw, err=err, now=NOW)
    assert code == json_code
    for output in (text.getvalue(), raw.getvalue(), err.getvalue()):
        for secret in SECRETS:
            assert secret not in output, f"a secret value was printed: {output}"
    return code, text.getvalue(), json.loads(raw.getvalue()) if raw.getvalue() else [], err.getvalue()


def unauthorized_message(registry: Registry, image: str) -> str:
    ref = ImageRef.parse(image)
    return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": failed to resolve '
            f'reference "{image}": unexpected status from HEAD request to http://{registry.host}/v2/{ref.repository}/'
            f"manifests/{ref.reference}: 401 Unauthorized")


# -- scenarios --------------------------------------------------------------------------------------


@pytest.mark.parametrize("expired", [False, True], ids=["wrong-password", "expired"])
def test_a_refused_credential(kube: KubeApi, prober: Prober, registry: Registry, expired: bool) -> None:
    image = f"{registry.host}/{REPO}:{TAG}"
    expires = NOW + datetime.timedelta(hours=-2 if expired else 11, minutes=-30)
    create_pull_secret(kube, "regcred", registry.host, WRONG_PASSWORD, expires=expires)
    create_pod(kube, "web-1", image, ("regcred",))
    set_waiting(kube, "web-1", image, "ErrImagePull", unauthorized_message(registry, image))

    code, text, (report,), _ = doctor(kube, prober)

    assert code == 1
    assert report["image"] == image
    assert report["kubelet"]["category"] == "unauthorized"
    assert report["registryPublic"] is False
    assert report["pullSecrets"]["pod"] == ["regcred"]
    (secret,) = report["secrets"]
    assert secret == {"name": "regcred", "source": "pod", "exists": True, "type": "kubernetes.io/dockerconfigjson",
                      "hasEntry": True, "managed": True, "expirationTime": format_time(expires), "expired": expired}
    assert report["probe"]["verdict"] == "unauthorized"
    assert report["probe"]["secret"] == "regcred"
    # No RegistryCredential serves the namespace: the operator's decision is to leave the pod alone.
    assert (report["verdict"]["cause"], report["verdict"]["action"]) == ("unauthorized", "ignore")
    assert report["verdict"]["credential"] is None
    assert report["verdict"]["restartWouldHelp"] is False
    assert "The registry refuses the credentials in Secret regcred" in report["verdict"]["fix"]
    assert f"Pod {NS}/web-1, container app: ErrImagePull" in text
    assert f"an entry for {registry.host}" in text
    assert "The registry refuses the credentials in Secret regcred" in text
    assert f"ignore (no RegistryCredential): No RegistryCredential serves {registry.host} in namespace {NS}" in text
    if expired:
        assert f"expired at {format_time(expires)}" in report["verdict"]["fix"]
    else:
        assert "RegistryCredential local" in report["verdict"]["fix"]
    if expired:
        assert "expired at" in text and "2h 30m ago" in text
    else:
        assert "expires in 10h 30m" in text


def test_a_missing_tag(kube: KubeApi, prober: Prober, registry: Registry) -> None:
    image = f"{registry.host}/{REPO}:v2"
    create_pull_secret(kube, "regcred", registry.host, expires=NOW + datetime.timedelta(days=3))
    create_pod(kube, "web-2", image, ("regcred",))
    set_waiting(kube, "web-2", image, "ImagePullBackOff", f'Back-off pulling image "{image}"')
    # The kubelet's informative Event, then its uninformative ones (newer): the informative one is read.
    failed = (f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack image '
              f'"{image}": failed to resolve reference "{image}": {image}: not found')
    post_event(kube, "web-2", failed, 60)
    post_event(kube, "web-2", "Error: ErrImagePull", 59)
    post_event(kube, "web-2", "Error: ImagePullBackOff", 5)

    code, text, (report,), _ = doctor(kube, prober, pod="web-2")

    assert code == 1
    assert report["kubelet"]["reason"] == "ImagePullBackOff"
    assert report["kubelet"]["category"] == "not_found"
    assert report["kubelet"]["source"] == "Event"
    assert "not found" in report["kubelet"]["message"]
    assert report["probe"]["verdict"] == "not_found"
    assert "its tags include" in report["probe"]["detail"]
    assert (report["verdict"]["cause"], report["verdict"]["action"]) == ("not_found", "ignore")
    assert report["verdict"]["fix"].startswith(f"Fix the image reference: Tag v2 does not exist in {registry.host}")
    assert "its tags include" in report["verdict"]["fix"]
    assert report["verdict"]["fix"] in text
    assert "expires in 3d 0h" in text
    assert "✓ secret:        regcred: type kubernetes.io/dockerconfigjson" in text and "✗ probe:" in text


def test_a_missing_pull_secret(kube: KubeApi, prober: Prober, registry: Registry) -> None:
    image = f"{registry.host}/{REPO}:{TAG}"
    create_pod(kube, "web-3", image, ("regcred",))
    set_waiting(kube, "web-3", image, "ErrImagePull", unauthorized_message(registry, image))

    code, text, (report,), _ = doctor(kube, prober)

    assert code == 1
    (secret,) = report["secrets"]
    assert secret["exists"] is False and secret["hasEntry"] is False
    assert report["probe"]["secret"] is None  # only the anonymous probe could be made
    assert report["verdict"]["cause"] == "unauthorized"
    assert report["verdict"]["fix"].startswith(f"The pull secret regcred named by the pod does not exist in {NS}")
    assert f"✗ secret:        regcred does not exist in {NS}" in text
    assert "private: anonymous pulls are refused (401)" in text


def test_a_pull_secret_without_an_entry_for_the_registry(kube: KubeApi, prober: Prober, registry: Registry) -> None:
    image = f"{registry.host}/{REPO}:{TAG}"
    create_pull_secret(kube, "regcred", "ghcr.io")
    create_pod(kube, "web-5", image, ("regcred",))
    set_waiting(kube, "web-5", image, "ErrImagePull", unauthorized_message(registry, image))

    code, text, (report,), _ = doctor(kube, prober)

    assert code == 1
    assert report["secrets"][0]["exists"] is True and report["secrets"][0]["hasEntry"] is False
    fix = (f"The pull secret regcred in {NS} has no entry for {registry.host}: "
           "point a RegistryCredential at that registry.")
    assert (report["verdict"]["cause"], report["verdict"]["fix"]) == ("unauthorized", fix)
    assert f"no entry for {registry.host} (entries: ghcr.io)" in text
    assert fix in text


def test_a_pod_that_lacks_its_service_accounts_secret(kube: KubeApi, prober: Prober, registry: Registry) -> None:
    image = f"{registry.host}/{REPO}:{TAG}"
    create_pod(kube, "web-4", image)  # created before the ServiceAccount carried the secret
    create_pull_secret(kube, "regcred", registry.host)
    attach_to_default_account(kube, "regcred")
    set_waiting(kube, "web-4", image, "ErrImagePull", unauthorized_message(registry, image))

    code, text, (report,), _ = doctor(kube, prober)

    assert code == 1
    assert report["pullSecrets"] == {"pod": [], "serviceAccount": ["regcred"], "serviceAccountName": "default"}
    assert report["secrets"][0]["source"] == "serviceAccount"
    assert report["probe"] == {"verdict": "ok", "detail": report["probe"]["detail"], "secret": "regcred"}
    assert (report["verdict"]["cause"], report["verdict"]["action"]) == ("unauthorized", "ignore")
    fix = ("The pod lacks regcred, which its ServiceAccount carries: delete the pod (or restart its workload) so "
           "that its replacement gets it.")
    assert report["verdict"]["fix"] == fix
    assert fix in text
    assert "the pod lacks regcred" in text


def test_no_stuck_pod(kube: KubeApi, prober: Prober, registry: Registry) -> None:
    image = f"{registry.host}/{REPO}:{TAG}"
    create_pod(kube, "running", image)
    kube.request("PATCH", f"/api/v1/namespaces/{NS}/pods/running/status", content_type=MERGE_PATCH,
                 body={"status": {"phase": "Running", "containerStatuses": [
                     {"name": "app", "image": image, "ready": True, "state": {"running": {}}}]}})
    create_pod(kube, "starting", image)
    set_waiting(kube, "starting", image, "ContainerCreating")

    code, text, reports, err = doctor(kube, prober)
    assert (code, reports, err) == (0, [], "")
    assert text == f"No pod in namespace {NS} is stuck pulling an image. ✓\n"

    code, text, _, _ = doctor(kube, prober, pod="running")
    assert code == 0
    assert text == f"Pod {NS}/running is not stuck pulling an image (phase Running).\n"


def test_a_named_pod_that_does_not_exist(kube: KubeApi, prober: Prober) -> None:
    code, text, reports, err = doctor(kube, prober, pod="nope")
    assert code == 2
    assert text == "" and reports == []
    assert err.splitlines()[0] == f"regcred doctor: pod 'nope' not found in namespace '{NS}'"


class CannedProber(Prober):
    """Answers every probe as unreachable (nothing leaves 127.0.0.1 in tests) and records what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, Credentials | None]] = []

    def probe(self, image: ImageRef | str, credentials: Credentials | None = None) -> ProbeResult:
        self.asked.append((str(image), credentials))
        return ProbeResult(Verdict.UNREACHABLE, None, "registry-1.docker.io: connection refused")


def test_all_namespaces_a_normalised_image_and_an_invalid_one(kube: KubeApi) -> None:
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "other"}})
    create_pod(kube, "hub", "nginx")
    set_waiting(kube, "hub", "nginx", "ErrImagePull", 'dial tcp: lookup registry-1.docker.io: no such host')
    create_pod(kube, "typo", "Nginx:latest")
    set_waiting(kube, "typo", "Nginx:latest", "ErrImagePull", "couldn't parse image reference")
    prober = CannedProber()

    code, text, reports, _ = doctor(kube, prober, namespace=None)

    assert code == 1
    by_pod = {r["pod"]: r for r in reports}
    assert by_pod["hub"]["image"] == "docker.io/library/nginx:latest"
    assert by_pod["hub"]["registryPublic"] is None
    assert by_pod["hub"]["verdict"]["cause"] == "unreachable"
    assert by_pod["typo"]["verdict"]["cause"] == "invalid_reference"
    assert by_pod["typo"]["probe"] is None
    assert "the repository name must be lowercase" in by_pod["typo"]["verdict"]["fix"]
    assert "✓ image:" in text and "docker.io/library/nginx:latest (written nginx)" in text
    assert "2 containers in 2 pods stuck pulling." in text
    assert {image for image, _ in prober.asked} == {"docker.io/library/nginx:latest"}


def test_the_command_line(cluster: EmulatedCluster, kube: KubeApi, registry: Registry, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["-n", NS, "web-1", "-o", "json", "--insecure-registry", "a:5000",
                              "--insecure-registry", "b", "--token-realm-host", "auth.example.net"])
    assert (args.namespace, args.all_namespaces, args.pod, args.output) == (NS, False, "web-1", "json")
    assert args.insecure_registry == ["a:5000", "b"]
    assert args.token_realm_host == ["auth.example.net"]
    assert parser.parse_args(["-A"]).all_namespaces is True
    with pytest.raises(SystemExit):
        parser.parse_args(["-A", "-n", NS])

    # The current kubeconfig and its context's namespace, as a person runs it.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(cluster.kubeconfig(namespace=NS)))  # JSON is YAML
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    image = f"{registry.host}/{REPO}:v9"
    create_pull_secret(kube, "regcred", registry.host)
    create_pod(kube, "web-6", image, ("regcred",))
    set_waiting(kube, "web-6", image, "ErrImagePull", f"{image}: not found")
    assert run_from_args(parser.parse_args(["--insecure-registry", registry.host, "-o", "json"])) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert (report["namespace"], report["probe"]["verdict"]) == (NS, "not_found")


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"private": {"revision": "abc", "time": "2030-01-01T11:00:00Z"}}', ("abc", "2030-01-01T11:00:00Z")),
    ('{"other": {"revision": "abc", "time": "t"}}', None),
    ('{"private": {"revision": 7, "time": "t"}}', None),
    ('{"private": ["abc"]}', None),
    ('["private"]', None),
    ("not json", None),
    ('{"private": {"revision": "' + "r" * 100 + '", "time": "t"}}', ("r" * 64, "t")),
    ('{"private": {"revision": "abc", "time": "t"}, "pad": "' + "x" * 20_000 + '"}', None),
], ids=["recorded", "another-credential", "wrong-type", "not-an-object", "a-list", "not-json", "cut", "too-long"])
def test_the_remediation_record_is_read_with_bounds(raw: str, expected: tuple[str, str] | None) -> None:
    """A tenant can write anything into a workload's annotations: the doctor reads the record with bounds."""
    workload = {"metadata": {"annotations": {REMEDIATED_ANNOTATION: raw}}}
    assert remediation_record(workload, "private") == expected


class NoCredentialsForYou(KubeApi):
    """A user who may read pods and Secrets but not RegistryCredentials."""

    def list_all(self, path: str, **query: str) -> list[dict[str, Any]]:
        if "registrycredentials" in path:
            raise KubeError(403, "Forbidden", "registrycredentials is forbidden")
        return super().list_all(path, **query)


def test_unreadable_credentials_are_said_to_be_unknown(kube: KubeApi, prober: Prober, registry: Registry) -> None:
    image = f"{registry.host}/{REPO}:{TAG}"
    create_pod(kube, "web-7", image, ("regcred",))
    set_waiting(kube, "web-7", image, "ErrImagePull", unauthorized_message(registry, image))

    code, _, (report,), _ = doctor(NoCredentialsForYou(kube.api_client), prober)

    assert code == 1
    assert report["verdict"]["action"] == "ignore"
    assert report["verdict"]["why"].startswith("The RegistryCredentials cannot be listed (403 Forbidden)")


# -- hostile text --------------------------------------------------------------------------------------------

HOSTILE = (
    "\x1b[2J\x1b[H\x1b[31mfailed\x1b[0m to pull: 401 Unauthorized"  # clear the screen, home, colours
    "\x1b]0;owned title\x07"  # OSC: the window title
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"  # OSC 8: a hyperlink
    "\rOVERWRITTEN\x08\x08\x7f\x9b2J\x9d0;c1 title\x9c\x00\x0b\x0c"  # CR, backspaces, DEL, C1 CSI/OSC, NUL, VT, FF
    "\n  ✓ probe:         forged line\t\u202eevil"  # a forged report line, a tab, a bidi override
)
CONTROLS = {chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))} | {"\u202e"}


class HostileRegistry(Prober):
    """A registry whose every answer is hostile text; records nothing, reaches nothing."""

    def probe(self, image: ImageRef | str, credentials: Credentials | None = None) -> ProbeResult:
        return ProbeResult(Verdict.UNREACHABLE, None, "registry says: " + HOSTILE)  # shown as "cannot tell: ..."


def test_hostile_kubelet_and_registry_text_is_shown_without_control_characters(kube: KubeApi) -> None:
    image = "registry.example.com/shop/web:v1"
    create_pod(kube, "hostile", image)
    set_waiting(kube, "hostile", image, "ErrImagePull", HOSTILE)
    create_pod(kube, "hostile-events", image)
    set_waiting(kube, "hostile-events", image, "ImagePullBackOff", f'Back-off pulling image "{image}"')
    post_event(kube, "hostile-events", f'Failed to pull image "{image}": {HOSTILE}', 30)

    text_out, json_out = io.StringIO(), io.StringIO()
    code = run_doctor(NS, None, "text", kube=kube, prober=HostileRegistry(), out=text_out, now=NOW)
    assert run_doctor(NS, None, "json", kube=kube, prober=HostileRegistry(), out=json_out, now=NOW) == code == 1
    text, raw = text_out.getvalue(), json_out.getvalue()

    # The text: one line per finding, nothing a terminal would act on; the words are still there.
    assert not CONTROLS - {"\n"} & set(text), [c for c in text if c in CONTROLS - {"\n"}]
    assert "failed to pull: 401 Unauthorized" in text and "cannot tell: registry says: failed to pull" in text
    assert "owned title" not in text and "evil.example" not in text and "c1 title" not in text
    assert not [line for line in text.splitlines() if line.startswith("  ✓ probe:")]
    assert text.count("forged line") == text.count("failed to pull: 401")  # on the message's own line
    # The JSON: escaped by json, and the decoded strings carry no escape sequence either (newlines may stay).
    assert not CONTROLS - {"\n"} & set(raw)
    reports = json.loads(raw)
    assert {r["pod"] for r in reports} == {"hostile", "hostile-events"}

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    decoded = "".join(strings(reports))
    assert not CONTROLS - {"\n", "\t"} & set(decoded), [c for c in decoded if c in CONTROLS - {"\n", "\t"}]
    assert "owned title" not in decoded and "evil.example" not in decoded
    assert all("failed to pull: 401 Unauthorized" in r["kubelet"]["message"] for r in reports)
    assert all(r["probe"]["detail"].startswith("registry says: failed to pull") for r in reports)


@pytest.mark.parametrize(("raw", "one_line", "multi_line"), [
    ("a\x1b[1;31mred\x1b[0m b", "ared b", "ared b"),
    ("x\x1b]0;title\x07y", "xy", "xy"),
    ("x\x1b]8;;http://e/\x1b\\link\x1b]8;;\x1b\\y", "xlinky", "xlinky"),
    ("cut at\x1b[3", "cut at", "cut at"),  # a sequence cut short, as a truncated message ends
    ("lone\x1b", "lone", "lone"),
    ("c1\x9b2J\x9d0;t\x9cend\x85", "c1end ", "c1end"),
    ("over\rwrite\x08\x7f\x00", "over write", "overwrite"),
    ("two\nlines\tand tab", "two lines and tab", "two\nlines\tand tab"),
    ("\u202eevil\u2066", "evil", "evil"),
    ("“quoted” ✓ ✗ é 日本", "“quoted” ✓ ✗ é 日本", "“quoted” ✓ ✗ é 日本"),
], ids=["csi", "osc-bel", "osc8-st", "cut", "lone-esc", "c1", "cr-bs-del-nul", "newline-tab", "bidi", "unicode"])
def test_printable(raw: str, one_line: str, multi_line: str) -> None:
    assert printable(raw) == one_line
    assert printable(raw, one_line=False) == multi_line
