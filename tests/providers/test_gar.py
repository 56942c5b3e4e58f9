"""The GAR provider: real google-auth code against a stand-in for Google's endpoints on 127.0.0.1.

Each test generates RSA keys and writes a service-account key JSON whose ``token_uri`` is the fake's token
endpoint (the JWT's ``aud`` stays Google's URL); the fake verifies the RS256 assertion with the public key.
Impersonation goes to the fake's IAM Credentials API through ``iam_endpoint_override``, federation to its
STS through ``sts_endpoint_override``. Nothing here reaches Google or a real metadata server.
"""

from __future__ import annotations

import datetime
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.compute_engine import _metadata

from regcred.models import GarSpec, SecretRef
from regcred.providers.base import InvalidSourceSecret, ProviderError, SourceSecretNotFound, Token
from regcred.providers.gar import GAR_USERNAME, GarProvider
from tests.providers.google_server import CLOUD_PLATFORM, IAM_SCOPE, FakeGoogle, new_rsa_key, running

REGISTRIES = ("europe-docker.pkg.dev", "gcr.io")
EMAIL = "puller@my-project.iam.gserviceaccount.com"
TARGET = "gar-reader@other-project.iam.gserviceaccount.com"
KEY_REF = SecretRef(namespace="regcred-system", name="gcp-key", key="key.json")
PRIVATE_KEY_ID = "0123456789abcdef0123456789abcdef01234567"
SUBJECT_TOKEN = "eyJ-federated-subject-token-do-not-print"
AUDIENCE = "//iam.googleapis.com/projects/1234/locations/global/workloadIdentityPools/pool/providers/eks"

SecretReader = Callable[[str, str], Mapping[str, bytes]]


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, rsa.RSAPublicKey]:
    return new_rsa_key()


