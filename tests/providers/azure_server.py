"""A stand-in for Microsoft Entra ID and ACR's token exchange, over real HTTPS on 127.0.0.1, for azure-identity.

It serves what azure-identity asks for, checked as Entra ID and ACR check it:

* ``GET /{tenant}/v2.0/.well-known/openid-configuration``: the tenant's endpoints (MSAL reads them first);
* ``POST /{tenant}/oauth2/v2.0/token``: the client credentials grant with a client secret, a certificate's
  signed assertion (RS256, verified with the certificate's public key) or a federated token (workload
  identity), for a known app registration;
* ``GET /metadata/identity/oauth2/token``: the instance metadata service (managed identity), with its
  ``Metadata: true`` header;
* ``POST /oauth2/exchange``: ``grant_type=access_token``, answering an access token it issued for the ACR
  audience with an ACR refresh token, a JWT whose ``exp`` is ``now() + refresh_lifetime``.

It records every request, and a test can make the token endpoint or the exchange answer something else.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import http.server
import itertools
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.providers.google_server import verify_rs256
from tests.providers.local_server import QuietHandler
from tests.registry.harness import make_server_tls, make_signing_key

ACR_SCOPE = "https://containerregistry.azure.net/.default"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Issued:
    tenant: str | None
    client: str
    scope: str


@dataclasses.dataclass
class App:
    """An app registration (or user-assigned identity) and what it accepts as proof."""

    tenant: str
    client_secret: str | None = None
    certificate: x509.Certificate | None = None
    federated_token: str | None = None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(claims: dict[str, Any]) -> str:
    """A JWT with the given claims and a signature nobody checks (ACR's refresh tokens are opaque to clients)."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "fake-acr"}
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                     b64url(b"not-a-real-signature" * 8)])


