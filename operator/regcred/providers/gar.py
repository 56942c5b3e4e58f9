"""Google Artifact Registry and Container Registry: an OAuth access token, username ``oauth2accesstoken``.

Credentials come from a Secret (``credentialsSecretRef``: a service-account key, or an external-account
configuration for workload identity federation) or the operator's Application Default Credentials (GKE
Workload Identity through the metadata server, ``GOOGLE_APPLICATION_CREDENTIALS``), optionally exchanged
for another service account's through the IAM Credentials API (``impersonateServiceAccount``).

Access tokens last an hour, about 15 minutes under workload identity federation; the real expiry is passed
through and the reconciler refreshes at about two thirds of it. Every failure becomes a
:class:`ProviderError` whose reason says what kind of failure it is and whose message says what to fix; no
message ever contains a private key, an assertion or an access token.
"""

from __future__ import annotations

import binascii
import datetime
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
from google.auth import impersonated_credentials
from google.oauth2 import service_account

from regcred.models import GarSpec, SecretRef
from regcred.providers.base import InvalidSourceSecret, ProviderError, SecretReader, Token

logger = logging.getLogger(__name__)

GAR_USERNAME = "oauth2accesstoken"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_KEY = "key.json"
# The longest lifetime the IAM Credentials API grants without an organisation policy exception.
IMPERSONATION_LIFETIME_SECONDS = 3600
# Google always sends an expiry; were one missing, assume the shortest lifetime Google hands out, so that
# the token is refreshed too early rather than too late.
ASSUMED_LIFETIME = datetime.timedelta(minutes=15)
# google-auth's requests transport waits 120 s by default, and forever when told None. One mint must not
# hang: this bounds connecting and each read. google-auth's own callers that pass a timeout (the metadata
# server probe) keep theirs.
DEFAULT_TIMEOUT_SECONDS = 15.0

# Condition reasons this provider reports (ProviderError.reason).
REASON_CREDENTIALS_MISSING = "GoogleCredentialsMissing"
REASON_TOKEN_REJECTED = "GoogleTokenRejected"  # noqa: S105 -- a condition reason, not a value
REASON_IMPERSONATION_DENIED = "GoogleImpersonationDenied"
REASON_IMPERSONATION_FAILED = "GoogleImpersonationFailed"
REASON_UNAVAILABLE = "GoogleUnavailable"
REASON_INVALID_RESPONSE = "GoogleInvalidResponse"

_SERVICE_ACCOUNT_TYPE = "service_account"
_EXTERNAL_ACCOUNT_TYPE = "external_account"
_AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"  # noqa: S105 -- a type URN
_SERVICE_ACCOUNT_KEY_FIELDS = ("client_email", "private_key", "token_uri")
_EXTERNAL_ACCOUNT_FIELDS = ("audience", "subject_token_type", "token_url")
# OAuth error codes (RFC 6749 5.2, and Google's) that a retry of the same request may get past.
_TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error", "internal_failure"})
_IMPERSONATION_PATH = re.compile(r"/serviceAccounts/(?P<email>[^/:]+):generateAccessToken$")
_GOOGLE_MESSAGE_LIMIT = 300


