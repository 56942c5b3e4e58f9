"""ACR end to end: an ACR refresh token fans out with its real expiry and is refreshed before it lapses.

Entra ID and the registry's token exchange are the HTTPS stand-in of tests/providers/azure_server.py, reached
by the real azure-identity code (REGCRED_AZURE_AUTHORITY_HOST, REGCRED_ACR_EXCHANGE_URL as settings). The
stand-in stamps each refresh token's ``exp`` from the operator's manual clock, so time moves by hours at once.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regcred.clock import ManualClock
from regcred.config import Settings
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually
from tests.providers.azure_server import App, FakeAzure, running

pytestmark = pytest.mark.e2e

# The provider bounds a refresh token's exp by its own (real) clock: the operator's manual one starts now.
START = datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)
REGISTRY = "myregistry.azurecr.io"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "3f1c2b9a-6d4e-4c1f-9a0b-2e8d7c6b5a41"
CLIENT_SECRET = "Zq8~e2e-client-secret-do-not-print.Aa1"
SELECTOR = "regcred.dev/credential=acr"


@pytest.fixture
def azure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    for name in ("AZURE_AUTHORITY_HOST", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE",
                 "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for fake in running(tmp_path):
        # What an operator behind a TLS-inspecting proxy is given: the stand-in's certificate as a CA bundle.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca_bundle))
        fake.apps[CLIENT] = App(tenant=TENANT, client_secret=CLIENT_SECRET)
        yield fake


@pytest.fixture
def acr(cluster: Cluster) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "acr-sp", {"client-secret": CLIENT_SECRET})
    for name in ("web", "api"):
        cluster.namespace(name, {"pulls-from": "acr"})
    return cluster


def acr_spec() -> dict[str, Any]:
    return {
        "provider": {"acr": {"registry": REGISTRY, "servicePrincipal": {
            "tenantId": TENANT, "clientId": CLIENT, "secretRef": {"namespace": "regcred-system", "name": "acr-sp"}}}},
        "secretName": "acr-pull",
        "namespaces": {"selector": {"matchLabels": {"pulls-from": "acr"}}},
    }


def settings_for(azure: FakeAzure) -> Settings:
    return dataclasses.replace(TEST_SETTINGS, azure_authority_host=azure.url, acr_exchange_url=azure.url)


def zulu(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_acr_credential_fans_out_with_its_real_expiry_and_is_refreshed(
    acr: Cluster, operator: OperatorFactory, azure: FakeAzure
) -> None:
    clock = ManualClock(START)
    azure.now = clock.now
    runtime = operator.start(clock=clock, settings=settings_for(azure))
    acr.apply_credential("acr", acr_spec())

    def served(minted: datetime.datetime) -> None:
        assert set(acr.secrets(SELECTOR)) == {"web", "api"}
        for namespace in ("web", "api"):
            entry = acr.dockerconfig(namespace, "acr-pull")["auths"][REGISTRY]
            assert entry["username"] == "00000000-0000-0000-0000-000000000000"
            assert entry["password"] == azure.refresh_tokens[-1]
            annotations = acr.secrets(SELECTOR)[namespace].metadata.annotations
            assert annotations["regcred.dev/expiration-time"] == zulu(minted + datetime.timedelta(hours=3))
        status = acr.credential("acr")["status"]
        assert status["provider"] == "acr"
        assert status["expirationTime"] == zulu(minted + datetime.timedelta(hours=3))  # the token's own exp
        assert status["lastRefreshTime"] == zulu(minted)
        assert status["registries"] == [REGISTRY]
        assert acr.condition("acr")["status"] == "True"

    eventually(lambda: served(START))
    assert runtime.reconciler.tokens.provider_calls == 1  # one exchange, two namespaces
    assert [seen.form["service"] for seen in azure.exchanges()] == [REGISTRY]

    # A 3 h token is refreshed a third of its lifetime ahead (made earlier by at most 5 minutes of jitter).
    refreshed = clock.advance(datetime.timedelta(hours=2, minutes=1))
    eventually(lambda: served(refreshed))
    assert runtime.reconciler.tokens.provider_calls == 2
    assert len(set(azure.refresh_tokens)) == 2
    assert acr.posted("TokenRefreshed")
    assert CLIENT_SECRET not in str(acr.credential("acr")["status"])


def test_workload_identity_from_the_webhooks_environment_is_the_default(
    acr: Cluster, operator: OperatorFactory, azure: FakeAzure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the AKS webhook puts in the operator's pod: the identity, and its projected ServiceAccount token.
    federated = "eyJhbGciOiJSUzI1NiJ9.e2e-projected-service-account-token.c2ln"
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(federated)
    other = "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d"
    azure.apps[other] = App(tenant=TENANT, federated_token=federated)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", other)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    operator.start(settings=settings_for(azure))
    acr.apply_credential("acr", {**acr_spec(), "provider": {"acr": {"registry": REGISTRY}}})

    eventually(lambda: _equal(acr.condition("acr")["status"], "True"))
    assert acr.dockerconfig("web", "acr-pull")["auths"][REGISTRY]["password"] == azure.refresh_tokens[-1]
    assert azure.issued[azure.exchanges()[-1].form["access_token"]].client == other
    assert federated not in str(acr.credential("acr")["status"])


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def test_a_refused_exchange_is_reported_and_writes_nothing(
    acr: Cluster, operator: OperatorFactory, azure: FakeAzure
) -> None:
    azure.exchange_answer = (401, {"Content-Type": "application/json"},
                             b'{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}')
    operator.start(settings=settings_for(azure))
    acr.apply_credential("acr", acr_spec())

    def refused() -> None:
        ready = acr.condition("acr")
        assert (ready["status"], ready["reason"]) == ("False", "AcrExchangeRejected")
        assert "HTTP 401: UNAUTHORIZED" in ready["message"]
    eventually(refused)
    assert acr.secrets(SELECTOR) == {}
    for issued in azure.issued:
        assert issued not in str(acr.credential("acr")["status"])
