"""The ECR provider against moto's AWS emulation over real HTTP on 127.0.0.1, and botocore's Stubber for errors.

moto answers ECR and STS like AWS does, except that it never fails and its ``expiresAt`` is always
2015-01-01. Errors are therefore injected with ``Stubber`` on the real client, through the provider's
``client_factory`` seam.
"""

from __future__ import annotations

import base64
import datetime
import socket
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.stub import Stubber
from moto.sts.models import sts_backends

from regcred.models import EcrSpec, SecretRef
from regcred.providers.base import InvalidSourceSecret, ProviderError, SourceSecretNotFound
from regcred.providers.ecr import EcrProvider, default_client_factory

REGION = "eu-west-1"
MOTO_DEFAULT_ACCOUNT = "123456789012"
MOTO_EXPIRES_AT = datetime.datetime(2015, 1, 1, tzinfo=datetime.UTC)
KEYS_REF = SecretRef(namespace="regcred-system", name="aws-pull-keys")
# Distinctive values, so that a test can tell they never reach an error message.
SECRET_KEY_ID = "AKIAREGCREDKEYID0001"
SECRET_ACCESS = "s3cr3t-access-key-do-not-print"
SECRET_SESSION = "s3ss10n-token-do-not-print"

@pytest.fixture(autouse=True)
def no_ambient_aws(clean_aws_env: None) -> None:
    """Every test here starts from an empty AWS credential chain (see tests/conftest.py)."""


@pytest.fixture
def ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's ambient identity, as environment variables (the first link of boto3's chain)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAAMBIENTTESTING01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ambient-testing-secret")


def secret_reader(secrets: Mapping[tuple[str, str], Mapping[str, bytes]]) -> Callable[[str, str], Mapping[str, bytes]]:
    def read_secret(namespace: str, name: str) -> Mapping[str, bytes]:
        try:
            return secrets[namespace, name]
        except KeyError:
            raise SourceSecretNotFound(f"Secret {namespace}/{name} does not exist.") from None

    return read_secret


NO_SECRETS = secret_reader({})
KEYS_SECRET = secret_reader(
    {
        (KEYS_REF.namespace, KEYS_REF.name): {
            "AWS_ACCESS_KEY_ID": SECRET_KEY_ID.encode(),
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS.encode(),
            "AWS_SESSION_TOKEN": SECRET_SESSION.encode(),
        }
    }
)


def provider(url: str, spec: EcrSpec | None = None, **kwargs: Any) -> EcrProvider:
    return EcrProvider(spec or EcrSpec(region=REGION), ecr_endpoint_url=url, sts_endpoint_url=url, **kwargs)


def host(account: str) -> str:
    return f"{account}.dkr.ecr.{REGION}.amazonaws.com"


# --- minting against moto ------------------------------------------------------------------------------


@pytest.mark.usefixtures("ambient_keys")
def test_default_registry_is_the_callers_account(moto_url: str) -> None:
    token = provider(moto_url).mint(NO_SECRETS)

    assert token.hosts == (host(MOTO_DEFAULT_ACCOUNT),)
    assert token.username == "AWS"
    assert token.password == f"{MOTO_DEFAULT_ACCOUNT}-auth-token"  # moto's token is AWS:<this>
    # moto hard-wires 2015-01-01: this checks the value is passed through, tz-aware, in UTC.
    assert token.expires_at == MOTO_EXPIRES_AT
    assert token.expires_at is not None
    assert token.expires_at.utcoffset() == datetime.timedelta(0)
    assert token.password not in repr(token)


@pytest.mark.usefixtures("ambient_keys")
def test_registry_ids_give_one_host_each(moto_url: str) -> None:
    spec = EcrSpec(region=REGION, registry_ids=("111122223333", "444455556666"))

    token = provider(moto_url, spec).mint(NO_SECRETS)

    assert token.hosts == (
        "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
        "444455556666.dkr.ecr.eu-west-1.amazonaws.com",
    )
    assert token.username == "AWS"
    assert token.password
    assert token.expires_at == MOTO_EXPIRES_AT


@pytest.mark.usefixtures("ambient_keys")
def test_assume_role_mints_with_the_roles_credentials(moto_url: str) -> None:
    role_account = "111111111111"
    role_arn = f"arn:aws:iam::{role_account}:role/ecr-pull"
    spec = EcrSpec(region=REGION, assume_role_arn=role_arn)

    token = provider(moto_url, spec).mint(NO_SECRETS)

    # moto maps the temporary keys of an assumed role to the role's account, and ECR's default registry
    # is the caller's account: so this host proves that ECR was called with the assumed credentials.
    assert token.hosts == (host(role_account),)
    assumed = sts_backends[role_account]["aws"].assumed_roles[-1]
    assert assumed.role_arn == role_arn
    assert assumed.session_name == "regcred-operator"


