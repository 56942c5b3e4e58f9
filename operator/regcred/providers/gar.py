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
import posixpath
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
from regcred.providers.base import InvalidSourceSecret, ProviderError, SecretReader, Token, utcnow
from regcred.redact import redact

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
# A service-account key is about 2.4 KB and a federation configuration well under 1 KB.
MAX_CREDENTIAL_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16
# Google's error bodies are read for their error code only, and only this much of them.
_MAX_ERROR_BODY = 64 * 1024
_OAUTH_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # RFC 6749 5.2 codes: invalid_grant, ...
_GOOGLE_STATUS = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")  # google.rpc.Code names: PERMISSION_DENIED, ...

# Where a workload identity federation configuration from a Secret may take its subject token from
# (REGCRED_GOOGLE_CREDENTIAL_SOURCES replaces the list). Every source reads the operator's own pod or node,
# so only the sources Google documents for federation are allowed by default:
#   /var/run/service-account/token: the projected ServiceAccount token of Google's "Workload Identity
#     Federation with Kubernetes" guide (EKS, AKS, any cluster with an OIDC issuer), mounted only if the
#     chart's user mounts it;
#   azure: Azure's instance metadata token endpoint (http://169.254.169.254/metadata/identity/oauth2/token,
#     header Metadata: True), Google's "federation with Azure" configuration;
#   aws: environment_id aws1 with the EC2 instance metadata endpoints (169.254.169.254 or fd00:ec2::254),
#     Google's "federation with AWS" configuration.
# An entry starting with "/" allows that file (or, ending in "/", the files below it); one starting with
# http:// or https:// allows URLs on that scheme, host and port under that path; "none" allows nothing.
DEFAULT_CREDENTIAL_SOURCES = ("/var/run/service-account/token", "azure", "aws")
# Never, whatever the setting: the operator's own API credentials.
_NEVER_READ = ("/var/run/secrets/kubernetes.io/", "/run/secrets/kubernetes.io/", "/proc/", "/sys/", "/dev/")
_AZURE_IMDS_HOST = "169.254.169.254"
_AZURE_IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token"  # noqa: S105 -- a URL path
_AWS_IMDS_HOSTS = ("169.254.169.254", "[fd00:ec2::254]")
_AWS_IMDS_PATHS = {
    "url": "/latest/meta-data/iam/security-credentials",
    "region_url": "/latest/meta-data/placement/availability-zone",
    "imdsv2_session_token_url": "/latest/api/token",
}
_AWS_VERIFICATION_URL = "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
_SOURCE_KEYS = frozenset({
    "file", "url", "headers", "format", "environment_id", "region_url", "regional_cred_verification_url",
    "imdsv2_session_token_url",
})


