"""
The HTTP side of the emulated API server: parsed requests, Status errors, records and faults.
"""

import dataclasses
import json
import random
import time
from collections.abc import Mapping
from typing import Any

import aiohttp.web

from regcred_sandbox import protobuf

REASONS = {
    400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound',
    405: 'MethodNotAllowed', 406: 'NotAcceptable', 409: 'Conflict', 410: 'Gone',
    415: 'UnsupportedMediaType', 422: 'Invalid', 429: 'TooManyRequests',
    500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
}
_TRUE = ('true', '1', 'yes')  # the Python client sends watch=True, kubectl watch=true, some 1

Obj = dict[str, Any]


class ApiError(Exception):
    """An API failure rendered as a ``v1 Status`` body, as the real server does."""

    def __init__(
            self, code: int, message: str, *,
            reason: str | None = None,
            details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, 'Unknown' if code >= 400 else '')
        self.details = dict(details) if details else None

    def status(self) -> Obj:
        body: Obj = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                     'message': self.message, 'reason': self.reason, 'code': self.code}
        if self.details:
            body['details'] = self.details
        return body


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One served request, as seen by the server (``verb`` is the Kubernetes verb)."""
    method: str
    verb: str
    group: str
    version: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    status: int
    path: str = ''
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the query: selectors, watch, ...
    user_agent: str = ''  # tells the operator's requests from a test's own
    # When it was answered (time.monotonic); not part of a record's identity.
    at: float = dataclasses.field(default_factory=time.monotonic, compare=False)


@dataclasses.dataclass
class Fault:
    """Answer the next ``times`` matching requests with ``status`` instead of serving them; with ``stall``,
    hold each of them that many seconds first (a half-open connection), and with status 0 then serve it."""
    status: int = 500
    stall: float = 0.0
    method: str | None = None  # an HTTP method (PATCH) or a Kubernetes verb (patch, list, watch)
    resource: str | None = None  # "secrets", "pods/status", "regcredentials.regcred.dev"
    namespace: str | None = None
    name: str | None = None
    times: int | None = 1  # None: forever
    message: str | None = None
    user_agent: str | None = None  # only requests whose User-Agent starts with this (one client's, not kopf's)
    hits: int = 0

    def matches(self, request: 'ApiRequest') -> bool:
        if self.user_agent is not None and not request.raw.headers.get('User-Agent', '').startswith(self.user_agent):
            return False
        if self.method is not None and self.method.lower() not in (request.method.lower(), request.verb):
            return False
        if self.resource is not None:
            plural, _, subresource = self.resource.partition('/')
            plural, _, group = plural.partition('.')
            if plural != request.plural or (group and group != request.group):
                return False
            if subresource and subresource != request.subresource:
                return False
        if self.namespace is not None and self.namespace != request.namespace:
            return False
        return self.name is None or self.name == request.name


RESET = 0  # among Chaos.statuses: the connection is closed without an answer (a reset, for the client)
WRITE_VERBS = frozenset({'create', 'update', 'patch', 'delete', 'deletecollection', 'post', 'put',
                         'patch-collection'})


@dataclasses.dataclass
class Chaos:
    """Fail a random ``rate`` of the requests of one client (``user_agent``; ``None``: everyone's) with one of
    ``statuses`` picked at random (``RESET``: close the connection unanswered); watches are never failed. A
    409 is a write's answer: a read drawn a 409 gets a 500 instead. Failed requests are not applied.

    The draws come from ``random.Random(seed)``: the same sequence of requests meets the same faults (with
    concurrent clients the order of their requests, so which of them fail, varies from run to run)."""
    rate: float
    statuses: tuple[int, ...] = (429, 500, 409, RESET)
    seed: int = 0
    user_agent: str | None = None
    failed: int = 0  # how many requests it failed so far
    _random: random.Random = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0 or not self.statuses:
            raise ValueError("Chaos needs 0 <= rate <= 1 and at least one status.")
        self._random = random.Random(self.seed)  # noqa: S311 (reproducible faults, not secrets)

    def draw(self, request: 'ApiRequest') -> int | None:
        """The status to fail this request with, or None to serve it. Called on the server's loop only."""
        if request.verb == 'watch' or not request.is_resource:
            return None
        if self.user_agent is not None and not request.raw.headers.get('User-Agent', '').startswith(self.user_agent):
            return None
        if self._random.random() >= self.rate:
            return None
        status = self._random.choice(self.statuses)
        self.failed += 1
        return 500 if status == 409 and request.verb not in WRITE_VERBS else status


@dataclasses.dataclass(eq=False)
class ApiRequest:
    raw: aiohttp.web.BaseRequest
    method: str
    path: str
    params: Mapping[str, str]
    body: bytes
    verb: str = 'get'
    group: str = ''
    version: str = ''
    plural: str = ''
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    is_resource: bool = False
    recorded: bool = False

    @classmethod
    async def parse(cls, raw: aiohttp.web.BaseRequest) -> 'ApiRequest':
        params = {key: raw.query[key] for key in raw.query}
        request = cls(raw=raw, method=raw.method.upper(), path=raw.path, params=params, body=await raw.read())
        parts = [part for part in raw.path.split('/') if part]
        if len(parts) >= 2 and parts[0] == 'api':
            request.version, rest = parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == 'apis':
            request.group, request.version, rest = parts[1], parts[2], parts[3:]
        else:
            if len(parts) == 2 and parts[0] == 'apis':
                request.group = parts[1]
            return request
        watching = params.get('watch', '').lower() in _TRUE
        if rest and rest[0] == 'watch':  # the deprecated /api/v1/watch/... form
            watching, rest = True, rest[1:]
        if not rest:
            return request

        # /namespaces/{ns}/{plural}... vs. /namespaces, /namespaces/{name}, /namespaces/{name}/status
        if rest[0] == 'namespaces' and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ('status', 'finalize')):
            request.namespace, rest = rest[1], rest[2:]
        request.is_resource = True
        request.plural = rest[0]
        request.name = rest[1] if len(rest) > 1 else None
        request.subresource = '/'.join(rest[2:]) or None
        named = request.name is not None
        request.verb = {
            'GET': 'watch' if watching else 'get' if named else 'list',
            'POST': 'create' if not named else 'post',
            'PUT': 'update' if named else 'put',
            'PATCH': 'patch' if named else 'patch-collection',
            'DELETE': 'delete' if named else 'deletecollection',
        }.get(request.method, request.method.lower())
        return request

    def json(self) -> Any:
        if not self.body:
            return None
        if 'protobuf' in self.raw.headers.get('Content-Type', ''):
            try:
                return protobuf.decode(self.body)
            except protobuf.UnsupportedKind as e:
                raise ApiError(415, f"the emulated API server reads protobuf only for "
                                    f"{', '.join(kind for _, kind in protobuf.KINDS)}, not {e}; "
                                    "send JSON (e.g. kubectl apply/create -f)") from e
            except (ValueError, IndexError, AssertionError) as e:
                raise ApiError(400, f"the request body is not valid protobuf: {e}") from e
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise ApiError(400, f"the request body is not valid JSON: {e}") from e

    def flag(self, name: str) -> bool:
        return self.params.get(name, '').lower() in _TRUE
