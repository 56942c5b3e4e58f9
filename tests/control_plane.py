"""A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager.

The binaries come from ``KUBEBUILDER_ASSETS`` (the envtest convention; ``scripts/control-plane.sh``
builds them from Go modules and prints that folder). Everything listens on 127.0.0.1 on free ports;
there is no scheduler and no kubelet, so the tests play the kubelet by writing pod status.

What the API server is given, and why:
- RBAC authorization, so the operator can run as the chart's ServiceAccount and be refused what the
  chart does not grant;
- the default admission plugins, among them ``ServiceAccount``, which copies a ServiceAccount's
  ``imagePullSecrets`` into a pod only when the pod lists none (plugin/pkg/admission/serviceaccount);
- a static token for the admin (``system:masters``) and a signing key for ServiceAccount tokens;
- an audit log of every request at the Metadata level: the tests' request log (who did what, and
  what was refused), the real server's counterpart of the emulator's ``requests``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import kubernetes
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from regcred.kube import KubeApi, KubeError

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")

# Controllers the product depends on (no scheduler, no kubelet, no node lifecycle).
# Names from cmd/kube-controller-manager/names/controller_names.go.
CONTROLLERS = (
    "namespace-controller",  # namespace deletion: content removed, then the namespace
    "serviceaccount-controller",  # the `default` ServiceAccount in each new namespace
    "deployment-controller", "replicaset-controller", "statefulset-controller", "daemonset-controller",
    "job-controller", "cronjob-controller",
    "garbage-collector-controller",  # owned objects collected
    "clusterrole-aggregation-controller",  # the built-in admin/edit/view roles
    "validatingadmissionpolicy-status-controller",  # type-checks admission policies (status.typeChecking)
)

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


def assets_folder() -> Path | None:
    """The folder with the three binaries, or None where there is none."""
    folder = os.environ.get("KUBEBUILDER_ASSETS")
    if not folder:
        return None
    path = Path(folder)
    if all((path / binary).is_file() and os.access(path / binary, os.X_OK) for binary in BINARIES):
        return path
    return None


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills it when the test process dies, however it dies
    (a timeout's SIGKILL included), so no API server outlives its tests."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _serving_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a serving certificate for 127.0.0.1 / localhost: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regcred-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.crt", folder / "apiserver.crt", folder / "apiserver.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths[2], key)
    return paths


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One request as the API server's audit log records it; the fields the emulator's RequestRecord has."""

    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    group: str
    resource: str  # the plural
    subresource: str | None  # status, binding, ...
    namespace: str | None
    name: str | None
    status: int  # the response's HTTP status
    user: str
    user_agent: str

    @classmethod
    def parse(cls, line: str) -> AuditRecord | None:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # the last line, while the server is still writing it
            return None
        ref = entry.get("objectRef")
        if not ref:  # non-resource URLs (/readyz, /version, discovery)
            return None
        return cls(verb=entry["verb"], group=ref.get("apiGroup", ""), resource=ref.get("resource", ""),
                   subresource=ref.get("subresource"), namespace=ref.get("namespace"), name=ref.get("name"),
                   status=int(entry.get("responseStatus", {}).get("code", 0)),
                   user=entry.get("user", {}).get("username", ""), user_agent=entry.get("userAgent", ""))


