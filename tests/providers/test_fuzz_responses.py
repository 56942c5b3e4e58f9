"""Providers survive whatever GitHub, Google, Azure or AWS answer, and whatever a source Secret holds.

Answers are generated and served without a network, through each provider's real client code: GitHub's API,
Google's token endpoints, Entra ID (azure-identity over azure-core's requests transport) and ACR's token
exchange through requests and urllib3 (tests/canned_http.py), AWS through botocore's own
response parsing (a `before-send` hook answers in place of the endpoint). The property: mint() returns a
Token whose expiry can be written, or raises ProviderError with a sentence that shows no secret; never
another exception.
"""

from __future__ import annotations

import base64
import datetime
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any
from xml.sax.saxutils import escape

import boto3.session
import botocore.awsrequest
import botocore.session
import google.auth.transport.requests
from botocore.config import Config
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from regcred.fanout import format_time
from regcred.models import AcrSpec, EcrSpec, GarSpec, GhcrAppSpec, GhcrSpec, SecretRef
from regcred.providers.acr import AcrProvider
from regcred.providers.base import Provider, ProviderError, SourceSecretNotFound, Token
from regcred.providers.ecr import EcrProvider, default_client_factory
from regcred.providers.gar import GarProvider
from regcred.providers.ghcr import GhcrProvider
from tests.canned_http import HEADER_TEXT, STATUSES, Answer, headers, session
from tests.hostile import BYTES, HOSTILE_TEXT, JSON_VALUES, TIMESTAMPS, json_text
from tests.providers.azure_server import unsigned_jwt
from tests.providers.google_server import new_rsa_key

REF = SecretRef(namespace="regcred-system", name="source")
CANARY = "c4n4ry-pr0vider"  # in every credential handed to a provider: it must show in no message
PAT = f"ghp_{CANARY}"
PEM, _ = new_rsa_key()
BOUND_SECONDS = 5.0
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])


def reader(data: Mapping[str, bytes] | None) -> Callable[[str, str], Mapping[str, bytes]]:
    def read_secret(namespace: str, name: str) -> Mapping[str, bytes]:
        if data is None:
            raise SourceSecretNotFound(f"Secret {namespace}/{name} does not exist.")
        return data

    return read_secret


def check_mint(provider: Provider, read_secret: Callable[[str, str], Mapping[str, bytes]]) -> None:
    started = time.monotonic()
    token: Token | None = None
    refused: ProviderError | None = None
    try:
        token = provider.mint(read_secret)
    except ProviderError as error:
        refused = error
    assert time.monotonic() - started < BOUND_SECONDS
    event(refused.reason if refused is not None else "a token")
    if refused is not None:
        message = str(refused)
        assert message.strip() and message.rstrip().endswith((".", ")")), message[:300]
        assert CANARY not in message, message[:300]
        assert refused.reason and refused.reason.isalnum(), refused.reason
        return
    assert isinstance(token, Token)
    assert isinstance(token.username, str) and isinstance(token.password, str)
    if token.expires_at is not None:
        format_time(token.expires_at)  # what status and the Secret's annotation will show


def body(fields: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """A JSON object with some of an API's fields, or any other body."""
    return st.one_of(fields.map(lambda value: json.dumps(value).encode()), BYTES,
                     json_text().map(lambda text: text.encode("utf-8", "surrogatepass")))


# -- GitHub -----------------------------------------------------------------------------------------------------

GITHUB_TIMES = st.one_of(
    TIMESTAMPS,
    st.tuples(st.datetimes(), st.sampled_from(["UTC", "+0100", "-1400", "+2359", "Z", ""])).map(
        lambda parts: f"{parts[0]:%Y-%m-%d %H:%M:%S} {parts[1]}"),
    st.sampled_from(["0001-01-01 00:00:00 +0100", "9999-12-31 23:59:59 -0100", "2026-12-31 23:59:59 UTC"]),
)
GITHUB_HEADERS = headers({
    "GitHub-Authentication-Token-Expiration": GITHUB_TIMES,
    "X-OAuth-Scopes": st.one_of(HEADER_TEXT, st.just("repo, read:packages")),
    "Retry-After": st.one_of(HEADER_TEXT, st.sampled_from(["²", "9" * 30, "60"])),
    "X-RateLimit-Remaining": st.sampled_from(["0", "1", "x"]),
    "X-RateLimit-Reset": st.one_of(HEADER_TEXT, st.sampled_from(["²", "9" * 30, "99999999999", "1767225600"])),
})
GITHUB_BODIES = body(st.fixed_dictionaries({}, optional={
    "token": st.one_of(JSON_VALUES, st.just("ghs_installation")), "expires_at": st.one_of(GITHUB_TIMES, JSON_VALUES),
    "login": JSON_VALUES, "message": st.one_of(JSON_VALUES, st.just(f"bad credentials {PAT}")),
}))
GITHUB_STATUSES = st.one_of(st.sampled_from([200, 201, 403, 429]), STATUSES)  # the answers with most to read
GITHUB_ANSWERS = st.lists(st.tuples(GITHUB_STATUSES, GITHUB_HEADERS, GITHUB_BODIES), min_size=1, max_size=2)


# The crashes this test found, kept as examples (each was an exception out of mint()).
@example(answers=[(429, [("Retry-After", "²")], b"{}")], app=False, registry="ghcr.io", secret="intact")
@example(answers=[(403, [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "9" * 5000)], b"{}")], app=False,
         registry="ghcr.io", secret="intact")
