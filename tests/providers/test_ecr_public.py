"""The ecr provider with ``public: true``: ECR Public's GetAuthorizationToken, from the same AWS identities.

moto does not implement ECR Public: its one call is served by tests/providers/ecr_public_server.py, to the
real boto3 client. STS (AssumeRole, AssumeRoleWithWebIdentity) is moto's, as in test_ecr.py.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from moto.sts.models import sts_backends

from regcred.config import Settings
from regcred.models import EcrSpec, parse_credential
from regcred.providers import ProviderError, provider_for
from regcred.providers.ecr import EcrProvider
from tests.providers.ecr_public_server import TARGET, FakeEcrPublic, Fault, serve
from tests.providers.test_ecr import KEYS_REF, KEYS_SECRET, NO_SECRETS, SECRET_ACCESS, SECRET_KEY_ID, SECRET_SESSION

UTC = datetime.UTC
PUBLIC = EcrSpec(region="us-east-1", public=True)
FAST = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=5)


@pytest.fixture(autouse=True)
def no_ambient_aws(clean_aws_env: None) -> None:
    """Every test here starts from an empty AWS credential chain (see tests/conftest.py)."""


@pytest.fixture
def ecr_public() -> Iterator[FakeEcrPublic]:
    with serve(FakeEcrPublic()) as server:
        yield server


def provider(ecr: FakeEcrPublic, spec: EcrSpec = PUBLIC, *, sts: str | None = None, **kwargs: Any) -> EcrProvider:
    # The private ECR endpoint leads nowhere: a public credential must never call it.
    return EcrProvider(spec, ecr_endpoint_url="http://127.0.0.1:9", sts_endpoint_url=sts,
                       ecr_public_endpoint_url=ecr.url, **kwargs)


def test_static_keys_mint_a_12_hour_token_for_public_ecr_aws(ecr_public: FakeEcrPublic) -> None:
    spec = EcrSpec(region="us-east-1", credentials_secret_ref=KEYS_REF, public=True)

    token = provider(ecr_public, spec).mint(KEYS_SECRET)

    assert token.hosts == ("public.ecr.aws",)
    assert token.username == "AWS"
    assert token.password == ecr_public.issued[-1]
    assert token.expires_at == ecr_public.expires_at
    assert token.expires_at is not None and token.expires_at.tzinfo == UTC
    (call,) = ecr_public.requests
    assert (call.target, call.service, call.region) == (TARGET, "ecr-public", "us-east-1")
    assert (call.access_key_id, call.session_token) == (SECRET_KEY_ID, SECRET_SESSION)


def test_an_assumed_role_mints_with_the_roles_keys(ecr_public: FakeEcrPublic, moto_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAAMBIENTTESTING01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient-testing-secret")
    role_arn = "arn:aws:iam::111111111111:role/ecr-public-pull"

    token = provider(ecr_public, EcrSpec(region="us-east-1", assume_role_arn=role_arn, public=True),
                     sts=moto_url).mint(NO_SECRETS)

    assumed = sts_backends["111111111111"]["aws"].assumed_roles[-1]
    assert (assumed.role_arn, assumed.session_name) == (role_arn, "regcred-operator")
    (call,) = ecr_public.requests
    assert (call.access_key_id, call.session_token) == (assumed.access_key_id, assumed.session_token)
    assert token.hosts == ("public.ecr.aws",)


def test_irsa_web_identity_from_the_ambient_chain(ecr_public: FakeEcrPublic, moto_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """IRSA sets AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE; boto3 exchanges the token with STS."""
    role_arn = "arn:aws:iam::222222222222:role/irsa-ecr-public"
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cmVnY3JlZCJ9.c2ln")
    monkeypatch.setenv("AWS_ROLE_ARN", role_arn)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)  # boto3's own STS call for the web identity

    token = provider(ecr_public).mint(NO_SECRETS)

    assumed = sts_backends["222222222222"]["aws"].assumed_roles[-1]
    assert assumed.role_arn == role_arn
    assert ecr_public.requests[-1].access_key_id == assumed.access_key_id
    assert token.password == ecr_public.issued[-1]


def test_a_parsed_credential_reaches_ecr_public_through_the_settings(ecr_public: FakeEcrPublic) -> None:
    spec = parse_credential("public", {
        "secretName": "ecr-public", "namespaces": {"names": ["web"]},
        "provider": {"ecr": {"public": True, "credentialsSecretRef": {"namespace": KEYS_REF.namespace,
                                                                    "name": KEYS_REF.name}}}})
    settings = Settings(ecr_endpoint_url="http://127.0.0.1:9", ecr_public_endpoint_url=ecr_public.url)

    token = provider_for(spec.provider, settings).mint(KEYS_SECRET)

    assert token.hosts == ("public.ecr.aws",)
    assert ecr_public.requests[-1].region == "us-east-1"


# AWS echoing a credential back would be a bug on their side; the provider still must not pass it on.
ECHO = f"User: arn:aws:iam::123456789012:user/puller ({SECRET_KEY_ID}, {SECRET_ACCESS}, {SECRET_SESSION})"


@pytest.mark.parametrize(
    ("status", "code", "reason", "retryable", "says"),
    [
        (400, "AccessDeniedException", "AwsAccessDenied", False,
         "its IAM policy must allow ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken"),
        (400, "UnrecognizedClientException", "AwsAccessDenied", False, "the access key is unknown or disabled"),
        (400, "ExpiredTokenException", "AwsAccessDenied", False, "the session token has expired"),
        (400, "InvalidParameterException", "EcrInvalidParameter", False, "ECR Public (in us-east-1) rejected"),
        (400, "ThrottlingException", "EcrUnavailable", True, "ECR Public (in us-east-1) is throttling or failing"),
        (500, "ServerException", "EcrUnavailable", True, "the operator will retry"),
        (400, "UnsupportedCommandException", "EcrRequestFailed", False, "refused GetAuthorizationToken"),
    ],
)
def test_aws_errors_say_what_to_fix_and_never_echo_a_secret(
    ecr_public: FakeEcrPublic, status: int, code: str, reason: str, retryable: bool, says: str
) -> None:
    ecr_public.fault = Fault(status, {"__type": code, "message": ECHO})
    spec = EcrSpec(region="us-east-1", credentials_secret_ref=KEYS_REF, public=True)

    with pytest.raises(ProviderError) as raised:
        provider(ecr_public, spec, config=FAST).mint(KEYS_SECRET)

    message = str(raised.value)
    assert (raised.value.reason, raised.value.retryable) == (reason, retryable)
    assert says in message
    assert message.endswith(".")
    for secret in (SECRET_KEY_ID, SECRET_ACCESS, SECRET_SESSION):
        assert secret not in message


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ({}, "it has no authorization token or expiry"),
        ({"authorizationData": [{"authorizationToken": "QVdTOng=", "expiresAt": 1}]},
         "it could not be parsed"),  # botocore's parser fails on a list where an object goes
        ({"authorizationData": {"authorizationToken": "QVdTOng="}}, "it has no authorization token or expiry"),
        ({"authorizationData": {"authorizationToken": "bm90LWF3cy1zaGFwZWQ=", "expiresAt": 2e9}},
         "its token is not of the form AWS:<password>"),
        ({"authorizationData": {"authorizationToken": "%%%", "expiresAt": 2e9}},
         "its token is not base64-encoded text"),
    ],
    ids=["empty", "a-list", "no-expiry", "not-aws-colon", "not-base64"],
)
def test_an_answer_it_cannot_use_is_a_retryable_error(ecr_public: FakeEcrPublic, answer: dict[str, Any],
                                                      says: str) -> None:
    ecr_public.answer = answer
    spec = EcrSpec(region="us-east-1", credentials_secret_ref=KEYS_REF, public=True)

    with pytest.raises(ProviderError) as raised:
        provider(ecr_public, spec, config=FAST).mint(KEYS_SECRET)

    assert (raised.value.reason, raised.value.retryable) == ("EcrInvalidResponse", True)
    message = str(raised.value)
    assert message.startswith(
        f"ECR Public answered GetAuthorizationToken with a response the operator cannot use: {says}")
    assert "not-aws-shaped" not in message


def test_a_body_that_is_not_json_is_an_invalid_response(ecr_public: FakeEcrPublic) -> None:
    ecr_public.fault = Fault(200, b"<html>proxy login</html>")
    spec = EcrSpec(region="us-east-1", credentials_secret_ref=KEYS_REF, public=True)

    with pytest.raises(ProviderError) as raised:
        provider(ecr_public, spec, config=FAST).mint(KEYS_SECRET)

    assert raised.value.reason == "EcrInvalidResponse"


def test_unreachable_ecr_public_is_retryable_and_says_where() -> None:
    unreachable = FakeEcrPublic(url="http://127.0.0.1:9")
    spec = EcrSpec(region="us-east-1", credentials_secret_ref=KEYS_REF, public=True)

    with pytest.raises(ProviderError) as raised:
        provider(unreachable, spec, config=FAST).mint(KEYS_SECRET)

    assert (raised.value.reason, raised.value.retryable) == ("EcrUnavailable", True)
    assert "api.ecr-public.us-east-1.amazonaws.com" in str(raised.value)
