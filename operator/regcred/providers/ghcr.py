"""GitHub Container Registry (ghcr.io, or GitHub Enterprise Server's ``containers.<host>``).

Two ways in, one per block of ``spec.provider.ghcr``:

* **A personal access token** (``tokenSecretRef`` + ``username``). The operator cannot renew a PAT: it
  re-reads the Secret at every reconciliation (``user_managed``), checks the token with one
  ``GET {api}/user`` and reads its expiry from GitHub's ``GitHub-Authentication-Token-Expiration``
  response header. ``/user`` is the cheapest call that every PAT can make whatever its scopes (a classic
  PAT with only ``read:packages``, or a fine-grained PAT with no permission at all); it also answers with
  ``X-OAuth-Scopes`` for classic PATs, which tells a PAT that cannot pull packages. A PAT that passed is
  not asked about again before ``recheck_after`` (the resync period, see :class:`PatChecks`); a changed
  PAT is checked at once, and a failed check is never remembered. The expiry never
  prevents writing the token: it becomes ``Token.expires_at`` (shown in status and on the Secrets) and
  :func:`pat_expiry_warning` says, well before it lapses, that a person must create a new one.
* **A GitHub App installation** (``app``). The operator signs an App JWT (RS256) with the App's private
  key and exchanges it for an installation token, valid one hour, username ``x-access-token``.
  **GitHub does not reliably accept installation tokens for package pulls on ghcr.io**: GitHub documents
  GitHub Packages as accepting personal access tokens (classic) only, and in practice an installation
  token pulls some packages and not others. Use App mode together with ``spec.verify``, so that a token
  the registry refuses never replaces a working one.

Every failure becomes a :class:`ProviderError` whose reason says what kind of failure it is and whose
message says what to fix. No message and no log line ever contains the PAT, the App JWT, the private
key or the installation token.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import cryptography.exceptions
import requests
from google.auth import crypt
from google.auth import jwt as google_jwt

from regcred.models import GhcrAppSpec, GhcrSpec, SecretRef, SpecError
from regcred.providers.base import InvalidSourceSecret, ProviderError, SecretReader, Token
from regcred.redact import redact

logger = logging.getLogger(__name__)

GITHUB_API_URL = "https://api.github.com"
GHCR_HOST = "ghcr.io"
APP_USERNAME = "x-access-token"
USER_AGENT = "regcred-operator"
API_VERSION = "2022-11-28"
ACCEPT = "application/vnd.github+json"
EXPIRATION_HEADER = "GitHub-Authentication-Token-Expiration"
SCOPES_HEADER = "X-OAuth-Scopes"
DEFAULT_TOKEN_KEY = "token"  # noqa: S105 -- the name of a Secret key, not a value
DEFAULT_PRIVATE_KEY_KEY = "private-key.pem"
# Connect and read timeouts of every request: one mint must not hang; the reconciler retries.
REQUEST_TIMEOUT = (5.0, 10.0)
# GitHub rejects App JWTs that live longer than 10 minutes and recommends back-dating `iat` by 60 seconds
# against clock drift; 9 minutes leaves a margin for our own clock running ahead.
JWT_BACKDATE = datetime.timedelta(seconds=60)
JWT_LIFETIME = datetime.timedelta(minutes=9)
PAT_WARN_BEFORE = datetime.timedelta(days=14)
# A classic PAT pulls with any of these (write and delete imply read).
PACKAGE_SCOPES = frozenset({"read:packages", "write:packages", "delete:packages"})

# Condition reasons this provider reports (ProviderError.reason).
REASON_TOKEN_REJECTED = "GitHubTokenRejected"  # noqa: S105 -- a condition reason, not a value
REASON_TOKEN_MISSING_SCOPE = "GitHubTokenMissingScope"  # noqa: S105 -- a condition reason, not a value
REASON_APP_REJECTED = "GitHubAppRejected"
REASON_INSTALLATION_NOT_FOUND = "GitHubInstallationNotFound"
REASON_RATE_LIMITED = "GitHubRateLimited"
REASON_UNAVAILABLE = "GitHubUnavailable"
REASON_INVALID_RESPONSE = "GitHubInvalidResponse"
REASON_REQUEST_FAILED = "GitHubRequestFailed"

_GITHUB_MESSAGE_LIMIT = 200
_EXPIRATION_FORMAT = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(UTC|GMT|Z|[+-]\d{2}:?\d{2})?$"
)

# google-auth's crypt and jwt modules are untyped; these are the two signatures used here.
_load_rsa_signer = cast(Callable[[bytes], crypt.Signer], crypt.RSASigner.from_string)
_encode_jwt = cast(Callable[[crypt.Signer, Mapping[str, Any]], bytes], google_jwt.encode)


def _system_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class _PatCheck:
    checked_at: datetime.datetime
    login: str | None
    expires_at: datetime.datetime | None


class PatChecks:
    """What GitHub's ``/user`` said about each PAT that passed, by API URL and a digest of the PAT.

    The reconciler makes a new provider at every wake-up (an event, a resync) and re-reads a PAT each time;
    asking GitHub each time would spend its rate limit on an answer that rarely changes. So a PAT that
    passed is asked about again only ``recheck_after`` later; a different PAT (a rotation) misses and is
    checked at once, and a failure is never recorded, so it is asked about again at the next wake-up.
    The PAT itself is not kept, only its SHA-256. Bounded: the least recently used entries go first.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._entries: collections.OrderedDict[str, _PatCheck] = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(api_url: str, token: str) -> str:
        return hashlib.sha256(f"{api_url}\n{token}".encode()).hexdigest()

    def recent(self, key: str, now: datetime.datetime, recheck_after: datetime.timedelta) -> _PatCheck | None:
        """The check of this PAT made less than ``recheck_after`` before ``now``, if any."""
        with self._lock:
            check = self._entries.get(key)
            if check is None or not check.checked_at <= now < check.checked_at + recheck_after:
                return None
            self._entries.move_to_end(key)
            return check

    def record(self, key: str, check: _PatCheck) -> None:
        with self._lock:
            self._entries[key] = check
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Shared by the providers of every wake-up of every credential in this process (see PatChecks).
PAT_CHECKS = PatChecks()


