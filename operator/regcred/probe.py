"""Asks a registry whether an image can be pulled with a credential, the way a container runtime does.

``GET /v2/`` (the ping) yields the auth challenge; a Bearer challenge sends us to the token service
for ``repository:<repo>:pull`` (with Basic credentials when we have them, anonymously otherwise);
then ``HEAD /v2/<repo>/manifests/<ref>`` answers the question. The verdict reports what the
registry said, not a guess: many registries answer 401 or 404 alike for a private repository and
a missing one, and the detail says so when that is the case.

Nothing secret leaves this module: the evidence shows which user was sent, never a password or a
token, and every line is scrubbed of both before it is stored.

The realm is the registry's choice, so credentials go to it only when :meth:`Prober.realm_refusal`
admits it: over https (plain http only to the registry's own host, and only when the registry itself is
configured insecure), to a host the registry vouches for (its own host, a host of the same registrable
domain, a known token service of a well-known registry) or that the operator was told to trust
(``token_realm_hosts``, REGCRED_TOKEN_REALM_HOSTS). A redirect of the token request is followed with
credentials only on the same host, never from https to http. Anonymous token requests go to any realm
that is not a downgrade.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import ipaddress
import json
import logging
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import requests
import urllib3
from requests.auth import AuthBase, HTTPBasicAuth

from regcred.imageref import ImageRef
from regcred.imageref import parse as parse_image
from regcred.redact import Credentials as Credentials  # (username, password), as callers import it from here
from regcred.redact import redact

logger = logging.getLogger(__name__)

# A manifest HEAD without every type here answers 404 (or 400) for images that exist in another format.
# The trailing */* is what containerd sends too.
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "*/*",
    )
)
DEFAULT_TIMEOUT = (5.0, 15.0)  # (connect, read) seconds: fail fast on a dead host, allow a slow token service
_BODY_LIMIT = 64 * 1024  # error bodies and tag lists are small; never read a large body into memory
_TAGS_SHOWN = 10
_TEXT_LIMIT = 200

_REDIRECTS = 5  # hops a token request with credentials may take (on the same host)


# Token services that live on another host than their registry, as the registries document them (the
# registrable-domain rule admits these too; listed so that they never depend on it).
KNOWN_TOKEN_HOSTS: Mapping[str, frozenset[str]] = {
    "registry-1.docker.io": frozenset({"auth.docker.io"}),
    "index.docker.io": frozenset({"auth.docker.io"}),
    "docker.io": frozenset({"auth.docker.io"}),
    "registry.gitlab.com": frozenset({"gitlab.com"}),
}
# Domains whose subdomains belong to different tenants (a short stand-in for the Public Suffix List's
# private section): a host under one of these vouches only for itself, never for a sibling.
SHARED_SUFFIXES = frozenset(
    {
        "amazonaws.com", "azurecr.io", "azurecr.us", "azurecr.cn", "pkg.dev", "cloudfront.net", "appspot.com",
        "googleusercontent.com",
        "run.app", "web.app", "firebaseapp.com", "github.io", "githubusercontent.com", "herokuapp.com",
        "azurewebsites.net", "cloudapp.net", "windows.net", "azure.com", "ngrok.io", "ngrok-free.app",
        "ngrok.app", "netlify.app", "vercel.app", "pages.dev", "workers.dev", "fly.dev", "onrender.com",
        "nip.io", "sslip.io", "duckdns.org", "localtest.me", "ondigitalocean.app", "oraclecloud.com",
    }
)
# Second-level labels under which a two-letter country code registers names (example.co.uk).
_COUNTRY_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gv"})


class Verdict(enum.StrEnum):
    OK = "ok"
    UNAUTHORIZED = "unauthorized"  # 401: no credentials, wrong ones, or a token without pull access
    FORBIDDEN = "forbidden"  # 403: authenticated, but this account may not pull this repository
    NOT_FOUND = "not_found"  # 404: the tag, digest or repository does not exist (as far as the registry says)
    RATE_LIMITED = "rate_limited"  # 429
    UNREACHABLE = "unreachable"  # DNS, refused connection, timeout, proxy
    TLS = "tls"  # handshake or certificate verification failed
    SERVER_ERROR = "server_error"  # 5xx
    OTHER = "other"  # an answer none of the above explains (e.g. 400, not a v2 registry)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the registry answered. ``evidence`` lists the requests made, for people; no secrets in it."""

    verdict: Verdict
    status_code: int | None
    detail: str
    evidence: tuple[str, ...] = ()
    digest: str | None = None  # the manifest digest, when the verdict is ok
    error_code: str | None = None  # the registry's own error code, e.g. MANIFEST_UNKNOWN, DENIED

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge. ``scheme`` is lower-case; parameter names too."""

    scheme: str
    params: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value (RFC 7235) into its challenges.

    Handles several challenges in one value (``requests`` joins repeated headers with ", "),
    quoted values containing commas and escaped quotes (``scope="repository:a:pull,push"``),
    unquoted values, token68 credentials, any case and stray whitespace. Never raises.
    """
    challenges: list[Challenge] = []
    pos, end = 0, len(header)

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < end and header[pos] in chars:
            pos += 1

    while pos < end:
        skip(" \t,")
        match = _TOKEN_CHARS.match(header, pos)
        if not match:
            pos += 1  # garbage: skip a character rather than give up on what follows
            continue
        scheme, pos = match.group().lower(), match.end()
        params: dict[str, str] = {}
        token68: str | None = None
        skip(" \t")
        # token68 (e.g. "Negotiate abc==") vs. the first auth-param: an auth-param has name "=" value.
        t68 = _TOKEN68.match(header, pos)
        if t68 and not _starts_param(header, pos):
            after = t68.end()
            rest = header[after:].lstrip(" \t")
            if not rest or rest.startswith(","):
                token68, pos = t68.group(), after
        while token68 is None and pos < end:
            skip(" \t,")
            if not _starts_param(header, pos):
                break  # the next challenge's scheme, or the end
            name_match = _TOKEN_CHARS.match(header, pos)
            assert name_match is not None  # _starts_param checked it
            name, pos = name_match.group().lower(), name_match.end()
            skip(" \t")
            pos += 1  # the "="
            skip(" \t")
            value, pos = _read_value(header, pos)
            params.setdefault(name, value)
        challenges.append(Challenge(scheme=scheme, params=params, token68=token68))
    return challenges