class _Identity(NamedTuple):
    """Who is asking Google, for messages, and what to check when Google rejects it."""

    who: str
    if_rejected: str


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class GarProvider:
    """Mints a Google access token (username ``oauth2accesstoken``) for the spec's registry hosts."""

    user_managed = False  # renewable: minted again before expiry

    def __init__(
        self,
        spec: GarSpec,
        *,
        iam_endpoint_override: str | None = None,
        sts_endpoint_override: str | None = None,
        request: google.auth.transport.Request | None = None,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        """
        ``iam_endpoint_override``: base URL of the IAM Credentials API (default
        ``https://iamcredentials.googleapis.com``), for impersonation, both ``impersonateServiceAccount``'s and
        an external-account configuration's. ``sts_endpoint_override``: the Security Token Service URL that
        replaces every external-account configuration's ``token_url``. Both for private or regional endpoints
        and for tests; a service-account key names its own token endpoint (``token_uri``).
        ``request``: the google-auth HTTP transport (default: ``requests``).
        """
        self.spec = spec
        self.iam_endpoint_override = iam_endpoint_override.rstrip("/") if iam_endpoint_override else None
        self.sts_endpoint_override = sts_endpoint_override
        self._request = request
        self._clock = clock

    def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
        return None  # nothing a person must do about it

    def mint(self, read_secret: SecretReader) -> Token:
        spec = self.spec
        transport = _RecordingRequest(self._transport())
        # Every credential value in play, so that no Google message that echoes one can carry it to a user.
        secrets: list[str] = []
        if spec.credentials_secret_ref is not None:
            credentials, identity = self._from_secret(read_secret, spec.credentials_secret_ref, secrets)
        else:
            credentials, identity = self._from_environment(transport)

        target = spec.impersonate_service_account
        if target is not None:
            credentials = impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
                source_credentials=credentials,
                target_principal=target,
                target_scopes=[CLOUD_PLATFORM_SCOPE],
                lifetime=IMPERSONATION_LIFETIME_SECONDS,
                iam_endpoint_override=self._iam_url(target),
            )

        transport.reset()  # classify only what the refresh itself sent (ADC may have probed the metadata server)
        try:
            credentials.refresh(transport)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.GoogleAuthError as error:
            raise _refresh_error(error, transport, identity, target, secrets) from None

        access_token = credentials.token
        if not isinstance(access_token, str) or not access_token:
            raise ProviderError(
                "Google answered the token request without an access token.",
                reason=REASON_INVALID_RESPONSE,
                retryable=True,
            )
        expires_at = _as_utc(credentials.expiry) if credentials.expiry is not None else self._clock() + ASSUMED_LIFETIME
        logger.debug(
            "Minted a Google access token for %s as %s, expiring at %s.",
            ", ".join(spec.registries),
            target or identity.who,
            expires_at.isoformat(),
        )
        return Token(hosts=spec.registries, username=GAR_USERNAME, password=access_token, expires_at=expires_at)

    # -- credentials -----------------------------------------------------------------------------

    def _transport(self) -> google.auth.transport.Request:
        if self._request is None:
            self._request = google.auth.transport.requests.Request()
        return self._request

    def _from_environment(
        self, transport: google.auth.transport.Request
    ) -> tuple[google.auth.credentials.Credentials, _Identity]:
        try:
            credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE], request=transport)
        except google.auth.exceptions.DefaultCredentialsError as error:
            raise ProviderError(
                "No Google credentials were found for the gar provider: set spec.provider.gar.credentialsSecretRef "
                "to a Secret with a service-account key or an external-account configuration, or configure GKE "
                f"Workload Identity for the operator's ServiceAccount (google-auth said: {_first_line(error)}).",
                reason=REASON_CREDENTIALS_MISSING,
                retryable=True,  # an identity can be given to the operator's pod without changing the spec
            ) from None
        return credentials, _Identity(
            "the operator's Application Default Credentials (GKE Workload Identity or GOOGLE_APPLICATION_CREDENTIALS)",
            "check the Workload Identity binding of the operator's ServiceAccount, or the key that "
            "GOOGLE_APPLICATION_CREDENTIALS names",
        )

    def _from_secret(
        self, read_secret: SecretReader, ref: SecretRef, secrets: list[str]
    ) -> tuple[google.auth.credentials.Credentials, _Identity]:
        info = _read_credential_json(read_secret, ref)
        kind = info.get("type")
        if kind == _SERVICE_ACCOUNT_TYPE:
            return _service_account(info, ref, secrets)
        if kind == _EXTERNAL_ACCOUNT_TYPE:
            return self._external_account(info, ref)
        raise InvalidSourceSecret(
            f"Secret {ref} holds a Google credential of type {kind!r}; the gar provider takes a service-account "
            f"key ({_SERVICE_ACCOUNT_TYPE!r}) or a workload identity federation configuration "
            f"({_EXTERNAL_ACCOUNT_TYPE!r})."
            if isinstance(kind, str)
            else f"Secret {ref} holds JSON without a Google credential type; the gar provider takes a "
            f"service-account key or a workload identity federation configuration (\"type\": "
            f"{_SERVICE_ACCOUNT_TYPE!r} or {_EXTERNAL_ACCOUNT_TYPE!r})."
        )

    def _external_account(
        self, info: dict[str, Any], ref: SecretRef
    ) -> tuple[google.auth.credentials.Credentials, _Identity]:
        """Workload identity federation. The configuration decides which local files and URLs google-auth reads
        a subject token from and where it sends it, so it must send it to Google only (Google's advice for
        configurations from outside the operator; the Secret may be writable by more people than the operator's
        own pod): the token endpoints must be Google's, and no executable may be run."""
        missing = _missing_fields(info, _EXTERNAL_ACCOUNT_FIELDS)
        if missing:
            raise InvalidSourceSecret(
                f"Secret {ref} holds an external-account configuration without {', '.join(missing)}; generate it "
                "with `gcloud iam workload-identity-pools create-cred-config`."
            )
        source = info.get("credential_source")
        if isinstance(source, Mapping) and source.get("executable") is not None:
            raise InvalidSourceSecret(
                f"Secret {ref} holds an external-account configuration with an executable credential source; "
                "the operator does not run programs named in a Secret. Use a file or URL credential source."
            )
        info = dict(info)
        if self.sts_endpoint_override is not None:
            info["token_url"] = self.sts_endpoint_override
        elif not _is_google_url(info["token_url"]):
            raise InvalidSourceSecret(
                f"Secret {ref} holds an external-account configuration whose token_url is not a Google endpoint "
                "(https://…googleapis.com); the operator sends federated tokens to Google only."
            )
        impersonation_url = info.get("service_account_impersonation_url")
        if impersonation_url is not None:
            match = _IMPERSONATION_PATH.search(urllib.parse.urlsplit(str(impersonation_url)).path)
            if match is None or not (self.iam_endpoint_override is not None or _is_google_url(str(impersonation_url))):
                raise InvalidSourceSecret(
                    f"Secret {ref} holds an external-account configuration whose service_account_impersonation_url "
                    "is not Google's IAM Credentials generateAccessToken endpoint."
                )
            if self.iam_endpoint_override is not None:
                info["service_account_impersonation_url"] = self._iam_url(urllib.parse.unquote(match["email"]))

        try:
            credentials = _load_external_account(info)
        except (ValueError, TypeError, google.auth.exceptions.GoogleAuthError):
            raise InvalidSourceSecret(
                f"Secret {ref} holds an external-account configuration that google-auth cannot load; check its "
                "credential_source (generate it with `gcloud iam workload-identity-pools create-cred-config`)."
            ) from None
        audience = info["audience"]
        return credentials, _Identity(
            f"the workload identity federation configuration in Secret {ref} (audience {audience})",
            "check that the subject token's issuer, audience and attributes match the pool provider's "
            "configuration and conditions",
        )

    def _iam_url(self, email: str) -> str | None:
        if self.iam_endpoint_override is None:
            return None
        return f"{self.iam_endpoint_override}/v1/projects/-/serviceAccounts/{email}:generateAccessToken"