@example(answers=[(200, [("GitHub-Authentication-Token-Expiration", "0001-01-01 00:00:00 +0100")], b"{}")],
         app=False, registry="ghcr.io", secret="intact")
@example(answers=[(200, [], b"[" * 100_000)], app=False, registry="ghcr.io", secret="intact")
@example(answers=[(301, [("Location", "http://[")], b"{}")], app=False, registry="ghcr.io", secret="intact")
@settings(FUZZ, max_examples=600)
@given(answers=GITHUB_ANSWERS, app=st.booleans(), registry=st.sampled_from(["ghcr.io", "containers.ghe.example"]),
       secret=st.one_of(st.just("intact"), st.none(), st.dictionaries(
           st.sampled_from(["token", "private-key.pem"]), BYTES, max_size=2)))
def test_github_answers_and_source_secrets(answers: list[Answer], app: bool, registry: str, secret: Any) -> None:
    client, _ = session(answers)
    if app:
        spec = GhcrSpec(registry=registry, app=GhcrAppSpec("12", "34", REF))
        data = {"private-key.pem": PEM.encode()}
    else:
        spec = GhcrSpec(registry=registry, token_secret_ref=REF)
        data = {"token": PAT.encode()}
    check_mint(GhcrProvider(spec, session=client), reader(data if secret == "intact" else secret))


# -- Google -------------------------------------------------------------------------------------------------------

GOOGLE_BODIES = body(st.fixed_dictionaries({}, optional={
    "access_token": st.one_of(JSON_VALUES, st.just("ya29.token")),
    "accessToken": st.one_of(JSON_VALUES, st.just("ya29")),
    "expires_in": st.one_of(JSON_VALUES, st.sampled_from([3600, "3600", 10**30, -5, "²", 1e300])),
    "expireTime": st.one_of(TIMESTAMPS, JSON_VALUES), "token_type": JSON_VALUES,
    "error": st.one_of(JSON_VALUES, st.just("invalid_grant"), st.just({"status": "PERMISSION_DENIED"})),
    "error_description": st.one_of(JSON_VALUES, st.just(f"key {CANARY} rejected")),
}))
EXPIRES_IN = st.one_of(st.sampled_from([3600, "3600", 10**30, -5, 0, "²", 1e300, None]), JSON_VALUES)
# Answers in the shape Google gives, with odd values: these reach the parsing of a token and its expiry.
GOOGLE_PLAUSIBLE = st.tuples(st.just(200), st.just([("Content-Type", "application/json")]), st.fixed_dictionaries({
    "access_token": st.one_of(st.just("ya29.token"), JSON_VALUES), "accessToken": st.just("ya29.impersonated"),
    "expires_in": EXPIRES_IN, "expireTime": TIMESTAMPS, "token_type": st.just("Bearer"),
}).map(lambda value: json.dumps(value).encode()))
GOOGLE_ANSWERS = st.lists(st.one_of(GOOGLE_PLAUSIBLE, st.tuples(STATUSES, headers({}), GOOGLE_BODIES)),
                          min_size=1, max_size=3)