class FakeAzure:
    def __init__(self, directory: Path) -> None:
        self.apps: dict[str, App] = {}  # client id -> app
        self.managed_identities: set[str] = set()  # client ids; "system" for the system-assigned one
        self.token_error: tuple[int, dict[str, Any]] | None = None
        self.exchange_answer: tuple[int, dict[str, str], bytes] | None = None
        self.refresh_lifetime = datetime.timedelta(hours=3)
        self.now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
        self.refresh_claims: dict[str, Any] = {}  # merged into every refresh token's claims (None: removed)
        self.issued: dict[str, Issued] = {}
        self.refresh_tokens: list[str] = []
        self.seen: list[Seen] = []
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        context, self.ca_bundle = make_server_tls(make_signing_key(), directory)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-azure", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host!s}:{port}"

    def start(self) -> FakeAzure:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def paths(self) -> list[str]:
        return [f"{seen.method} {seen.path}" for seen in self.seen]

    def exchanges(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == "/oauth2/exchange"]

    def _issue(self, tenant: str | None, client: str, scope: str) -> str:
        with self._lock:
            token = f"aad-{next(self._counter)}-fake-entra-access-token"
            self.issued[token] = Issued(tenant, client, scope)
        return token

    # -- endpoints ------------------------------------------------------------------------------------

    def handle(self, seen: Seen) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.seen.append(seen)
        parts = seen.path.strip("/").split("/")
        if seen.method == "GET" and seen.path.endswith("/v2.0/.well-known/openid-configuration"):
            base = f"{self.url}/{parts[0]}"
            return _json(200, {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                               "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"})
        if seen.method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            return _json(*self._token(parts[0], seen.form))
        if seen.method == "GET" and seen.path == "/metadata/identity/oauth2/token":
            return _json(*self._imds(seen))
        if seen.method == "POST" and seen.path == "/oauth2/exchange":
            if self.exchange_answer is not None:
                return self.exchange_answer
            return _json(*self._exchange(seen.form))
        return _json(404, {"error": "not_found"})

    def _token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if self.token_error is not None:
            return self.token_error
        app = self.apps.get(form.get("client_id", ""))
        if app is None or app.tenant != tenant:
            return 400, _aad_error("unauthorized_client", "AADSTS700016: Application not found in the directory.")
        if "client_secret" in form:
            if form["client_secret"] != app.client_secret:
                return 401, _aad_error("invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif form.get("client_assertion_type") == CLIENT_ASSERTION_TYPE:
            if not self._assertion_ok(app, form.get("client_assertion", "")):
                return 401, _aad_error("invalid_client", "AADSTS700027: Client assertion failed signature validation.")
        else:
            return 400, _aad_error("invalid_request", "AADSTS900144: The request body must contain client_secret.")
        scope = form.get("scope", "")
        return 200, {"access_token": self._issue(tenant, form["client_id"], scope), "token_type": "Bearer",
                     "expires_in": 3599, "ext_expires_in": 3599}

    def _assertion_ok(self, app: App, assertion: str) -> bool:
        if app.federated_token is not None and assertion == app.federated_token:
            return True
        if app.certificate is None:
            return False
        public_key = app.certificate.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        try:
            _, claims = verify_rs256(assertion, public_key)
        except ValueError:
            return False
        return bool(claims.get("sub") == claims.get("iss") and claims.get("exp", 0) > self.now().timestamp() - 3600)

    def _imds(self, seen: Seen) -> tuple[int, dict[str, Any]]:
        if seen.headers.get("metadata", "").lower() != "true":
            return 400, {"error": "invalid_request", "error_description": "Required metadata header not specified"}
        client = seen.query.get("client_id", "system")
        if client not in self.managed_identities:
            return 400, {"error": "invalid_request", "error_description": "Identity not found"}
        resource = seen.query.get("resource", "")
        token = self._issue(None, client, resource.rstrip("/") + "/.default")
        expires_on = int(datetime.datetime.now(datetime.UTC).timestamp()) + 3600
        return 200, {"access_token": token, "expires_in": "3599", "expires_on": str(expires_on),
                     "resource": resource, "token_type": "Bearer"}

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        issued = self.issued.get(form.get("access_token", ""))
        if form.get("grant_type") != "access_token" or issued is None or not form.get("service"):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        if issued.scope != ACR_SCOPE or (form.get("tenant") and issued.tenant and form["tenant"] != issued.tenant):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "audience or tenant mismatch"}]}
        now = self.now()
        claims: dict[str, Any] = {
            "jti": f"refresh-{next(self._counter)}", "sub": issued.client, "tenant": issued.tenant,
            "aud": form["service"], "iss": "Azure Container Registry", "grant_type": "refresh_token",
            "nbf": int(now.timestamp()), "iat": int(now.timestamp()),
            "exp": int((now + self.refresh_lifetime).timestamp()),
        }
        for key, value in self.refresh_claims.items():
            if value is None:
                claims.pop(key, None)
            else:
                claims[key] = value
        token = unsigned_jwt(claims)
        self.refresh_tokens.append(token)
        return 200, {"refresh_token": token}


def _aad_error(code: str, description: str) -> dict[str, Any]:
    return {"error": code, "error_description": f"{description} Trace ID: 0000. Timestamp: 2026-01-01 00:00:00Z",
            "error_codes": [int(description[6:description.index(":")])]}


def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        fake: FakeAzure = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(self.path)
        seen = Seen(
            method=self.command, path=parts.path,
            query={key: values[0] for key, values in urllib.parse.parse_qs(parts.query).items()},
            headers={key.lower(): value for key, value in self.headers.items()},
            form={key: values[0] for key, values in urllib.parse.parse_qs(body.decode()).items()},
        )
        status, headers, payload = fake.handle(seen)
        self.reply(status, headers, payload)

    do_GET = _serve
    do_POST = _serve

    def handle(self) -> None:
        with contextlib.suppress(ssl.SSLError, ConnectionError):  # a client that does not trust the certificate
            super().handle()


def running(directory: Path) -> Iterator[FakeAzure]:
    """For a pytest fixture: a started fake, stopped afterwards."""
    fake = FakeAzure(directory).start()
    try:
        yield fake
    finally:
        fake.stop()