def _read_credential_json(read_secret: SecretReader, ref: SecretRef) -> dict[str, Any]:
    """The Secret's credential JSON as a dict. Never echoes any of it."""
    key = ref.key or DEFAULT_KEY
    raw = read_secret(ref.namespace, ref.name).get(key)
    if raw is None or not raw.strip():
        raise InvalidSourceSecret(
            f"Secret {ref} has no {key} (or it is empty); the gar provider needs a Google service-account key or "
            "an external-account configuration (JSON) under that key (spec.provider.gar.credentialsSecretRef.key)."
        )
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidSourceSecret(
            f"Secret {ref} has a {key} that is not JSON; it must hold a Google service-account key or an "
            "external-account configuration as downloaded from Google Cloud."
        ) from None
    if not isinstance(info, dict):
        raise InvalidSourceSecret(f"Secret {ref} has a {key} that is JSON but not an object with a \"type\".")
    return info


def _service_account(
    info: dict[str, Any], ref: SecretRef, secrets: list[str]
) -> tuple[google.auth.credentials.Credentials, _Identity]:
    for field in ("private_key", "private_key_id"):
        if isinstance(info.get(field), str) and info[field]:
            secrets.append(info[field])
    missing = _missing_fields(info, _SERVICE_ACCOUNT_KEY_FIELDS)
    if missing:
        raise InvalidSourceSecret(
            f"Secret {ref} holds a service-account key without {', '.join(missing)}; download a new JSON key for "
            "the service account from Google Cloud."
        )
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    except (ValueError, TypeError, binascii.Error, google.auth.exceptions.GoogleAuthError):
        raise InvalidSourceSecret(
            f"Secret {ref} holds a service-account key whose private_key is not a PEM-encoded RSA private key; "
            "download a new JSON key for the service account from Google Cloud."
        ) from None
    email = info["client_email"]
    return credentials, _Identity(
        f"the service account {email} (key in Secret {ref})",
        "the key or the service account may be deleted or disabled, or the operator's clock may be wrong; "
        f"put a new JSON key in Secret {ref}",
    )