class _Identity(NamedTuple):
    """Who is asking Google, for messages, and what to check when Google rejects it."""

    who: str
    if_rejected: str
    # Hosts (netloc) a subject token is fetched from, to tell the credential source's answers from Google's.
    source_hosts: frozenset[str] = frozenset()


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
        clock: Callable[[], datetime.datetime] = utcnow,
        credential_sources: Iterable[str] | None = None,
    ) -> None:
        """
        ``iam_endpoint_override``: base URL of the IAM Credentials API (default
        ``https://iamcredentials.googleapis.com``), for impersonation, both ``impersonateServiceAccount``'s and
        an external-account configuration's. ``sts_endpoint_override``: the Security Token Service URL that
        replaces every external-account configuration's ``token_url``. Both for private or regional endpoints
        and for tests; a service-account key names its own token endpoint (``token_uri``).
        ``request``: the google-auth HTTP transport (default: ``requests``).
        ``credential_sources``: where a federation configuration may take its subject token from
        (REGCRED_GOOGLE_CREDENTIAL_SOURCES; default :data:`DEFAULT_CREDENTIAL_SOURCES`).
        """
        self.spec = spec
        self.iam_endpoint_override = iam_endpoint_override.rstrip("/") if iam_endpoint_override else None
        self.sts_endpoint_override = sts_endpoint_override
        self._request = request
        self._clock = clock
        self.credential_sources = _SourcePolicy(
            DEFAULT_CREDENTIAL_SOURCES if credential_sources is None else tuple(credential_sources)
        )

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
        except (RecursionError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as error:
            # google-auth parses answers (a credential source's, Google's) with json.loads and catches ValueError
            # only, and reads their fields without checking types ("expires_in": [], "expireTime": true, a body
            # that is a list or not UTF-8); requests raises ValueError for a Location or URL it cannot parse.
            # Whatever was answered must still end as a sentence.
            host = _netloc(transport.last_url) or "a credential source"
            status = f"HTTP {transport.last_status}, " if transport.last_status is not None else ""
            what = "JSON nested too deeply to read" if isinstance(error, RecursionError) else (
                f"a response or a redirect the operator cannot read ({type(error).__name__})")
            raise ProviderError(
                f"{host} answered {identity.who} with {what} ({status}no details); the operator will retry.",
                reason=REASON_INVALID_RESPONSE,
                retryable=True,
            ) from None

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
        refusal = self.credential_sources.refusal(source, info.get("subject_token_type"))
        if refusal is not None:
            raise InvalidSourceSecret(f"Secret {ref} holds an external-account configuration {refusal}")
        source_urls = [
            str(source[field])
            for field in ("url", "region_url", "imdsv2_session_token_url")
            if isinstance(source, Mapping) and isinstance(source.get(field), str)
        ]
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
            try:
                match = _IMPERSONATION_PATH.search(urllib.parse.urlsplit(str(impersonation_url)).path)
            except ValueError:  # "http://[": refused below like any other URL that is not Google's
                match = None
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
            frozenset(urllib.parse.urlsplit(url).netloc for url in source_urls),
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
    if len(raw) > MAX_CREDENTIAL_BYTES:
        raise InvalidSourceSecret(
            f"Secret {ref} has a {key} of {len(raw)} bytes; a Google service-account key or external-account "
            f"configuration is a few kilobytes, and the operator reads at most {MAX_CREDENTIAL_BYTES}."
        )
    if _json_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidSourceSecret(
            f"Secret {ref} has a {key} nested deeper than {MAX_JSON_DEPTH} levels; it must hold a Google "
            "service-account key or an external-account configuration as downloaded from Google Cloud."
        )
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidSourceSecret(
            f"Secret {ref} has a {key} that is not JSON; it must hold a Google service-account key or an "
            "external-account configuration as downloaded from Google Cloud."
        ) from None
    if not isinstance(info, dict):
        raise InvalidSourceSecret(f"Secret {ref} has a {key} that is JSON but not an object with a \"type\".")
    return info


def _json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


class _SourcePolicy:
    """Which ``credential_source`` of a federation configuration may be used (see DEFAULT_CREDENTIAL_SOURCES)."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = [entry.strip() for entry in entries if entry.strip()]
        self.files = tuple(entry for entry in entries if entry.startswith("/"))
        self.urls = tuple(
            urllib.parse.urlsplit(entry) for entry in entries if entry.lower().startswith(("http://", "https://"))
        )
        self.azure = "azure" in entries
        self.aws = "aws" in entries
        self.described = ", ".join(entries) if entries and entries != ["none"] else "none"

    def refusal(self, source: object, subject_token_type: object) -> str | None:
        """Why the configuration's credential source may not be used (the end of a sentence), or None."""
        allowed = f"(allowed: {self.described}; REGCRED_GOOGLE_CREDENTIAL_SOURCES sets the list)."
        if not isinstance(source, Mapping):
            return (
                "without a credential_source object; generate it with "
                "`gcloud iam workload-identity-pools create-cred-config`."
            )
        if source.get("executable") is not None:
            return (
                "with an executable credential source; the operator does not run programs named in a Secret. "
                "Use a file or URL credential source."
            )
        if source.get("certificate") is not None:
            return "with an X.509 certificate credential source, which the operator does not support."
        unknown = sorted(str(key)[:40] for key in source if key not in _SOURCE_KEYS)
        if unknown:
            return f"whose credential_source has fields the operator does not know: {', '.join(unknown)}."
        if source.get("environment_id") is not None:
            kinds = ["environment_id"] if source.get("file") is None else ["file", "environment_id"]
        else:
            kinds = [kind for kind in ("file", "url") if source.get(kind) is not None]
        if len(kinds) != 1:
            return "whose credential_source does not name exactly one of file, url or environment_id."
        fmt = source.get("format", {})
        if not isinstance(fmt, Mapping) or fmt.get("type", "text") not in ("text", "json") or not all(
            isinstance(fmt.get(name, ""), str) for name in ("type", "subject_token_field_name")
        ):
            return "whose credential_source format is not {\"type\": \"text\"} or {\"type\": \"json\", ...}."
        if kinds == ["environment_id"]:
            return self._aws_refusal(source, subject_token_type, allowed)
        if subject_token_type == _AWS_SUBJECT_TOKEN_TYPE:
            return "with the AWS subject token type but no environment_id \"aws1\"."
        for field in ("region_url", "regional_cred_verification_url", "imdsv2_session_token_url"):
            if field in source:
                return f"whose credential_source has {field}, which only an AWS (environment_id aws1) source takes."
        if kinds == ["file"]:
            if "headers" in source:
                return "whose credential_source file has headers, which only a URL source takes."
            return self._file_refusal(source["file"], allowed)
        return self._url_refusal(source["url"], source.get("headers"), allowed)

    def _file_refusal(self, path: object, allowed: str) -> str | None:
        if (
            not isinstance(path, str)
            or not path.startswith("/")
            or posixpath.normpath(path) != path
            or any(ord(char) < 0x20 for char in path)
        ):
            return "whose credential_source file is not an absolute, normalised path."
        if path.startswith(_NEVER_READ):
            return (
                "whose credential_source file is the operator's own Kubernetes API credentials or a kernel file; "
                "the operator never reads or sends those."
            )
        if any(path == entry or (entry.endswith("/") and path.startswith(entry)) for entry in self.files):
            return None
        return f"whose credential_source file is not one the operator may read {allowed}"

    def _url_refusal(self, url: object, headers: object, allowed: str) -> str | None:
        parts = _safe_url(url)
        if parts is None:
            return "whose credential_source url is not a plain http(s) URL."
        if headers is not None and not _only_azure_header(headers):
            return (
                "whose credential_source headers are not Azure's \"Metadata\": \"True\"; the operator sends no "
                "other header to a credential source."
            )
        if (
            self.azure
            and parts.scheme == "http"
            and parts.netloc == _AZURE_IMDS_HOST
            and parts.path == _AZURE_IMDS_TOKEN_PATH
        ):
            return None
        for entry in self.urls:
            base = entry.path if entry.path.endswith("/") else entry.path + "/"
            if (
                (parts.scheme, parts.netloc) == (entry.scheme.lower(), entry.netloc.lower())
                and (parts.path == entry.path or parts.path.startswith(base))
            ):
                return None
        return f"whose credential_source url is not one the operator may fetch {allowed}"

    def _aws_refusal(self, source: Mapping[str, Any], subject_token_type: object, allowed: str) -> str | None:
        if source.get("environment_id") != "aws1" or subject_token_type != _AWS_SUBJECT_TOKEN_TYPE:
            return (
                "whose credential_source environment_id is not \"aws1\" with the AWS subject token type "
                f"{_AWS_SUBJECT_TOKEN_TYPE}."
            )
        if not self.aws:
            return f"with an AWS credential source, which the operator may not use {allowed}"
        if "headers" in source:
            return "whose AWS credential_source has headers, which it does not take."
        if source.get("regional_cred_verification_url") != _AWS_VERIFICATION_URL:
            return f"whose regional_cred_verification_url is not AWS's {_AWS_VERIFICATION_URL}."
        for field, path in _AWS_IMDS_PATHS.items():
            if source.get(field) is None:
                continue
            parts = _safe_url(source[field])
            if (
                parts is None
                or parts.scheme != "http"
                or parts.netloc not in _AWS_IMDS_HOSTS
                or parts.path.rstrip("/") != path
                or parts.query
            ):
                return f"whose credential_source {field} is not the EC2 instance metadata endpoint http://169.254.169.254{path}."
        return None


def _only_azure_header(headers: object) -> bool:
    return isinstance(headers, Mapping) and all(
        isinstance(name, str) and name.lower() == "metadata" and isinstance(value, str) and value.lower() == "true"
        for name, value in headers.items()
    )


def _safe_url(url: object) -> urllib.parse.SplitResult | None:
    """The parts of an http(s) URL without user information, fragment, backslash or control characters."""
    if not isinstance(url, str) or len(url) > 2048 or any(ord(char) <= 0x20 or char == "\\" for char in url):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc or parts.fragment:
        return None
    return parts._replace(netloc=parts.netloc.lower())


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


def _netloc(url: str | None) -> str | None:
    """The host[:port] of a URL that may not parse (a key's token_uri of "http://[")."""
    try:
        return urllib.parse.urlsplit(url or "").netloc or None
    except ValueError:
        return None


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
    """What went wrong, in a sentence with the HTTP status and at most an error code: never a response body
    (Google's or a credential source's), which may echo a token, a claim, or whatever a source answered."""
    status = transport.last_status
    url = transport.last_url or ""
    host = _netloc(url) or "Google"
    code, google_says = _google_says(error, status)
    at_iam = target is not None and url.endswith(":generateAccessToken")

    if transport.calls == 0:
        # Nothing was sent: google-auth could not even read its subject token (a federation token file). This
        # text is google-auth's own (a path the configuration names), never a file's content.
        return ProviderError(
            f"The Google credential of {identity.who} cannot be used ({_first_line(error, secrets)}).",
            reason=REASON_CREDENTIALS_MISSING,
            retryable=True,
        )
    if host in identity.source_hosts:
        what = "could not be reached" if status is None else f"answered HTTP {status}"
        return ProviderError(
            f"The credential source at {host} of {identity.who} {what} ({google_says}), so there is no subject "
            "token to exchange; the operator will retry.",
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
            f"Google at {host} is throttling or failing ({google_says}); the operator will retry.",
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
            f"Google denied {identity.who} impersonating {target} ({google_says}): the source identity "
            f"needs roles/iam.serviceAccountTokenCreator on {target}, and {target} must exist and be enabled "
            "in a project with the IAM Service Account Credentials API enabled.",
            reason=REASON_IMPERSONATION_DENIED,
            retryable=False,
        )
    if at_iam and status != 401:
        return ProviderError(
            f"Google refused to mint a token for {target} as {identity.who} ({google_says}); check "
            "spec.provider.gar.impersonateServiceAccount.",
            reason=REASON_IMPERSONATION_FAILED,
            retryable=False,
        )
    return ProviderError(
        f"Google rejected {identity.who} ({google_says}); {identity.if_rejected}.",
        reason=REASON_TOKEN_REJECTED,
        retryable=False,
    )


def _google_says(error: google.auth.exceptions.GoogleAuthError, status: int | None) -> tuple[str | None, str]:
    """The OAuth error code (if any) and what may be said of the answer: the HTTP status and an error code
    (``invalid_grant``, ``PERMISSION_DENIED``) when the body holds one of that shape, nothing else from it."""
    code: str | None = None
    label: str | None = None
    for data in error.args:
        if isinstance(data, bytes):
            data = data[:_MAX_ERROR_BODY].decode("utf-8", "replace")
        if isinstance(data, str):
            if len(data) > _MAX_ERROR_BODY or _json_depth(data.encode()) > MAX_JSON_DEPTH:
                continue
            try:
                data = json.loads(data)
            except (ValueError, RecursionError):
                continue
        if not isinstance(data, Mapping):
            continue
        detail = data.get("error")
        if isinstance(detail, Mapping):  # Google API style: {"error": {"code", "message", "status"}}
            value = detail.get("status")
            if isinstance(value, str) and _GOOGLE_STATUS.match(value):
                label = value
        elif isinstance(detail, str) and _OAUTH_CODE.match(detail):  # OAuth style: {"error", "error_description"}
            code = label = detail
        if label:
            break
    if status is None:
        first = error.args[0] if error.args else None
        # A wrapped exception (a transport failure): its type says enough, its text is a long urllib3 story.
        while isinstance(first, google.auth.exceptions.GoogleAuthError) and first.args:
            first = first.args[0]
        return code, type(first).__name__ if isinstance(first, BaseException) else "no answer"
    return code, f"HTTP {status}: {label}" if label else f"HTTP {status}"


def _first_line(error: Exception, secrets: Iterable[str] = ()) -> str:
    """The first line of google-auth's text, scrubbed of the secrets in play, then shortened."""
    text = str(error).strip()
    line = text.splitlines()[0].strip().rstrip(".") if text else type(error).__name__
    return redact(line, secrets, limit=_GOOGLE_MESSAGE_LIMIT) or "no details"
