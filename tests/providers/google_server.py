"""A small stand-in for Google's auth endpoints, over real HTTP on 127.0.0.1, for google-auth to talk to.

It serves the OAuth token endpoint (the JWT-bearer grant of service-account keys, verified with the key's
public half), the Security Token Service (workload identity federation's token exchange), the IAM
Credentials API's generateAccessToken (impersonation) and, when switched on, the metadata server (GKE
Workload Identity). It records every request, and a test can make each endpoint fail.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import http.server
import itertools
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.providers.local_server import QuietHandler

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
IAM_SCOPE = "https://www.googleapis.com/auth/iam"
_GENERATE = re.compile(r"^/v1/projects/-/serviceAccounts/(?P<email>[^/:]+):generateAccessToken$")
_METADATA_TOKEN = re.compile(r"^/computeMetadata/v1/instance/service-accounts/(?P<account>[^/]+)/token$")


@dataclasses.dataclass(frozen=True)
class Issued:
    """An access token the fake handed out, and to whom, for which scopes."""

    principal: str
    scopes: tuple[str, ...]


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def new_rsa_key() -> tuple[str, rsa.RSAPublicKey]:
    """A fresh RSA key: its private half as PKCS#8 PEM text (what Google's JSON keys hold), and its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_rs256(assertion: str, public_key: rsa.RSAPublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of an RS256 JWT whose signature the public key verifies; ValueError otherwise."""
    try:
        header_b64, claims_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64url_decode(header_b64))
        claims = json.loads(_b64url_decode(claims_b64))
        signature = _b64url_decode(signature_b64)
    except (ValueError, TypeError) as error:
        raise ValueError("not a JWT") from error
    if header.get("alg") != "RS256":
        raise ValueError(f"alg is {header.get('alg')!r}, not RS256")
    try:
        public_key.verify(
            signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise ValueError("Invalid JWT Signature.") from None
    return header, claims


class FakeGoogle:
    def __init__(self) -> None:
        # Service accounts whose keys the token endpoint accepts: client_email -> public key.
        self.service_accounts: dict[str, rsa.RSAPublicKey] = {}
        self.token_lifetime: int | None = 3599  # None: the answer has no expires_in
        # (status, JSON body) the token endpoint answers instead of a token.
        self.token_error: tuple[int, dict[str, Any]] | None = None
        # Federation: the subject token STS accepts and the lifetime it grants.
        self.subject_token: str | None = None
        self.audience: str | None = None
        self.sts_lifetime = 900
        # Impersonation: service accounts that may be impersonated, by whom (None: anyone with a token).
        self.impersonable: dict[str, set[str] | None] = {}
        self.iam_error: tuple[int, dict[str, Any]] | None = None
        self.iam_expire_time: datetime.datetime | None = None
        # The metadata server answers only when switched on (GKE Workload Identity); otherwise it is 404.
        self.metadata_enabled = False
        self.metadata_email = "gke-node@my-project.iam.gserviceaccount.com"
        self.metadata_lifetime = 3599
        # A credential source (a URL a federation configuration fetches its subject token from): GET
        # /subject-token answers (status, body); None: 404.
        self.source_answer: tuple[int, bytes] | None = None
        # (status, raw body) the Security Token Service answers instead of exchanging the token.
        self.sts_error: tuple[int, bytes] | None = None

        self.issued: dict[str, Issued] = {}
        self.seen: list[Seen] = []
        self.jwt_claims: list[dict[str, Any]] = []
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        # A short poll interval: shutdown() waits for the serving loop to notice, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-google", daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def sts_url(self) -> str:
        return f"{self.url}/v1/token"

    def start(self) -> FakeGoogle:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- helpers for tests ----------------------------------------------------------------------

    def add_service_account(self, email: str, public_key: rsa.RSAPublicKey) -> None:
        self.service_accounts[email] = public_key

    def paths(self) -> list[str]:
        return [f"{seen.method} {seen.path}" for seen in self.seen]

    def issue(self, principal: str, scopes: tuple[str, ...], kind: str) -> str:
        with self._lock:
            token = f"ya29.{kind}-{next(self._counter)}-fake-access-token"
            self.issued[token] = Issued(principal, scopes)
        return token

    # -- endpoints ------------------------------------------------------------------------------

    def handle(self, seen: Seen, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.seen.append(seen)
        if seen.method == "POST" and seen.path == "/token":
            return _json(*self._oauth_token(seen))
        if seen.method == "POST" and seen.path == "/v1/token":
            if self.sts_error is not None:
                return self.sts_error[0], {"Content-Type": "application/json"}, self.sts_error[1]
            return _json(*self._sts_token(seen))
        if seen.method == "GET" and seen.path == "/subject-token" and self.source_answer is not None:
            return self.source_answer[0], {"Content-Type": "application/json"}, self.source_answer[1]
        match = _GENERATE.match(seen.path)
        if seen.method == "POST" and match:
            return _json(*self._generate_access_token(seen, urllib.parse.unquote(match["email"])))
        if seen.method == "GET" and (seen.path == "/" or seen.path.startswith("/computeMetadata/")):
            return self._metadata(seen, query)
        return _json(404, {"error": {"code": 404, "message": f"no such endpoint {seen.path}", "status": "NOT_FOUND"}})

    def _oauth_token(self, seen: Seen) -> tuple[int, dict[str, Any]]:
        form = urllib.parse.parse_qs(seen.body.decode())
        if form.get("grant_type") != [JWT_BEARER] or len(form.get("assertion", [])) != 1:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
        if self.token_error is not None:
            return self.token_error
        try:
            _, unverified = verify_rs256_unverified(form["assertion"][0])
            public_key = self.service_accounts.get(str(unverified.get("iss")))
            if public_key is None:
                return 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
            _, claims = verify_rs256(form["assertion"][0], public_key)
        except ValueError as error:
            return 400, {"error": "invalid_grant", "error_description": str(error)}
        now = datetime.datetime.now(datetime.UTC).timestamp()
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: aud"}
        if not (claims.get("iat", now + 999) <= now + 60 and claims.get("exp", 0) > now):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: Token must be short-lived"}
        scopes = tuple(str(claims.get("scope", "")).split())
        if not scopes:
            return 400, {"error": "invalid_scope", "error_description": "Empty or missing scope not allowed."}
        self.jwt_claims.append(claims)
        token = self.issue(str(claims["iss"]), scopes, "sa")
        answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if self.token_lifetime is not None:
            answer["expires_in"] = self.token_lifetime
        return 200, answer

    def _sts_token(self, seen: Seen) -> tuple[int, dict[str, Any]]:
        form = {key: values[0] for key, values in urllib.parse.parse_qs(seen.body.decode()).items()}
        if form.get("grant_type") != TOKEN_EXCHANGE:
            return 400, {"error": "invalid_request", "error_description": "Invalid grant_type."}
        if self.subject_token is None or form.get("subject_token") != self.subject_token:
            return 400, {"error": "invalid_grant", "error_description": "The subject token is invalid."}
        if form.get("audience") != self.audience:
            return 400, {"error": "invalid_target", "error_description": "The target service indicated is invalid."}
        scopes = tuple(form.get("scope", "").split())
        token = self.issue(f"principal://{self.audience}", scopes, "sts")
        return 200, {
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": self.sts_lifetime,
        }

    def _generate_access_token(self, seen: Seen, email: str) -> tuple[int, dict[str, Any]]:
        authorization = seen.headers.get("authorization", "")
        issued = self.issued.get(authorization.removeprefix("Bearer ")) if authorization.startswith("Bearer ") else None
        if issued is None:
            return 401, _google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        if self.iam_error is not None:
            return self.iam_error
        allowed = self.impersonable.get(email, set())
        if email not in self.impersonable or (allowed is not None and issued.principal not in allowed):
            return 403, _google_error(
                403,
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
                "PERMISSION_DENIED",
            )
        body = json.loads(seen.body or b"{}")
        scopes = tuple(body.get("scope") or ())
        if not scopes:
            return 400, _google_error(400, "Scope required.", "INVALID_ARGUMENT")
        lifetime = int(str(body.get("lifetime", "3600s")).removesuffix("s"))
        token = self.issue(email, scopes, "impersonated")
        expire = self.iam_expire_time or (
            datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=lifetime)
        ).replace(microsecond=0)
        return 200, {"accessToken": token, "expireTime": expire.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def _metadata(self, seen: Seen, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        if not self.metadata_enabled or seen.headers.get("metadata-flavor") != "Google":
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        flavor = {"Metadata-Flavor": "Google"}
        if seen.path == "/":
            return 200, {**flavor, "Content-Type": "text/plain"}, b"computeMetadata/\n"
        if seen.path == "/computeMetadata/v1/project/project-id":
            return 200, {**flavor, "Content-Type": "text/plain"}, b"my-project"
        if seen.path == "/computeMetadata/v1/universe/universe-domain":
            return 200, {**flavor, "Content-Type": "text/plain"}, b"googleapis.com"
        if seen.path == "/computeMetadata/v1/instance/service-accounts/default/":
            info = {"aliases": ["default"], "email": self.metadata_email, "scopes": [CLOUD_PLATFORM]}
            return _json(200, info, flavor)
        match = _METADATA_TOKEN.match(seen.path)
        if match and match["account"] in ("default", self.metadata_email):
            scopes = tuple(",".join(query.get("scopes", [])).split(","))
            token = self.issue(self.metadata_email, scopes, "metadata")
            body = {"access_token": token, "expires_in": self.metadata_lifetime, "token_type": "Bearer"}
            return _json(200, body, flavor)
        return 404, {**flavor, "Content-Type": "text/plain"}, b"Not Found"


def verify_rs256_unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims without checking the signature: to find out whose key to check it with."""
    try:
        header_b64, claims_b64, _ = assertion.split(".")
        return json.loads(_b64url_decode(header_b64)), json.loads(_b64url_decode(claims_b64))
    except (ValueError, TypeError) as error:
        raise ValueError("not a JWT") from error


def _google_error(code: int, message: str, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return status, {**(headers or {}), "Content-Type": "application/json"}, json.dumps(body).encode()


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        fake: FakeGoogle = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urllib.parse.urlsplit(self.path)
        seen = Seen(
            method=self.command,
            path=parts.path,
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
        )
        status, headers, payload = fake.handle(seen, urllib.parse.parse_qs(parts.query))
        self.reply(status, headers, payload)

    do_GET = _serve
    do_POST = _serve


def running() -> Iterator[FakeGoogle]:
    """For a pytest fixture: a started fake, stopped afterwards."""
    fake = FakeGoogle().start()
    try:
        yield fake
    finally:
        fake.stop()