def _missing_fields(info: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    return [field for field in fields if not isinstance(info.get(field), str) or not info[field]]


def _load_external_account(info: Mapping[str, Any]) -> google.auth.credentials.Credentials:
    """The same choice google-auth's generic loader makes, without the loader's warning about generic loading."""
    if info.get("subject_token_type") == _AWS_SUBJECT_TOKEN_TYPE:
        from google.auth import aws

        credentials: google.auth.credentials.Credentials = aws.Credentials.from_info(  # type: ignore[no-untyped-call]
            info, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    else:
        from google.auth import identity_pool

        credentials = identity_pool.Credentials.from_info(  # type: ignore[no-untyped-call]
            info, scopes=[CLOUD_PLATFORM_SCOPE]
        )
    return credentials


def _is_google_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = parts.hostname or ""
    return (
        parts.scheme == "https"
        and parts.username is None
        and "\\" not in url
        and port in (None, 443)
        and (host == "googleapis.com" or host.endswith(".googleapis.com"))
    )


def _as_utc(value: datetime.datetime) -> datetime.datetime:
    # google-auth keeps expiries as naive UTC datetimes.
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


# -- the transport ----------------------------------------------------------------------------------


class _RecordingRequest(google.auth.transport.Request):
    """Bounds every request by a timeout and remembers the last one's URL and status.

    google-auth's errors do not carry the HTTP status; the status is what tells a rejected credential (4xx)
    from an outage (5xx, no answer), and the URL tells the IAM Credentials API from a token endpoint.
    """

    def __init__(self, inner: google.auth.transport.Request, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._inner = inner
        self._timeout = timeout
        self.calls = 0
        self.last_url: str | None = None
        self.last_status: int | None = None

    def __getattr__(self, name: str) -> Any:
        # google-auth looks for the requests transport's ``session`` (to mount the metadata server's mTLS adapter).
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def reset(self) -> None:
        self.calls, self.last_url, self.last_status = 0, None, None

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        self.calls += 1
        self.last_url, self.last_status = url, None
        response: google.auth.transport.Response = self._inner(
            url,
            method=method,
            body=body,
            headers=headers,
            timeout=self._timeout if timeout is None else timeout,
            **kwargs,
        )
        self.last_status = int(response.status)
        return response


# -- errors -----------------------------------------------------------------------------------------


def _refresh_error(
    error: google.auth.exceptions.GoogleAuthError,
    transport: _RecordingRequest,
    identity: _Identity,
    target: str | None,
    secrets: Iterable[str],
) -> ProviderError:
    status = transport.last_status
    url = transport.last_url or ""
    host = urllib.parse.urlsplit(url).netloc or "Google"
    code, google_says = _google_says(error, secrets)
    at_iam = target is not None and url.endswith(":generateAccessToken")

    if transport.calls == 0:
        # Nothing was sent: google-auth could not even read its subject token (a federation token file).
        return ProviderError(
            f"The Google credential of {identity.who} cannot be used ({google_says}).",
            reason=REASON_CREDENTIALS_MISSING,
            retryable=True,
        )
    if status is None:
        return ProviderError(
            f"Google at {host} could not be reached ({google_says}); the operator will retry. If the cluster "
            "has no internet egress, it needs Private Google Access or a proxy.",
            reason=REASON_UNAVAILABLE,
            retryable=True,
        )
    if status in (408, 429) or status >= 500 or code in _TRANSIENT_OAUTH_ERRORS:
        return ProviderError(
            f"Google at {host} is throttling or failing (HTTP {status}: {google_says}); the operator will retry.",
            reason=REASON_UNAVAILABLE,
            retryable=True,
        )
    if status < 300:
        return ProviderError(
            f"Google at {host} answered with a response the operator cannot use ({google_says}).",
            reason=REASON_INVALID_RESPONSE,
            retryable=True,
        )
    if at_iam and status in (403, 404):
        return ProviderError(
            f"Google denied {identity.who} impersonating {target} (HTTP {status}: {google_says}): the source identity "
            f"needs roles/iam.serviceAccountTokenCreator on {target}, and {target} must exist and be enabled "
            "in a project with the IAM Service Account Credentials API enabled.",
            reason=REASON_IMPERSONATION_DENIED,
            retryable=False,
        )
    if at_iam and status != 401:
        return ProviderError(
            f"Google refused to mint a token for {target} as {identity.who} (HTTP {status}: {google_says}); check "
            "spec.provider.gar.impersonateServiceAccount.",
            reason=REASON_IMPERSONATION_FAILED,
            retryable=False,
        )
    return ProviderError(
        f"Google rejected {identity.who} (HTTP {status}: {google_says}); {identity.if_rejected}.",
        reason=REASON_TOKEN_REJECTED,
        retryable=False,
    )


def _google_says(error: google.auth.exceptions.GoogleAuthError, secrets: Iterable[str]) -> tuple[str | None, str]:
    """The OAuth error code (if any) and a short, scrubbed account of what Google said."""
    code: str | None = None
    text: str | None = None
    for data in error.args[1:]:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                continue
        if not isinstance(data, Mapping):
            continue
        detail = data.get("error")
        if isinstance(detail, Mapping):  # Google API style: {"error": {"code", "message", "status"}}
            text = str(detail.get("message") or detail.get("status") or "")
        elif isinstance(detail, str):  # OAuth style: {"error", "error_description"}
            code = detail
            description = data.get("error_description")
            text = f"{detail}: {description}" if description else detail
        if text:
            break
    if not text:
        first = error.args[0] if error.args else None
        # A wrapped exception (a transport failure): its type says enough, its text is a long urllib3 story.
        if isinstance(first, BaseException):
            while isinstance(first, google.auth.exceptions.GoogleAuthError) and first.args:
                first = first.args[0]
            text = type(first).__name__ if isinstance(first, BaseException) else str(first)
        else:
            text = _first_line(error)
    return code, _scrub(text, secrets)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = text.strip().rstrip(".")
    if len(text) > _GOOGLE_MESSAGE_LIMIT:
        text = text[:_GOOGLE_MESSAGE_LIMIT] + "…"
    return text or "no details"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    line = text.splitlines()[0].rstrip(".") if text else type(error).__name__
    return line[:_GOOGLE_MESSAGE_LIMIT] + ("…" if len(line) > _GOOGLE_MESSAGE_LIMIT else "")
