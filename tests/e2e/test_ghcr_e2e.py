"""GHCR end to end: a PAT's expiry reaches status, with a warning well before it lapses; App tokens fan out."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually
from tests.providers.github_server import FakeGitHub, Pat, serve

pytestmark = pytest.mark.e2e
SELECTOR = "regcred.dev/credential=ghcr"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with serve(FakeGitHub()) as server:
        yield server


@pytest.fixture
def ghcr(cluster: Cluster) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.namespace("web", {"pulls-from": "ghcr"})
    return cluster


def spec(provider: dict[str, Any]) -> dict[str, Any]:
    return {"provider": {"ghcr": provider}, "secretName": "ghcr-pull",
            "namespaces": {"selector": {"matchLabels": {"pulls-from": "ghcr"}}}}


def github_time(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def condition(cluster: Cluster, type_: str) -> dict[str, Any]:
    return cluster.condition("ghcr", type_)


def test_a_pat_close_to_expiry_is_written_and_warned_about(
    ghcr: Cluster, operator: OperatorFactory, github: FakeGitHub
) -> None:
    expires = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5)).replace(microsecond=0)
    github.pats["ghp_demo"] = Pat(login="ci-bot", expiration=github_time(expires))
    ghcr.source_secret("regcred-system", "ghcr-pat", {"token": "ghp_demo"})
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, github_api_url=github.api_url))
    ghcr.apply_credential("ghcr", spec({"username": "ci-bot",
                                        "tokenSecretRef": {"namespace": "regcred-system", "name": "ghcr-pat"}}))

    eventually(lambda: _equal(ghcr.dockerconfig("web", "ghcr-pull")["auths"]["ghcr.io"]["password"], "ghp_demo"))
    eventually(lambda: _equal(condition(ghcr, "TokenExpiring")["status"], "True"))
    message = condition(ghcr, "TokenExpiring")["message"]
    assert "expires on" in message
    assert "regcred-system/ghcr-pat" in message
    assert ghcr.credential("ghcr")["status"]["expirationTime"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert condition(ghcr, "Ready")["status"] == "True"  # it works today; the warning says what to do
    assert ghcr.posted("TokenExpiresSoon")
    assert "ghp_demo" not in str(ghcr.credential("ghcr")["status"])


def test_a_pat_without_expiry_is_reported_as_such(
    ghcr: Cluster, operator: OperatorFactory, github: FakeGitHub
) -> None:
    github.pats["ghp_forever"] = Pat(login="ci-bot", expiration=None)
    ghcr.source_secret("regcred-system", "ghcr-pat", {"token": "ghp_forever"})
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, github_api_url=github.api_url))
    ghcr.apply_credential("ghcr", spec({"username": "ci-bot",
                                        "tokenSecretRef": {"namespace": "regcred-system", "name": "ghcr-pat"}}))

    eventually(lambda: _equal(condition(ghcr, "Ready")["status"], "True"))
    assert condition(ghcr, "TokenExpiring")["status"] == "False"
    assert "never expires" in condition(ghcr, "TokenReady")["message"]
    assert "expirationTime" not in ghcr.credential("ghcr")["status"]


def test_a_rejected_pat_says_to_replace_it(ghcr: Cluster, operator: OperatorFactory, github: FakeGitHub) -> None:
    ghcr.source_secret("regcred-system", "ghcr-pat", {"token": "ghp_revoked"})
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, github_api_url=github.api_url))
    ghcr.apply_credential("ghcr", spec({"username": "ci-bot",
                                        "tokenSecretRef": {"namespace": "regcred-system", "name": "ghcr-pat"}}))
    eventually(lambda: _equal(condition(ghcr, "Ready")["reason"], "GitHubTokenRejected"))
    assert ghcr.secrets(SELECTOR) == {}


def test_an_app_installation_token_fans_out_with_its_expiry(
    ghcr: Cluster, operator: OperatorFactory, github: FakeGitHub
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    github.app_keys["12345"] = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    github.installations.add("67890")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    ghcr.source_secret("regcred-system", "gh-app", {"private-key.pem": pem})
    runtime = operator.start(settings=dataclasses.replace(TEST_SETTINGS, github_api_url=github.api_url))
    ghcr.apply_credential("ghcr", spec({"app": {
        "appId": 12345, "installationId": 67890,
        "privateKeySecretRef": {"namespace": "regcred-system", "name": "gh-app"},
    }}))

    eventually(lambda: _equal(condition(ghcr, "Ready")["status"], "True"))
    entry = ghcr.dockerconfig("web", "ghcr-pull")["auths"]["ghcr.io"]
    assert entry["username"] == "x-access-token"
    assert entry["password"] == github.issued[-1]
    expires = ghcr.credential("ghcr")["status"]["expirationTime"]
    left = datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")) - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=55) < left <= datetime.timedelta(hours=1)
    assert runtime.reconciler.tokens.provider_calls == 1


def _equal(actual: object, expected: object) -> None:
    assert actual == expected