@pytest.mark.usefixtures("ambient_keys")
@pytest.mark.usefixtures("ambient_keys")
def test_static_keys_from_a_secret_take_precedence_over_the_ambient_chain(moto_url: str) -> None:
    # Real temporary keys for account 222222222222, issued by moto, stored in the Secret. The ambient
    # keys would mint for moto's default account instead.
    sts = boto3.client("sts", region_name=REGION, endpoint_url=moto_url)
    credentials = sts.assume_role(RoleArn="arn:aws:iam::222222222222:role/keys", RoleSessionName="test")["Credentials"]
    read_secret = secret_reader(
        {
            (KEYS_REF.namespace, KEYS_REF.name): {
                "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"].encode(),
                "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"].encode() + b"\n",  # --from-file
                "AWS_SESSION_TOKEN": credentials["SessionToken"].encode(),
            }
        }
    )
    spec = EcrSpec(region=REGION, credentials_secret_ref=KEYS_REF)

    token = provider(moto_url, spec).mint(read_secret)

    assert token.hosts == (host("222222222222"),)


def test_static_keys_without_ambient_credentials(moto_url: str) -> None:
    spec = EcrSpec(region=REGION, credentials_secret_ref=KEYS_REF)

    token = provider(moto_url, spec).mint(KEYS_SECRET)

    assert token.hosts == (host(MOTO_DEFAULT_ACCOUNT),)


# --- the Secret and the credential chain ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ({"AWS_ACCESS_KEY_ID": SECRET_KEY_ID.encode()}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": SECRET_ACCESS.encode()}, "AWS_ACCESS_KEY_ID"),
        ({"AWS_ACCESS_KEY_ID": SECRET_KEY_ID.encode(), "AWS_SECRET_ACCESS_KEY": b"  \n"}, "AWS_SECRET_ACCESS_KEY"),
    ],
    ids=["no-secret-key", "no-key-id", "empty-secret-key"],
)
def test_a_missing_key_in_the_secret_is_named(moto_url: str, data: dict[str, bytes], missing: str) -> None:
    spec = EcrSpec(region=REGION, credentials_secret_ref=KEYS_REF)
    read_secret = secret_reader({(KEYS_REF.namespace, KEYS_REF.name): data})

    with pytest.raises(InvalidSourceSecret) as raised:
        provider(moto_url, spec).mint(read_secret)

    message = str(raised.value)
    assert "regcred-system/aws-pull-keys" in message
    assert missing in message
    assert SECRET_KEY_ID not in message
    assert SECRET_ACCESS not in message
    assert raised.value.reason == "InvalidSourceSecret"
    assert raised.value.retryable is False


def test_a_missing_secret_propagates(moto_url: str) -> None:
    spec = EcrSpec(region=REGION, credentials_secret_ref=KEYS_REF)

    with pytest.raises(SourceSecretNotFound, match="regcred-system/aws-pull-keys"):
        provider(moto_url, spec).mint(NO_SECRETS)


@pytest.mark.parametrize("assume_role_arn", [None, "arn:aws:iam::111111111111:role/ecr-pull"])
def test_no_credentials_anywhere(moto_url: str, assume_role_arn: str | None) -> None:
    spec = EcrSpec(region=REGION, assume_role_arn=assume_role_arn)

    with pytest.raises(ProviderError) as raised:
        provider(moto_url, spec).mint(NO_SECRETS)

    assert raised.value.reason == "AwsCredentialsMissing"
    assert raised.value.retryable is True
    assert "credentialsSecretRef" in str(raised.value)
    assert "IRSA" in str(raised.value)


@pytest.mark.usefixtures("ambient_keys")
def test_an_unreachable_endpoint_is_retryable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fast = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=1)

    with pytest.raises(ProviderError) as raised:
        provider(closed_url, config=fast).mint(NO_SECRETS)

    assert raised.value.reason == "EcrUnavailable"
    assert raised.value.retryable is True


# --- AWS errors, injected with Stubber -----------------------------------------------------------------


def stubbing(service_name: str, prepare: Callable[[Stubber], None]) -> Any:
    """A client_factory that builds the real client, then stubs the calls of one service."""

    def client_factory(session: boto3.session.Session, name: str, **options: Any) -> BaseClient:
        client = default_client_factory(session, name, **options)  # type: ignore[arg-type]
        if name == service_name:
            stubber = Stubber(client)
            prepare(stubber)
            stubber.activate()
        return client

    return client_factory


def ecr_error(code: str, status: int, message: str = "") -> Any:
    return stubbing(
        "ecr",
        lambda stubber: stubber.add_client_error(
            "get_authorization_token", service_error_code=code, service_message=message, http_status_code=status
        ),
    )


def sts_error(code: str, status: int, message: str = "") -> Any:
    return stubbing(
        "sts",
        lambda stubber: stubber.add_client_error(
            "assume_role", service_error_code=code, service_message=message, http_status_code=status
        ),
    )


# AWS echoing a credential back would be a bug on their side; the provider still must not pass it on.
ECHO = f"User: arn:aws:iam::123456789012:user/puller ({SECRET_KEY_ID}, {SECRET_ACCESS}, {SECRET_SESSION})"