GOOGLE_KEYS = st.one_of(
    st.just({}),  # the intact key (twice: most examples should get as far as Google's answer)
    st.just({}),
    st.fixed_dictionaries({}, optional={
        "type": st.one_of(st.just("service_account"), JSON_VALUES), "client_email": JSON_VALUES,
        "private_key": st.one_of(HOSTILE_TEXT, st.just(PEM.replace("\n", "\\n")), st.just(PEM[:200]), JSON_VALUES),
        "token_uri": st.one_of(HOSTILE_TEXT, st.just("http://[")),
        "universe_domain": JSON_VALUES, "private_key_id": JSON_VALUES,
    }),
)


def google_key(overrides: dict[str, Any]) -> bytes:
    key = {"type": "service_account", "project_id": "p", "private_key_id": f"{CANARY}-id", "private_key": PEM,
           "client_email": "puller@p.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token"}
    return json.dumps({**key, **overrides}).encode()


@example(answers=[(200, [], b'{"access_token": "t", "expires_in": []}')], impersonate=False, key={}, raw=None)
@example(answers=[(200, [], b'{"access_token": "t", "expires_in": 1000000000000000000000000000000}')],
         impersonate=False, key={}, raw=None)
@example(answers=[(200, [], b'{"access_token": "t", "expires_in": 3600}'), (200, [], b'{"accessToken": "t", '
                                                                               b'"expireTime": true}')],
         impersonate=True, key={}, raw=None)
@example(answers=[(200, [], b"\x80")], impersonate=False, key={}, raw=None)
@example(answers=[(200, [], b'"a string"')], impersonate=False, key={}, raw=None)
@example(answers=[(301, [("Location", "http://[")], b"")], impersonate=False, key={}, raw=None)
@example(answers=[(200, [], b"{}")], impersonate=False, key={"token_uri": "http://["}, raw=None)
@FUZZ
@given(answers=GOOGLE_ANSWERS, impersonate=st.booleans(), key=GOOGLE_KEYS,
       raw=st.one_of(st.none(), st.none(), BYTES))
def test_google_answers_and_source_secrets(answers: list[Answer], impersonate: bool, key: dict[str, Any],
                                           raw: bytes | None) -> None:
    client, _ = session(answers)
    spec = GarSpec(registries=("europe-docker.pkg.dev",), credentials_secret_ref=REF,
                   impersonate_service_account="reader@p.iam.gserviceaccount.com" if impersonate else None)
    provider = GarProvider(spec, request=google.auth.transport.requests.Request(session=client))
    check_mint(provider, reader({"key.json": raw if raw is not None else google_key(key)}))


# A workload identity federation configuration in the source Secret: it names where the subject token comes from.
SOURCES = ("https://idp.example.com/", "azure", "aws")  # URLs only: no file of this machine is ever read
AUDIENCE = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x"
IMPERSONATION = ("https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/a@p.iam.gserviceaccount.com"
                 ":generateAccessToken")
# Configurations the policy admits, so that the subject token's and Google's answers are read.
ADMITTED = st.fixed_dictionaries({
    "type": st.just("external_account"), "audience": st.just(AUDIENCE),
    "subject_token_type": st.just("urn:ietf:params:oauth:token-type:jwt"),
    "token_url": st.just("https://sts.googleapis.com/v1/token"),
    "credential_source": st.sampled_from([
        {"url": "https://idp.example.com/token", "format": {"type": "text"}},
        {"url": "https://idp.example.com/token", "format": {"type": "json", "subject_token_field_name": "t"}},
        {"url": "http://169.254.169.254/metadata/identity/oauth2/token", "headers": {"Metadata": "True"},
         "format": {"type": "json", "subject_token_field_name": "access_token"}},
    ]),
}, optional={"service_account_impersonation_url": st.just(IMPERSONATION)})
HOSTILE_FEDERATION = st.fixed_dictionaries({
    "type": st.just("external_account"),
    "audience": st.one_of(st.just(AUDIENCE), JSON_VALUES),
    "subject_token_type": st.one_of(st.sampled_from(["urn:ietf:params:oauth:token-type:jwt",
                                                     "urn:ietf:params:aws:token-type:aws4_request"]), JSON_VALUES),
    "token_url": st.one_of(st.just("https://sts.googleapis.com/v1/token"), HOSTILE_TEXT, JSON_VALUES),
    "credential_source": st.one_of(JSON_VALUES, st.fixed_dictionaries({}, optional={
        "url": st.one_of(st.sampled_from(["https://idp.example.com/token",
                                          "http://169.254.169.254/metadata/identity/oauth2/token",
                                          "http://169.254.169.254/latest/meta-data/iam/security-credentials"]),
                         HOSTILE_TEXT, JSON_VALUES),
        "headers": st.one_of(st.just({"Metadata": "True"}), JSON_VALUES),
        "format": st.one_of(st.sampled_from([{"type": "text"}, {"type": "json", "subject_token_field_name": "t"}]),
                            JSON_VALUES),
        "environment_id": st.one_of(st.just("aws1"), JSON_VALUES),
        "region_url": st.one_of(st.just("http://169.254.169.254/latest/meta-data/placement/availability-zone"),
                                HOSTILE_TEXT),
        "regional_cred_verification_url": st.just(
            "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"),
        "file": st.one_of(st.just("/nonexistent/token"), HOSTILE_TEXT, JSON_VALUES),
    })),
}, optional={"service_account_impersonation_url": st.one_of(st.just(IMPERSONATION), HOSTILE_TEXT, JSON_VALUES)})
FEDERATION = st.one_of(ADMITTED, HOSTILE_FEDERATION)


