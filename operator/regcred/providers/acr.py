"""Azure Container Registry: an ACR refresh token, username ``00000000-0000-0000-0000-000000000000``.

Two steps. First a Microsoft Entra ID access token for one identity, through the official ``azure-identity``
library: AKS workload identity (the operator's projected ServiceAccount token, ``AZURE_FEDERATED_TOKEN_FILE``,
exchanged for a token of the app registration or user-assigned identity that trusts it), a service
principal's client secret or certificate from a Secret, or a managed identity through the instance metadata
service. Then that token is exchanged at ``https://<registry>/oauth2/exchange`` (``grant_type=access_token``)
for an ACR refresh token, which container runtimes accept as a password for that username. The refresh
token lasts about 3 hours; its own ``exp`` claim is its expiry, and the reconciler refreshes at about two
thirds of it.

Every failure becomes a :class:`ProviderError` whose reason says what kind of failure it is and whose
message says what to fix, with the HTTP status and at most an error code that matches its pattern (Entra
ID's ``AADSTS70021``, ACR's ``UNAUTHORIZED``): never a response body nor azure-identity's text, which may
quote one, so that no token, assertion or secret can reach a message (there is nothing for regcred.redact
to scrub).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    CredentialUnavailableError,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from google.auth import jwt as google_jwt

from regcred.models import AcrSpec, SecretRef
from regcred.providers.base import InvalidSourceSecret, ProviderError, SecretReader, Token, utcnow

logger = logging.getLogger(__name__)

ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
CLIENT_SECRET_KEY = "client-secret"  # noqa: S105 -- the name of a Secret key, not a value
CERTIFICATE_KEY = "certificate.pem"
USER_AGENT = "regcred-operator"
# Connect and read timeouts of the exchange, and of azure-identity's requests (its own defaults wait up to
# 300 s): one mint must not hang.
REQUEST_TIMEOUT = (5.0, 15.0)
# azure-core retries 10 times with back-off, honouring any Retry-After; the reconciler has its own back-off
# and must not spend minutes in one mint.
_RETRIES: dict[str, Any] = {"retry_total": 0}
# An ACR refresh token is a JWT of 1-2 KB; the exchange's answer is that in a small JSON object.
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TOKEN_CHARS = 16 * 1024
# ACR hands out refresh tokens for 3 hours. An exp further ahead than this is not believed: a token the
# operator would otherwise keep for days without refreshing.
MAX_LIFETIME = datetime.timedelta(hours=24)

# Condition reasons this provider reports (ProviderError.reason).
REASON_CREDENTIALS_MISSING = "AzureCredentialsMissing"
REASON_TOKEN_REJECTED = "AzureTokenRejected"  # noqa: S105 -- a condition reason, not a value
REASON_EXCHANGE_REJECTED = "AcrExchangeRejected"
REASON_UNAVAILABLE = "AzureUnavailable"
REASON_INVALID_RESPONSE = "AzureInvalidResponse"

_AADSTS = re.compile(r"\bAADSTS\d{4,8}\b")
_ACR_CODE = re.compile(r"^[A-Z][A-Z_]{0,63}$")  # ACR's errors[].code: UNAUTHORIZED, DENIED, ...
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
_IDENTITY_ENV = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE")


class _Identity(NamedTuple):
    """Who is asking Entra ID, for messages, and the tenant the exchange is told (None: ACR reads it from the
    token)."""

    who: str
    tenant: str | None
    if_rejected: str


class AcrProvider:
    """Mints an ACR refresh token for the spec's registry from an Entra ID identity."""

    user_managed = False  # renewable: minted again before expiry

    def __init__(
        self,
        spec: AcrSpec,
        *,
        authority_host: str | None = None,
        exchange_url: str | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], datetime.datetime] = utcnow,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """
        ``authority_host``: the Entra ID authority (default: azure-identity's, ``AZURE_AUTHORITY_HOST`` or
        https://login.microsoftonline.com), for sovereign clouds and tests. ``exchange_url``: the base URL the
        exchange is sent to instead of ``https://<registry>`` (an egress proxy; tests). ``environ``: where the
        workload identity webhook's ``AZURE_*`` variables are read (default: the process environment).
        ``session``: the HTTP session of every request, azure-identity's and the exchange (tests; default: one
        per mint).
        """
        self.spec = spec
        self.authority_host = authority_host.rstrip("/") if authority_host else None
        self.exchange_base = (exchange_url or f"https://{spec.registry}").rstrip("/")
        self._session = session
        self._clock = clock
        self._environ = os.environ if environ is None else environ

    def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
        return None  # nothing a person must do about it

    def mint(self, read_secret: SecretReader) -> Token:
        transport = _RecordingTransport(session=self._session, session_owner=self._session is None,
                                        connection_timeout=REQUEST_TIMEOUT[0], read_timeout=REQUEST_TIMEOUT[1])
        credential, identity = self._credential(read_secret, transport)
        access_token = self._access_token(credential, identity, transport)
        if self._session is not None:
            refresh_token, expires_at = self._exchange(self._session, access_token, identity)
        else:
            with requests.Session() as session:
                refresh_token, expires_at = self._exchange(session, access_token, identity)
        logger.debug("Minted an ACR refresh token for %s as %s, expiring at %s.", self.spec.registry,
                     identity.who, expires_at.isoformat())
        return Token(hosts=(self.spec.registry,), username=ACR_USERNAME, password=refresh_token,
                     expires_at=expires_at)

    # -- the Entra ID token ----------------------------------------------------------------------------

    def _options(self, transport: RequestsTransport) -> dict[str, Any]:
        options = {**_RETRIES, "transport": transport}
        if self.authority_host is None:
            return options
        # An authority that is not one of Azure's well-known hosts is only used with instance discovery off
        # (MSAL would otherwise ask login.microsoftonline.com whether it is valid).
        return {**options, "authority": self.authority_host, "disable_instance_discovery": True}

    def _credential(self, read_secret: SecretReader, transport: RequestsTransport) -> tuple[TokenCredential, _Identity]:
        spec = self.spec
        try:
            if spec.identity == "ServicePrincipal":
                return self._service_principal(read_secret, transport)
            if spec.identity == "ManagedIdentity":
                who = (f"the user-assigned managed identity {spec.client_id}" if spec.client_id
                       else "the system-assigned managed identity")
                # azure-identity would take workload identity instead when the AZURE_* variables are set; the
                # spec asked for the instance metadata service.
                return ManagedIdentityCredential(client_id=spec.client_id, _exclude_workload_identity_credential=True,
                                                 **self._options(transport)), _Identity(
                    who, spec.tenant_id,
                    "check that the identity is assigned to the node's VM or scale set (AKS: the kubelet "
                    "identity or one added to the node pool)")
            return self._workload_identity(transport)
        except ValueError:
            # azure-identity's own checks of a tenant or client ID, and of a certificate; its text may quote them.
            raise InvalidSourceSecret(
                f"The Azure {spec.identity} settings of spec.provider.acr cannot be used: check the tenant and "
                "client IDs (and, for a certificate, that it is a PEM private key with its certificate)."
            ) from None

    def _workload_identity(self, transport: RequestsTransport) -> tuple[TokenCredential, _Identity]:
        spec, env = self.spec, self._environ
        tenant = spec.tenant_id or env.get("AZURE_TENANT_ID") or None
        client = spec.client_id or env.get("AZURE_CLIENT_ID") or None
        token_file = env.get("AZURE_FEDERATED_TOKEN_FILE") or None
        if tenant is None or client is None or token_file is None:
            missing = ", ".join(name for name, value in zip(_IDENTITY_ENV, (tenant, client, token_file), strict=True)
                                if value is None)
            raise ProviderError(
                f"Azure workload identity is not set up for the operator ({missing} not set): label the "
                "operator's pods azure.workload.identity/use=true (the chart's podLabels) and annotate its "
                "ServiceAccount with azure.workload.identity/client-id, or set spec.provider.acr.servicePrincipal "
                "or managedIdentity.",
                reason=REASON_CREDENTIALS_MISSING,
                retryable=True,  # the operator's pod can be given an identity without changing the spec
            )
        credential = WorkloadIdentityCredential(tenant_id=tenant, client_id=client, token_file_path=token_file,
                                                **self._options(transport))
        return credential, _Identity(
            f"the workload identity {client} (tenant {tenant})", tenant,
            f"check that {client} has a federated credential for the operator's ServiceAccount (issuer: the "
            "cluster's OIDC issuer URL, subject system:serviceaccount:<namespace>:<name>)")

    def _service_principal(self, read_secret: SecretReader,
                           transport: RequestsTransport) -> tuple[TokenCredential, _Identity]:
        spec = self.spec
        ref = spec.credentials_secret_ref
        if ref is None or spec.tenant_id is None or spec.client_id is None:  # the model requires them
            raise InvalidSourceSecret("spec.provider.acr.servicePrincipal needs tenantId, clientId and secretRef.")
        data = read_secret(ref.namespace, ref.name)
        client_secret, certificate = data.get(CLIENT_SECRET_KEY), data.get(CERTIFICATE_KEY)
        if (client_secret is None) == (certificate is None):
            present = ", ".join(sorted(data)) or "none"
            raise InvalidSourceSecret(
                f"Secret {ref} must hold exactly one of the keys {CLIENT_SECRET_KEY} (the client secret's value) "
                f"or {CERTIFICATE_KEY} (a PEM private key with its certificate); keys present: {present}."
            )
        who = f"the service principal {spec.client_id} (tenant {spec.tenant_id}, Secret {ref})"
        if client_secret is not None:
            value = _secret_text(client_secret, ref, CLIENT_SECRET_KEY)
            credential: TokenCredential = ClientSecretCredential(spec.tenant_id, spec.client_id, value,
                                                                 **self._options(transport))
            return credential, _Identity(who, spec.tenant_id,
                                         f"the client secret in Secret {ref} may be expired, deleted or the "
                                         "secret's ID instead of its value")
        assert certificate is not None
        if b"ENCRYPTED" in certificate:
            raise InvalidSourceSecret(f"The private key in Secret {ref} (key {CERTIFICATE_KEY}) is encrypted; "
                                      "store it unencrypted.")
        credential = CertificateCredential(spec.tenant_id, spec.client_id, certificate_data=certificate,
                                           **self._options(transport))
        return credential, _Identity(who, spec.tenant_id,
                                     f"the certificate in Secret {ref} may be expired or not uploaded to the "
                                     "app registration")

    def _access_token(self, credential: TokenCredential, identity: _Identity, transport: _RecordingTransport) -> str:
        try:
            token = credential.get_token(self.spec.scope).token
        except (ServiceRequestError, ServiceResponseError, ClientAuthenticationError) as error:
            raise _entra_error(error, identity, transport) from None
        except OSError as error:
            raise ProviderError(
                f"The federated token file of {identity.who} cannot be read ({type(error).__name__}); check the "
                "AZURE_FEDERATED_TOKEN_FILE the workload identity webhook sets.",
                reason=REASON_CREDENTIALS_MISSING, retryable=True,
            ) from None
        except (AzureError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
            # An answer that is not the JSON azure-identity expects (or nested too deep to read): only its type
            # is said, as the text may quote the answer.
            raise ProviderError(
                f"Microsoft Entra ID answered {identity.who} with a response the operator cannot use "
                f"({type(error).__name__}); the operator will retry.",
                reason=REASON_INVALID_RESPONSE, retryable=True,
            ) from None
        finally:
            close = getattr(credential, "close", None)
            if callable(close):
                close()
        if not isinstance(token, str) or not token:
            raise ProviderError("Microsoft Entra ID answered without an access token.",
                                reason=REASON_INVALID_RESPONSE, retryable=True)
        return token

    # -- the exchange ------------------------------------------------------------------------------------

    def _exchange(self, session: requests.Session, access_token: str,
                  identity: _Identity) -> tuple[str, datetime.datetime]:
        registry = self.spec.registry
        url = f"{self.exchange_base}/oauth2/exchange"
        host = urllib.parse.urlsplit(url).netloc
        form = {"grant_type": "access_token", "service": registry, "access_token": access_token}
        if identity.tenant:
            form["tenant"] = identity.tenant
        try:
            response = session.post(url, data=form, timeout=REQUEST_TIMEOUT, allow_redirects=False, stream=True,
                                    headers={"Accept": "application/json", "User-Agent": USER_AGENT})
            with response:
                body = _bounded_body(response)
        except requests.exceptions.SSLError:
            raise ProviderError(
                f"The TLS handshake with {host} failed during the ACR token exchange; the operator will retry. "
                "Check that the operator trusts the registry's certificate (REQUESTS_CA_BUNDLE).",
                reason=REASON_UNAVAILABLE, retryable=True,
            ) from None
        except (requests.exceptions.RequestException, ValueError) as error:
            # ValueError: requests parses a redirect's Location even when it does not follow it ("http://[").
            raise ProviderError(
                f"The registry {host} could not be reached for the ACR token exchange ({type(error).__name__}); "
                "the operator will retry.",
                reason=REASON_UNAVAILABLE, retryable=True,
            ) from None

        status = response.status_code
        if body is None:
            raise ProviderError(
                f"The registry {host} answered the ACR token exchange with more than {MAX_RESPONSE_BYTES} bytes "
                f"(HTTP {status}), more than any token; the operator will retry.",
                reason=REASON_INVALID_RESPONSE, retryable=True,
            )
        says = _acr_says(status, body)
        if status in (401, 403):
            raise ProviderError(
                f"The registry {registry} refused to exchange the Entra ID token of {identity.who} ({says}): the "
                "token must be for the registry's tenant (for a registry in another tenant, set tenantId) with "
                f"the scope {self.spec.scope}; a registry whose authentication-as-arm policy is disabled takes "
                "only the ACR scope.",
                reason=REASON_EXCHANGE_REJECTED, retryable=False,
            )
        if status in (408, 429) or status >= 500:
            raise ProviderError(
                f"The registry {registry} is throttling or failing the ACR token exchange ({says}); the operator "
                "will retry.",
                reason=REASON_UNAVAILABLE, retryable=True,
            )
        if status != 200:
            raise ProviderError(
                f"The registry {registry} refused the ACR token exchange ({says}); check spec.provider.acr.registry "
                "(the login server, such as myregistry.azurecr.io).",
                reason=REASON_EXCHANGE_REJECTED, retryable=False,
            )
        return self._refresh_token(body, host)

    def _refresh_token(self, body: bytes, host: str) -> tuple[str, datetime.datetime]:
        def invalid(what: str) -> ProviderError:
            return ProviderError(
                f"The registry {host} answered the ACR token exchange with a response the operator cannot use: "
                f"{what}; the operator will retry.",
                reason=REASON_INVALID_RESPONSE, retryable=True,
            )

        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested too deep to read
            raise invalid("it is not JSON") from None
        token = answer.get("refresh_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise invalid("it has no refresh_token")
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.match(token):
            raise invalid("its refresh_token is not a token")
        expires_at = _expiry(token)
        if expires_at is None:
            raise invalid("its refresh_token carries no readable expiry (exp)")
        # One already expired is refused by the reconciler, on its own clock.
        if expires_at - self._clock() > MAX_LIFETIME:
            raise invalid(f"its refresh_token claims to last until {expires_at:%Y-%m-%dT%H:%M:%SZ}, longer than "
                          "any ACR refresh token")
        return token, expires_at


# -- helpers ---------------------------------------------------------------------------------------------


_decode_unverified = cast(Callable[..., Mapping[str, Any]], google_jwt.decode)


def _expiry(token: str) -> datetime.datetime | None:
    """The ``exp`` claim of a JWT, read without checking its signature: the operator only needs to know when
    to mint again, and a token that lies about it costs at most an early refresh or a failed pull that the
    next refresh repairs. ACR, which checks it, is the one that trusts it."""
    try:
        claims = _decode_unverified(token, verify=False)
    except (ValueError, TypeError, RecursionError, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, Mapping) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp < 2**33:
        return None
    return datetime.datetime.fromtimestamp(int(exp), datetime.UTC)


def _bounded_body(response: requests.Response) -> bytes | None:
    """The (decoded) body, or None past MAX_RESPONSE_BYTES: a server cannot make the operator hold more."""
    body = bytearray()
    for chunk in response.iter_content(chunk_size=8192):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            return None
    return bytes(body)


def _acr_says(status: int, body: bytes) -> str:
    """``HTTP <status>`` and ACR's error code (``{"errors": [{"code": "UNAUTHORIZED", ...}]}``), nothing else of
    the body, which may quote the token that was sent."""
    code = None
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        answer = None
    errors = answer.get("errors") if isinstance(answer, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    if isinstance(first, dict) and isinstance(first.get("code"), str) and _ACR_CODE.match(first["code"]):
        code = first["code"]
    return f"HTTP {status}: {code}" if code else f"HTTP {status}"


class _RecordingTransport(RequestsTransport):  # type: ignore[misc]  # azure-core exports it lazily, untyped
    """Remembers the status of the last answer: azure-identity's errors do not carry it when MSAL made the
    request, and it tells a rejected identity (4xx) from an outage (5xx, 429, no answer)."""

    calls = 0
    last_status: int | None = None

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.last_status = None
        response = super().send(request, **kwargs)
        self.last_status = int(response.status_code)
        return response


def _entra_error(error: AzureError, identity: _Identity, transport: _RecordingTransport) -> ProviderError:
    """What went wrong, with the HTTP status and the first AADSTS code in azure-identity's text: never the rest
    of that text, which quotes Entra ID's or the metadata service's answer."""
    status = transport.last_status
    codes = _AADSTS.findall(str(error.message or error)[:8192])
    says = ", ".join(filter(None, [f"HTTP {status}" if status else None, codes[0] if codes else None])) or "no details"
    if transport.calls and status is None:
        return ProviderError(
            f"Microsoft Entra ID could not be reached for {identity.who} ({_unreachable(error)}); the operator will "
            "retry.",
            reason=REASON_UNAVAILABLE, retryable=True,
        )
    if status is not None and (status in (408, 429) or status >= 500):
        return ProviderError(
            f"Microsoft Entra ID is throttling or failing for {identity.who} ({says}); the operator will retry.",
            reason=REASON_UNAVAILABLE, retryable=True,
        )
    if isinstance(error, CredentialUnavailableError):  # azure-identity's own text may quote the answer
        return ProviderError(
            f"{identity.who[:1].upper()}{identity.who[1:]} is not available to the operator ({says}); "
            f"{identity.if_rejected}.",
            reason=REASON_CREDENTIALS_MISSING, retryable=True,
        )
    return ProviderError(
        f"Microsoft Entra ID rejected {identity.who} ({says}); {identity.if_rejected}.",
        reason=REASON_TOKEN_REJECTED, retryable=False,
    )


def _unreachable(error: BaseException) -> str:
    """The type of the transport failure under azure-identity's wrapping (its text is a long urllib3 story)."""
    seen: BaseException | None = error
    while seen is not None and isinstance(seen, ClientAuthenticationError) and seen.__cause__ is not None:
        seen = seen.__cause__
    return type(seen).__name__ if seen is not None else "no answer"


def _secret_text(raw: bytes, ref: SecretRef, key: str) -> str:
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidSourceSecret(f"Secret {ref} has a {key} that is not UTF-8 text.") from None
    if not text or any(char.isspace() or not char.isprintable() for char in text):
        raise InvalidSourceSecret(f"The value of key {key} in Secret {ref} is empty or has spaces or line breaks; "
                                  "store the client secret's value alone.")
    return text
