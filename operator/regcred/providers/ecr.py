"""Amazon ECR: one GetAuthorizationToken call yields a 12-hour password for one or more registries.

Credentials come from a Secret (``credentialsSecretRef``) or the operator's ambient AWS identity (IRSA,
EKS Pod Identity, an instance role, environment variables), optionally exchanged for a role's through STS
AssumeRole. Every AWS failure becomes a :class:`ProviderError` whose reason says what kind of failure it is
and whose message says what to fix; no message ever contains a key, a session token or the registry token.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal, Protocol, cast

import boto3.session
import botocore.exceptions
from botocore.client import BaseClient
from botocore.config import Config

from regcred.models import EcrSpec, SecretRef
from regcred.providers.base import InvalidSourceSecret, ProviderError, SecretReader, Token
from regcred.redact import redact

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient
    from types_boto3_sts.client import STSClient

logger = logging.getLogger(__name__)

ECR_USERNAME = "AWS"
ASSUME_ROLE_SESSION_NAME = "regcred-operator"
ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 -- the name of a Secret key, not a value
SESSION_TOKEN = "AWS_SESSION_TOKEN"  # noqa: S105 -- the name of a Secret key, not a value

# Condition reasons this provider reports (ProviderError.reason).
REASON_CREDENTIALS_MISSING = "AwsCredentialsMissing"
REASON_ACCESS_DENIED = "AwsAccessDenied"
REASON_ASSUME_ROLE_FAILED = "AssumeRoleFailed"
REASON_INVALID_PARAMETER = "EcrInvalidParameter"
REASON_UNAVAILABLE = "EcrUnavailable"
REASON_INVALID_RESPONSE = "EcrInvalidResponse"
REASON_REQUEST_FAILED = "EcrRequestFailed"

# One mint must not hang for minutes: botocore's standard retry mode (exponential back-off with jitter on
# throttling, 5xx and connection errors), three attempts in all, and short socket timeouts. The caller
# schedules the next attempt when all three fail.
DEFAULT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3},
    connect_timeout=5,
    read_timeout=15,
    user_agent_extra="regcred-operator",
)

_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
_REJECTED_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "AuthFailure",
    }
)
_EXPIRED_CREDENTIAL_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
_INVALID_PARAMETER_CODES = frozenset(
    {
        "InvalidParameterException",
        "InvalidParameterValue",
        "ValidationException",
        "ValidationError",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "RegionDisabledException",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
        "ServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "IDPCommunicationError",
    }
)
_AWS_MESSAGE_LIMIT = 300

Service = Literal["ecr", "sts"]


class ClientFactory(Protocol):
    """Builds a boto3 client from a session. The seam through which tests attach botocore's ``Stubber``."""

    def __call__(
        self,
        session: boto3.session.Session,
        service_name: Service,
        *,
        region_name: str,
        endpoint_url: str | None,
        config: Config,
    ) -> BaseClient: ...


def default_client_factory(
    session: boto3.session.Session,
    service_name: Service,
    *,
    region_name: str,
    endpoint_url: str | None,
    config: Config,
) -> BaseClient:
    return session.client(service_name, region_name=region_name, endpoint_url=endpoint_url, config=config)


