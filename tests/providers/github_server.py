"""A stand-in for GitHub's REST API on 127.0.0.1: the two calls the ghcr provider makes, checked as GitHub does.

* ``POST {prefix}/app/installations/{id}/access_tokens`` verifies the App JWT's RS256 signature against the
  App's public key, and its claims (``alg``, ``iss``, ``iat`` not in the future, ``exp`` in the future and at
  most 10 minutes after ``iat``), then answers an installation token valid one hour.
* ``GET {prefix}/user`` answers a known PAT with its login, its ``X-OAuth-Scopes`` and, when it has one,
  its ``GitHub-Authentication-Token-Expiration`` header; an unknown one with 401 Bad credentials.

``prefix`` is "" for github.com and "/api/v3" for GitHub Enterprise Server. Faults are injected per path
(``fail``) and every request is recorded (``requests``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from google.auth import exceptions as google_exceptions
from google.auth import jwt as google_jwt

from tests.providers.local_server import QuietHandler, serving

ONE_HOUR = datetime.timedelta(hours=1)


@dataclasses.dataclass
class Pat:
    login: str
    expiration: str | None = None  # the header's value, verbatim
    scopes: str | None = "read:packages"  # X-OAuth-Scopes (None: a fine-grained PAT, no header)


@dataclasses.dataclass
class Fault:
    status: int
    body: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    claims: dict[str, Any] | None = None  # of a verified App JWT


@dataclasses.dataclass
class FakeGitHub:
    prefix: str = ""
    app_keys: dict[str, bytes] = dataclasses.field(default_factory=dict)  # app id -> public key PEM
    installations: set[str] = dataclasses.field(default_factory=set)
    pats: dict[str, Pat] = dataclasses.field(default_factory=dict)
    fail: dict[str, Fault] = dataclasses.field(default_factory=dict)  # path (without prefix) -> fault
    requests: list[Recorded] = dataclasses.field(default_factory=list)
    issued: list[str] = dataclasses.field(default_factory=list)  # installation tokens handed out
    url: str = ""

    @property
    def api_url(self) -> str:
        return self.url + self.prefix

    # -- request handling ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        record = Recorded(method, path, headers)
        self.requests.append(record)
        if not path.startswith(self.prefix + "/"):
            return 404, {}, {"message": "Not Found"}
        path = path.removeprefix(self.prefix)
        if path in self.fail:
            fault = self.fail[path]
            return fault.status, dict(fault.headers), fault.body
        parts = path.strip("/").split("/")
        if method == "GET" and parts == ["user"]:
            return self._user(headers)
        if (
            method == "POST"
            and len(parts) == 4
            and parts[:2] == ["app", "installations"]
            and parts[3] == "access_tokens"
        ):
            return self._access_token(parts[2], headers, record)
        return 404, {}, {"message": "Not Found"}

    def _user(self, headers: Mapping[str, str]) -> tuple[int, dict[str, str], Any]:
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        pat = self.pats.get(credential) if scheme.lower() in ("bearer", "token") else None
        if pat is None:
            return 401, {}, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
        answer_headers = {}
        if pat.scopes is not None:
            answer_headers["X-OAuth-Scopes"] = pat.scopes
        if pat.expiration is not None:
            answer_headers["GitHub-Authentication-Token-Expiration"] = pat.expiration
        return 200, answer_headers, {"login": pat.login, "id": 1, "type": "User"}

    def _access_token(
        self, installation: str, headers: Mapping[str, str], record: Recorded
    ) -> tuple[int, dict[str, str], Any]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return 401, {}, {"message": "A JSON web token could not be decoded"}
        try:
            header: dict[str, Any] = google_jwt.decode_header(token)  # type: ignore[no-untyped-call]
            unverified: dict[str, Any] = google_jwt.decode(token, verify=False)  # type: ignore[no-untyped-call]
            public_key = self.app_keys.get(str(unverified.get("iss")))
            if header.get("alg") != "RS256" or public_key is None:
                return 401, {}, {"message": "A JSON web token could not be decoded"}
            # Signature (RS256, the App's public key), and iat/exp against the real time, as GitHub checks them.
            verified = google_jwt.decode(token, certs=public_key, clock_skew_in_seconds=0)  # type: ignore[no-untyped-call]
            claims: dict[str, Any] = dict(verified)
        except (ValueError, google_exceptions.GoogleAuthError):
            return 401, {}, {"message": "A JSON web token could not be decoded"}
        now = datetime.datetime.now(datetime.UTC).timestamp()
        if not isinstance(claims.get("iss"), str):
            return 401, {}, {"message": "'Issuer' claim ('iss') must be a string"}
        if claims["iat"] > now or claims["exp"] - claims["iat"] > 600:
            return 401, {}, {"message": "'Expiration time' claim ('exp') is too far in the future"}
        record.claims = claims
        if installation not in self.installations:
            return 404, {}, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        issued = "ghs_" + secrets.token_urlsafe(27)
        self.issued.append(issued)
        expires = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + ONE_HOUR
        return (
            201,
            {},
            {
                "token": issued,
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": {"packages": "read"},
                "repository_selection": "all",
            },
        )


class _Handler(QuietHandler):
    github: FakeGitHub  # set on a subclass per server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer_headers, body = self.github.handle(self.command, self.path, headers)
        payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.reply(status, {"Content-Type": "application/json; charset=utf-8", **answer_headers}, payload)

    do_GET = _answer
    do_POST = _answer


@contextmanager
def serve(github: FakeGitHub) -> Iterator[FakeGitHub]:
    """Serve ``github`` on a free port of 127.0.0.1 in a thread, for the duration of the block."""
    with serving(type("Handler", (_Handler,), {"github": github}), "fake-github") as url:
        github.url = url
        yield github
