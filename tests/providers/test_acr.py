"""The ACR provider: the real azure-identity code against a stand-in for Entra ID and ACR's token exchange.

The stand-in (tests/providers/azure_server.py) serves HTTPS on 127.0.0.1 with a self-signed certificate that
the tests trust through REQUESTS_CA_BUNDLE, as an operator behind a TLS-inspecting proxy would. azure-identity
reaches it as its authority (``authority_host``), and as the instance metadata service through its own
``AZURE_POD_IDENTITY_AUTHORITY_HOST``; the exchange goes to it through ``exchange_url``. Nothing here reaches
Azure.
"""

from __future__ import annotations

import base64
import datetime
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from regcred.models import ACR_SCOPE, AcrSpec, SecretRef
from regcred.providers.acr import ACR_USERNAME, MAX_RESPONSE_BYTES, AcrProvider
from regcred.providers.base import InvalidSourceSecret, ProviderError, SourceSecretNotFound
from tests.providers.azure_server import App, FakeAzure, running

REGISTRY = "myregistry.azurecr.io"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "3f1c2b9a-6d4e-4c1f-9a0b-2e8d7c6b5a41"
OTHER_CLIENT = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
CLIENT_SECRET = "Zq8~client-secret-value-do-not-print.Aa1"
FEDERATED = "eyJhbGciOiJSUzI1NiJ9.federated-service-account-token-do-not-print.c2ln"
SP_REF = SecretRef(namespace="regcred-system", name="acr-sp")
NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)

SecretReader = Callable[[str, str], Mapping[str, bytes]]


@pytest.fixture
def azure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    for name in ("AZURE_AUTHORITY_HOST", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE",
                 "AZURE_CLIENT_SECRET", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
                 "AZURE_REGIONAL_AUTHORITY_NAME", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for fake in running(tmp_path):
        fake.now = lambda: NOW
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca_bundle))
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url)
        yield fake


def provider(fake: FakeAzure, environ: Mapping[str, str] | None = None, **spec: Any) -> AcrProvider:
    return AcrProvider(AcrSpec(registry=REGISTRY, **spec), authority_host=fake.url, exchange_url=fake.url,
                       clock=lambda: NOW, environ=environ or {})


def secret_reader(data: Mapping[str, bytes] | None) -> SecretReader:
    def read_secret(namespace: str, name: str) -> Mapping[str, bytes]:
        if data is None or (namespace, name) != (SP_REF.namespace, SP_REF.name):
            raise SourceSecretNotFound(f"Secret {namespace}/{name} does not exist.")
        return data

    return read_secret


NO_SECRETS = secret_reader(None)