def _starts_param(header: str, pos: int) -> bool:
    match = _TOKEN_CHARS.match(header, pos)
    if not match:
        return False
    rest = header[match.end() :].lstrip(" \t")
    return rest.startswith("=") and not rest.startswith("==")


def _read_value(header: str, pos: int) -> tuple[str, int]:
    if pos < len(header) and header[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(header) and header[pos] != '"':
            if header[pos] == "\\" and pos + 1 < len(header):
                pos += 1
            out.append(header[pos])
            pos += 1
        return "".join(out), pos + 1
    # Unquoted: some servers send realm=https://host/token unquoted; ':' and '/' are not token chars.
    start = pos
    while pos < len(header) and header[pos] not in ", \t":
        pos += 1
    return header[start:pos], pos


@dataclasses.dataclass(frozen=True)
class _Answer:
    """A response with its (bounded) body read and the connection released."""

    status_code: int
    reason: str
    headers: Mapping[str, str]  # requests' case-insensitive dict
    content: bytes
    links: Mapping[str, Any]

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON, or is nested too deep to read."""
        try:
            return json.loads(self.content)
        except RecursionError:
            raise ValueError("JSON nested too deep") from None


class _Done(Exception):
    """Stops a probe early with its result (a transport failure, a refused token, ...)."""

    def __init__(self, result: ProbeResult) -> None:
        super().__init__(result.detail)
        self.result = result


class Prober:
    """Probes registries over HTTP(S). One instance can serve many probes; it holds no credentials.

    ``insecure_registries`` are spoken to over plain HTTP (like Docker's setting of that name:
    ``host`` or ``host:port``). ``verify`` is requests' flag or a CA bundle path. ``timeout`` is
    requests' timeout, per request. ``list_tags`` lets a missing tag be told from a missing
    repository by listing the repository's tags (one more request, made only after a 404).
    """

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        insecure_registries: Iterable[str] = (),
        verify: bool | str = True,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        list_tags: bool = True,
        user_agent: str = "regcred-operator",
        token_realm_hosts: Iterable[str] = (),
    ) -> None:
        self.session = session if session is not None else requests.Session()
        self.insecure_registries = frozenset(host.lower() for host in insecure_registries)
        # Hosts (``host`` for every port, or ``host:port``) trusted as token services of any registry.
        self.token_realm_hosts = frozenset(host.strip().lower() for host in token_realm_hosts if host.strip())
        self.verify = verify
        self.timeout = timeout
        self.list_tags = list_tags
        self.user_agent = user_agent

    def scheme_for(self, host: str) -> str:
        host = host.lower()
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return "http" if host in self.insecure_registries or bare in self.insecure_registries else "https"

    def realm_refusal(self, registry_host: str, realm: str, *, credentials: bool = True) -> str | None:
        """None when the token service ``realm`` that ``registry_host`` named may be asked for a token (with
        credentials when ``credentials``), else a sentence saying why not (the realm is shown without its
        userinfo and query). Never raises.
        """
        shown = _shorten(_redact_url(realm)) if _parses(realm) else repr(_shorten(realm))
        refused = f"The registry {registry_host} named the token service {shown}"
        tail = "; nothing was sent."
        try:
            parts = urllib.parse.urlsplit(realm)
            port = parts.port
        except ValueError:
            return f"{refused}, which is not a valid URL{tail}"
        host = (parts.hostname or "").rstrip(".")
        if parts.scheme not in ("http", "https") or not host:
            return f"{refused}, which is not an http(s) URL{tail}"
        registry_scheme = self.scheme_for(registry_host)
        if parts.scheme == "http" and registry_scheme == "https":
            return (
                f"{refused} over plain http while the registry itself is reached over https: nothing goes from "
                f"https to plain http{tail}"
            )
        if not credentials:
            return None
        own = _hostname(registry_host)
        if parts.scheme == "http":
            if host == own:
                return None  # the registry is configured insecure, and this is its own host
            return (
                f"{refused} over plain http on another host: the registry is configured insecure, and credentials "
                f"go over plain http only to the registry's own host ({own}){tail}"
            )
        netloc = f"{host}:{port if port is not None else 443}"
        if (
            host == own
            or host in KNOWN_TOKEN_HOSTS.get(own, ())
            or _same_registrable_domain(own, host)
            or host in self.token_realm_hosts
            or netloc in self.token_realm_hosts
        ):
            return None
        return (
            f"{refused} on a host that neither the registry nor the settings vouch for (not {own} or its "
            f"domain, not a known token service, not in REGCRED_TOKEN_REALM_HOSTS): if {host} is this "
            f"registry's real token service, add it to REGCRED_TOKEN_REALM_HOSTS{tail}"
        )

    def probe(self, image: ImageRef | str, credentials: Credentials | None = None) -> ProbeResult:
        """Can ``image`` be pulled with ``credentials`` (or anonymously)? Never raises for registry trouble.

        Raises :class:`regcred.imageref.InvalidImageReference` for a string that is no image reference.
        """
        ref = parse_image(image) if isinstance(image, str) else image
        run = _Run(self, ref, credentials)
        try:
            result = run.execute()
        except _Done as done:
            result = done.result
        return run.finish(result)


def probe(image: ImageRef | str, credentials: Credentials | None = None, **prober_options: Any) -> ProbeResult:
    """One-off probe with a throwaway :class:`Prober` (see its options)."""
    return Prober(**prober_options).probe(image, credentials)


class _Run:
    """One probe: the requests made, the evidence gathered, the secrets to keep out of it."""

    def __init__(self, prober: Prober, ref: ImageRef, credentials: Credentials | None) -> None:
        self.prober = prober
        self.ref = ref
        self.credentials = credentials
        self.host = ref.api_host
        self.base = f"{prober.scheme_for(self.host)}://{self.host}"
        self.scope = f"repository:{ref.repository}:pull"
        self.evidence: list[str] = []
        self.secrets: set[str] = {credentials[1]} if credentials and credentials[1] else set()
        self.tried: set[tuple[str, ...]] = set()

    @property
    def who(self) -> str:
        return f"user {self.credentials[0]!r}" if self.credentials else "anonymously"

    def execute(self) -> ProbeResult:
        ping = self.send("GET", f"{self.base}/v2/", sent="")
        if ping.status_code == 401:
            challenges = parse_www_authenticate(ping.headers.get("WWW-Authenticate", ""))
        elif 200 <= ping.status_code < 300:
            challenges = []  # no authentication required to talk to this registry
        elif ping.status_code == 404:
            detail = f"{self.host} does not serve the registry v2 API (/v2/ is 404)."
            raise _Done(self.result(Verdict.OTHER, ping, detail))
        else:
            raise _Done(self.classify(ping, stage=f"{self.host} answered the API check /v2/"))

        authorization = self.authorize(challenges, default_basic=ping.status_code == 401)
        manifest_url = f"{self.base}/v2/{self.ref.repository}/manifests/{self.ref.reference}"
        head = self.send("HEAD", manifest_url, authorization=authorization)
        if head.status_code == 401:
            # The repository may ask for a different scope or scheme than the ping did (or the ping
            # needed none). Follow that challenge once, as runtimes do.
            retry = self.authorize(parse_www_authenticate(head.headers.get("WWW-Authenticate", "")))
            if retry is not None:
                authorization = retry
                head = self.send("HEAD", manifest_url, authorization=authorization)
        return self.manifest_result(head, manifest_url, authorization)

    # -- authentication ----------------------------------------------------------------------

    def authorize(self, challenges: Sequence[Challenge], *, default_basic: bool = False) -> str | None:
        """The Authorization header value for these challenges, or None when there is nothing new to try."""
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        if bearer is not None:
            assert bearer.realm is not None
            scope = bearer.scope or self.scope
            key = ("bearer", bearer.realm, bearer.service or "", scope)
            if key in self.tried:
                return None
            self.tried.add(key)
            return self.fetch_token(bearer.realm, bearer.service, scope)
        basic = any(c.scheme == "basic" for c in challenges)
        # A 401 without a usable challenge: Basic is the only thing left that a client could send.
        if self.credentials and (basic or (default_basic and not challenges)) and ("basic",) not in self.tried:
            self.tried.add(("basic",))
            user, password = self.credentials
            return f"Basic {base64.b64encode(f'{user}:{password}'.encode()).decode()}"
        return None

    def fetch_token(self, realm: str, service: str | None, scope: str) -> str:
        params = {"scope": scope}
        if service:
            params["service"] = service
        refusal = self.prober.realm_refusal(self.host, realm, credentials=bool(self.credentials))
        if refusal is not None:
            self.note(f"GET {self.shorten(_redact_url(realm)) if _parses(realm) else '<invalid realm>'} → not sent")
            raise _Done(self.result(Verdict.OTHER, None, refusal))
        auth = HTTPBasicAuth(*self.credentials) if self.credentials else None
        sent = f" as {self.who}" if self.credentials else " anonymously"
        # With credentials, redirects are followed here, one hop at a time, and only on the same host.
        url = realm
        response = self.send("GET", url, params=params, auth=auth, sent=sent, what="token", redirects=not auth)
        for _ in range(_REDIRECTS):
            location = response.headers.get("Location")
            if auth is None or response.status_code not in (301, 302, 303, 307, 308) or not location:
                break
            try:
                target = urllib.parse.urljoin(url, location)
            except ValueError:
                target = location
            if not _same_host_no_downgrade(url, target):
                where = self.shorten(_redact_url(target)) if _parses(target) else repr(self.shorten(target))
                detail = (
                    f"The token service {self.shorten(_redact_url(realm))} redirected the token request to {where}: "
                    "credentials are not sent to another host or over a downgraded connection; nothing was sent there"
                )
                raise _Done(self.result(Verdict.OTHER, response, detail + "."))
            url = target  # the Location carries its own query
            response = self.send("GET", url, auth=auth, sent=sent, what="token", redirects=False)
        if response.status_code == 200:
            try:
                body = response.json()
            except (ValueError, UnicodeDecodeError):
                body = None
            token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
            if isinstance(token, str) and token:
                self.secrets.add(token)
                return f"Bearer {token}"
            raise _Done(self.result(Verdict.OTHER, response, f"The token service {_redact_url(realm)} gave no token."))
        stage = f"The token service {_redact_url(realm)}"
        if response.status_code == 401:
            codes, message = self.errors(response)
            if self.credentials:
                detail = f"{stage} rejected the credentials of {self.who} for {self.ref.name}"
            else:
                detail = f"{stage} refused an anonymous token for {self.ref.name}: the registry needs credentials"
            raise _Done(self.result(Verdict.UNAUTHORIZED, response, _sentence(detail, message), codes))
        if response.status_code == 403:
            codes, message = self.errors(response)
            detail = f"{stage} denied {self.who} access to {self.ref.name}"
            raise _Done(self.result(Verdict.FORBIDDEN, response, _sentence(detail, message), codes))
        raise _Done(self.classify(response, stage=f"{stage} answered"))

    # -- the answer ----------------------------------------------------------------------------

    def manifest_result(self, head: _Answer, url: str, authorization: str | None) -> ProbeResult:
        status = head.status_code
        ref = self.ref
        if 200 <= status < 300:
            digest = head.headers.get("Docker-Content-Digest") or None
            kind = head.headers.get("Content-Type", "")
            detail = f"{ref} exists on {self.host}" + (f" ({digest}, {kind})" if digest else "") + "."
            return self.result(Verdict.OK, head, detail, digest=digest)
        if status == 429 or status >= 500:
            return self.classify(head, stage=f"{self.host} answered the manifest request")
        # HEAD has no body, so the registry's error code needs the same request as a GET.
        codes, message = self.errors(self.send_extra("GET", url, authorization=authorization))
        if status == 401:
            challenge = next(iter(parse_www_authenticate(head.headers.get("WWW-Authenticate", ""))), None)
            why = f" ({challenge.error})" if challenge and challenge.error else ""
            if not self.credentials:
                detail = f"{self.host} requires credentials to pull {ref.name} and none were given{why}"
            elif challenge and challenge.error == "insufficient_scope":
                detail = (
                    f"{self.host} gave {self.who} no pull access to {ref.name}{why}: the repository does not "
                    "exist or this account may not read it (the registry does not say which)"
                )
            else:
                detail = f"{self.host} rejected the credentials of {self.who} for {ref.name}{why}"
            return self.result(Verdict.UNAUTHORIZED, head, _sentence(detail, message), codes)
        if status == 403:
            detail = f"{self.host} denied {self.who} pull access to {ref.name}"
            return self.result(Verdict.FORBIDDEN, head, _sentence(detail, message), codes)
        if status == 404:
            detail, codes, message = self.missing(authorization, codes, message)
            return self.result(Verdict.NOT_FOUND, head, _sentence(detail, message), codes)
        return self.classify(head, stage=f"{self.host} answered the manifest request", codes=codes, message=message)

    def missing(self, authorization: str | None, codes: list[str], message: str) -> tuple[str, list[str], str]:
        """Detail, codes and message for a 404 on the manifest: a missing tag or digest, or repository."""
        if "NAME_UNKNOWN" in codes:
            return f"repository {self.ref.repository} does not exist on {self.host}", codes, message
        what = f"manifest {self.ref.digest}" if self.ref.digest else f"tag {self.ref.tag}"
        plain = f"{what} does not exist in {self.ref.name}"
        if not codes:
            plain = f"{self.host} found no {what} in {self.ref.name} (404 without an error code)"
        if not self.prober.list_tags:
            return plain, codes, message
        # distribution answers MANIFEST_UNKNOWN for a missing repository too; its tag list tells
        # the two apart (NAME_UNKNOWN) and names the tags that do exist.
        url = f"{self.base}/v2/{self.ref.repository}/tags/list"
        response = self.send_extra("GET", url, params={"n": str(_TAGS_SHOWN)}, authorization=authorization)
        if response is None:
            return plain, codes, message
        list_codes, list_message = self.errors(response)
        if response.status_code == 404 and "NAME_UNKNOWN" in list_codes:
            return f"repository {self.ref.repository} does not exist on {self.host}", list_codes, list_message
        if response.status_code != 200:
            return plain, codes, message
        try:
            tags = response.json().get("tags") or []
        except (ValueError, UnicodeDecodeError, AttributeError):
            return plain, codes, message
        if not tags:
            return f"{plain}; the repository has no tags", codes, message
        shown = ", ".join(str(t) for t in tags[:_TAGS_SHOWN])
        more = ", …" if len(tags) > _TAGS_SHOWN or "next" in response.links else ""
        return f"{plain}; its tags include {shown}{more}", codes, message

    def classify(
        self,
        response: _Answer,
        *,
        stage: str,
        codes: Sequence[str] | None = None,
        message: str = "",
    ) -> ProbeResult:
        """A result for statuses whose meaning does not depend on the step: 401, 403, 429, 5xx, others."""
        status = response.status_code
        if codes is None:
            codes, message = self.errors(response)
        if status == 429:
            hints = [
                f"{name}: {response.headers[name]}"
                for name in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining")
                if name in response.headers
            ]
            detail = f"{stage} 429: rate limited" + (f" ({'; '.join(hints)})" if hints else "")
            return self.result(Verdict.RATE_LIMITED, response, _sentence(detail, message), codes)
        if status >= 500:
            return self.result(Verdict.SERVER_ERROR, response, _sentence(f"{stage} {status}", message), codes)
        if status == 401:
            return self.result(Verdict.UNAUTHORIZED, response, _sentence(f"{stage} 401", message), codes)
        if status == 403:
            return self.result(Verdict.FORBIDDEN, response, _sentence(f"{stage} 403", message), codes)
        return self.result(Verdict.OTHER, response, _sentence(f"{stage} {status}", message), codes)

    def result(
        self,
        verdict: Verdict,
        response: _Answer | None,
        detail: str,
        codes: Sequence[str] = (),
        *,
        digest: str | None = None,
    ) -> ProbeResult:
        return ProbeResult(
            verdict=verdict,
            status_code=response.status_code if response is not None else None,
            detail=detail,
            digest=digest,
            error_code=codes[0] if codes else None,
        )

    def finish(self, result: ProbeResult) -> ProbeResult:
        return dataclasses.replace(
            result, detail=self.scrub(result.detail), evidence=tuple(self.scrub(line) for line in self.evidence)
        )

    def scrub(self, text: str) -> str:
        return redact(text, self.secrets, credentials=[self.credentials] if self.credentials else ())

    def shorten(self, text: str) -> str:
        """A registry's text on one line, scrubbed, and only then cut (a cut secret could not be found)."""
        return _shorten(text, self.secrets, [self.credentials] if self.credentials else ())

    def errors(self, response: _Answer | None) -> tuple[list[str], str]:
        """The registry's error codes and message (:func:`_errors`), the message scrubbed and shortened."""
        codes, message = _errors(response)
        return codes, self.shorten(message)

    # -- transport -----------------------------------------------------------------------------

    def send(
        self,
        method: str,
        url: str,
        *,
        authorization: str | None = None,
        auth: AuthBase | None = None,
        params: Mapping[str, str] | None = None,
        sent: str | None = None,
        what: str = "",
        redirects: bool = True,
    ) -> _Answer:
        """Make one request and add a line of evidence; raises _Done for transport failures.

        Redirects that ``requests`` follows keep an Authorization header only on the same host and never
        from https to http (``Session.should_strip_auth``).
        """
        headers = {"User-Agent": self.prober.user_agent}
        if authorization:
            headers["Authorization"] = authorization
        if "/manifests/" in url:
            headers["Accept"] = MANIFEST_ACCEPT
        if sent is None:
            sent = " with a Bearer token" if authorization and authorization.startswith("Bearer ") else ""
            sent = sent or (f" as {self.who}" if authorization else "")
        shown = _redact_url(url + ("?" + urllib.parse.urlencode(params) if params else ""))
        try:
            response = self.prober.session.request(
                method,
                url,
                params=params,
                headers=headers,
                auth=auth,
                timeout=self.prober.timeout,
                verify=self.prober.verify,
                allow_redirects=redirects,
                stream=True,  # bodies are read only as far as _BODY_LIMIT
            )
        except requests.exceptions.RequestException as exc:
            self.note(f"{method} {shown}{sent} → {_transport_reason(exc)}")
            raise _Done(self.transport_failure(exc, url, what)) from None
        except RuntimeError:
            # Following a redirect, requests drains the redirect's body and, when decoding it fails, reads it again
            # undecoded (sessions.py, resolve_redirects), which urllib3 2 refuses once it has decoded part of it.
            self.note(f"{method} {shown}{sent} → a redirect whose body could not be read")
            host = urllib.parse.urlsplit(url).netloc
            detail = _sentence(f"{host} answered with a redirect whose body could not be read", "")
            raise _Done(self.result(Verdict.OTHER, None, detail)) from None
        except ValueError:
            # requests parses a redirect's Location even when it does not follow it: "http://[" raises.
            self.note(f"{method} {shown}{sent} → a redirect to a URL that does not parse")
            host = urllib.parse.urlsplit(url).netloc
            target = "the token service at " + host if what == "token" else host
            detail = _sentence(f"{target} redirected to a URL that does not parse", "")
            raise _Done(self.result(Verdict.OTHER, None, detail)) from None
        with response:
            try:
                body = response.raw.read(_BODY_LIMIT, decode_content=True) if method != "HEAD" else b""
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError):
                body = b""  # a broken body (cut short, badly encoded) only costs us the error message
        answer = _Answer(response.status_code, response.reason or "", response.headers, body or b"", response.links)
        # A redirect can be a blob store or an SSO login page: worth showing where we ended up.
        moved = f" (redirected to {_redact_url(response.url)})" if response.history else ""
        self.note(f"{method} {shown}{sent} → {self.summary(answer, what)}{moved}")
        return answer

    def send_extra(
        self, method: str, url: str, *, authorization: str | None, params: Mapping[str, str] | None = None
    ) -> _Answer | None:
        """A request that only adds detail: its failure must not replace the verdict already reached."""
        try:
            return self.send(method, url, authorization=authorization, params=params)
        except _Done:
            return None

    def transport_failure(self, exc: requests.exceptions.RequestException, url: str, what: str) -> ProbeResult:
        host = urllib.parse.urlsplit(url).netloc
        target = "the token service at " + host if what == "token" else host
        reason = _transport_reason(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return self.result(Verdict.TLS, None, f"TLS with {target} failed: {reason}.")
        if isinstance(exc, requests.exceptions.Timeout):
            return self.result(Verdict.UNREACHABLE, None, f"{target} did not answer in time: {reason}.")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return self.result(Verdict.UNREACHABLE, None, f"Could not reach {target}: {reason}.")
        return self.result(Verdict.OTHER, None, f"Request to {target} failed: {reason}.")

    def summary(self, answer: _Answer, what: str) -> str:
        status = answer.status_code
        if status == 401 and answer.headers.get("WWW-Authenticate"):
            return f"401 {self.shorten(answer.headers['WWW-Authenticate'])}"
        if 200 <= status < 300 and "Docker-Content-Digest" in answer.headers:
            return f"{status} {answer.headers['Docker-Content-Digest']}"
        if status == 200 and what == "token":
            return "200 token issued"
        codes, _ = _errors(answer)
        return f"{status} {' '.join(codes)}" if codes else f"{status} {answer.reason}".rstrip()

    def note(self, line: str) -> None:
        line = self.scrub(line)
        self.evidence.append(line)
        logger.debug("registry probe: %s", line)


def _parses(url: str) -> bool:
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 - raises for a bad port or bracket
    except ValueError:
        return False
    return True


def _hostname(host: str) -> str:
    """The lower-case host name of a ``host[:port]`` (brackets of an IPv6 literal removed)."""
    try:
        name = urllib.parse.urlsplit(f"//{host}").hostname
    except ValueError:
        name = None
    return (name or host).lower().rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def registrable_domain(host: str) -> str | None:
    """The domain a host was registered under (``auth.example.co.uk`` → ``example.co.uk``), or None for an IP
    address, a single label, or a host under a shared suffix (whose siblings belong to other tenants).
    An approximation of the Public Suffix List: the last two labels, three under a two-letter country
    code's ``co``/``com``/``org``/... .
    """
    host = host.lower().rstrip(".")
    labels = host.split(".")
    if _is_ip(host) or len(labels) < 2:
        return None
    if any(host == suffix or host.endswith("." + suffix) for suffix in SHARED_SUFFIXES):
        return None
    size = 3 if len(labels[-1]) == 2 and labels[-2] in _COUNTRY_SECOND_LEVEL else 2
    if len(labels) < size:
        return None
    return ".".join(labels[-size:])


def _same_registrable_domain(a: str, b: str) -> bool:
    domain = registrable_domain(a)
    return domain is not None and domain == registrable_domain(b)


def _same_host_no_downgrade(source: str, target: str) -> bool:
    """May a request with credentials to ``source`` follow a redirect to ``target``?"""
    try:
        old, new = urllib.parse.urlsplit(source), urllib.parse.urlsplit(target)
        old_port = old.port or (443 if old.scheme == "https" else 80)
        new_port = new.port or (443 if new.scheme == "https" else 80)
    except ValueError:
        return False
    if new.scheme not in ("http", "https") or (old.scheme == "https" and new.scheme == "http"):
        return False
    if (old.hostname or "") != (new.hostname or ""):
        return False
    return old_port == new_port or (old.scheme, new.scheme) == ("http", "https")


def _errors(response: _Answer | None) -> tuple[list[str], str]:
    """The registry's error codes and first message from a distribution-style ``{"errors": [...]}`` body; the
    message whole, for the caller to scrub before it is shortened."""
    if response is None:
        return [], ""
    try:
        body = response.json() if response.content else None
    except ValueError:  # not JSON (UnicodeDecodeError is a ValueError)
        return [], ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        # Token services often answer {"details": "..."} or {"error": "..."}.
        if isinstance(body, dict):
            text = body.get("details") or body.get("error_description") or body.get("error") or body.get("message")
            return [], str(text) if text else ""
        return [], ""
    codes = [str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code")]
    messages = [str(e.get("message")) for e in errors if isinstance(e, dict) and e.get("message")]
    return codes, messages[0] if messages else ""


def _sentence(detail: str, message: str) -> str:
    detail = detail[0].upper() + detail[1:] if detail else detail
    return f"{detail} (registry says: {message})." if message else f"{detail}."


def _shorten(text: str, secrets: Iterable[str] = (), credentials: Iterable[Credentials] = ()) -> str:
    return redact(" ".join(text.split()), secrets, credentials=credentials, limit=_TEXT_LIMIT)


_SECRET_PARAM = re.compile(r"token|password|passwd|secret|signature|sig|credential|key|code", re.IGNORECASE)


def _redact_url(url: str) -> str:
    """The URL without userinfo and with secret-looking query values (signed redirects) blanked."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urllib.parse.urlencode(
        [
            (name, "<redacted>" if _SECRET_PARAM.search(name) else value)
            for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe=":/<>",
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_REASONS = (
    re.compile(r"\[SSL: [A-Z0-9_]+\][^'\")(]*"),
    re.compile(r"certificate verify failed:[^'\")(]*"),
    re.compile(r"hostname '[^']*' doesn't match[^'\")(]*"),
    re.compile(r"\[Errno -?\d+\] [^'\")(]*"),
    re.compile(r"(?:Read|Connect) timed out"),
    re.compile(r"timed out"),
)


def _transport_reason(exc: BaseException) -> str:
    """A short cause for a transport failure, without urllib3's pool and object noise."""
    text = str(exc)
    for pattern in _REASONS:
        match = pattern.search(text)
        if match:
            return match.group().strip().rstrip(":")
    return type(exc).__name__
