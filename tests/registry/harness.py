"""Test machinery for the probe: Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1.

Three flavours, each a process started once per module on a free port with its own config and
storage under tmp: ``htpasswd`` (Basic auth), ``token`` (Bearer auth through the small RS256 token
service below, whose certificate is the registry's ``rootcertbundle``) and ``open`` (no auth).
Test images are pushed with plain v2 API calls; there is no docker CLI here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import gzip
import hashlib
import http.server
import io
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

REGISTRY_BIN = "/usr/bin/docker-registry"
USERNAME, PASSWORD = "alice", "correct-horse-battery"
SERVICE, ISSUER = "test-registry", "test-token-issuer"
REPO, TAG = "team/app", "v1"
OCI_TAG, INDEX_TAG = "oci", "multi"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def registry_installed() -> bool:
    return bool(shutil.which("htpasswd")) and os.access(REGISTRY_BIN, os.X_OK)


# For test modules that start a registry: skipped on a machine without one, but in CI a missing registry
# is a failure (scripts/test.sh installs it).
needs_registry = pytest.mark.skipif(
    not registry_installed() and not os.environ.get("CI"), reason="run `bash scripts/install-registry.sh`"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session() -> requests.Session:
    """A session that ignores proxy variables: everything here is on 127.0.0.1."""
    s = requests.Session()
    s.trust_env = False
    return s


# -- the token service ------------------------------------------------------------------------


def _libtrust_key_id(public_der: bytes) -> str:
    # distribution 2.8 finds a token's signing key by this id (docker/libtrust's fingerprint) among
    # the keys of its rootcertbundle: base32 of the first 240 bits of SHA-256(SPKI), in groups of 4.
    encoded = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclasses.dataclass
class SigningKey:
    private_pem: bytes
    cert_pem: bytes
    key_id: str


def make_signing_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return SigningKey(private_pem, cert.public_bytes(serialization.Encoding.PEM), _libtrust_key_id(public_der))


def make_server_tls(key: SigningKey, directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS context for a server on 127.0.0.1 (also valid as localhost), and the path of its (self-signed)
    certificate as a CA bundle."""
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


class TokenService:
    """Issues registry JWTs like Docker Hub's auth service: the right Basic credentials get the requested
    actions, wrong ones a 401, anonymous callers a token with no access at all."""

    def __init__(self, key: SigningKey, users: dict[str, str]) -> None:
        self.signer = crypt.RSASigner.from_string(key.private_pem)
        self.key_id = key.key_id
        self.users = users
        self.requests: list[dict[str, Any]] = []  # what callers sent, for assertions (no passwords)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def issue(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        return jwt.encode(self.signer, claims, key_id=self.key_id).decode()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                user = self._basic_user()
                service.requests.append(
                    {"user": user, "scope": query.get("scope", []), "service": query.get("service")}
                )
                if user is False:
                    self._reply(401, {"details": "incorrect username or password"})
                    return
                access = []
                if user:
                    for scope in query.get("scope", []):
                        kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("", "", "")
                        access.append({"type": kind, "name": name, "actions": actions.split(",")})
                token = service.issue(user or "", access)
                self._reply(200, {"token": token, "access_token": token, "expires_in": 300})

            def _basic_user(self) -> str | Literal[False] | None:
                """The user name for good credentials, False for bad ones, None when anonymous."""
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user if service.users.get(user) == password else False

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> TokenService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the registry -----------------------------------------------------------------------------


