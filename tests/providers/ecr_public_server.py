"""A stand-in for ECR Public's API on 127.0.0.1: the one call the ecr provider makes with ``public: true``.

moto (5.2) does not implement ECR Public, so this serves ``GetAuthorizationToken`` as AWS does: a POST to
``/`` in the AWS JSON 1.1 protocol (``X-Amz-Target: SpencerFrontendService.GetAuthorizationToken``), signed
with SigV4 for service ``ecr-public`` in ``us-east-1``, answered with one ``authorizationData`` object whose
``expiresAt`` is epoch seconds, or an error as ``{"__type": ..., "message": ...}``. The real boto3 client is
pointed at it with ``endpoint_url`` and botocore parses the answer. The signature itself is not verified;
the access key in its scope is recorded (``requests``), which tells which AWS identity called.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.providers.local_server import QuietHandler, serving

TARGET = "SpencerFrontendService.GetAuthorizationToken"
_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclasses.dataclass
class Fault:
    status: int
    body: bytes | dict[str, Any]


@dataclasses.dataclass
class Recorded:
    access_key_id: str
    region: str
    service: str
    target: str
    session_token: str | None


def _in_12_hours() -> datetime.datetime:
    """When a token issued now expires, as ECR Public says (whole seconds)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(hours=12)


@dataclasses.dataclass
class FakeEcrPublic:
    expires_at: datetime.datetime = dataclasses.field(default_factory=_in_12_hours)
    fault: Fault | None = None
    answer: dict[str, Any] | None = None  # replaces the whole answer's body
    requests: list[Recorded] = dataclasses.field(default_factory=list)
    issued: list[str] = dataclasses.field(default_factory=list)  # passwords handed out
    url: str = ""

    def handle(self, headers: dict[str, str]) -> tuple[int, bytes]:
        scope = _SCOPE.search(headers.get("authorization", ""))
        if scope is None:
            return 400, _error("MissingAuthenticationTokenException", "Missing Authentication Token")
        target = headers.get("x-amz-target", "")
        self.requests.append(Recorded(*scope.groups(), target=target,
                                      session_token=headers.get("x-amz-security-token")))
        if target != TARGET:
            return 400, _error("UnknownOperationException", "")
        if self.fault is not None:
            body = self.fault.body
            return self.fault.status, body if isinstance(body, bytes) else json.dumps(body).encode()
        if self.answer is not None:
            return 200, json.dumps(self.answer).encode()
        password = secrets.token_urlsafe(48)
        self.issued.append(password)
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        data = {"authorizationToken": token, "expiresAt": self.expires_at.timestamp()}
        return 200, json.dumps({"authorizationData": data}).encode()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}).encode()


class _Handler(QuietHandler):
    ecr: FakeEcrPublic  # set on a subclass per server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, payload = self.ecr.handle({name.lower(): value for name, value in self.headers.items()})
        self.reply(status, {"Content-Type": "application/x-amz-json-1.1",
                            "x-amzn-RequestId": "00000000-0000-4000-8000-000000000000"}, payload)


@contextmanager
def serve(ecr: FakeEcrPublic) -> Iterator[FakeEcrPublic]:
    """Serve ``ecr`` on a free port of 127.0.0.1 in a thread, for the duration of the block."""
    with serving(type("Handler", (_Handler,), {"ecr": ecr}), "fake-ecr-public") as url:
        ecr.url = url
        yield ecr