class GhcrProvider:
    """Mints a ghcr.io credential from a PAT (checked, with its expiry) or a GitHub App installation token.

    ``api_url_override`` replaces the GitHub API URL in both modes (an operator-wide setting, for an egress
    proxy and for tests). Without it the App mode uses ``spec.app.api_url``; the PAT mode uses
    https://api.github.com for ghcr.io and ``https://<host>/api/v3`` for GitHub Enterprise Server's
    ``containers.<host>``; for any other registry host it cannot check the PAT and writes it with an
    unknown expiry (``api_url`` is then None and :meth:`pat_notice` says so).

    ``recheck_after``: a PAT that passed its check less than this long ago (in ``checks``) is not checked
    again; None checks at every mint. The operator passes its resync period.
    """

    def __init__(
        self,
        spec: GhcrSpec,
        *,
        clock: Callable[[], datetime.datetime] | None = None,
        session: requests.Session | None = None,
        api_url_override: str | None = None,
        recheck_after: datetime.timedelta | None = None,
        checks: PatChecks = PAT_CHECKS,
    ) -> None:
        if (spec.app is None) == (spec.token_secret_ref is None):
            raise SpecError("spec.provider.ghcr needs exactly one of tokenSecretRef (a PAT) or app (a GitHub App).")
        if spec.app is not None:
            for field, value in (("appId", spec.app.app_id), ("installationId", spec.app.installation_id)):
                if not value.isdigit():
                    raise SpecError(f"spec.provider.ghcr.app.{field} must be a number, not {value!r}.")
        self.spec = spec
        self._clock = clock or _system_now
        self._session = session
        self.api_url = _api_url(spec, api_url_override)
        self._recheck_after = recheck_after
        self._checks = checks

    @property
    def user_managed(self) -> bool:
        """A PAT is created and renewed by a person; an App installation token is minted again before expiry."""
        return self.spec.app is None

    def mint(self, read_secret: SecretReader) -> Token:
        if self._session is not None:
            return self._mint(read_secret, self._session)
        with requests.Session() as session:
            return self._mint(read_secret, session)

    def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
        return self.pat_notice(expires_at, now)

    def pat_notice(
        self,
        expires_at: datetime.datetime | None,
        now: datetime.datetime,
        warn_before: datetime.timedelta = PAT_WARN_BEFORE,
    ) -> str | None:
        """A sentence for status about the PAT's expiry, or None when there is nothing to say (and in App mode).

        Says when the PAT expires within ``warn_before`` (or has expired), that it never expires, or that
        its expiry could not be read.
        """
        ref = self.spec.token_secret_ref
        if ref is None:
            return None
        if self.api_url is None:
            return (
                f"The operator cannot check the GitHub token for {self.spec.registry} or read its expiry: it "
                "knows no GitHub API URL for that registry host."
            )
        if expires_at is None:
            return pat_never_expires_note(registry=self.spec.registry, secret=ref)
        return pat_expiry_warning(expires_at, now, warn_before, registry=self.spec.registry, secret=ref)

    # -- minting ---------------------------------------------------------------------------------------

    def _mint(self, read_secret: SecretReader, session: requests.Session) -> Token:
        if self.spec.app is not None:
            return self._mint_app(self.spec.app, read_secret, session)
        assert self.spec.token_secret_ref is not None  # checked in __init__
        return self._check_pat(self.spec.token_secret_ref, read_secret, session)

    def _check_pat(self, ref: SecretRef, read_secret: SecretReader, session: requests.Session) -> Token:
        key = ref.key or DEFAULT_TOKEN_KEY
        token = _read_text(read_secret, ref, key, what="a GitHub personal access token")
        if not token.isascii() or any(c.isspace() or not c.isprintable() for c in token):
            raise InvalidSourceSecret(
                f"The value of key {key} in Secret {ref} is not a GitHub token: it contains spaces, line breaks "
                "or non-ASCII characters. Store the token alone."
            )
        registry = self.spec.registry
        if self.api_url is None:
            logger.warning(
                "No GitHub API URL is known for registry %s: writing its PAT unchecked, with an unknown expiry.",
                registry,
            )
            return Token(
                hosts=(registry,), username=self.spec.username or APP_USERNAME, password=token, expires_at=None
            )

        check_key = PatChecks.key(self.api_url, token)
        now = self._clock()
        if self._recheck_after is not None:
            recent = self._checks.recent(check_key, now, self._recheck_after)
            if recent is not None:
                return Token(hosts=(registry,), username=self.spec.username or recent.login or APP_USERNAME,
                             password=token, expires_at=recent.expires_at)

        url = f"{self.api_url}/user"
        response = _request(session, "GET", url, token, what=f"checking the GitHub token for {registry}")
        if response.status_code == 401:
            raise ProviderError(
                f"GitHub at {self.api_url} rejected the personal access token in Secret {ref} (key {key}) "
                f"({_github_says(response, [token])}): it is expired, revoked or mistyped. The operator cannot "
                f"renew a PAT: create a new one (classic, with the read:packages scope) and update Secret {ref}.",
                reason=REASON_TOKEN_REJECTED,
                retryable=False,
            )
        if response.status_code != 200:
            raise _http_error(
                response, [token], what=f"checking the GitHub token in Secret {ref}", api_url=self.api_url
            )

        scopes = response.headers.get(SCOPES_HEADER)
        if scopes is not None and not token.startswith("github_pat_"):
            granted = {scope.strip() for scope in scopes.split(",") if scope.strip()}
            if not granted & PACKAGE_SCOPES:
                listed = ", ".join(sorted(granted)) or "none"
                raise ProviderError(
                    f"The personal access token in Secret {ref} cannot pull from {registry}: it lacks the "
                    f"read:packages scope (its scopes: {listed}). Add read:packages to the token on GitHub, "
                    f"or create a new one and update Secret {ref}.",
                    reason=REASON_TOKEN_MISSING_SCOPE,
                    retryable=False,
                )

        expires_at = _expiration_header(response.headers.get(EXPIRATION_HEADER), ref)
        login = _login(response)
        self._checks.record(check_key, _PatCheck(now, login, expires_at))
        username = self.spec.username or login or APP_USERNAME
        logger.debug(
            "Checked the GitHub token for %s: %s.",
            registry,
            f"expires at {expires_at.isoformat()}" if expires_at else "no expiration date",
        )
        return Token(hosts=(registry,), username=username, password=token, expires_at=expires_at)

    def _mint_app(self, app: GhcrAppSpec, read_secret: SecretReader, session: requests.Session) -> Token:
        ref = app.private_key_secret_ref
        key = ref.key or DEFAULT_PRIVATE_KEY_KEY
        pem = _read_text(read_secret, ref, key, what="a GitHub App private key")
        app_jwt = _app_jwt(pem, app.app_id, self._clock(), ref, key)
        secrets = [app_jwt, pem]
        api_url = self.api_url or app.api_url
        url = f"{api_url}/app/installations/{app.installation_id}/access_tokens"
        what = f"an installation token of GitHub App {app.app_id} (installation {app.installation_id})"
        response = _request(session, "POST", url, app_jwt, what=f"requesting {what}")
        if response.status_code == 401:
            raise ProviderError(
                f"GitHub at {api_url} rejected the JWT of GitHub App {app.app_id} "
                f"({_github_says(response, secrets)}): check spec.provider.ghcr.app.appId, that Secret {ref} "
                f"(key {key}) holds a current private key of that App, and the operator's clock.",
                reason=REASON_APP_REJECTED,
                retryable=False,
            )
        if response.status_code == 404:
            raise ProviderError(
                f"GitHub at {api_url} knows no installation {app.installation_id} of GitHub App {app.app_id} "
                f"({_github_says(response, secrets)}): check spec.provider.ghcr.app.installationId (the number "
                "at the end of the installation's settings URL) and, for GitHub Enterprise Server, that apiUrl "
                "is the API URL (https://<host>/api/v3).",
                reason=REASON_INSTALLATION_NOT_FOUND,
                retryable=False,
            )
        if response.status_code not in (200, 201):
            raise _http_error(response, secrets, what=f"requesting {what}", api_url=api_url)

        token, expires_at = _installation_token(response)
        logger.debug(
            "Minted an installation token of GitHub App %s for %s, expiring at %s.",
            app.app_id,
            self.spec.registry,
            expires_at.isoformat(),
        )
        return Token(
            hosts=(self.spec.registry,),
            username=self.spec.username or APP_USERNAME,
            password=token,
            expires_at=expires_at,
        )