@dataclasses.dataclass
class Registry:
    mode: str  # htpasswd | token | open
    host: str  # 127.0.0.1:<port>
    token_service: TokenService | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def push_headers(self, repository: str) -> dict[str, str]:
        """Authorization for pushing to ``repository`` (what `docker push` would obtain)."""
        if self.mode == "htpasswd":
            return {"Authorization": "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()}
        if self.mode == "token":
            assert self.token_service is not None
            token = self.token_service.issue(
                USERNAME, [{"type": "repository", "name": repository, "actions": ["pull", "push"]}]
            )
            return {"Authorization": f"Bearer {token}"}
        return {}

    def upload_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with session() as s:
            headers = self.push_headers(repository)
            started = s.post(f"{self.url}/v2/{repository}/blobs/uploads/", headers=headers, timeout=5)
            assert started.status_code == 202, started.text
            location = urllib.parse.urljoin(self.url, started.headers["Location"])
            done = s.put(
                location,
                params={"digest": digest},
                data=data,
                headers={**headers, "Content-Type": "application/octet-stream"},
                timeout=5,
            )
            assert done.status_code == 201, done.text
        return digest

    def put_manifest(self, repository: str, reference: str, manifest: dict[str, Any], media_type: str) -> str:
        body = json.dumps(manifest).encode()
        with session() as s:
            response = s.put(
                f"{self.url}/v2/{repository}/manifests/{reference}",
                data=body,
                headers={**self.push_headers(repository), "Content-Type": media_type},
                timeout=5,
            )
        assert response.status_code == 201, response.text
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def push_test_images(self, repository: str) -> dict[str, str]:
        """Push ``TAG`` (Docker schema 2), ``OCI_TAG`` (OCI manifest) and ``INDEX_TAG`` (OCI index). Returns digests."""
        layer = _tar_gz({"hello.txt": b"hello from regcred tests\n"})
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "config": {}}
        ).encode()
        layer_digest, config_digest = self.upload_blob(repository, layer), self.upload_blob(repository, config)

        def manifest(media: str, config_media: str, layer_media: str) -> dict[str, Any]:
            return {
                "schemaVersion": 2,
                "mediaType": media,
                "config": {"mediaType": config_media, "size": len(config), "digest": config_digest},
                "layers": [{"mediaType": layer_media, "size": len(layer), "digest": layer_digest}],
            }

        digests = {
            TAG: self.put_manifest(
                repository, TAG, manifest(DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER), DOCKER_MANIFEST
            )
        }
        oci = manifest(OCI_MANIFEST, OCI_CONFIG, OCI_LAYER)
        digests[OCI_TAG] = self.put_manifest(repository, OCI_TAG, oci, OCI_MANIFEST)
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "size": len(json.dumps(oci).encode()),
                    "digest": digests[OCI_TAG],
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
        digests[INDEX_TAG] = self.put_manifest(repository, INDEX_TAG, index, OCI_INDEX)
        return digests


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _config_yaml(root: Path, port: int, auth: str) -> str:
    # JSON is YAML: no yaml writer needed. Logs off: the tests read answers, not log lines.
    return json.dumps(
        {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": "regcred-tests"},
            **({"auth": json.loads(auth)} if auth else {}),
        }
    )


def _start_registry(root: Path, auth: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start the registry on a free port and wait until it answers; retries if the port was taken meanwhile."""
    for _ in range(5):
        port = free_port()
        config = root / "config.yml"
        config.write_text(_config_yaml(root, port, auth))
        log = (root / "registry.log").open("wb")
        process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return process, f"127.0.0.1:{port}"
            except OSError:
                time.sleep(0.01)
        _stop(process)
    raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_registry(mode: str, root: Path, key: SigningKey) -> Iterator[Registry]:
    """A registry process in ``mode`` (htpasswd | token | open) with its data under ``root``, holding the
    test images in ``REPO``; stopped (and its token service with it) on exit."""
    token_service = None
    auth = ""
    if mode == "htpasswd":
        line = subprocess.run(
            ["htpasswd", "-Bbn", USERNAME, PASSWORD], check=True, capture_output=True, text=True
        ).stdout.strip()
        (root / "htpasswd").write_text(line + "\n")
        auth = json.dumps({"htpasswd": {"realm": "regcred-tests", "path": str(root / "htpasswd")}})
    elif mode == "token":
        (root / "token-ca.pem").write_bytes(key.cert_pem)
        token_service = TokenService(key, {USERNAME: PASSWORD}).__enter__()
        auth = json.dumps(
            {
                "token": {
                    "realm": token_service.url,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(root / "token-ca.pem"),
                }
            }
        )
    process, host = _start_registry(root, auth)
    try:
        reg = Registry(mode=mode, host=host, token_service=token_service)
        reg.push_test_images(REPO)
        yield reg
    finally:
        _stop(process)
        if token_service is not None:
            token_service.__exit__(None, None, None)


# -- a scripted HTTP server for answers a real registry will not give on demand ----------------

Route = tuple[int, dict[str, str], bytes]


class ScriptedServer:
    """Answers each path with a fixed (status, headers, body); records the requests it saw."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def route(self, path: str, status: int, headers: dict[str, str] | None = None, body: Any = b"") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.routes[path] = (status, headers or {}, data)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        scripted = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                scripted.seen.append((self.command, self.path, dict(self.headers)))
                status, headers, body = scripted.routes.get(path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