@FUZZ
@given(answers=GOOGLE_ANSWERS, configuration=FEDERATION)
def test_google_federation_configurations(answers: list[Answer], configuration: dict[str, Any]) -> None:
    client, canned = session(answers)
    spec = GarSpec(registries=("europe-docker.pkg.dev",), credentials_secret_ref=REF)
    provider = GarProvider(spec, request=google.auth.transport.requests.Request(session=client),
                           credential_sources=SOURCES)
    check_mint(provider, reader({"key.json": json.dumps(configuration).encode()}))
    hosts = {request.url.split("/")[2] for request in canned.sent if request.url}
    assert hosts <= {"idp.example.com", "169.254.169.254", "sts.googleapis.com", "iamcredentials.googleapis.com",
                     "sts.eu-west-1.amazonaws.com"}, hosts


# -- AWS ------------------------------------------------------------------------------------------------------------

CORE = botocore.session.get_session()  # one model loader for every client: a client costs milliseconds
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=1)


def aws_session(**kwargs: Any) -> boto3.session.Session:
    return boto3.session.Session(botocore_session=CORE, **kwargs)


class Raw:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def stream(self, **_: Any) -> Any:
        yield self.content


def aws_factory(answers: dict[str, Answer]) -> Any:
    """A client_factory whose clients answer each operation from `answers` (by service), not from AWS."""

    def client_factory(session: boto3.session.Session, name: str, **options: Any) -> Any:
        client = default_client_factory(session, name, **options)  # type: ignore[arg-type]

        def answer(request: Any, **_: Any) -> botocore.awsrequest.AWSResponse:
            status, fields, content = answers[name]
            return botocore.awsrequest.AWSResponse(request.url, status, dict(fields), Raw(content))

        client.meta.events.register(f"before-send.{name}", answer)
        return client

    return client_factory


EPOCHS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**20), 10**20), TIMESTAMPS,
                   JSON_VALUES, st.just(1767225600))
AUTHORIZATION = st.one_of(
    st.just(base64.b64encode(f"AWS:{CANARY}".encode()).decode()),
    BYTES.map(lambda raw: base64.b64encode(raw).decode()), HOSTILE_TEXT, JSON_VALUES,
    st.sampled_from([base64.b64encode(b"AWS:").decode(), base64.b64encode(b"root:pw").decode(), "=" * 8]),
)
ECR_PLAUSIBLE = st.fixed_dictionaries({"authorizationData": st.lists(st.fixed_dictionaries({
    "authorizationToken": AUTHORIZATION, "expiresAt": EPOCHS,
    "proxyEndpoint": st.sampled_from(["https://1.dkr.ecr.eu-west-1.amazonaws.com", "http://2.dkr.ecr.x/", ""]),
}), min_size=1, max_size=2)}).map(lambda value: json.dumps(value).encode())
ECR_BODIES = ECR_PLAUSIBLE | body(st.fixed_dictionaries({"authorizationData": st.one_of(JSON_VALUES, st.lists(
    st.fixed_dictionaries({}, optional={
        "authorizationToken": AUTHORIZATION, "expiresAt": EPOCHS,
        "proxyEndpoint": st.one_of(st.just("https://1.dkr.ecr.eu-west-1.amazonaws.com"), HOSTILE_TEXT, JSON_VALUES),
    }), max_size=3))}, optional={"__type": st.sampled_from(["AccessDeniedException", "ThrottlingException", "x#y"]),
                                 "message": st.one_of(JSON_VALUES, st.just(f"key {CANARY} denied"))}))