class EcrProvider:
    """Mints an ECR pull token (username ``AWS``) for the spec's registries, or the caller's own account's."""

    user_managed = False  # renewable: minted again before expiry

    def __init__(
        self,
        spec: EcrSpec,
        *,
        ecr_endpoint_url: str | None = None,
        sts_endpoint_url: str | None = None,
        session_factory: Callable[..., boto3.session.Session] = boto3.session.Session,
        client_factory: ClientFactory = default_client_factory,
        config: Config = DEFAULT_CONFIG,
    ) -> None:
        self.spec = spec
        self.ecr_endpoint_url = ecr_endpoint_url
        self.sts_endpoint_url = sts_endpoint_url
        self._session_factory = session_factory
        self._client_factory = client_factory
        self._config = config

    def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
        return None  # nothing a person must do about it

    def mint(self, read_secret: SecretReader) -> Token:
        spec = self.spec
        # Every credential value in play, so that no AWS message that echoes one can carry it to a user.
        secrets: list[str] = []
        if spec.credentials_secret_ref is not None:
            keys = _read_static_keys(read_secret, spec.credentials_secret_ref)
            secrets.extend(keys.values())
            session = self._session(**keys)
            identity = f"the AWS keys in Secret {spec.credentials_secret_ref}"
        else:
            session = self._session()
            identity = "the operator's own AWS identity (IRSA, EKS Pod Identity, instance role, environment)"

        if spec.assume_role_arn is not None:
            session = self._assume_role(session, spec.assume_role_arn, identity, secrets)
            identity = f"the role {spec.assume_role_arn}"

        return self._get_authorization_token(session, identity, secrets)

    def _session(
        self,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
    ) -> boto3.session.Session:
        try:
            return self._session_factory(
                aws_access_key_id=aws_access_key_id,
                aws_secret_access_key=aws_secret_access_key,
                aws_session_token=aws_session_token,
                region_name=self.spec.region,
            )
        except botocore.exceptions.ProfileNotFound as error:
            raise ProviderError(
                f"The AWS profile {error.kwargs.get('profile')!r} named in the operator's environment "
                "(AWS_PROFILE) does not exist.",
                reason=REASON_CREDENTIALS_MISSING,
                retryable=False,
            ) from None

    def _assume_role(
        self, session: boto3.session.Session, role_arn: str, identity: str, secrets: list[str]
    ) -> boto3.session.Session:
        try:
            sts = cast("STSClient", self._client("sts", session, self.sts_endpoint_url))
            response = sts.assume_role(RoleArn=role_arn, RoleSessionName=ASSUME_ROLE_SESSION_NAME)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise _sts_error(error, role_arn, identity, secrets) from None
        credentials = response["Credentials"]
        secrets.extend([credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]])
        logger.debug("Assumed role %s for ECR in %s.", role_arn, self.spec.region)
        return self._session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def _get_authorization_token(self, session: boto3.session.Session, identity: str, secrets: list[str]) -> Token:
        try:
            ecr = cast("ECRClient", self._client("ecr", session, self.ecr_endpoint_url))
            if self.spec.registry_ids:
                response = ecr.get_authorization_token(registryIds=list(self.spec.registry_ids))
            else:
                response = ecr.get_authorization_token()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise _ecr_error(error, self.spec.region, identity, secrets) from None

        hosts: list[str] = []
        passwords: list[str] = []
        expiries: list[datetime.datetime] = []
        for data in response.get("authorizationData", []):
            endpoint = data.get("proxyEndpoint")
            encoded = data.get("authorizationToken")
            expires_at = data.get("expiresAt")
            if not endpoint or not encoded or expires_at is None:
                raise _invalid_response("an authorization entry lacks its endpoint, token or expiry")
            passwords.append(_decode_password(encoded))
            host = endpoint.removeprefix("https://").removeprefix("http://").rstrip("/")
            if host not in hosts:
                hosts.append(host)
            expiries.append(_as_utc(expires_at))
        if not hosts:
            raise _invalid_response("it returned no authorization data")

        # One entry per registry, but each token "can be used to access any Amazon ECR registry that your
        # IAM principal has access to" (the API reference), so the first opens them all.
        expires = min(expiries)
        logger.debug("Minted an ECR token for %s, expiring at %s.", ", ".join(hosts), expires.isoformat())
        return Token(hosts=tuple(hosts), username=ECR_USERNAME, password=passwords[0], expires_at=expires)

    def _client(self, service_name: Service, session: boto3.session.Session, endpoint_url: str | None) -> BaseClient:
        return self._client_factory(
            session,
            service_name,
            region_name=self.spec.region,
            endpoint_url=endpoint_url,
            config=self._config,
        )


