"""spec.verify end to end against a real registry (Debian's docker-registry with htpasswd auth).

A fresh credential is probed against the canary image before it may replace the written one; when the
probe fails, the Secrets already written stay byte for byte as they were.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, b64, eventually
from tests.registry.harness import (
    PASSWORD,
    REPO,
    TAG,
    USERNAME,
    Registry,
    needs_registry,
)

pytestmark = [pytest.mark.e2e, needs_registry]
SELECTOR = "regcred.dev/credential=private"


@pytest.fixture
def private(cluster: Cluster, registry: Registry) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "robot", {"username": USERNAME, "password": PASSWORD})
    cluster.namespace("web", {"pulls-from": "private"})
    return cluster


def spec(registry: Registry, image: str) -> dict[str, Any]:
    return {
        "provider": {"static": {"registry": registry.host,
                                "secretRef": {"namespace": "regcred-system", "name": "robot"}}},
        "secretName": "private-pull",
        "namespaces": {"selector": {"matchLabels": {"pulls-from": "private"}}},
        "verify": {"image": image},
    }


def test_a_credential_that_fails_verification_is_not_written(
    private: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({registry.host})))
    private.apply_credential("private", spec(registry, f"{registry.host}/{REPO}:{TAG}"))

    eventually(lambda: _equal(private.condition("private", "Verified")["status"], "True"))
    verification = private.credential("private")["status"]["verification"]
    assert verification["verdict"] == "ok"
    assert verification["image"] == f"{registry.host}/{REPO}:{TAG}"
    assert private.condition("private")["status"] == "True"
    before = private.core.read_namespaced_secret("private-pull", "web")
    assert private.dockerconfig("web", "private-pull")["auths"][registry.host]["password"] == PASSWORD

    # The robot's password is rotated in the source Secret, but to a wrong value.
    private.core.patch_namespaced_secret("robot", "regcred-system", {"data": {"password": b64("wrong")}})
    private.namespace("elsewhere")  # wakes the credential up at once
    eventually(lambda: _equal(private.condition("private")["reason"], "VerificationFailed"))
    condition = private.condition("private")
    assert condition["status"] == "False"
    assert f"could not pull {registry.host}/{REPO}:{TAG}" in condition["message"]
    assert private.condition("private", "Verified")["status"] == "False"
    assert private.credential("private")["status"]["verification"]["verdict"] == "unauthorized"
    after = private.core.read_namespaced_secret("private-pull", "web")
    assert after.data == before.data  # byte for byte
    assert after.metadata.resource_version == before.metadata.resource_version  # not even rewritten
    assert private.posted("VerificationFailed")
    assert "wrong" not in str(private.credential("private")["status"])

    # Fixed: the next attempt verifies and writes.
    private.core.patch_namespaced_secret("robot", "regcred-system", {"data": {"password": b64(PASSWORD)}})
    private.namespace("elsewhere-2")
    eventually(lambda: _equal(private.condition("private")["status"], "True"))


def test_a_missing_canary_tag_is_reported_and_nothing_is_written(
    private: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, insecure_registries=frozenset({registry.host})))
    private.apply_credential("private", spec(registry, f"{registry.host}/{REPO}:no-such-tag"))

    eventually(lambda: _equal(private.condition("private")["reason"], "VerificationFailed"))
    assert private.credential("private")["status"]["verification"]["verdict"] == "not_found"
    assert "no-such-tag" in private.condition("private")["message"]
    assert private.secrets(SELECTOR) == {}


def test_a_canary_on_another_registry_is_a_spec_error(
    private: Cluster, operator: OperatorFactory, registry: Registry
) -> None:
    operator.start()
    private.apply_credential("private", spec(registry, "ghcr.io/acme/app:1"))
    eventually(lambda: _equal(private.condition("private")["reason"], "VerifyImageNotServed"))
    assert "which this credential does not serve" in private.condition("private")["message"]


def _equal(actual: object, expected: object) -> None:
    assert actual == expected
