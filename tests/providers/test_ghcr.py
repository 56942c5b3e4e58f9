"""The ghcr provider against a local stand-in for GitHub's REST API on 127.0.0.1 (tests/providers/github_server.py).

App mode: the server verifies the App JWT's RS256 signature with the test's public key and its claims, as
GitHub does. PAT mode: the server answers ``/user`` with or without the expiration header. Every error
message is checked for the PAT, the JWT, the private key and the installation token.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.models import GhcrAppSpec, GhcrSpec, SecretRef, SpecError, parse_credential
from regcred.providers.base import InvalidSourceSecret, ProviderError, SourceSecretNotFound, Token
from regcred.providers.ghcr import (
    APP_USERNAME,
    GhcrProvider,
    PatChecks,
    parse_expiration,
    pat_expiry_warning,
    pat_never_expires_note,
)
from regcred.reconcile import Reconciler
from tests.fake_kube import FakeKube
from tests.providers.github_server import FakeGitHub, Fault, Pat, serve

UTC = datetime.UTC
APP_ID = "12345"
INSTALLATION_ID = "67890"
KEY_REF = SecretRef(namespace="regcred-system", name="gh-app", key="private-key.pem")
PAT_REF = SecretRef(namespace="regcred-system", name="ghcr-pat", key="token")
PAT = "ghp_R3gcr3dT3stT0k3nD0N0tPr1nt0000000000"
FINE_GRAINED_PAT = "github_pat_11AAAAAAA0regcredFineGrainedDoNotPrint"
BAD_PAT = "ghp_Th1sT0k3nIsR3v0k3dAndMustN0tB3Pr1nt3d"
RESYNC = Settings().resync_interval


# -- keys, secrets, server -------------------------------------------------------------------------------


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture(scope="module")
def pkcs1(app_key: rsa.RSAPrivateKey) -> bytes:
    pem = _pem(app_key, serialization.PrivateFormat.TraditionalOpenSSL)
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    return pem


@pytest.fixture(scope="module")
def pkcs8(app_key: rsa.RSAPrivateKey) -> bytes:
    pem = _pem(app_key, serialization.PrivateFormat.PKCS8)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    return pem


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests honours proxy variables; the fake GitHub is on 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def github(app_key: rsa.RSAPrivateKey) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(
        app_keys={APP_ID: _public_pem(app_key)},
        installations={INSTALLATION_ID},
        pats={
            PAT: Pat(login="ci-bot", expiration="2099-12-31 23:59:59 UTC"),
            FINE_GRAINED_PAT: Pat(login="ci-bot", scopes=None),
        },
    )
    with serve(fake) as served:
        yield served


@pytest.fixture
def ghes(app_key: rsa.RSAPrivateKey) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(
        prefix="/api/v3",
        app_keys={APP_ID: _public_pem(app_key)},
        installations={INSTALLATION_ID},
        pats={PAT: Pat(login="ci-bot", expiration="2099-06-30 12:00:00 +0200")},
    )
    with serve(fake) as served:
        yield served


Reader = Callable[[str, str], Mapping[str, bytes]]


def reader(ref: SecretRef, data: Mapping[str, bytes]) -> Reader:
    def read_secret(namespace: str, name: str) -> Mapping[str, bytes]:
        if (namespace, name) != (ref.namespace, ref.name):
            raise SourceSecretNotFound(f"Secret {namespace}/{name} does not exist.")
        return data

    return read_secret


def app_spec(api_url: str, *, installation: str = INSTALLATION_ID, **kwargs: Any) -> GhcrSpec:
    app = GhcrAppSpec(app_id=APP_ID, installation_id=installation, private_key_secret_ref=KEY_REF, api_url=api_url)
    return GhcrSpec(app=app, **kwargs)


def pat_spec(**kwargs: Any) -> GhcrSpec:
    return GhcrSpec(username="ci-bot", token_secret_ref=PAT_REF, **kwargs)


def pat_provider(github: FakeGitHub, **kwargs: Any) -> GhcrProvider:
    return GhcrProvider(pat_spec(), api_url_override=github.api_url, **kwargs)


def mint_error(provider: GhcrProvider, read_secret: Reader, *forbidden: str | bytes) -> ProviderError:
    """The ProviderError minting raises, after checking that its message carries none of ``forbidden``."""
    with pytest.raises(ProviderError) as caught:
        provider.mint(read_secret)
    assert_clean(str(caught.value), *forbidden)
    return caught.value


def assert_clean(message: str, *forbidden: str | bytes) -> None:
    for secret in forbidden:
        text = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
        assert text not in message
        for line in text.splitlines():  # no line of a PEM either (its header lines excepted)
            if len(line) > 20 and not line.startswith("-----"):
                assert line not in message
    assert "eyJ" not in message  # no JWT (a base64url JSON header starts so)


def bearer_jwts(github: FakeGitHub) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer ") for r in github.requests if r.method == "POST"]


# -- App mode --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_format", ["pkcs1", "pkcs8"])
def test_app_mints_an_installation_token(github: FakeGitHub, key_format: str, request: pytest.FixtureRequest) -> None:
    pem: bytes = request.getfixturevalue(key_format)
    provider = GhcrProvider(app_spec(github.api_url))
    before = datetime.datetime.now(UTC)

    token = provider.mint(reader(KEY_REF, {"private-key.pem": pem}))

    assert token == Token(
        hosts=("ghcr.io",), username=APP_USERNAME, password=github.issued[-1], expires_at=token.expires_at
    )
    assert token.expires_at is not None
    assert datetime.timedelta(minutes=59) < token.expires_at - before <= datetime.timedelta(hours=1, seconds=5)
    assert provider.user_managed is False

    (call,) = github.requests
    assert call.method == "POST"
    assert call.path == f"/app/installations/{INSTALLATION_ID}/access_tokens"
    assert call.headers["accept"] == "application/vnd.github+json"
    assert call.headers["x-github-api-version"] == "2022-11-28"
    assert call.headers["user-agent"] == "regcred-operator"
    assert call.claims is not None  # the server verified the signature with the App's public key
    assert call.claims["iss"] == APP_ID
    assert call.claims["exp"] - call.claims["iat"] == 540
    assert before.timestamp() - 62 <= call.claims["iat"] <= before.timestamp() - 58


def test_app_username_and_registry_from_the_spec(github: FakeGitHub, pkcs1: bytes) -> None:
    spec = app_spec(github.api_url, username="octo-bot", registry="containers.ghe.example.com")
    token = GhcrProvider(spec).mint(reader(KEY_REF, {"private-key.pem": pkcs1}))
    assert (token.hosts, token.username) == (("containers.ghe.example.com",), "octo-bot")


def test_app_on_github_enterprise_server_api_path(ghes: FakeGitHub, pkcs8: bytes) -> None:
    token = GhcrProvider(app_spec(ghes.api_url + "/")).mint(reader(KEY_REF, {"private-key.pem": pkcs8}))
    assert token.password == ghes.issued[-1]
    assert ghes.requests[-1].path == f"/api/v3/app/installations/{INSTALLATION_ID}/access_tokens"


def test_app_jwt_uses_the_injected_clock(github: FakeGitHub, pkcs1: bytes) -> None:
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    token = GhcrProvider(app_spec(github.api_url), clock=lambda: now).mint(reader(KEY_REF, {"private-key.pem": pkcs1}))
    assert token.expires_at is not None
    claims = github.requests[-1].claims
    assert claims is not None
    assert claims["iat"] == int(now.timestamp()) - 60


def test_app_clock_far_behind_is_rejected_without_leaking(github: FakeGitHub, pkcs1: bytes) -> None:
    behind = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
    provider = GhcrProvider(app_spec(github.api_url), clock=lambda: behind)
    error = mint_error(provider, reader(KEY_REF, {"private-key.pem": pkcs1}), pkcs1, *bearer_jwts(github))
    assert (error.reason, error.retryable) == ("GitHubAppRejected", False)
    assert "clock" in str(error)


def test_app_key_of_another_app_is_rejected(github: FakeGitHub, other_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(other_key, serialization.PrivateFormat.TraditionalOpenSSL)
    provider = GhcrProvider(app_spec(github.api_url))
    error = mint_error(provider, reader(KEY_REF, {"private-key.pem": pem}), pem)
    assert (error.reason, error.retryable) == ("GitHubAppRejected", False)
    assert f"GitHub App {APP_ID}" in str(error)
    assert "regcred-system/gh-app" in str(error)
    assert_clean(str(error), *bearer_jwts(github))
    assert github.requests[-1].claims is None  # the signature did not verify


def test_unknown_installation(github: FakeGitHub, pkcs1: bytes) -> None:
    provider = GhcrProvider(app_spec(github.api_url, installation="424242"))
    error = mint_error(provider, reader(KEY_REF, {"private-key.pem": pkcs1}), pkcs1)
    assert (error.reason, error.retryable) == ("GitHubInstallationNotFound", False)
    assert "424242" in str(error) and APP_ID in str(error)
    assert_clean(str(error), *bearer_jwts(github))


def test_github_enterprise_api_url_without_its_path_is_explained(ghes: FakeGitHub, pkcs1: bytes) -> None:
    provider = GhcrProvider(app_spec(ghes.url))  # forgot /api/v3: GHES answers 404
    error = mint_error(provider, reader(KEY_REF, {"private-key.pem": pkcs1}), pkcs1)
    assert error.reason == "GitHubInstallationNotFound"
    assert "/api/v3" in str(error)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        ({}, "no key private-key.pem"),
        ({"private-key.pem": b"  \n"}, "no key private-key.pem"),
        (
            {"private-key.pem": b"-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"},
            "RSA private key",
        ),
        ({"private-key.pem": b"\xff\xfe"}, "not UTF-8"),
    ],
)
def test_app_bad_private_key_secret(github: FakeGitHub, data: Mapping[str, bytes], what: str) -> None:
    error = mint_error(GhcrProvider(app_spec(github.api_url)), reader(KEY_REF, data), *data.values())
    assert isinstance(error, InvalidSourceSecret)
    assert error.retryable is False
    assert "regcred-system/gh-app" in str(error) and what in str(error)
    assert github.requests == []


def test_app_encrypted_key(github: FakeGitHub, app_key: rsa.RSAPrivateKey) -> None:
    pem = app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    error = mint_error(GhcrProvider(app_spec(github.api_url)), reader(KEY_REF, {"private-key.pem": pem}), pem)
    assert isinstance(error, InvalidSourceSecret)
    assert "encrypted" in str(error)


def test_app_key_that_is_not_rsa(github: FakeGitHub) -> None:
    pem = _pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    error = mint_error(GhcrProvider(app_spec(github.api_url)), reader(KEY_REF, {"private-key.pem": pem}), pem)
    assert isinstance(error, InvalidSourceSecret)
    assert "RSA private key" in str(error)


def test_app_key_with_escaped_newlines(github: FakeGitHub, pkcs1: bytes) -> None:
    escaped = pkcs1.decode().strip().replace("\n", "\\n").encode()
    token = GhcrProvider(app_spec(github.api_url)).mint(reader(KEY_REF, {"private-key.pem": escaped}))
    assert token.password == github.issued[-1]


def test_app_custom_secret_key(github: FakeGitHub, pkcs8: bytes) -> None:
    ref = SecretRef(namespace="regcred-system", name="gh-app", key="key")
    spec = GhcrSpec(
        app=GhcrAppSpec(
            app_id=APP_ID, installation_id=INSTALLATION_ID, private_key_secret_ref=ref, api_url=github.api_url
        )
    )
    assert GhcrProvider(spec).mint(reader(ref, {"key": pkcs8})).password == github.issued[-1]


@pytest.mark.parametrize(
    ("fault", "reason", "retryable"),
    [
        (
            Fault(
                403,
                {"message": "API rate limit exceeded for installation."},
                {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4102444800"},
            ),
            "GitHubRateLimited",
            True,
        ),
        (
            Fault(403, {"message": "You have exceeded a secondary rate limit."}, {"Retry-After": "60"}),
            "GitHubRateLimited",
            True,
        ),
        (Fault(429, {"message": "Too many requests"}), "GitHubRateLimited", True),
        (Fault(500, {"message": "Server Error"}), "GitHubUnavailable", True),
        (Fault(503, b"<html>unavailable</html>"), "GitHubUnavailable", True),
        (Fault(403, {"message": "This installation has been suspended"}), "GitHubRequestFailed", False),
        (Fault(201, {"token": "ghs_x"}), "GitHubInvalidResponse", True),
        (Fault(201, {"token": "ghs_x", "expires_at": "tomorrow"}), "GitHubInvalidResponse", True),
        (Fault(201, b"not json"), "GitHubInvalidResponse", True),
        (Fault(301, None, {"Location": "https://elsewhere.example.com/"}), "GitHubRequestFailed", False),
    ],
)
def test_app_http_errors(github: FakeGitHub, pkcs1: bytes, fault: Fault, reason: str, retryable: bool) -> None:
    github.fail[f"/app/installations/{INSTALLATION_ID}/access_tokens"] = fault
    error = mint_error(GhcrProvider(app_spec(github.api_url)), reader(KEY_REF, {"private-key.pem": pkcs1}), pkcs1)
    assert (error.reason, error.retryable) == (reason, retryable)
    assert_clean(str(error), *bearer_jwts(github), "ghs_x")


def test_app_rate_limit_message_says_when(github: FakeGitHub, pkcs1: bytes) -> None:
    github.fail[f"/app/installations/{INSTALLATION_ID}/access_tokens"] = Fault(
        403, {"message": "API rate limit exceeded"}, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4102444800"}
    )
    error = mint_error(GhcrProvider(app_spec(github.api_url)), reader(KEY_REF, {"private-key.pem": pkcs1}))
    assert "after 00:00 UTC" in str(error)


def test_github_message_echoing_a_secret_is_scrubbed(github: FakeGitHub) -> None:
    github.fail["/user"] = Fault(403, {"message": f"Token {PAT} is not allowed here"})
    error = mint_error(pat_provider(github), reader(PAT_REF, {"token": PAT.encode()}), PAT)
    assert "<redacted>" in str(error) and PAT not in str(error)


def test_unreachable_github() -> None:
    with serve(FakeGitHub()) as closed:
        url = closed.api_url
    provider = GhcrProvider(pat_spec(), api_url_override=url)
    error = mint_error(provider, reader(PAT_REF, {"token": PAT.encode()}), PAT)
    assert (error.reason, error.retryable) == ("GitHubUnavailable", True)


def test_every_request_has_a_timeout(github: FakeGitHub, pkcs1: bytes) -> None:
    timeouts: list[Any] = []

    class Recording(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            timeouts.append(kwargs.get("timeout"))
            return super().request(*args, **kwargs)

    with Recording() as session:
        GhcrProvider(app_spec(github.api_url), session=session).mint(reader(KEY_REF, {"private-key.pem": pkcs1}))
        GhcrProvider(pat_spec(), session=session, api_url_override=github.api_url).mint(
            reader(PAT_REF, {"token": PAT.encode()})
        )
    assert len(timeouts) == 2 and all(timeouts)


# -- PAT mode --------------------------------------------------------------------------------------------


def test_pat_with_expiry(github: FakeGitHub) -> None:
    provider = pat_provider(github)
    token = provider.mint(reader(PAT_REF, {"token": f"  {PAT}\n".encode()}))  # whitespace is stripped
    assert token == Token(
        hosts=("ghcr.io",),
        username="ci-bot",
        password=PAT,
        expires_at=datetime.datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC),
    )
    assert provider.user_managed is True
    (call,) = github.requests
    assert (call.method, call.path) == ("GET", "/user")
    assert call.headers["authorization"] == f"Bearer {PAT}"
    assert call.headers["user-agent"] == "regcred-operator"
    assert provider.pat_notice(token.expires_at, datetime.datetime(2099, 1, 1, tzinfo=UTC)) is None


def user_calls(github: FakeGitHub) -> int:
    return sum(1 for r in github.requests if (r.method, r.path) == ("GET", "/user"))


def test_a_pat_is_checked_once_per_resync_period_however_often_the_credential_wakes_up(github: FakeGitHub) -> None:
    """The reconciler makes a new provider at every wake-up and re-reads the PAT: GitHub is asked once."""
    kube = FakeKube([{"metadata": {"name": "web", "labels": {}}, "status": {"phase": "Active"}}])
    kube.put_source_secret(PAT_REF.namespace, PAT_REF.name, {"token": PAT.encode()})
    credential = {"metadata": {"name": "gh", "generation": 1}, "spec": {
        "secretName": "ghcr-pull", "namespaces": {"names": ["web"]}, "serviceAccounts": [],
        "provider": {"ghcr": {"username": "ci-bot", "tokenSecretRef": {"namespace": PAT_REF.namespace,
                                                                      "name": PAT_REF.name}}}}}
    settings = Settings(write_concurrency=1, github_api_url=github.api_url)
    reconciler = Reconciler(kube, settings, ManualClock(datetime.datetime.now(UTC)))  # type: ignore[arg-type]
    try:
        for _ in range(5):
            reconciler.reconcile(credential)
    finally:
        reconciler.close()

    assert user_calls(github) == 1
    assert PAT in base64.b64decode(kube.secrets[("web", "ghcr-pull")]["data"][".dockerconfigjson"]).decode()
    assert kube.status["gh"]["expirationTime"] == "2099-12-31T23:59:59Z"


def test_a_checked_pat_is_checked_again_after_the_resync_period(github: FakeGitHub) -> None:
    now = [datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)]
    checks = PatChecks()
    read_secret = reader(PAT_REF, {"token": PAT.encode()})

    def wake_up() -> Token:  # as provider_for: a new provider each time, sharing the checks
        provider = pat_provider(github, clock=lambda: now[0], recheck_after=RESYNC, checks=checks)
        return provider.mint(read_secret)

    first = wake_up()
    now[0] += RESYNC - datetime.timedelta(seconds=1)
    assert wake_up() == first  # the same token, username and expiry, from the check made then
    assert user_calls(github) == 1

    github.pats[PAT] = Pat(login="ci-bot", expiration="2099-01-01 00:00:00 UTC")  # a person changed it on GitHub
    now[0] += datetime.timedelta(seconds=1)
    assert wake_up().expires_at == datetime.datetime(2099, 1, 1, tzinfo=UTC)
    assert user_calls(github) == 2


def test_a_rotated_pat_is_checked_at_once(github: FakeGitHub) -> None:
    now = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    checks = PatChecks()
    new_pat = "ghp_R0t4t3dT0k3nD0N0tPr1nt000000000000000"
    github.pats[new_pat] = Pat(login="ci-bot", expiration="2100-06-30 00:00:00 UTC")

    def wake_up(pat: str) -> Token:
        provider = pat_provider(github, clock=lambda: now, recheck_after=RESYNC, checks=checks)
        return provider.mint(reader(PAT_REF, {"token": pat.encode()}))

    wake_up(PAT)
    token = wake_up(new_pat)
    assert (token.password, token.expires_at) == (new_pat, datetime.datetime(2100, 6, 30, tzinfo=UTC))
    assert [r.headers["authorization"] for r in github.requests] == [f"Bearer {PAT}", f"Bearer {new_pat}"]

    # A revoked PAT put in its place is refused at once, not passed on the strength of an old check.
    error = mint_error(pat_provider(github, clock=lambda: now, recheck_after=RESYNC, checks=checks),
                       reader(PAT_REF, {"token": BAD_PAT.encode()}), BAD_PAT)
    assert error.reason == "GitHubTokenRejected"


def test_a_failed_check_is_not_remembered(github: FakeGitHub) -> None:
    now = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    checks = PatChecks()
    read_secret = reader(PAT_REF, {"token": PAT.encode()})

    def provider() -> GhcrProvider:
        return pat_provider(github, clock=lambda: now, recheck_after=RESYNC, checks=checks)

    github.fail["/user"] = Fault(503, {"message": "Service Unavailable"})
    assert mint_error(provider(), read_secret, PAT).reason == "GitHubUnavailable"
    github.fail.clear()
    github.pats[PAT] = Pat(login="ci-bot", scopes="repo")  # no package scope: refused, and not remembered
    assert mint_error(provider(), read_secret, PAT).reason == "GitHubTokenMissingScope"
    github.pats[PAT] = Pat(login="ci-bot")
    assert provider().mint(read_secret).password == PAT
    assert user_calls(github) == 3


def test_pat_with_numeric_offset_on_github_enterprise(ghes: FakeGitHub) -> None:
    token = GhcrProvider(pat_spec(registry="containers.ghe.example.com"), api_url_override=ghes.api_url).mint(
        reader(PAT_REF, {"token": PAT.encode()})
    )
    assert token.expires_at == datetime.datetime(2099, 6, 30, 10, 0, tzinfo=UTC)
    assert token.hosts == ("containers.ghe.example.com",)
    assert ghes.requests[-1].path == "/api/v3/user"


def test_pat_without_expiry(github: FakeGitHub) -> None:
    github.pats[PAT] = Pat(login="ci-bot", expiration=None)
    provider = pat_provider(github)
    token = provider.mint(reader(PAT_REF, {"token": PAT.encode()}))
    assert token.expires_at is None
    notice = provider.pat_notice(None, datetime.datetime.now(UTC))
    assert notice is not None and "never expires" in notice and "regcred-system/ghcr-pat" in notice


def test_pat_close_to_expiry_warns(github: FakeGitHub) -> None:
    soon = datetime.datetime.now(UTC).replace(microsecond=0) + datetime.timedelta(days=5, hours=1)
    github.pats[PAT] = Pat(login="ci-bot", expiration=soon.strftime("%Y-%m-%d %H:%M:%S UTC"))
    provider = pat_provider(github)
    token = provider.mint(reader(PAT_REF, {"token": PAT.encode()}))  # writing is never prevented
    assert token.expires_at == soon
    warning = provider.pat_notice(token.expires_at, datetime.datetime.now(UTC))
    assert warning == (
        f"The GitHub token for ghcr.io expires on {soon:%Y-%m-%d} (in 5 days); the operator cannot renew a PAT: "
        "create a new one and update Secret regcred-system/ghcr-pat."
    )
    assert PAT not in warning


def test_pat_rejected(github: FakeGitHub) -> None:
    error = mint_error(pat_provider(github), reader(PAT_REF, {"token": BAD_PAT.encode()}), BAD_PAT)
    assert (error.reason, error.retryable) == ("GitHubTokenRejected", False)
    assert "create a new one" in str(error) and "update Secret regcred-system/ghcr-pat" in str(error)
    assert "Bad credentials" in str(error)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"token": b""},
        {"token": b" \n"},
        {"other": b"x"},
        {"token": f"{PAT}\n{PAT}".encode()},
        {"token": f"{PAT}\u2019".encode()},
    ],
)
def test_pat_missing_or_empty(github: FakeGitHub, data: Mapping[str, bytes]) -> None:
    error = mint_error(pat_provider(github), reader(PAT_REF, data))
    assert isinstance(error, InvalidSourceSecret)
    assert "regcred-system/ghcr-pat" in str(error) and "key token" in str(error)
    assert github.requests == []


def test_pat_custom_key() -> None:
    ref = SecretRef(namespace="ns", name="pat", key="gh")
    with serve(FakeGitHub(pats={PAT: Pat(login="ci-bot")})) as github:
        spec = GhcrSpec(username="ci-bot", token_secret_ref=ref)
        token = GhcrProvider(spec, api_url_override=github.api_url).mint(reader(ref, {"gh": PAT.encode()}))
    assert token.password == PAT


def test_pat_without_package_scope(github: FakeGitHub) -> None:
    github.pats[PAT] = Pat(login="ci-bot", scopes="repo, read:org")
    error = mint_error(pat_provider(github), reader(PAT_REF, {"token": PAT.encode()}), PAT)
    assert (error.reason, error.retryable) == ("GitHubTokenMissingScope", False)
    assert "read:packages" in str(error) and "read:org, repo" in str(error)


def test_fine_grained_pat_has_no_scopes_header(github: FakeGitHub) -> None:
    token = pat_provider(github).mint(reader(PAT_REF, {"token": FINE_GRAINED_PAT.encode()}))
    assert token.password == FINE_GRAINED_PAT


def test_pat_username_falls_back_to_the_login(github: FakeGitHub) -> None:
    spec = GhcrSpec(token_secret_ref=PAT_REF)
    token = GhcrProvider(spec, api_url_override=github.api_url).mint(reader(PAT_REF, {"token": PAT.encode()}))
    assert token.username == "ci-bot"


@pytest.mark.parametrize(
    ("fault", "reason", "retryable"),
    [
        (Fault(403, {"message": "API rate limit exceeded"}, {"X-RateLimit-Remaining": "0"}), "GitHubRateLimited", True),
        (Fault(502, b"Bad Gateway"), "GitHubUnavailable", True),
        (Fault(404, {"message": "Not Found"}), "GitHubRequestFailed", False),
    ],
)
def test_pat_http_errors(github: FakeGitHub, fault: Fault, reason: str, retryable: bool) -> None:
    github.fail["/user"] = fault
    error = mint_error(pat_provider(github), reader(PAT_REF, {"token": PAT.encode()}), PAT)
    assert (error.reason, error.retryable) == (reason, retryable)


def test_pat_unparseable_expiry_still_writes(github: FakeGitHub) -> None:
    github.pats[PAT] = Pat(login="ci-bot", expiration="some day")
    assert pat_provider(github).mint(reader(PAT_REF, {"token": PAT.encode()})).expires_at is None


def test_pat_on_an_unknown_registry_host_is_written_unchecked() -> None:
    provider = GhcrProvider(pat_spec(registry="registry.example.com"))
    assert provider.api_url is None
    token = provider.mint(reader(PAT_REF, {"token": PAT.encode()}))
    assert (token.password, token.expires_at) == (PAT, None)
    notice = provider.pat_notice(None, datetime.datetime.now(UTC))
    assert notice is not None and "cannot check" in notice


# -- API URLs, spec checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "override", "api_url"),
    [
        (GhcrSpec(username="u", token_secret_ref=PAT_REF), None, "https://api.github.com"),
        (
            GhcrSpec(registry="containers.ghe.example.com", username="u", token_secret_ref=PAT_REF),
            None,
            "https://ghe.example.com/api/v3",
        ),
        (
            GhcrSpec(username="u", token_secret_ref=PAT_REF),
            "http://proxy.local:8080/github/",
            "http://proxy.local:8080/github",
        ),
        (GhcrSpec(app=GhcrAppSpec(APP_ID, INSTALLATION_ID, KEY_REF)), None, "https://api.github.com"),
        (
            GhcrSpec(app=GhcrAppSpec(APP_ID, INSTALLATION_ID, KEY_REF, "https://ghe.example.com/api/v3/")),
            None,
            "https://ghe.example.com/api/v3",
        ),
    ],
)
def test_api_url(spec: GhcrSpec, override: str | None, api_url: str) -> None:
    assert GhcrProvider(spec, api_url_override=override).api_url == api_url


@pytest.mark.parametrize(
    "spec",
    [
        GhcrSpec(),
        GhcrSpec(token_secret_ref=PAT_REF, app=GhcrAppSpec(APP_ID, INSTALLATION_ID, KEY_REF)),
        GhcrSpec(app=GhcrAppSpec("None", INSTALLATION_ID, KEY_REF)),
        GhcrSpec(app=GhcrAppSpec(APP_ID, INSTALLATION_ID, KEY_REF, api_url="ghe.example.com")),
    ],
)
def test_unusable_specs(spec: GhcrSpec) -> None:
    with pytest.raises(SpecError):
        GhcrProvider(spec)


def test_from_a_parsed_credential(github: FakeGitHub, pkcs1: bytes) -> None:
    credential = parse_credential(
        "gh",
        {
            "secretName": "regcred",
            "namespaces": {"names": ["web"]},
            "provider": {
                "ghcr": {
                    "app": {
                        "appId": 12345,
                        "installationId": 67890,
                        "privateKeySecretRef": {"namespace": "regcred-system", "name": "gh-app"},
                        "apiUrl": github.api_url,
                    }
                }
            },
        },
    )
    assert isinstance(credential.provider, GhcrSpec)
    token = GhcrProvider(credential.provider).mint(reader(KEY_REF, {"private-key.pem": pkcs1}))
    assert token.hosts == ("ghcr.io",)


# -- pure helpers ----------------------------------------------------------------------------------------

EXPIRES = datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime.datetime(2026, 11, 1, tzinfo=UTC), None),
        (datetime.datetime(2026, 12, 17, 23, 59, 59, tzinfo=UTC), "expires on 2026-12-31 (in 14 days)"),
        (datetime.datetime(2026, 12, 26, 12, tzinfo=UTC), "expires on 2026-12-31 (in 5 days)"),
        (datetime.datetime(2026, 12, 31, 10, tzinfo=UTC), "expires on 2026-12-31 at 23:59 UTC (in 13 hours)"),
        (datetime.datetime(2026, 12, 31, 23, 30, tzinfo=UTC), "expires on 2026-12-31 at 23:59 UTC (in 29 minutes)"),
        (datetime.datetime(2027, 1, 1, 8, tzinfo=UTC), "expired on 2026-12-31 at 23:59 UTC;"),
        (datetime.datetime(2027, 3, 1, tzinfo=UTC), "expired on 2026-12-31;"),
    ],
)
def test_pat_expiry_warning(now: datetime.datetime, expected: str | None) -> None:
    warning = pat_expiry_warning(EXPIRES, now, secret="ns/name")
    if expected is None:
        assert warning is None
    else:
        assert warning is not None
        assert warning.startswith(f"The GitHub token for ghcr.io {expected}")
        assert warning.endswith("the operator cannot renew a PAT: create a new one and update Secret ns/name.")


def test_pat_expiry_warning_exact_sentence() -> None:
    assert pat_expiry_warning(EXPIRES, datetime.datetime(2026, 12, 26, 12, tzinfo=UTC), secret="ns/name") == (
        "The GitHub token for ghcr.io expires on 2026-12-31 (in 5 days); the operator cannot renew a PAT: "
        "create a new one and update Secret ns/name."
    )
    assert pat_expiry_warning(None, datetime.datetime(2026, 12, 26, tzinfo=UTC)) is None
    assert pat_expiry_warning(EXPIRES, EXPIRES - datetime.timedelta(days=20), datetime.timedelta(days=30)) is not None


def test_pat_never_expires_note() -> None:
    assert pat_never_expires_note(secret=PAT_REF).startswith(
        "The GitHub token for ghcr.io in Secret regcred-system/ghcr-pat never expires"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-31 23:59:59 UTC", datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2026-12-31 23:59:59 +0200", datetime.datetime(2026, 12, 31, 21, 59, 59, tzinfo=UTC)),
        ("2026-12-31 23:59:59 -0700", datetime.datetime(2027, 1, 1, 6, 59, 59, tzinfo=UTC)),
        ("2026-12-31 23:59:59 +05:30", datetime.datetime(2026, 12, 31, 18, 29, 59, tzinfo=UTC)),
        ("2026-12-31T23:59:59Z", datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2026-12-31 23:59:59", datetime.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("never", None),
        ("2026-13-45 99:00:00 UTC", None),
    ],
)
def test_parse_expiration(value: str, expected: datetime.datetime | None) -> None:
    assert parse_expiration(value) == expected