@pytest.mark.parametrize(
    ("code", "status", "reason", "retryable", "mentions"),
    [
        ("AccessDeniedException", 400, "AwsAccessDenied", False, "ecr:GetAuthorizationToken"),
        ("UnrecognizedClientException", 400, "AwsAccessDenied", False, "aws-pull-keys"),
        ("InvalidSignatureException", 400, "AwsAccessDenied", False, "aws-pull-keys"),
        ("ExpiredTokenException", 400, "AwsAccessDenied", False, "expired"),
        ("InvalidParameterException", 400, "EcrInvalidParameter", False, "registryIds"),
        ("ThrottlingException", 400, "EcrUnavailable", True, "retry"),
        ("ServerException", 500, "EcrUnavailable", True, "retry"),
        ("SomethingNew", 400, "EcrRequestFailed", False, "SomethingNew"),
    ],
)
def test_ecr_errors(code: str, status: int, reason: str, retryable: bool, mentions: str) -> None:
    spec = EcrSpec(region=REGION, registry_ids=("111122223333",), credentials_secret_ref=KEYS_REF)
    ecr = provider("http://127.0.0.1:9", spec, client_factory=ecr_error(code, status, ECHO))

    with pytest.raises(ProviderError) as raised:
        ecr.mint(KEYS_SECRET)

    message = str(raised.value)
    assert (raised.value.reason, raised.value.retryable) == (reason, retryable)
    assert mentions in message
    assert message.endswith(".")
    for secret in (SECRET_KEY_ID, SECRET_ACCESS, SECRET_SESSION):
        assert secret not in message


@pytest.mark.parametrize(
    ("code", "status", "reason", "retryable", "mentions"),
    [
        ("AccessDenied", 403, "AwsAccessDenied", False, "sts:AssumeRole"),
        ("InvalidClientTokenId", 403, "AwsAccessDenied", False, "aws-pull-keys"),
        ("ValidationError", 400, "AssumeRoleFailed", False, "assumeRoleArn"),
        ("Throttling", 400, "AssumeRoleFailed", True, "retry"),
    ],
)
def test_assume_role_errors(code: str, status: int, reason: str, retryable: bool, mentions: str) -> None:
    role_arn = "arn:aws:iam::111111111111:role/ecr-pull"
    spec = EcrSpec(region=REGION, assume_role_arn=role_arn, credentials_secret_ref=KEYS_REF)
    ecr = provider("http://127.0.0.1:9", spec, client_factory=sts_error(code, status, ECHO))

    with pytest.raises(ProviderError) as raised:
        ecr.mint(KEYS_SECRET)

    message = str(raised.value)
    assert (raised.value.reason, raised.value.retryable) == (reason, retryable)
    assert mentions in message
    for secret in (SECRET_KEY_ID, SECRET_ACCESS, SECRET_SESSION):
        assert secret not in message


@pytest.mark.usefixtures("ambient_keys")
def test_the_earliest_expiry_wins_and_is_converted_to_utc() -> None:
    cest = datetime.timezone(datetime.timedelta(hours=2))
    encoded = base64.b64encode(b"AWS:the-password").decode()
    response = {
        "authorizationData": [
            {
                "authorizationToken": encoded,
                "proxyEndpoint": "https://111122223333.dkr.ecr.eu-west-1.amazonaws.com",
                "expiresAt": datetime.datetime(2030, 1, 1, 14, 0, tzinfo=cest),
            },
            {
                "authorizationToken": encoded,
                "proxyEndpoint": "https://444455556666.dkr.ecr.eu-west-1.amazonaws.com",
                "expiresAt": datetime.datetime(2030, 1, 1, 13, 0, tzinfo=datetime.UTC),
            },
        ]
    }
    factory = stubbing("ecr", lambda stubber: stubber.add_response("get_authorization_token", response))

    token = provider("http://127.0.0.1:9", client_factory=factory).mint(NO_SECRETS)

    assert token.hosts == (host("111122223333"), host("444455556666"))
    assert token.password == "the-password"
    assert token.expires_at == datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)
    assert token.expires_at is not None
    assert token.expires_at.tzinfo == datetime.UTC


@pytest.mark.usefixtures("ambient_keys")
def test_a_token_that_is_not_aws_colon_password_is_rejected_without_echoing_it() -> None:
    bogus = base64.b64encode(b"not-the-expected-shape").decode()
    response = {
        "authorizationData": [
            {
                "authorizationToken": bogus,
                "proxyEndpoint": "https://111122223333.dkr.ecr.eu-west-1.amazonaws.com",
                "expiresAt": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
            }
        ]
    }
    factory = stubbing("ecr", lambda stubber: stubber.add_response("get_authorization_token", response))

    with pytest.raises(ProviderError) as raised:
        provider("http://127.0.0.1:9", client_factory=factory).mint(NO_SECRETS)

    assert raised.value.reason == "EcrInvalidResponse"
    assert bogus not in str(raised.value)
    assert "not-the-expected-shape" not in str(raised.value)