# -- PAT expiry: pure helpers for status and events ------------------------------------------------------


def pat_expiry_warning(
    expires_at: datetime.datetime | None,
    now: datetime.datetime,
    warn_before: datetime.timedelta = PAT_WARN_BEFORE,
    *,
    registry: str = GHCR_HOST,
    secret: SecretRef | str | None = None,
) -> str | None:
    """A sentence when the PAT expires within ``warn_before`` (or has expired), else None.

    For example, five days ahead: "The GitHub token for ghcr.io expires on 2026-12-31 (in 5 days); the
    operator cannot renew a PAT: create a new one and update Secret ns/name." Within two days the time of
    day is given too. The reconciler calls it at every reconciliation (a PAT is re-read each time).
    """
    if expires_at is None or expires_at - now > warn_before:
        return None
    update = f"update Secret {secret}" if secret is not None else "update its Secret"
    left = expires_at - now
    if left <= datetime.timedelta(0):
        return (
            f"The GitHub token for {registry} expired on {_when(expires_at, left)}; the operator cannot renew a "
            f"PAT: create a new one and {update}."
        )
    return (
        f"The GitHub token for {registry} expires on {_when(expires_at, left)} ({_in(left)}); the operator "
        f"cannot renew a PAT: create a new one and {update}."
    )


