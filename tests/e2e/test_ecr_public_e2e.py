"""ECR Public end to end: an ecr credential with ``public: true`` fans out a public.ecr.aws token with its expiry.

ECR Public is tests/providers/ecr_public_server.py (moto does not implement it), called by the real boto3
client; the keys come from a source Secret, as for private ECR.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually
from tests.providers.ecr_public_server import FakeEcrPublic, serve

pytestmark = pytest.mark.e2e
SELECTOR = "regcred.dev/credential=ecr-public"
ACCESS_KEY_ID = "AKIAEXAMPLEKEYID0002"


@pytest.fixture
def ecr_public(clean_aws_env: None) -> Iterator[FakeEcrPublic]:
    with serve(FakeEcrPublic()) as server:
        yield server


def test_an_ecr_public_token_fans_out_with_its_expiry(
    cluster: Cluster, operator: OperatorFactory, ecr_public: FakeEcrPublic
) -> None:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "aws-keys", {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": "example-secret-access-key"})
    for name in ("web", "api"):
        cluster.namespace(name, {"pulls-from": "ecr-public"})
    cluster.namespace("elsewhere")
    settings = dataclasses.replace(TEST_SETTINGS, ecr_endpoint_url="http://127.0.0.1:9",
                                   ecr_public_endpoint_url=ecr_public.url)
    runtime = operator.start(settings=settings)
    cluster.apply_credential("ecr-public", {
        "provider": {"ecr": {"public": True,
                             "credentialsSecretRef": {"namespace": "regcred-system", "name": "aws-keys"}}},
        "secretName": "ecr-public-pull",
        "namespaces": {"selector": {"matchLabels": {"pulls-from": "ecr-public"}}},
    })

    expires = ecr_public.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def ready() -> None:
        status = cluster.credential("ecr-public")["status"]
        assert cluster.condition("ecr-public")["status"] == "True"
        assert status["expirationTime"] == expires
        assert status["registries"] == ["public.ecr.aws"]
    eventually(ready)

    assert set(cluster.secrets(SELECTOR)) == {"web", "api"}
    for namespace in ("web", "api"):
        config = cluster.dockerconfig(namespace, "ecr-public-pull")
        assert list(config["auths"]) == ["public.ecr.aws"]
        entry: dict[str, Any] = config["auths"]["public.ecr.aws"]
        assert (entry["username"], entry["password"]) == ("AWS", ecr_public.issued[-1])
        annotations = cluster.secrets(SELECTOR)[namespace].metadata.annotations
        assert annotations["regcred.dev/expiration-time"] == expires
    assert runtime.reconciler.tokens.provider_calls == 1  # one token for every namespace
    assert [(r.access_key_id, r.region) for r in ecr_public.requests] == [(ACCESS_KEY_ID, "us-east-1")]
    assert ecr_public.issued[-1] not in str(cluster.credential("ecr-public")["status"])