class _Processes:
    """Processes logging into files of one folder; a start-up failure shows the end of the log."""

    def __init__(self, assets: Path, folder: Path) -> None:
        self.assets = assets
        self.folder = folder
        self._processes: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def _spawn(self, binary: str, args: list[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / f"{binary}.log").open("wb")
        process = subprocess.Popen([str(self.assets / binary), *args], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self._processes.append((binary, process, log))

    def _check_alive(self) -> None:
        for binary, process, _ in self._processes:
            if process.poll() is not None:
                raise RuntimeError(f"{binary} exited with {process.returncode}:\n{self.log_tail(binary)}")

    def log_tail(self, binary: str, lines: int = 40) -> str:
        path = self.folder / f"{binary}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _stop_processes(self, *, graceful: bool) -> None:
        """Graceful for etcd (its data is shared); the API server and controllers are simply killed:
        their state lives in etcd and a graceful shutdown takes them 15 s."""
        for _, process, _ in reversed(self._processes):
            if process.poll() is None:
                process.terminate() if graceful else process.kill()
        for _, process, log in reversed(self._processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        self._processes.clear()


class Etcd(_Processes):
    """One etcd on free loopback ports; several control planes can share it (``--etcd-prefix``)."""

    def __init__(self, assets: Path, folder: Path) -> None:
        super().__init__(assets, folder)
        self.url = ""

    def __enter__(self) -> Etcd:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        port, peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._spawn("etcd", [
            "--name=default", f"--data-dir={self.folder / 'data'}",
            f"--listen-client-urls={self.url}", f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",  # test data: speed over durability
            "--log-level=warn",
        ])

    def stop(self) -> None:
        self._stop_processes(graceful=True)


class ControlPlane(_Processes):
    """kube-apiserver + kube-controller-manager (+ etcd unless one is given), started on entering and
    stopped on exiting."""

    def __init__(self, assets: Path, etcd: Etcd | None = None, *, start_timeout: float = 120) -> None:
        """With an ``etcd`` shared by several control planes, each keeps its objects under its own prefix:
        a fresh, empty cluster in about three seconds."""
        self.etcd: Etcd | None = etcd
        self._own_etcd: Etcd | None = None
        self.etcd_prefix = f"/registry-{secrets.token_hex(6)}"
        super().__init__(assets, Path(tempfile.mkdtemp(prefix="regcred-control-plane-")))
        self.start_timeout = start_timeout
        self.admin_token = secrets.token_urlsafe(24)
        self.port = 0
        self._audit_offset = 0

    # -- Lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.etcd is None:
            self._own_etcd = self.etcd = Etcd(self.assets, self.folder / "etcd")
            self.etcd.start()
        assert self.etcd is not None
        ca, cert, key = _serving_certificate(self.folder)
        account_key = self.folder / "sa.key"
        _write_key(account_key, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        (self.folder / "tokens.csv").write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')
        (self.folder / "audit-policy.yaml").write_text(AUDIT_POLICY)
        self.port = free_port()
        self._spawn("kube-apiserver", [
            f"--etcd-servers={self.etcd.url}",
            f"--etcd-prefix={self.etcd_prefix}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={cert}", f"--tls-private-key-file={key}",
            f"--cert-dir={self.folder / 'apiserver-certs'}",
            f"--token-auth-file={self.folder / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            # The defaults (NamespaceLifecycle, ServiceAccount, ...) stay on; nothing is disabled.
            f"--service-account-key-file={account_key}",
            f"--service-account-signing-key-file={account_key}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--allow-privileged=true",
            f"--audit-policy-file={self.folder / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log_path}",
            "--audit-log-mode=blocking",  # a record is on disk before the response is sent
            "--v=0",
        ])
        self.write_kubeconfig(Path(self.kubeconfig_path))
        self._wait_ready()
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.kubeconfig_path}",
            f"--authentication-kubeconfig={self.kubeconfig_path}",
            f"--authorization-kubeconfig={self.kubeconfig_path}",
            f"--controllers={','.join(CONTROLLERS)}",
            f"--service-account-private-key-file={account_key}",
            f"--root-ca-file={ca}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            f"--cert-dir={self.folder / 'kcm-certs'}",
            "--concurrent-namespace-syncs=10",
            "--v=0",
        ])

    def stop(self) -> None:
        self._stop_processes(graceful=False)
        if self._own_etcd is not None:
            self._own_etcd.stop()
        if os.environ.get("REGCRED_KEEP_CONTROL_PLANE_LOGS"):
            return
        shutil.rmtree(self.folder, ignore_errors=True)

    def _wait_ready(self) -> None:
        """An authenticated /readyz (start-up takes a while on a busy 2-core machine)."""
        http = urllib3.PoolManager(ca_certs=str(self.folder / "ca.crt"))
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                response = http.request("GET", f"{self.url}/readyz",
                                        headers={"Authorization": f"Bearer {self.admin_token}"},
                                        timeout=urllib3.Timeout(5), retries=False)
                if response.status == 200:
                    return
                last = response.data.decode(errors="replace")[-500:]
            time.sleep(0.25)
        raise RuntimeError(f"kube-apiserver not ready after {self.start_timeout} s: {last}\n"
                           f"{self.log_tail('kube-apiserver')}")

    # -- Connection details -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig_path(self) -> str:
        return str(self.folder / "admin.kubeconfig")

    @property
    def audit_log_path(self) -> Path:
        return self.folder / "audit.log"

    def kubeconfig(self, token: str | None = None, user: str = "admin") -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "real", "cluster": {"server": self.url,
                                                     "certificate-authority": str(self.folder / "ca.crt")}}],
            "users": [{"name": user, "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": "real", "context": {"cluster": "real", "user": user, "namespace": "default"}}],
            "current-context": "real",
        }

    def write_kubeconfig(self, path: Path, token: str | None = None, user: str = "admin") -> str:
        path.write_text(json.dumps(self.kubeconfig(token, user), indent=2))
        return str(path)

    def api_client(self, token: str | None = None) -> Any:
        """A new ``kubernetes.client.ApiClient`` (the admin unless a token is given)."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.folder / "ca.crt")
        configuration.api_key = {"authorization": token or self.admin_token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return kubernetes.client.ApiClient(configuration)

    def connection_info(self, token: str | None = None) -> Any:
        import kopf

        return kopf.ConnectionInfo(server=self.url, ca_path=str(self.folder / "ca.crt"),
                                   token=token or self.admin_token, scheme="Bearer")

    # -- Resources, and the request log --------------------------------------------------------

    def install_crd(self, crd: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """Create (or replace) a CustomResourceDefinition and wait until its resource is served."""
        kube = KubeApi(self.api_client())
        name = crd["metadata"]["name"]
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        try:
            kube.request("POST", path, body=crd)
        except KubeError as error:
            if error.status != 409:
                raise
            for attempt in range(5):  # the apiextensions controllers write its status meanwhile (409 Conflict)
                current = kube.request("GET", f"{path}/{name}")
                try:
                    kube.request("PUT", f"{path}/{name}", body={**crd, "metadata": {
                        **crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}})
                    break
                except KubeError as conflict:
                    if conflict.status != 409 or attempt == 4:
                        raise
        deadline = time.monotonic() + timeout
        while True:
            found: dict[str, Any] = kube.request("GET", f"{path}/{name}")
            conditions = {c["type"]: c["status"] for c in (found.get("status") or {}).get("conditions") or []}
            if conditions.get("Established") == "True":
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established: {conditions}")
            time.sleep(0.1)

    @property
    def requests(self) -> list[AuditRecord]:
        """Every request since the start or the last reset_requests(), from the audit log."""
        return self._audit_records(self._audit_offset)

    def all_requests(self) -> list[AuditRecord]:
        """Every request since the start, whatever reset_requests() said."""
        return self._audit_records(0)

    def _audit_records(self, offset: int) -> list[AuditRecord]:
        with contextlib.suppress(FileNotFoundError), self.audit_log_path.open() as log:
            log.seek(offset)
            return [record for line in log if line.strip() for record in [AuditRecord.parse(line)] if record]
        return []

    def reset_requests(self) -> None:
        try:
            self._audit_offset = self.audit_log_path.stat().st_size
        except FileNotFoundError:
            self._audit_offset = 0