STS_FIELDS = st.fixed_dictionaries({}, optional={
    name: st.one_of(st.just(f"{CANARY}-{name}"), HOSTILE_TEXT)
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
})


def sts_xml(fields: dict[str, str]) -> bytes:
    inner = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    return (f'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
            f"<Credentials>{inner}</Credentials></AssumeRoleResult></AssumeRoleResponse>").encode("utf-8", "replace")


STS_PLAUSIBLE = st.fixed_dictionaries({name: st.just(f"{CANARY}-{name}")
                                      for name in ("AccessKeyId", "SecretAccessKey", "SessionToken")},
                                      optional={"Expiration": TIMESTAMPS}).map(sts_xml)
STS_DENIED = b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>"
STS_BODIES = st.one_of(STS_PLAUSIBLE, STS_FIELDS.map(sts_xml), BYTES, st.just(STS_DENIED))
AWS_KEYS = st.one_of(st.just("intact"), st.none(), st.dictionaries(
    st.sampled_from(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]), BYTES, max_size=3))


@example(ecr=(200, [], b"{}"), sts=(200, [], b"\x01"), assume_role=True, keys="intact")
@example(ecr=(200, [], b"{}"), sts=(200, [], sts_xml({"AccessKeyId": "a", "Expiration": "http://["})),
         assume_role=True, keys="intact")
@example(ecr=(200, [], b"{}"), sts=(200, [], sts_xml({"SecretAccessKey": "s"})), assume_role=True, keys="intact")
@example(ecr=(400, [], b'{"__type": "ThrottlingException", "message": ["x"]}'), sts=(200, [], b""),
         assume_role=False, keys="intact")
@example(ecr=(200, [], b'{"authorizationData": true}'), sts=(200, [], b""), assume_role=False, keys="intact")
@example(ecr=(200, [], b"[" * 60_000), sts=(200, [], b""), assume_role=False, keys="intact")
@example(ecr=(200, [], json.dumps({"authorizationData": [{"authorizationToken": "\u00e9", "expiresAt": 1e9,
                                                           "proxyEndpoint": "https://x"}]}).encode()),
         sts=(200, [], b""), assume_role=False, keys="intact")
@FUZZ
@given(ecr=st.tuples(st.one_of(st.just(200), STATUSES), headers({}), ECR_BODIES),
       sts=st.tuples(st.one_of(st.just(200), STATUSES), headers({}), STS_BODIES),
       assume_role=st.booleans(), keys=AWS_KEYS)
def test_aws_answers_and_source_secrets(ecr: Answer, sts: Answer, assume_role: bool, keys: Any) -> None:
    spec = EcrSpec(region="eu-west-1", credentials_secret_ref=REF,
                   assume_role_arn="arn:aws:iam::123456789012:role/puller" if assume_role else None)
    provider = EcrProvider(spec, session_factory=aws_session, client_factory=aws_factory({"ecr": ecr, "sts": sts}),
                           config=NO_RETRIES)
    data = {"AWS_ACCESS_KEY_ID": b"AKIAFUZZ", "AWS_SECRET_ACCESS_KEY": CANARY.encode()}
    check_mint(provider, reader(data if keys == "intact" else keys))


def test_an_ordinary_ecr_answer_mints_a_token() -> None:
    """A sanity check of the seam: an ordinary ECR answer mints a token."""
    expires = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    content = json.dumps({"authorizationData": [{
        "authorizationToken": base64.b64encode(b"AWS:pw").decode(), "expiresAt": expires.timestamp(),
        "proxyEndpoint": "https://1.dkr.ecr.eu-west-1.amazonaws.com"}]}).encode()
    provider = EcrProvider(EcrSpec(region="eu-west-1", credentials_secret_ref=REF),
                           session_factory=aws_session, client_factory=aws_factory({"ecr": (200, [], content)}),
                           config=NO_RETRIES)
    token = provider.mint(reader({"AWS_ACCESS_KEY_ID": b"AKIA", "AWS_SECRET_ACCESS_KEY": b"s"}))
    assert (token.hosts, token.password, token.expires_at) == (("1.dkr.ecr.eu-west-1.amazonaws.com",), "pw", expires)