@pytest.fixture
def google(rsa_key: tuple[str, rsa.RSAPublicKey]) -> Iterator[FakeGoogle]:
    for fake in running():
        fake.add_service_account(EMAIL, rsa_key[1])
        yield fake


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def no_ambient_google(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Application Default Credentials: no key file, no gcloud configuration, no metadata server.

    google-auth reads NO_GCE_CHECK and GCE_METADATA_HOST when it is imported, so the module's copies are
    set too; GCE_METADATA_IP is read at each probe.
    """
    nowhere = f"127.0.0.1:{closed_port()}"
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", nowhere)
    monkeypatch.setenv("GCE_METADATA_IP", nowhere)
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", nowhere)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def key_json(private_key: str, token_uri: str, *, email: str = EMAIL, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": PRIVATE_KEY_ID,
        "private_key": private_key,
        "client_email": email,
        "client_id": "112233445566778899000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
        **overrides,
    }


def secret_reader(data: Mapping[str, bytes] | None, ref: SecretRef = KEY_REF) -> SecretReader:
    def read_secret(namespace: str, name: str) -> Mapping[str, bytes]:
        if data is None or (namespace, name) != (ref.namespace, ref.name):
            raise SourceSecretNotFound(f"Secret {namespace}/{name} does not exist.")
        return data

    return read_secret


def key_secret(info: Mapping[str, Any] | str, key: str = "key.json") -> SecretReader:
    raw = info if isinstance(info, str) else json.dumps(info)
    return secret_reader({key: raw.encode()})


def gar_spec(**kwargs: Any) -> GarSpec:
    return GarSpec(registries=REGISTRIES, **{"credentials_secret_ref": KEY_REF, **kwargs})


def mint_error(provider: GarProvider, read_secret: SecretReader, *secrets: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.mint(read_secret)
    error = caught.value
    text = f"{error} {error!r} {error.reason}"
    for secret in secrets:
        for fragment in (secret, *secret.splitlines()[1:3]):
            assert fragment.strip() not in text
    assert str(error).endswith(".")
    return error


def assert_expires_in(token: Token, seconds: float, *, within: float = 5) -> None:
    assert token.expires_at is not None
    assert token.expires_at.tzinfo is not None
    assert token.expires_at.utcoffset() == datetime.timedelta(0)
    expected = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    assert abs((token.expires_at - expected).total_seconds()) < within


# --- service-account keys --------------------------------------------------------------------------------


def test_a_service_account_key_mints_a_one_hour_token(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    token = GarProvider(gar_spec()).mint(key_secret(key_json(rsa_key[0], google.token_uri)))

    assert token.hosts == REGISTRIES
    assert token.username == GAR_USERNAME == "oauth2accesstoken"
    assert google.issued[token.password].principal == EMAIL
    assert_expires_in(token, 3599)
    # The fake verified the RS256 assertion with the key's public half; what it claimed:
    [claims] = google.jwt_claims
    assert claims["iss"] == EMAIL
    assert CLOUD_PLATFORM in claims["scope"].split()
    assert claims["aud"] == "https://oauth2.googleapis.com/token"
    assert token.password not in repr(token)


def test_a_short_lifetime_is_passed_through(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    google.token_lifetime = 900  # what Google grants under workload identity federation

    token = GarProvider(gar_spec()).mint(key_secret(key_json(rsa_key[0], google.token_uri)))

    assert_expires_in(token, 900)


def test_an_answer_without_expiry_is_assumed_to_last_15_minutes(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    google.token_lifetime = None
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    token = GarProvider(gar_spec(), clock=lambda: now).mint(key_secret(key_json(rsa_key[0], google.token_uri)))

    assert token.expires_at == now + datetime.timedelta(minutes=15)


def test_the_key_name_in_the_secret_can_be_chosen(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    ref = SecretRef(namespace="regcred-system", name="gcp-key", key="sa.json")
    data = {"sa.json": json.dumps(key_json(rsa_key[0], google.token_uri)).encode()}

    token = GarProvider(gar_spec(credentials_secret_ref=ref)).mint(secret_reader(data, ref))

    assert token.password in google.issued


# --- impersonation ---------------------------------------------------------------------------------------


def test_impersonation_returns_the_target_s_token_and_expiry(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    google.impersonable[TARGET] = {EMAIL}
    google.iam_expire_time = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    provider = GarProvider(gar_spec(impersonate_service_account=TARGET), iam_endpoint_override=google.url)

    token = provider.mint(key_secret(key_json(rsa_key[0], google.token_uri)))

    assert google.issued[token.password].principal == TARGET
    assert google.issued[token.password].scopes == (CLOUD_PLATFORM,)
    assert token.expires_at == google.iam_expire_time
    assert token.hosts == REGISTRIES and token.username == GAR_USERNAME
    # The source identity asked for the IAM scope, then called IAM with its own token, for one hour.
    assert google.paths() == [
        "POST /token",
        f"POST /v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken",
    ]
    [claims] = google.jwt_claims
    assert claims["scope"].split() == [IAM_SCOPE]  # google-auth narrows the source to the IAM scope
    assert json.loads(google.seen[1].body)["lifetime"] == "3600s"


def test_impersonation_denied(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    google.impersonable[TARGET] = {"someone-else@my-project.iam.gserviceaccount.com"}
    provider = GarProvider(gar_spec(impersonate_service_account=TARGET), iam_endpoint_override=google.url)

    error = mint_error(provider, key_secret(key_json(rsa_key[0], google.token_uri)), rsa_key[0], *google.issued)

    assert error.reason == "GoogleImpersonationDenied"
    assert not error.retryable
    assert "roles/iam.serviceAccountTokenCreator" in str(error)
    assert TARGET in str(error) and EMAIL in str(error)
    assert "HTTP 403: PERMISSION_DENIED" in str(error)  # Google's status code, never its message text
    assert "iam.serviceAccounts.getAccessToken" not in str(error)
    for token in google.issued:
        assert token not in str(error)


def test_iam_failing_is_retryable(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    google.impersonable[TARGET] = None
    google.iam_error = (503, {"error": {"code": 503, "message": "The service is currently unavailable."}})
    provider = GarProvider(gar_spec(impersonate_service_account=TARGET), iam_endpoint_override=google.url)

    error = mint_error(provider, key_secret(key_json(rsa_key[0], google.token_uri)), rsa_key[0])

    assert error.reason == "GoogleUnavailable"
    assert error.retryable
    assert "503" in str(error)


# --- rejected and unreachable ----------------------------------------------------------------------------


def test_a_key_google_does_not_know_is_rejected(google: FakeGoogle) -> None:
    """A deleted key: signed by a key whose public half Google no longer has; Google says invalid_grant."""
    other_private, _ = new_rsa_key()

    error = mint_error(GarProvider(gar_spec()), key_secret(key_json(other_private, google.token_uri)), other_private)

    assert error.reason == "GoogleTokenRejected"
    assert not error.retryable
    assert "invalid_grant" in str(error)
    assert EMAIL in str(error)
    assert google.issued == {}


def test_invalid_grant_from_the_token_endpoint(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    google.token_error = (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})

    error = mint_error(GarProvider(gar_spec()), key_secret(key_json(rsa_key[0], google.token_uri)), rsa_key[0])

    assert (error.reason, error.retryable) == ("GoogleTokenRejected", False)
    assert "HTTP 400: invalid_grant" in str(error)
    assert "Invalid JWT Signature" not in str(error)  # a body's free text is never repeated


def test_an_unreachable_token_endpoint_is_retryable(rsa_key: tuple[str, Any]) -> None:
    token_uri = f"http://127.0.0.1:{closed_port()}/token"

    error = mint_error(GarProvider(gar_spec()), key_secret(key_json(rsa_key[0], token_uri)), rsa_key[0])

    assert (error.reason, error.retryable) == ("GoogleUnavailable", True)
    assert "could not be reached" in str(error)


# --- what the Secret holds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"type": "service_account", "private_key": "-----BEGIN', "not JSON"),
        ('["service_account"]', "not an object"),
        ('{"type": "authorized_user", "refresh_token": "1//user-refresh-token"}', "'authorized_user'"),
        ('{"private_key": "x"}', "without a Google credential type"),
    ],
    ids=["truncated", "array", "user-credentials", "no-type"],
)
def test_a_malformed_key_is_an_invalid_source_secret(content: str, says: str) -> None:
    error = mint_error(GarProvider(gar_spec()), key_secret(content), "1//user-refresh-token", "-----BEGIN")

    assert isinstance(error, InvalidSourceSecret)
    assert (error.reason, error.retryable) == ("InvalidSourceSecret", False)
    assert says in str(error)
    assert str(KEY_REF) in str(error)


def test_a_key_without_a_usable_private_key(rsa_key: tuple[str, Any]) -> None:
    broken = rsa_key[0].replace("\n", "\n" + "A" * 3, 2)
    error = mint_error(
        GarProvider(gar_spec()), key_secret(key_json(broken, "http://127.0.0.1:9/token")), broken, rsa_key[0]
    )
    assert isinstance(error, InvalidSourceSecret)
    assert "PEM" in str(error)

    info = key_json(rsa_key[0], "http://127.0.0.1:9/token")
    del info["client_email"]
    error = mint_error(GarProvider(gar_spec()), key_secret(info), rsa_key[0])
    assert isinstance(error, InvalidSourceSecret)
    assert "client_email" in str(error)


def test_a_secret_without_the_key(rsa_key: tuple[str, Any]) -> None:
    read = secret_reader({"credentials.json": json.dumps(key_json(rsa_key[0], "http://127.0.0.1:9/t")).encode()})

    error = mint_error(GarProvider(gar_spec()), read, rsa_key[0])

    assert isinstance(error, InvalidSourceSecret)
    assert "has no key.json" in str(error)


def test_a_missing_secret_is_reported_as_such() -> None:
    with pytest.raises(SourceSecretNotFound):
        GarProvider(gar_spec()).mint(secret_reader(None))


# --- workload identity federation (external_account) ------------------------------------------------------


def external_account(subject_file: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": str(subject_file), "format": {"type": "text"}},
        **overrides,
    }


@pytest.fixture
def subject_file(tmp_path: Path, google: FakeGoogle) -> Path:
    path = tmp_path / "token"
    path.write_text(SUBJECT_TOKEN)
    google.subject_token, google.audience = SUBJECT_TOKEN, AUDIENCE
    return path


def federation(google: FakeGoogle, subject_file: Path, **kwargs: Any) -> GarProvider:
    """A provider that talks to the fake's STS and may read the test's subject token file."""
    return GarProvider(
        gar_spec(), sts_endpoint_override=google.sts_url, credential_sources=(str(subject_file),), **kwargs
    )


def test_a_federation_configuration_mints_a_short_lived_token(google: FakeGoogle, subject_file: Path) -> None:
    provider = federation(google, subject_file)

    token = provider.mint(key_secret(external_account(subject_file)))

    assert google.issued[token.password].scopes == (CLOUD_PLATFORM,)
    assert_expires_in(token, 900)
    assert google.paths() == ["POST /v1/token"]


def test_a_federation_configuration_that_impersonates(google: FakeGoogle, subject_file: Path) -> None:
    google.impersonable[TARGET] = None
    google.iam_expire_time = datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    config = external_account(
        subject_file,
        service_account_impersonation_url=(
            f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{TARGET}:generateAccessToken"
        ),
    )
    provider = federation(google, subject_file, iam_endpoint_override=google.url)

    token = provider.mint(key_secret(config))

    assert google.issued[token.password].principal == TARGET
    assert token.expires_at == google.iam_expire_time


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"token_url": "https://sts.example.com/v1/token"}, "token_url is not a Google endpoint"),
        ({"token_url": "http://sts.googleapis.com/v1/token"}, "token_url is not a Google endpoint"),
        ({"token_url": "https://evil.example@sts.googleapis.com.evil.example/v1/token"}, "not a Google endpoint"),
        (
            {"service_account_impersonation_url": "https://iam.example.com/v1/projects/-/serviceAccounts/"
             f"{TARGET}:generateAccessToken"},
            "service_account_impersonation_url",
        ),
        ({"credential_source": {"executable": {"command": "/bin/cat /etc/passwd"}}}, "executable"),
        ({"audience": None}, "without audience"),
    ],
    ids=["foreign-host", "plain-http", "userinfo", "foreign-iam", "executable", "no-audience"],
)
def test_a_federation_configuration_must_talk_to_google_only(
    google: FakeGoogle, subject_file: Path, overrides: dict[str, Any], says: str
) -> None:
    provider = GarProvider(gar_spec(), credential_sources=(str(subject_file),))
    error = mint_error(provider, key_secret(external_account(subject_file, **overrides)), SUBJECT_TOKEN)

    assert isinstance(error, InvalidSourceSecret)
    assert says in str(error)
    assert google.seen == []


def test_a_missing_federated_token_file_is_retryable(google: FakeGoogle, subject_file: Path) -> None:
    """The projected token is not mounted (yet): nothing is sent, and the next attempt may find it."""
    subject_file.unlink()
    provider = federation(google, subject_file)

    error = mint_error(provider, key_secret(external_account(subject_file)), SUBJECT_TOKEN)

    assert (error.reason, error.retryable) == ("GoogleCredentialsMissing", True)
    assert str(subject_file) in str(error)
    assert google.seen == []


def test_a_rejected_federated_token(google: FakeGoogle, subject_file: Path) -> None:
    subject_file.write_text("eyJ-some-other-token")
    provider = federation(google, subject_file)

    error = mint_error(provider, key_secret(external_account(subject_file)), SUBJECT_TOKEN, "eyJ-some-other-token")

    assert (error.reason, error.retryable) == ("GoogleTokenRejected", False)
    assert "invalid_grant" in str(error)


# --- hostile federation configurations (issue 10, point 4) ---------------------------------------------------

MARKER = "MARKER-4f2a-body-must-never-be-repeated"
OPERATOR_API_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@pytest.fixture
def elsewhere() -> Iterator[FakeGoogle]:
    """A second listening, recording server: a host a configuration names that nobody allowed."""
    yield from running()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path opened or tested for existence while the test runs."""
    import builtins
    import os.path

    paths: list[str] = []
    real_open, real_exists = builtins.open, os.path.exists

    def recording_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        paths.append(str(file))
        return real_open(file, *args, **kwargs)

    def recording_exists(path: Any) -> bool:
        paths.append(str(path))
        return real_exists(path)

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(os.path, "exists", recording_exists)
    return paths


def url_source(url: str, **fields: Any) -> dict[str, Any]:
    return {"url": url, "format": {"type": "text"}, **fields}


@pytest.mark.parametrize(
    "path",
    [
        OPERATOR_API_TOKEN,
        "/etc/passwd",
        "/var/run/service-account/../../../etc/passwd",
        "var/run/service-account/token",
        "/proc/self/environ",
    ],
    ids=["operator-sa-token", "etc-passwd", "dot-dot", "relative", "proc"],
)
def test_a_file_source_outside_the_allow_list_is_never_read(
    google: FakeGoogle, subject_file: Path, opened: list[str], path: str
) -> None:
    provider = GarProvider(gar_spec(), sts_endpoint_override=google.sts_url)  # the default allow-list

    error = mint_error(provider, key_secret(external_account(subject_file, credential_source={"file": path})))

    assert isinstance(error, InvalidSourceSecret)
    assert "credential_source file" in str(error)
    assert path not in opened and not any("passwd" in p or "serviceaccount" in p for p in opened)
    assert google.seen == []


def test_the_operator_s_api_token_is_refused_even_when_listed(google: FakeGoogle, subject_file: Path) -> None:
    provider = GarProvider(
        gar_spec(), sts_endpoint_override=google.sts_url, credential_sources=(OPERATOR_API_TOKEN, "/var/run/")
    )

    config = external_account(subject_file, credential_source={"file": OPERATOR_API_TOKEN})

    error = mint_error(provider, key_secret(config))

    assert isinstance(error, InvalidSourceSecret)
    assert "Kubernetes API credentials" in str(error)
    assert google.seen == []


def test_a_file_that_is_not_listed_is_never_read(google: FakeGoogle, subject_file: Path, opened: list[str]) -> None:
    """A real file with a valid token, but not in the allow-list (the defaults): refused before it is opened."""
    provider = GarProvider(gar_spec(), sts_endpoint_override=google.sts_url)

    error = mint_error(provider, key_secret(external_account(subject_file)), SUBJECT_TOKEN)

    assert isinstance(error, InvalidSourceSecret)
    assert "/var/run/service-account/token" in str(error)  # says what is allowed
    assert str(subject_file) not in opened
    assert google.seen == [] and google.issued == {}


@pytest.mark.parametrize(
    "url",
    [
        "{elsewhere}/subject-token",
        "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token",
        "http://169.254.169.254@{elsewhere_host}/metadata/identity/oauth2/token",
        "http://kubernetes.default.svc/api",
    ],
    ids=["unlisted-host", "imds-other-path", "userinfo", "cluster-internal"],
)
def test_a_url_source_that_is_not_allowed_is_never_fetched(
    google: FakeGoogle, elsewhere: FakeGoogle, subject_file: Path, url: str
) -> None:
    elsewhere.source_answer = (200, SUBJECT_TOKEN.encode())
    url = url.format(elsewhere=elsewhere.url, elsewhere_host=elsewhere.address)
    provider = GarProvider(gar_spec(), sts_endpoint_override=google.sts_url, credential_sources=("azure",))

    error = mint_error(provider, key_secret(external_account(subject_file, credential_source=url_source(url))))

    assert isinstance(error, InvalidSourceSecret)
    assert "credential_source url" in str(error)
    assert elsewhere.seen == [] and google.seen == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer eyJ-stolen"},
        {"Metadata-Flavor": "Google"},
        {"Metadata": "True", "Host": "kubernetes.default.svc"},
        {"Metadata": "True\r\nX-Injected: 1"},
        ["Metadata", "True"],
    ],
    ids=["authorization", "gce-metadata-flavor", "host", "crlf", "not-a-mapping"],
)
def test_headers_other_than_azure_s_are_refused(
    google: FakeGoogle, elsewhere: FakeGoogle, subject_file: Path, headers: Any
) -> None:
    elsewhere.source_answer = (200, SUBJECT_TOKEN.encode())
    source_url = f"{elsewhere.url}/subject-token"
    provider = GarProvider(gar_spec(), sts_endpoint_override=google.sts_url, credential_sources=(source_url,))
    config = external_account(subject_file, credential_source=url_source(source_url, headers=headers))

    error = mint_error(provider, key_secret(config))

    assert isinstance(error, InvalidSourceSecret)
    assert "headers" in str(error)
    assert elsewhere.seen == [] and google.seen == []


