"""Amazon ECR: one GetAuthorizationToken call yields a 12-hour password for one or more registries.

With ``public: true`` the same call goes to ECR Public instead (``ecr-public:GetAuthorizationToken``, which
also needs ``sts:GetServiceBearerToken``; in us-east-1 only): its 12-hour token is for ``public.ecr.aws``,
where an authenticated pull gets a higher rate limit than an anonymous one.

Credentials come from a Secret (``credentialsSecretRef``) or the operator's ambient AWS identity (IRSA,
EKS Pod Identity, an instance role, environment variables), optionally exchanged for a role's through STS
AssumeRole. Every AWS failure becomes a :class:`ProviderError` whose reason says what kind of failure it is
and whose message says what to fix; no message ever contains a key, a session token or the registry token.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import boto3.session
import botocore.exceptions
from botocore.client import BaseClient
from botocore.config import Config
from botocore.parsers import ResponseParserError

from regcred.models import ECR_PUBLIC_REGION, EcrSpec, SecretRef
from regcred.providers.base import InvalidSourceSecret, ProviderError, SecretReader, Token
from regcred.redact import redact

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient
    from types_boto3_sts.client import STSClient

logger = logging.getLogger(__name__)

ECR_USERNAME = "AWS"
ECR_PUBLIC_HOST = "public.ecr.aws"
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
# What botocore's parsers raise (none of them a BotoCoreError) for a body that does not fit the API's shapes: a
# proxy's HTML page, a truncated body, a list where an object goes, a timestamp that is not one, JSON nested
# thousands deep.
_UNPARSABLE = (ResponseParserError, ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError,
               OverflowError)

Service = Literal["ecr", "ecr-public", "sts"]


class _EcrPublicClient(Protocol):
    """The one call made to ECR Public (boto3's ``ecr-public`` client; no type stubs are installed for it)."""

    def get_authorization_token(self) -> Mapping[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class _Api:
    """What error messages say about the ECR API called: its name, the IAM permissions a token needs, what to
    check in the spec when a request is invalid, and what it takes to reach it."""

    service: str
    name: str
    permissions: str
    fix_parameters: str
    no_egress: str


def _private_api(region: str) -> _Api:
    return _Api("ECR", f"ECR in {region}", "ecr:GetAuthorizationToken",
                "check spec.provider.ecr.registryIds (12-digit AWS account ids, at most 10) and region",
                "If the cluster has no internet egress, it needs a VPC endpoint for ECR.")


PUBLIC_API = _Api(
    "ECR Public",
    f"ECR Public (in {ECR_PUBLIC_REGION})",
    "ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken",
    "check spec.provider.ecr",
    f"The operator needs egress to api.ecr-public.{ECR_PUBLIC_REGION}.amazonaws.com.",
)


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
        ecr_public_endpoint_url: str | None = None,
        session_factory: Callable[..., boto3.session.Session] = boto3.session.Session,
        client_factory: ClientFactory = default_client_factory,
        config: Config = DEFAULT_CONFIG,
    ) -> None:
        self.spec = spec
        self.ecr_endpoint_url = ecr_endpoint_url
        self.sts_endpoint_url = sts_endpoint_url
        self.ecr_public_endpoint_url = ecr_public_endpoint_url
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

        if spec.public:
            return self._get_public_authorization_token(session, identity, secrets)
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
        except _UNPARSABLE as error:
            raise _unusable_sts_answer(role_arn, type(error).__name__) from None
        answer: Mapping[str, Any] = cast("Mapping[str, Any]", response)  # as parsed: any JSON value may be there
        credentials = answer.get("Credentials")
        fields: Mapping[str, Any] = credentials if isinstance(credentials, Mapping) else {}
        keys = [key for name in ("AccessKeyId", "SecretAccessKey", "SessionToken")
                if isinstance(key := fields.get(name), str) and key]
        if len(keys) != 3:
            raise _unusable_sts_answer(role_arn, "no AccessKeyId, SecretAccessKey and SessionToken")
        secrets.extend(keys)
        logger.debug("Assumed role %s for ECR in %s.", role_arn, self.spec.region)
        return self._session(
            aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1],
            aws_session_token=keys[2],
        )

    def _get_authorization_token(self, session: boto3.session.Session, identity: str, secrets: list[str]) -> Token:
        api = _private_api(self.spec.region)
        try:
            ecr = cast("ECRClient", self._client("ecr", session, self.ecr_endpoint_url))
            if self.spec.registry_ids:
                response = ecr.get_authorization_token(registryIds=list(self.spec.registry_ids))
            else:
                response = ecr.get_authorization_token()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise _ecr_error(error, api, identity, secrets) from None
        except _UNPARSABLE as error:
            raise _invalid_response(f"it could not be parsed ({type(error).__name__})", api) from None

        hosts: list[str] = []
        passwords: list[str] = []
        expiries: list[datetime.datetime] = []
        entries = response.get("authorizationData")
        for data in entries if isinstance(entries, list) else []:
            # botocore passes a JSON value through where the API has a string: check every type.
            endpoint, encoded, expires_at = (data.get(key) if isinstance(data, dict) else None
                                             for key in ("proxyEndpoint", "authorizationToken", "expiresAt"))
            host = endpoint.removeprefix("https://").removeprefix("http://").rstrip("/") if isinstance(
                endpoint, str) else ""
            if not host or not isinstance(encoded, str) or not isinstance(expires_at, datetime.datetime):
                raise _invalid_response("an authorization entry lacks its endpoint, token or expiry", api)
            passwords.append(_decode_password(encoded, api))
            if host not in hosts:
                hosts.append(host)
            expiries.append(_as_utc(expires_at, api))
        if not hosts:
            raise _invalid_response("it returned no authorization data", api)

        # One entry per registry, but each token "can be used to access any Amazon ECR registry that your
        # IAM principal has access to" (the API reference), so the first opens them all.
        expires = min(expiries)
        logger.debug("Minted an ECR token for %s, expiring at %s.", ", ".join(hosts), expires.isoformat())
        return Token(hosts=tuple(hosts), username=ECR_USERNAME, password=passwords[0], expires_at=expires)

    def _get_public_authorization_token(
        self, session: boto3.session.Session, identity: str, secrets: list[str]
    ) -> Token:
        try:
            client = cast(_EcrPublicClient, self._client("ecr-public", session, self.ecr_public_endpoint_url,
                                                         region=ECR_PUBLIC_REGION))
            response = client.get_authorization_token()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
            raise _ecr_error(error, PUBLIC_API, identity, secrets) from None
        except _UNPARSABLE as error:
            raise _invalid_response(f"it could not be parsed ({type(error).__name__})", PUBLIC_API) from None

        # One object, not a list of registries: the token is for public.ecr.aws whatever the account.
        data = response.get("authorizationData")
        encoded, expires_at = (data.get(key) if isinstance(data, Mapping) else None
                               for key in ("authorizationToken", "expiresAt"))
        if not isinstance(encoded, str) or not isinstance(expires_at, datetime.datetime):
            raise _invalid_response("it has no authorization token or expiry", PUBLIC_API)
        password = _decode_password(encoded, PUBLIC_API)
        expires = _as_utc(expires_at, PUBLIC_API)
        logger.debug("Minted an ECR Public token for %s, expiring at %s.", ECR_PUBLIC_HOST, expires.isoformat())
        return Token(hosts=(ECR_PUBLIC_HOST,), username=ECR_USERNAME, password=password, expires_at=expires)

    def _client(self, service_name: Service, session: boto3.session.Session, endpoint_url: str | None, *,
                region: str | None = None) -> BaseClient:
        return self._client_factory(
            session,
            service_name,
            region_name=region or self.spec.region,
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


def _decode_password(encoded: str, api: _Api) -> str:
    try:
        username, separator, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except ValueError:  # binascii.Error, a str that is not ASCII, UnicodeDecodeError
        raise _invalid_response("its token is not base64-encoded text", api) from None
    if not separator or username != ECR_USERNAME or not password:
        raise _invalid_response(f"its token is not of the form {ECR_USERNAME}:<password>", api)
    return password


def _as_utc(value: datetime.datetime, api: _Api) -> datetime.datetime:
    # botocore parses epoch timestamps into the local timezone; a naive one would be UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    try:
        return value.astimezone(datetime.UTC)
    except OverflowError:  # year 1 in a timezone east of UTC
        raise _invalid_response("its expiry is out of range", api) from None


def _unusable_sts_answer(role_arn: str, what: str) -> ProviderError:
    return ProviderError(
        f"STS answered AssumeRole of {role_arn} with a response the operator cannot use ({what}); the operator "
        "will retry.",
        reason=REASON_ASSUME_ROLE_FAILED,
        retryable=True,
    )


def _invalid_response(what: str, api: _Api) -> ProviderError:
    return ProviderError(
        f"{api.service} answered GetAuthorizationToken with a response the "
        f"operator cannot use: {what}.",
        reason=REASON_INVALID_RESPONSE,
        retryable=True,
    )


def _ecr_error(error: Exception, api: _Api, identity: str, secrets: Iterable[str]) -> ProviderError:
    common = _common_error(error, identity)
    if common is not None:
        return common
    if isinstance(error, botocore.exceptions.ClientError):
        code, status, aws_says = _client_error_details(error, secrets)
        if code in _DENIED_CODES:
            return ProviderError(
                f"AWS denied GetAuthorizationToken of {api.name} to {identity}: its IAM policy must allow "
                f"{api.permissions} (AWS said: {aws_says}).",
                reason=REASON_ACCESS_DENIED,
                retryable=False,
            )
        if code in _INVALID_PARAMETER_CODES:
            return ProviderError(
                f"{api.name} rejected the request as invalid; {api.fix_parameters} (AWS said: {aws_says}).",
                reason=REASON_INVALID_PARAMETER,
                retryable=False,
            )
        if code in _TRANSIENT_CODES or status >= 500:
            return ProviderError(
                f"{api.name} is throttling or failing (HTTP {status}, {code}); the operator will retry.",
                reason=REASON_UNAVAILABLE,
                retryable=True,
            )
        return ProviderError(
            f"{api.name} refused GetAuthorizationToken with {code} (HTTP {status}): {aws_says}.",
            reason=REASON_REQUEST_FAILED,
            retryable=status < 400 or status >= 500 or status in (408, 429),
        )
    if isinstance(error, botocore.exceptions.ParamValidationError | botocore.exceptions.InvalidRegionError):
        return ProviderError(
            f"The request to {api.name} cannot be built from spec.provider.ecr; {api.fix_parameters} "
            f"({_first_line(error)}).",
            reason=REASON_INVALID_PARAMETER,
            retryable=False,
        )
    if isinstance(error, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        return ProviderError(
            f"{api.name} could not be reached ({type(error).__name__}); the operator will retry. {api.no_egress}",
            reason=REASON_UNAVAILABLE,
            retryable=True,
        )
    return ProviderError(
        f"Calling {api.name} failed ({type(error).__name__}).",
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
        code = _error_code(error)
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
    message = details.get("Message")
    message = message if isinstance(message, str) and message else "no message"  # the body's, any JSON value
    message = redact(message, secrets, limit=_AWS_MESSAGE_LIMIT)
    return _error_code(error) or "UnknownError", status, message.rstrip(".")


def _error_code(error: botocore.exceptions.ClientError) -> str:
    """The error's code: from the answer's body, so only a string of a sane length counts."""
    code = error.response.get("Error", {}).get("Code")
    return code if isinstance(code, str) and len(code) <= 100 else ""


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