def _read_static_keys(read_secret: SecretReader, ref: SecretRef) -> dict[str, str]:
    """The keyword arguments of a boto3 Session, from the Secret's ``AWS_*`` keys. Never echoes a value."""
    data = read_secret(ref.namespace, ref.name)

    def value(key: str, *, required: bool) -> str | None:
        raw = data.get(key)
        if raw is None or not raw.strip():
            if required:
                raise InvalidSourceSecret(
                    f"Secret {ref} has no {key} (or it is empty); the ECR provider needs "
                    f"{ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}, and {SESSION_TOKEN} for temporary keys."
                )
            return None
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidSourceSecret(f"Secret {ref} has a {key} that is not UTF-8 text.") from None

    keys = {
        "aws_access_key_id": value(ACCESS_KEY_ID, required=True),
        "aws_secret_access_key": value(SECRET_ACCESS_KEY, required=True),
        "aws_session_token": value(SESSION_TOKEN, required=False),
    }
    return {name: text for name, text in keys.items() if text is not None}


def _decode_password(encoded: str) -> str:
    try:
        username, separator, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_response("its token is not base64-encoded text") from None
    if not separator or username != ECR_USERNAME or not password:
        raise _invalid_response(f"its token is not of the form {ECR_USERNAME}:<password>")
    return password


def _as_utc(value: datetime.datetime) -> datetime.datetime:
    # botocore parses epoch timestamps into the local timezone; a naive one would be UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


def _invalid_response(what: str) -> ProviderError:
    return ProviderError(
        f"ECR answered GetAuthorizationToken with a response the operator cannot use: {what}.",
        reason=REASON_INVALID_RESPONSE,
        retryable=True,
    )


def _ecr_error(error: Exception, region: str, identity: str, secrets: Iterable[str]) -> ProviderError:
    common = _common_error(error, identity)
    if common is not None:
        return common
    if isinstance(error, botocore.exceptions.ClientError):
        code, status, aws_says = _client_error_details(error, secrets)
        if code in _DENIED_CODES:
            return ProviderError(
                f"AWS denied ecr:GetAuthorizationToken to {identity} in {region}: its IAM policy must allow "
                f"ecr:GetAuthorizationToken (AWS said: {aws_says}).",
                reason=REASON_ACCESS_DENIED,
                retryable=False,
            )
        if code in _INVALID_PARAMETER_CODES:
            return ProviderError(
                f"ECR in {region} rejected the request as invalid; check spec.provider.ecr.registryIds "
                f"(12-digit AWS account ids) and region (AWS said: {aws_says}).",
                reason=REASON_INVALID_PARAMETER,
                retryable=False,
            )
        if code in _TRANSIENT_CODES or status >= 500:
            return ProviderError(
                f"ECR in {region} is throttling or failing (HTTP {status}, {code}); the operator will retry.",
                reason=REASON_UNAVAILABLE,
                retryable=True,
            )
        return ProviderError(
            f"ECR in {region} refused GetAuthorizationToken with {code} (HTTP {status}): {aws_says}.",
            reason=REASON_REQUEST_FAILED,
            retryable=status < 400 or status >= 500 or status in (408, 429),
        )
    if isinstance(error, botocore.exceptions.ParamValidationError | botocore.exceptions.InvalidRegionError):
        return ProviderError(
            f"The ECR request cannot be built from spec.provider.ecr; check registryIds (12-digit AWS "
            f"account ids, at most 10) and region ({_first_line(error)}).",
            reason=REASON_INVALID_PARAMETER,
            retryable=False,
        )
    if isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        return ProviderError(
            f"ECR in {region} could not be reached ({type(error).__name__}); the operator will retry. "
            "If the cluster has no internet egress, it needs a VPC endpoint for ECR.",
            reason=REASON_UNAVAILABLE,
            retryable=True,
        )
    return ProviderError(
        f"Calling ECR in {region} failed ({type(error).__name__}).",
        reason=REASON_REQUEST_FAILED,
        retryable=True,
    )