def pat_never_expires_note(*, registry: str = GHCR_HOST, secret: SecretRef | str | None = None) -> str:
    """The sentence for status when GitHub reports no expiration date for the PAT."""
    where = f" in Secret {secret}" if secret is not None else ""
    return (
        f"The GitHub token for {registry}{where} never expires (GitHub reports no expiration date for it); "
        "it works until someone revokes it."
    )


def parse_expiration(value: str) -> datetime.datetime | None:
    """GitHub's ``GitHub-Authentication-Token-Expiration`` value (``2026-12-31 23:59:59 UTC`` or
    ``2026-12-31 23:59:59 +0200``) as an aware UTC datetime; None when it has another form."""
    match = _EXPIRATION_FORMAT.match(value.strip())
    if match is None:
        return None
    day, time, zone = match.groups()
    if zone is None or zone in ("UTC", "GMT", "Z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.datetime.fromisoformat(f"{day}T{time}{zone}").astimezone(datetime.UTC)
    except (ValueError, OverflowError):  # not a time, or one UTC cannot hold (year 1 at +01:00)
        return None


def _when(expires_at: datetime.datetime, left: datetime.timedelta) -> str:
    at = expires_at.astimezone(datetime.UTC)
    if abs(left) < datetime.timedelta(days=2):
        return f"{at:%Y-%m-%d} at {at:%H:%M} UTC"
    return f"{at:%Y-%m-%d}"


def _in(left: datetime.timedelta) -> str:
    if left >= datetime.timedelta(days=2):
        return f"in {left.days} days"
    hours = int(left.total_seconds() // 3600)
    if hours >= 2:
        return f"in {hours} hours"
    minutes = max(int(left.total_seconds() // 60), 1)
    return f"in {minutes} minute{'s' if minutes != 1 else ''}"


# -- helpers --------------------------------------------------------------------------------------------


def _api_url(spec: GhcrSpec, override: str | None) -> str | None:
    """The GitHub REST API base URL (no trailing slash) for this spec, or None when none can be known."""
    if override:
        url = override
    elif spec.app is not None:
        url = spec.app.api_url or GITHUB_API_URL
    elif spec.registry == GHCR_HOST:
        url = GITHUB_API_URL
    elif spec.registry.startswith("containers."):
        # GitHub Enterprise Server serves its Container registry only with subdomain isolation, at
        # containers.<host>; its REST API is https://<host>/api/v3.
        url = f"https://{spec.registry.removeprefix('containers.')}/api/v3"
    else:
        return None
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SpecError(f"The GitHub API URL {url!r} is not an http(s) URL, such as https://github.example.com/api/v3.")
    return url.strip().rstrip("/")


def _read_text(read_secret: SecretReader, ref: SecretRef, key: str, *, what: str) -> str:
    data = read_secret(ref.namespace, ref.name)
    raw = data.get(key)
    if raw is None or not raw.strip():
        present = ", ".join(sorted(data)) or "none"
        raise InvalidSourceSecret(
            f"Secret {ref} has no key {key} (or it is empty); it should hold {what} (keys present: {present})."
        )
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidSourceSecret(f"Secret {ref} has a {key} that is not UTF-8 text; it should hold {what}.") from None


def _app_jwt(pem: str, app_id: str, now: datetime.datetime, ref: SecretRef, key: str) -> str:
    """The App's JWT: RS256, iat back-dated 60 s, exp 9 minutes after iat, iss the App ID."""
    if "\\n" in pem and "\n" not in pem:  # a PEM pasted with escaped newlines, as in an environment variable
        pem = pem.replace("\\n", "\n")
    if "ENCRYPTED" in pem:
        raise InvalidSourceSecret(
            f"The private key in Secret {ref} (key {key}) is encrypted; store it unencrypted, as GitHub "
            "downloads it (BEGIN RSA PRIVATE KEY)."
        )
    issued = int(now.timestamp() - JWT_BACKDATE.total_seconds())
    claims = {"iat": issued, "exp": issued + int(JWT_LIFETIME.total_seconds()), "iss": app_id}
    try:
        signer = _load_rsa_signer(pem.encode("utf-8"))
        return _encode_jwt(signer, claims).decode("ascii")
    except (ValueError, TypeError, cryptography.exceptions.UnsupportedAlgorithm):
        # The library's message is not shown: it cannot help more than this and might quote the input.
        raise InvalidSourceSecret(
            f'Secret {ref} (key {key}) does not hold a PEM-encoded RSA private key (PKCS#1 "BEGIN RSA '
            'PRIVATE KEY" as GitHub downloads it, or PKCS#8 "BEGIN PRIVATE KEY").'
        ) from None


def _request(session: requests.Session, method: str, url: str, credential: str, *, what: str) -> requests.Response:
    """One GitHub API call with the credential as a Bearer token (PATs, App JWTs), never following redirects.

    Transport failures become ProviderErrors that name the host, never the URL's answer or the credential.
    """
    headers = {
        "Accept": ACCEPT,
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": USER_AGENT,
        "Authorization": f"Bearer {credential}",
    }
    host = urllib.parse.urlsplit(url).netloc
    try:
        return session.request(method, url, headers=headers, timeout=REQUEST_TIMEOUT, allow_redirects=False)
    except requests.exceptions.SSLError:
        raise ProviderError(
            f"The TLS handshake with GitHub at {host} failed while {what}; the operator will retry. Check the "
            "API URL and that the operator trusts the server's certificate (REQUESTS_CA_BUNDLE).",
            reason=REASON_UNAVAILABLE,
            retryable=True,
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        raise ProviderError(
            f"GitHub at {host} could not be reached while {what} ({type(error).__name__}); the operator will retry.",
            reason=REASON_UNAVAILABLE,
            retryable=True,
        ) from None
    except (requests.exceptions.RequestException, ValueError) as error:
        # ValueError: requests parses a redirect's Location even when it does not follow it ("http://[").
        raise ProviderError(
            f"The request to GitHub at {host} could not be made while {what} ({type(error).__name__}); check "
            "the GitHub API URL.",
            reason=REASON_REQUEST_FAILED,
            retryable=False,
        ) from None


def _http_error(response: requests.Response, secrets: Iterable[str], *, what: str, api_url: str) -> ProviderError:
    status = response.status_code
    says = _github_says(response, secrets)
    if _rate_limited(response):
        reset = _rate_limit_reset(response)
        return ProviderError(
            f"GitHub at {api_url} is rate-limiting the operator while {what} ({says}); the operator will retry"
            f"{f' after {reset}' if reset else ''}.",
            reason=REASON_RATE_LIMITED,
            retryable=True,
        )
    if status >= 500:
        return ProviderError(
            f"GitHub at {api_url} failed while {what} ({says}); the operator will retry.",
            reason=REASON_UNAVAILABLE,
            retryable=True,
        )
    if 300 <= status < 400:
        return ProviderError(
            f"GitHub at {api_url} redirected the operator while {what} ({says}, to "
            f"{response.headers.get('Location', 'nowhere')}); the GitHub API URL is probably wrong (GitHub "
            "Enterprise Server: https://<host>/api/v3).",
            reason=REASON_REQUEST_FAILED,
            retryable=False,
        )
    return ProviderError(
        f"GitHub at {api_url} refused {what} ({says}).",
        reason=REASON_REQUEST_FAILED,
        retryable=status in (408, 409),
    )


def _rate_limited(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if response.headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in response.headers:
        return True
    return "rate limit" in _github_message(response).lower()


def _rate_limit_reset(response: requests.Response) -> str | None:
    retry_after = response.headers.get("Retry-After", "")
    if _seconds(retry_after):
        return f"{int(retry_after)} seconds"
    reset = response.headers.get("X-RateLimit-Reset", "")
    if _seconds(reset):
        try:
            return f"{datetime.datetime.fromtimestamp(int(reset), datetime.UTC):%H:%M} UTC"
        except (OverflowError, ValueError, OSError):  # a time past what the platform can hold
            return None
    return None


def _seconds(header: str) -> bool:
    """Whether a header holds a plain count of seconds (ASCII digits, not a 4,000-digit number)."""
    return 0 < len(header) <= 12 and header.isascii() and header.isdigit()


def _github_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else ""


def _github_says(response: requests.Response, secrets: Iterable[str]) -> str:
    """``HTTP <status>: <GitHub's message>``, scrubbed of every secret in play, then shortened."""
    message = redact(" ".join(_github_message(response).split()), secrets, limit=_GITHUB_MESSAGE_LIMIT)
    return f"HTTP {response.status_code}: {message}" if message else f"HTTP {response.status_code}"


def _expiration_header(value: str | None, ref: SecretRef) -> datetime.datetime | None:
    if value is None:
        return None
    expires_at = parse_expiration(value)
    if expires_at is None:
        # An expiry the operator cannot read must not stop the token from being written.
        logger.warning(
            "GitHub sent a %s header for the token in Secret %s in an unknown form: %r.",
            EXPIRATION_HEADER,
            ref,
            value[:64],
        )
    return expires_at


def _login(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        return None
    login = body.get("login") if isinstance(body, dict) else None
    return login if isinstance(login, str) and login else None


def _installation_token(response: requests.Response) -> tuple[str, datetime.datetime]:
    def invalid(what: str) -> ProviderError:
        return ProviderError(
            f"GitHub answered the installation token request with a response the operator cannot use: {what}.",
            reason=REASON_INVALID_RESPONSE,
            retryable=True,
        )

    try:
        body = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        raise invalid("it is not JSON") from None
    if not isinstance(body, dict):
        raise invalid("it is not a JSON object")
    token, expires = body.get("token"), body.get("expires_at")
    if not isinstance(token, str) or not token:
        raise invalid("it has no token")
    if not isinstance(expires, str):
        raise invalid("it has no expires_at")
    try:
        expires_at = datetime.datetime.fromisoformat(expires)
    except ValueError:
        raise invalid(f"its expires_at {expires[:40]!r} is not an ISO 8601 time") from None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=datetime.UTC)
    return token, expires_at.astimezone(datetime.UTC)