def test_a_listed_url_source_is_used(google: FakeGoogle, elsewhere: FakeGoogle, subject_file: Path) -> None:
    elsewhere.source_answer = (200, SUBJECT_TOKEN.encode())
    source_url = f"{elsewhere.url}/subject-token"
    provider = GarProvider(gar_spec(), sts_endpoint_override=google.sts_url, credential_sources=(source_url,))
    config = external_account(subject_file, credential_source=url_source(source_url, headers={"Metadata": "True"}))

    token = provider.mint(key_secret(config))

    assert token.password in google.issued
    assert elsewhere.paths() == ["GET /subject-token"]
    assert elsewhere.seen[0].headers["metadata"] == "True"


@pytest.mark.parametrize("status", [500, 404, 403])
def test_a_credential_source_s_body_is_never_repeated(
    google: FakeGoogle, elsewhere: FakeGoogle, subject_file: Path, status: int
) -> None:
    elsewhere.source_answer = (status, f"<html>{MARKER} {SUBJECT_TOKEN}</html>".encode())
    source_url = f"{elsewhere.url}/subject-token"
    provider = GarProvider(gar_spec(), sts_endpoint_override=google.sts_url, credential_sources=(source_url,))

    error = mint_error(
        provider, key_secret(external_account(subject_file, credential_source=url_source(source_url))), MARKER
    )

    assert (error.reason, error.retryable) == ("GoogleCredentialsMissing", True)
    assert f"HTTP {status}" in str(error) and elsewhere.address in str(error)
    assert google.seen == []


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"error": "invalid_grant", "error_description": f"The audience {MARKER} does not match"}),
        json.dumps({"error": f"{MARKER} not a code"}),
        json.dumps({"error": {"code": 400, "message": MARKER, "status": "INVALID_ARGUMENT"}}),
        f"<html><body>{MARKER}</body></html>",
        "[" * 50_000,
    ],
    ids=["oauth-description", "odd-code", "google-api-message", "html", "deeply-nested"],
)
def test_google_s_error_body_is_never_repeated(google: FakeGoogle, subject_file: Path, body: str) -> None:
    google.sts_error = (400, body.encode())

    error = mint_error(federation(google, subject_file), key_secret(external_account(subject_file)), MARKER)

    nested = body.startswith("[[")  # google-auth's json.loads raises RecursionError: not Google's verdict
    expected = ("GoogleInvalidResponse", True) if nested else ("GoogleTokenRejected", False)
    assert (error.reason, error.retryable) == expected
    assert "HTTP 400" in str(error)