def workload_env(tmp_path: Path, token: str = FEDERATED) -> dict[str, str]:
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(token)
    return {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT, "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}


def claims_of(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def mint_error(acr: AcrProvider, read_secret: SecretReader, *secrets: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        acr.mint(read_secret)
    error = caught.value
    text = f"{error} {error!r} {error.reason}"
    for secret in secrets:
        assert secret not in text
    assert str(error).endswith("."), str(error)
    return error


def certificate_pem() -> tuple[bytes, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regcred-acr")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)
    return pem, cert


# -- the three identities ---------------------------------------------------------------------------------


def test_workload_identity_from_the_webhook_environment_mints_a_refresh_token_with_its_real_expiry(
    azure: FakeAzure, tmp_path: Path
) -> None:
    azure.apps[CLIENT] = App(tenant=TENANT, federated_token=FEDERATED)
    token = provider(azure, workload_env(tmp_path)).mint(NO_SECRETS)

    assert token.hosts == (REGISTRY,)
    assert token.username == ACR_USERNAME == "00000000-0000-0000-0000-000000000000"
    assert token.password == azure.refresh_tokens[-1]
    assert token.expires_at == NOW + datetime.timedelta(hours=3)  # the refresh token's exp, not a guess
    (exchange,) = azure.exchanges()
    assert exchange.form["grant_type"] == "access_token"
    assert exchange.form["service"] == REGISTRY
    assert exchange.form["tenant"] == TENANT
    issued = azure.issued[exchange.form["access_token"]]
    assert (issued.tenant, issued.client, issued.scope) == (TENANT, CLIENT, ACR_SCOPE)


def test_the_refresh_tokens_expiry_follows_its_exp_claim(azure: FakeAzure, tmp_path: Path) -> None:
    azure.apps[CLIENT] = App(tenant=TENANT, federated_token=FEDERATED)
    azure.refresh_lifetime = datetime.timedelta(minutes=75)
    token = provider(azure, workload_env(tmp_path)).mint(NO_SECRETS)
    assert token.expires_at == NOW + datetime.timedelta(minutes=75)
    assert claims_of(token.password)["exp"] == int(token.expires_at.timestamp())


def test_workload_identity_fields_in_the_spec_choose_another_identity_trusting_the_same_account(
    azure: FakeAzure, tmp_path: Path
) -> None:
    other_tenant = "contoso.onmicrosoft.com"
    azure.apps[OTHER_CLIENT] = App(tenant=other_tenant, federated_token=FEDERATED)
    token = provider(azure, workload_env(tmp_path), tenant_id=other_tenant, client_id=OTHER_CLIENT).mint(NO_SECRETS)
    assert azure.issued[azure.exchanges()[0].form["access_token"]].client == OTHER_CLIENT
    assert azure.exchanges()[0].form["tenant"] == other_tenant
    assert token.password == azure.refresh_tokens[-1]


def test_workload_identity_without_the_webhooks_environment_says_how_to_set_it_up(azure: FakeAzure) -> None:
    error = mint_error(provider(azure, {"AZURE_TENANT_ID": TENANT}), NO_SECRETS)
    assert error.reason == "AzureCredentialsMissing"
    assert "AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE not set" in str(error)
    assert "azure.workload.identity/use=true" in str(error)
    assert azure.seen == []


def test_a_federated_token_entra_id_does_not_trust_is_rejected_without_showing_it(
    azure: FakeAzure, tmp_path: Path
) -> None:
    azure.apps[CLIENT] = App(tenant=TENANT, federated_token="some-other-token")
    error = mint_error(provider(azure, workload_env(tmp_path)), NO_SECRETS, FEDERATED)
    assert error.reason == "AzureTokenRejected"
    assert "AADSTS700027" in str(error)
    assert "federated credential" in str(error)
    assert not error.retryable


def test_a_missing_federated_token_file_is_a_sentence(azure: FakeAzure, tmp_path: Path) -> None:
    env = {**workload_env(tmp_path), "AZURE_FEDERATED_TOKEN_FILE": str(tmp_path / "gone")}
    error = mint_error(provider(azure, env), NO_SECRETS)
    assert error.reason == "AzureCredentialsMissing"
    assert "AZURE_FEDERATED_TOKEN_FILE" in str(error)


def test_a_service_principal_with_a_client_secret(azure: FakeAzure) -> None:
    azure.apps[CLIENT] = App(tenant=TENANT, client_secret=CLIENT_SECRET)
    acr = provider(azure, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                   credentials_secret_ref=SP_REF)
    token = acr.mint(secret_reader({"client-secret": f"{CLIENT_SECRET}\n".encode()}))
    assert token.password == azure.refresh_tokens[-1]
    assert token.expires_at == NOW + datetime.timedelta(hours=3)
    assert "GET /72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0/.well-known/openid-configuration" in azure.paths()


def test_a_wrong_client_secret_is_rejected_with_entras_code_and_never_shown(azure: FakeAzure) -> None:
    azure.apps[CLIENT] = App(tenant=TENANT, client_secret="the-real-one")
    acr = provider(azure, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                   credentials_secret_ref=SP_REF)
    error = mint_error(acr, secret_reader({"client-secret": CLIENT_SECRET.encode()}), CLIENT_SECRET)
    assert error.reason == "AzureTokenRejected"
    assert "AADSTS7000215" in str(error)
    assert "secret's ID instead of its value" in str(error)
    assert azure.exchanges() == []


def test_a_service_principal_with_a_certificate_signs_its_assertion(azure: FakeAzure) -> None:
    pem, cert = certificate_pem()
    azure.apps[CLIENT] = App(tenant=TENANT, certificate=cert)
    acr = provider(azure, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                   credentials_secret_ref=SP_REF)
    token = acr.mint(secret_reader({"certificate.pem": pem}))
    assert token.password == azure.refresh_tokens[-1]


def test_a_certificate_that_is_not_one_is_refused_without_quoting_it(azure: FakeAzure) -> None:
    acr = provider(azure, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                   credentials_secret_ref=SP_REF)
    garbage = "-----BEGIN PRIVATE KEY-----\nnot-a-key-do-not-print\n-----END PRIVATE KEY-----\n"
    with pytest.raises(InvalidSourceSecret) as caught:
        acr.mint(secret_reader({"certificate.pem": garbage.encode()}))
    assert "not-a-key-do-not-print" not in str(caught.value)


@pytest.mark.parametrize("data", [{}, {"client-secret": b"x", "certificate.pem": b"y"}, {"password": b"x"}])
def test_a_service_principal_secret_needs_exactly_one_known_key(azure: FakeAzure, data: dict[str, bytes]) -> None:
    acr = provider(azure, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                   credentials_secret_ref=SP_REF)
    with pytest.raises(InvalidSourceSecret, match="exactly one of the keys client-secret"):
        acr.mint(secret_reader(data))
    assert azure.seen == []


def test_a_system_assigned_managed_identity_through_the_metadata_service(azure: FakeAzure, tmp_path: Path) -> None:
    azure.managed_identities.add("system")
    # The webhook's variables are present, but the spec asked for the managed identity: it is used.
    token = provider(azure, workload_env(tmp_path), identity="ManagedIdentity").mint(NO_SECRETS)
    assert token.password == azure.refresh_tokens[-1]
    imds = [seen for seen in azure.seen if seen.path == "/metadata/identity/oauth2/token"]
    assert imds and imds[0].query["resource"] == "https://containerregistry.azure.net"
    assert "tenant" not in azure.exchanges()[0].form  # ACR reads it from the token


def test_a_user_assigned_managed_identity_is_chosen_by_client_id(azure: FakeAzure) -> None:
    azure.managed_identities.add(OTHER_CLIENT)
    token = provider(azure, identity="ManagedIdentity", client_id=OTHER_CLIENT).mint(NO_SECRETS)
    assert azure.issued[azure.exchanges()[0].form["access_token"]].client == OTHER_CLIENT
    assert token.expires_at == NOW + datetime.timedelta(hours=3)


def test_a_managed_identity_the_node_does_not_have_is_a_sentence(azure: FakeAzure) -> None:
    error = mint_error(provider(azure, identity="ManagedIdentity", client_id=OTHER_CLIENT), NO_SECRETS)
    assert error.reason == "AzureCredentialsMissing"
    assert OTHER_CLIENT in str(error)


# -- the exchange ---------------------------------------------------------------------------------------------


@pytest.fixture
def sp(azure: FakeAzure) -> tuple[AcrProvider, SecretReader]:
    azure.apps[CLIENT] = App(tenant=TENANT, client_secret=CLIENT_SECRET)
    acr = provider(azure, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                   credentials_secret_ref=SP_REF)
    return acr, secret_reader({"client-secret": CLIENT_SECRET.encode()})


def issued_tokens(azure: FakeAzure) -> list[str]:
    return [CLIENT_SECRET, *azure.issued, *azure.refresh_tokens]


def test_a_refused_exchange_names_the_status_and_acrs_code_only(
    azure: FakeAzure, sp: tuple[AcrProvider, SecretReader]
) -> None:
    body = {"errors": [{"code": "UNAUTHORIZED", "message": "token aad-1-fake-entra-access-token is not valid"}]}
    azure.exchange_answer = (401, {"Content-Type": "application/json"}, json.dumps(body).encode())
    error = mint_error(*sp, "aad-1-fake-entra-access-token")
    assert error.reason == "AcrExchangeRejected"
    assert "(HTTP 401: UNAUTHORIZED)" in str(error)
    assert "tenantId" in str(error)
    for secret in issued_tokens(azure):
        assert secret not in str(error)


def test_the_scope_asked_for_is_the_specs(azure: FakeAzure) -> None:
    azure.apps[CLIENT] = App(tenant=TENANT, client_secret=CLIENT_SECRET)
    arm = "https://management.azure.com/.default"
    acr = provider(azure, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                   credentials_secret_ref=SP_REF, scope=arm)
    error = mint_error(acr, secret_reader({"client-secret": CLIENT_SECRET.encode()}))  # the fake takes ACR's only
    assert [issued.scope for issued in azure.issued.values()] == [arm]
    assert error.reason == "AcrExchangeRejected"


@pytest.mark.parametrize(("status", "body", "reason", "says"), [
    (200, b"<html>proxy login</html>", "AzureInvalidResponse", "it is not JSON"),
    (200, b'["refresh_token"]', "AzureInvalidResponse", "it has no refresh_token"),
    (200, b'{"refresh_token": 42}', "AzureInvalidResponse", "it has no refresh_token"),
    (200, b'{"refresh_token": "a b"}', "AzureInvalidResponse", "is not a token"),
    (200, b"[" * 100_000 + b"]" * 100_000, "AzureInvalidResponse", "more than 65536 bytes"),
    (200, b'{"refresh_token": "' + b"a" * (MAX_RESPONSE_BYTES + 1) + b'"}', "AzureInvalidResponse", "more than"),
    (503, b"", "AzureUnavailable", "HTTP 503"),
    (429, b'{"errors": [{"code": "TOOMANYREQUESTS"}]}', "AzureUnavailable", "HTTP 429: TOOMANYREQUESTS"),
    (404, b"not found", "AcrExchangeRejected", "check spec.provider.acr.registry"),
    (302, b"", "AcrExchangeRejected", "HTTP 302"),
])
def test_what_the_exchange_answers_is_read_with_bounds(
    azure: FakeAzure, sp: tuple[AcrProvider, SecretReader], status: int, body: bytes, reason: str, says: str
) -> None:
    headers = {"Content-Type": "application/json", "Location": "https://elsewhere.example/oauth2/exchange"}
    azure.exchange_answer = (status, headers, body)
    error = mint_error(*sp)
    assert (error.reason, says in str(error)) == (reason, True), str(error)
    assert len(str(error)) < 500
    for secret in issued_tokens(azure):
        assert secret not in str(error)


@pytest.mark.parametrize(("claims", "says"), [
    ({"exp": None}, "no readable expiry"),
    ({"exp": "1796000000"}, "no readable expiry"),
    ({"exp": True}, "no readable expiry"),
    ({"exp": 10**30}, "no readable expiry"),
    ({"exp": int((NOW + datetime.timedelta(days=30)).timestamp())}, "longer than any ACR refresh token"),
])
def test_a_refresh_token_without_a_believable_exp_is_not_written(
    azure: FakeAzure, sp: tuple[AcrProvider, SecretReader], claims: dict[str, Any], says: str
) -> None:
    azure.refresh_claims = claims
    error = mint_error(*sp)
    assert error.reason == "AzureInvalidResponse"
    assert says in str(error)
    assert error.retryable
    for secret in issued_tokens(azure):
        assert secret not in str(error)


def test_a_refresh_token_that_is_not_a_jwt_has_no_expiry(
    azure: FakeAzure, sp: tuple[AcrProvider, SecretReader]
) -> None:
    azure.exchange_answer = (200, {"Content-Type": "application/json"}, b'{"refresh_token": "opaque.token"}')
    assert "no readable expiry" in str(mint_error(*sp, "opaque.token"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_registry_is_retried(azure: FakeAzure) -> None:
    azure.apps[CLIENT] = App(tenant=TENANT, client_secret=CLIENT_SECRET)
    acr = AcrProvider(AcrSpec(registry=REGISTRY, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                              credentials_secret_ref=SP_REF),
                      authority_host=azure.url, exchange_url=f"https://127.0.0.1:{closed_port()}", clock=lambda: NOW)
    error = mint_error(acr, secret_reader({"client-secret": CLIENT_SECRET.encode()}), *issued_tokens(azure))
    assert error.reason == "AzureUnavailable"
    assert error.retryable


def test_an_unreachable_entra_id_is_retried(azure: FakeAzure) -> None:
    acr = AcrProvider(AcrSpec(registry=REGISTRY, identity="ServicePrincipal", tenant_id=TENANT, client_id=CLIENT,
                              credentials_secret_ref=SP_REF),
                      authority_host=f"https://127.0.0.1:{closed_port()}", exchange_url=azure.url, clock=lambda: NOW)
    error = mint_error(acr, secret_reader({"client-secret": CLIENT_SECRET.encode()}), CLIENT_SECRET)
    assert error.reason == "AzureUnavailable", str(error)
    assert "ServiceRequestError" in str(error)


def test_entra_throttling_is_retried(azure: FakeAzure, sp: tuple[AcrProvider, SecretReader]) -> None:
    azure.token_error = (429, {"error": "temporarily_unavailable", "error_description": "AADSTS50196: loop"})
    error = mint_error(*sp, CLIENT_SECRET)
    assert (error.reason, error.retryable) == ("AzureUnavailable", True)
    assert "HTTP 429" in str(error)