# -- Azure ----------------------------------------------------------------------------------------------------

ENTRA_OK: Answer = (200, [("Content-Type", "application/json")],
                    json.dumps({"access_token": f"aad-{CANARY}", "token_type": "Bearer", "expires_in": 3599}).encode())
ENTRA_BODIES = body(st.fixed_dictionaries({}, optional={
    "access_token": st.one_of(JSON_VALUES, st.just(f"aad-{CANARY}")), "expires_in": JSON_VALUES,
    "token_type": JSON_VALUES, "error": JSON_VALUES,
    "error_description": st.one_of(JSON_VALUES, st.just(f"AADSTS70021: no match for {CANARY}")),
}))
EXP = st.one_of(JSON_VALUES, st.integers(-(2**70), 2**70), st.floats(),
                st.just(int(time.time()) + 3 * 3600))
REFRESH_TOKENS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({}, optional={"exp": EXP, "iat": JSON_VALUES}).map(unsigned_jwt),
    st.sampled_from(["a.b.c", "a.!!.c", "..", "x" * 70_000]),
)
ACR_BODIES = body(st.fixed_dictionaries({}, optional={
    "refresh_token": REFRESH_TOKENS,
    "errors": st.one_of(JSON_VALUES, st.just([{"code": "UNAUTHORIZED", "message": CANARY}])),
}))


def acr_provider(client: Any, tmp_dir: str) -> AcrProvider:
    token_file = f"{tmp_dir}/federated-token"
    with open(token_file, "w", encoding="utf-8") as file:
        file.write(f"federated-{CANARY}")
    return AcrProvider(AcrSpec(registry="myregistry.azurecr.io"), authority_host="https://login.example",
                       exchange_url="https://myregistry.azurecr.io", session=client,
                       environ={"AZURE_TENANT_ID": "t1", "AZURE_CLIENT_ID": "c1",
                                "AZURE_FEDERATED_TOKEN_FILE": token_file})


@example(entra=ENTRA_OK, exchange=(200, [], b'{"refresh_token": "a.eyJleHAiOiAxZTMwOH0.c"}'))
@example(entra=ENTRA_OK, exchange=(200, [], b"[" * 100_000))
@example(entra=(200, [], b'{"access_token": "t", "expires_in": []}'), exchange=(200, [], b"{}"))
@example(entra=(200, [], b"[" * 100_000), exchange=(200, [], b"{}"))
@example(entra=(400, [], json.dumps({"error": "invalid_client",
                                      "error_description": f"AADSTS7000215: {CANARY}"}).encode()),
         exchange=(200, [], b"{}"))
@FUZZ
@given(entra=st.one_of(st.just(ENTRA_OK), st.tuples(STATUSES, headers({}), ENTRA_BODIES)),
       exchange=st.tuples(st.one_of(st.just(200), STATUSES), headers({}), ACR_BODIES))
def test_azure_answers(entra: Answer, exchange: Answer) -> None:
    """(The crash this found, kept as an example: JSON nested too deep in Entra ID's answer.)"""
    # Workload identity: one token request (no discovery), then the exchange.
    client, _ = session([entra, exchange])
    with tempfile.TemporaryDirectory() as tmp_dir:
        check_mint(acr_provider(client, tmp_dir), reader(None))


def test_an_ordinary_azure_answer_mints_a_token() -> None:
    """A sanity check of the seam: ordinary Entra ID and ACR answers mint a token."""
    exp = int(time.time()) + 3 * 3600
    refresh = unsigned_jwt({"exp": exp})
    client, canned = session([ENTRA_OK, (200, [], json.dumps({"refresh_token": refresh}).encode())])
    with tempfile.TemporaryDirectory() as tmp_dir:
        token = acr_provider(client, tmp_dir).mint(reader(None))
    assert (token.password, int(token.expires_at.timestamp()) if token.expires_at else None) == (refresh, exp)
    assert [request.url for request in canned.sent] == [
        "https://login.example/t1/oauth2/v2.0/token", "https://myregistry.azurecr.io/oauth2/exchange"]