def test_a_deeply_nested_subject_token_answer_is_a_sentence(
    google: FakeGoogle, elsewhere: FakeGoogle, subject_file: Path
) -> None:
    elsewhere.source_answer = (200, b"[" * 100_000)
    source_url = f"{elsewhere.url}/subject-token"
    provider = GarProvider(gar_spec(), sts_endpoint_override=google.sts_url, credential_sources=(source_url,))
    source = url_source(source_url, format={"type": "json", "subject_token_field_name": "access_token"})

    error = mint_error(provider, key_secret(external_account(subject_file, credential_source=source)))

    assert (error.reason, error.retryable) == ("GoogleInvalidResponse", True)
    assert google.seen == []


def test_a_documented_aws_configuration_is_used(
    google: FakeGoogle, subject_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google's generated aws1 configuration; with keys in the environment google-auth asks no metadata server."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret-access-key-do-not-print")
    config = external_account(
        subject_file, subject_token_type="urn:ietf:params:aws:token-type:aws4_request", credential_source=AWS_SOURCE
    )

    error = mint_error(
        GarProvider(gar_spec(), sts_endpoint_override=google.sts_url), key_secret(config),
        "example-secret-access-key-do-not-print",
    )

    assert error.reason == "GoogleTokenRejected"  # accepted, signed and sent to STS, which knows no such token
    assert google.paths() == ["POST /v1/token"]


AWS_SOURCE = {
    "environment_id": "aws1",
    "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
    "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
    "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
    "imdsv2_session_token_url": "http://169.254.169.254/latest/api/token",
}
AWS_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
AZURE_SOURCE = {
    "url": "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01"
    "&resource=api://AzureADTokenExchange",
    "headers": {"Metadata": "True"},
    "format": {"type": "json", "subject_token_field_name": "access_token"},
}
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@pytest.mark.parametrize(
    ("source", "token_type", "sources", "says"),
    [
        (AZURE_SOURCE, JWT_TYPE, None, None),
        (AWS_SOURCE, AWS_TYPE, None, None),
        ({**AWS_SOURCE, "region_url": "http://[fd00:ec2::254]/latest/meta-data/placement/availability-zone"},
         AWS_TYPE, None, None),
        ({"file": "/var/run/service-account/token"}, JWT_TYPE, None, None),
        ({"file": "/var/run/tokens/gcp/token"}, JWT_TYPE, ("/var/run/tokens/",), None),
        (AZURE_SOURCE, JWT_TYPE, ("none",), "not one the operator may fetch (allowed: none;"),
        (AWS_SOURCE, AWS_TYPE, ("azure",), "may not use (allowed: azure;"),
        ({"file": "/var/run/service-account/token"}, JWT_TYPE, ("aws",), "not one the operator may read"),
        ({**AWS_SOURCE, "url": "http://attacker.example/latest/meta-data/iam/security-credentials"}, AWS_TYPE, None,
         "credential_source url is not the EC2 instance metadata endpoint"),
        ({**AWS_SOURCE, "regional_cred_verification_url": "https://attacker.example/?{region}"}, AWS_TYPE, None,
         "regional_cred_verification_url"),
        ({**AWS_SOURCE, "environment_id": "aws2"}, AWS_TYPE, None, "environment_id"),
        ({**AWS_SOURCE, "headers": {"Metadata": "True"}}, AWS_TYPE, None, "headers"),
        ({"file": "/var/run/service-account/token"}, AWS_TYPE, None, "AWS subject token type"),
        ({"file": "/var/run/service-account/token", "region_url": AWS_SOURCE["region_url"]}, JWT_TYPE, None,
         "region_url"),
        ({"file": "/var/run/service-account/token", "url": AZURE_SOURCE["url"]}, JWT_TYPE, None, "exactly one"),
        ({"file": "/var/run/service-account/token", "format": {"type": "xml"}}, JWT_TYPE, None, "format"),
        ({"file": "/var/run/service-account/token", "surprise": 1}, JWT_TYPE, None, "surprise"),
        ({"certificate": {"use_default_certificate_config": True}}, JWT_TYPE, None, "X.509"),
        ({**AZURE_SOURCE, "url": "https://169.254.169.254/metadata/identity/oauth2/token"}, JWT_TYPE, None,
         "may fetch"),
        ({**AZURE_SOURCE, "url": "http://169.254.169.254/metadata/identity/oauth2/token#x"}, JWT_TYPE, None,
         "plain http(s) URL"),
        ("file:/etc/passwd", JWT_TYPE, None, "without a credential_source object"),
    ],
    ids=[
        "azure", "aws", "aws-ipv6", "kubernetes-projected-token", "listed-directory", "none", "aws-not-listed",
        "file-not-listed", "aws-foreign-url", "aws-foreign-verification", "aws2", "aws-headers", "file-aws-type",
        "file-region-url", "file-and-url", "format", "unknown-field", "certificate", "azure-https", "fragment",
        "not-a-mapping",
    ],
)
def test_the_allowed_credential_sources(
    source: Any, token_type: str, sources: tuple[str, ...] | None, says: str | None
) -> None:
    refusal = GarProvider(gar_spec(), credential_sources=sources).credential_sources.refusal(source, token_type)

    if says is None:
        assert refusal is None
    else:
        assert refusal is not None and says in refusal


def test_the_credential_sources_setting() -> None:
    from regcred.config import Settings
    from regcred.providers import provider_for

    assert Settings.from_env({}).google_credential_sources is None
    settings = Settings.from_env({"REGCRED_GOOGLE_CREDENTIAL_SOURCES": " /var/run/gcp/token, aws ,"})
    assert settings.google_credential_sources == ("/var/run/gcp/token", "aws")
    provider = provider_for(gar_spec(), settings)
    assert isinstance(provider, GarProvider)
    assert provider.credential_sources.files == ("/var/run/gcp/token",)
    assert provider.credential_sources.aws and not provider.credential_sources.azure


# --- what a key.json may be --------------------------------------------------------------------------------


def test_a_huge_key_json_is_a_sentence(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    """A megabyte of otherwise valid key: refused before it is parsed or used."""
    info = key_json(rsa_key[0], google.token_uri, padding="x" * 1_000_000)

    error = mint_error(GarProvider(gar_spec()), key_secret(info), rsa_key[0])

    assert isinstance(error, InvalidSourceSecret)
    assert "at most 65536" in str(error)
    assert google.seen == []


@pytest.mark.parametrize("depth", [20, 1_000, 200_000])
def test_a_deeply_nested_key_json_is_a_sentence(depth: int) -> None:
    content = '{"type": "service_account", "x": ' + "[" * depth + "]" * depth + "}"
    if len(content) > 65536:
        content = "[" * depth  # over the size bound too: either sentence will do

    error = mint_error(GarProvider(gar_spec()), key_secret(content))

    assert isinstance(error, InvalidSourceSecret)
    assert "nested deeper" in str(error) or "bytes" in str(error)


def test_a_nested_key_under_the_bound_still_works(google: FakeGoogle, rsa_key: tuple[str, Any]) -> None:
    info = key_json(rsa_key[0], google.token_uri, extra={"a": [[["b"]]], "s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["})

    token = GarProvider(gar_spec()).mint(key_secret(info))

    assert token.password in google.issued


# --- Application Default Credentials ---------------------------------------------------------------------


def test_no_application_default_credentials(google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing configured: a retryable error saying what to set, and the metadata server is never asked."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
    monkeypatch.setenv("GCE_METADATA_IP", google.address)  # a listening, recording stand-in: it must stay idle
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", google.address)

    error = mint_error(GarProvider(GarSpec(registries=REGISTRIES)), secret_reader(None))

    assert (error.reason, error.retryable) == ("GoogleCredentialsMissing", True)
    assert "credentialsSecretRef" in str(error)
    assert "Workload Identity" in str(error)
    assert google.seen == []


def test_application_default_credentials_from_a_key_file(
    google: FakeGoogle, rsa_key: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(key_json(rsa_key[0], google.token_uri)))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))

    token = GarProvider(GarSpec(registries=REGISTRIES)).mint(secret_reader(None))

    assert google.issued[token.password].principal == EMAIL
    assert CLOUD_PLATFORM in google.jwt_claims[0]["scope"].split()
    assert_expires_in(token, 3599)


def test_gke_workload_identity_through_the_metadata_server(google: FakeGoogle, monkeypatch: pytest.MonkeyPatch) -> None:
    google.metadata_enabled = True
    monkeypatch.setenv("NO_GCE_CHECK", "false")
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", False)
    monkeypatch.setenv("GCE_METADATA_IP", google.address)
    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", google.address)

    token = GarProvider(GarSpec(registries=REGISTRIES)).mint(secret_reader(None))

    issued = google.issued[token.password]
    assert issued.principal == google.metadata_email
    assert CLOUD_PLATFORM in issued.scopes
    assert_expires_in(token, 3599)
    assert all(seen.headers.get("metadata-flavor") == "Google" for seen in google.seen)


def test_google_auth_s_own_text_is_scrubbed_before_it_is_cut() -> None:
    """A secret that straddles the cut of google-auth's text is replaced whole: no prefix of it is kept."""
    from regcred.providers.gar import _GOOGLE_MESSAGE_LIMIT, _first_line

    error = ValueError("cannot read " + "x" * (_GOOGLE_MESSAGE_LIMIT - 20) + f" {SUBJECT_TOKEN}\nsecond line")
    said = _first_line(error, [SUBJECT_TOKEN])
    assert len(said) <= _GOOGLE_MESSAGE_LIMIT and said.endswith("x …")
    assert SUBJECT_TOKEN[:8] not in said and "second line" not in said