def _sts_error(error: Exception, role_arn: str, identity: str, secrets: Iterable[str]) -> ProviderError:
    common = _common_error(error, identity)
    if common is not None:
        return common
    if isinstance(error, botocore.exceptions.ClientError):
        code, status, aws_says = _client_error_details(error, secrets)
        if code in _DENIED_CODES:
            return ProviderError(
                f"AWS denied sts:AssumeRole on {role_arn} to {identity}: the caller's IAM policy must allow "
                f"sts:AssumeRole on that role and the role's trust policy must trust the caller "
                f"(AWS said: {aws_says}).",
                reason=REASON_ACCESS_DENIED,
                retryable=False,
            )
        transient = code in _TRANSIENT_CODES or status >= 500
        fix = "the operator will retry" if transient else "check spec.provider.ecr.assumeRoleArn"
        return ProviderError(
            f"Assuming the role {role_arn} failed with {code} (HTTP {status}): {aws_says}; {fix}.",
            reason=REASON_ASSUME_ROLE_FAILED,
            retryable=transient,
        )
    if isinstance(error, botocore.exceptions.ParamValidationError | botocore.exceptions.InvalidRegionError):
        return ProviderError(
            f"The STS AssumeRole request cannot be built; check spec.provider.ecr.assumeRoleArn and region "
            f"({_first_line(error)}).",
            reason=REASON_ASSUME_ROLE_FAILED,
            retryable=False,
        )
    if isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        return ProviderError(
            f"STS could not be reached to assume the role {role_arn} ({type(error).__name__}); the operator "
            "will retry. If the cluster has no internet egress, it needs a VPC endpoint for STS.",
            reason=REASON_ASSUME_ROLE_FAILED,
            retryable=True,
        )
    return ProviderError(
        f"Assuming the role {role_arn} failed ({type(error).__name__}).",
        reason=REASON_ASSUME_ROLE_FAILED,
        retryable=True,
    )


def _common_error(error: Exception, identity: str) -> ProviderError | None:
    """Failures that mean the same whichever AWS API was called: missing or rejected credentials."""
    if isinstance(error, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return ProviderError(
            "No AWS credentials were found for the ECR provider: set spec.provider.ecr.credentialsSecretRef "
            f"to a Secret with {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY}, or give the operator's pod an AWS "
            "identity (IRSA, EKS Pod Identity or an instance role).",
            reason=REASON_CREDENTIALS_MISSING,
            retryable=True,  # an identity can be attached to the pod without changing the spec
        )
    if isinstance(error, botocore.exceptions.CredentialRetrievalError):
        provider = error.kwargs.get("provider", "the ambient chain")
        return ProviderError(
            f"The operator's AWS credentials could not be retrieved from {provider}; check its IRSA or EKS "
            "Pod Identity setup, or set spec.provider.ecr.credentialsSecretRef.",
            reason=REASON_CREDENTIALS_MISSING,
            retryable=True,
        )
    if isinstance(error, botocore.exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in _REJECTED_CREDENTIAL_CODES:
            return ProviderError(
                f"AWS rejected {identity} ({code}): the access key is unknown or disabled, or its secret "
                "does not match it.",
                reason=REASON_ACCESS_DENIED,
                retryable=False,
            )
        if code in _EXPIRED_CREDENTIAL_CODES:
            return ProviderError(
                f"AWS rejected {identity} ({code}): the session token has expired; provide fresh keys.",
                reason=REASON_ACCESS_DENIED,
                retryable=False,
            )
    return None


def _client_error_details(error: botocore.exceptions.ClientError, secrets: Iterable[str]) -> tuple[str, int, str]:
    details = error.response.get("Error", {})
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    message = redact(details.get("Message") or "no message", secrets, limit=_AWS_MESSAGE_LIMIT)
    return details.get("Code") or "UnknownError", status, message.rstrip(".")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
