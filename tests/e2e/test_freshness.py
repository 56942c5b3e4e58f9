"""ECR end to end: mint once, reuse after a restart, refresh on time, back off on failures.

AWS is moto in server mode. moto hard-wires every ECR token's expiry to 2015-01-01T00:00Z, so these
tests put the operator's clock at 2014-12-31T12:00Z: from there the token has the 12 hours a real ECR
token has, and the manual clock moves time forward in milliseconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from typing import Any

import pytest

from regcred import dockerconfig as dc
from regcred import metrics
from regcred.clock import ManualClock
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, b64, eventually

pytestmark = pytest.mark.e2e

START = datetime.datetime(2014, 12, 31, 12, 0, tzinfo=datetime.UTC)
ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
SELECTOR = "regcred.dev/credential=ecr"


@pytest.fixture
def aws(cluster: Cluster, moto_url: str, clean_aws_env: None) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "aws-keys", {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001", "AWS_SECRET_ACCESS_KEY": "example-secret-access-key"})
    for name in ("web", "api"):
        cluster.namespace(name, {"pulls-from": "ecr"})
    return cluster


def ecr_spec(**overrides: Any) -> dict[str, Any]:
    return {
        "provider": {"ecr": {"region": "eu-west-1",
                             "credentialsSecretRef": {"namespace": "regcred-system", "name": "aws-keys"}}},
        "secretName": "ecr-pull",
        "namespaces": {"selector": {"matchLabels": {"pulls-from": "ecr"}}},
        **overrides,
    }


def settings_for(moto_url: str) -> Any:
    return dataclasses.replace(TEST_SETTINGS, ecr_endpoint_url=moto_url, sts_endpoint_url=moto_url)


def minted_times(cluster: Cluster) -> set[str]:
    return {s.metadata.annotations["regcred.dev/minted-time"] for s in cluster.secrets(SELECTOR).values()}


def test_ecr_token_fans_out_with_expiry_and_hash(aws: Cluster, operator: OperatorFactory, moto_url: str) -> None:
    runtime = operator.start(clock=ManualClock(START), settings=settings_for(moto_url))
    aws.apply_credential("ecr", ecr_spec())

    eventually(lambda: _equal(set(aws.secrets(SELECTOR)), {"web", "api"}))
    config = aws.dockerconfig("web", "ecr-pull")
    assert list(config["auths"]) == [ECR_HOST]
    assert config["auths"][ECR_HOST]["username"] == "AWS"
    annotations = aws.secrets(SELECTOR)["web"].metadata.annotations
    assert annotations["regcred.dev/expiration-time"] == "2015-01-01T00:00:00Z"
    assert len(annotations["regcred.dev/content-hash"]) == 32

    def ready() -> None:
        status = aws.credential("ecr")["status"]
        assert status["expirationTime"] == "2015-01-01T00:00:00Z"
        assert status["lastRefreshTime"] == "2014-12-31T12:00:00Z"
        assert status["registries"] == [ECR_HOST]
        assert aws.condition("ecr")["status"] == "True"
    eventually(ready)
    assert runtime.reconciler.tokens.provider_calls == 1  # mint once, fan out many


def test_a_restart_reuses_the_written_token(aws: Cluster, operator: OperatorFactory, moto_url: str) -> None:
    clock = ManualClock(START)
    first = operator.start(clock=clock, settings=settings_for(moto_url))
    aws.apply_credential("ecr", ecr_spec())
    eventually(lambda: _equal(set(aws.secrets(SELECTOR)), {"web", "api"}))
    assert first.reconciler.tokens.provider_calls == 1
    operator.stop()
    before = {ns: (s.data, s.metadata.resource_version) for ns, s in aws.secrets(SELECTOR).items()}

    clock.advance(datetime.timedelta(hours=2))
    second = operator.start(clock=clock, settings=settings_for(moto_url))
    aws.namespace("batch", {"pulls-from": "ecr"})  # a new namespace gets the reused token too
    eventually(lambda: _equal(set(aws.secrets(SELECTOR)), {"web", "api", "batch"}))
    assert second.reconciler.tokens.provider_calls == 0
    after = {ns: (s.data, s.metadata.resource_version) for ns, s in aws.secrets(SELECTOR).items()}
    assert {ns: after[ns] for ns in before} == before  # not even rewritten
    assert after["batch"][0] == before["web"][0]


def test_a_tenant_forged_secret_is_not_adopted_after_a_restart(
    aws: Cluster, operator: OperatorFactory, moto_url: str
) -> None:
    """A tenant who can write Secrets in one target namespace rewrites its copy of the pull Secret (content,
    content hash, a later minted time, a far expiry) and plants a labelled one in a namespace the credential
    does not select. A restarted operator takes its token from its own namespace, serves that everywhere,
    repairs the forged copy and deletes the planted one."""
    clock = ManualClock(START)
    operator.start(clock=clock, settings=settings_for(moto_url))
    aws.apply_credential("ecr", ecr_spec())
    eventually(lambda: _equal(set(aws.secrets(SELECTOR)), {"web", "api"}))
    minted = aws.core.read_namespaced_secret("ecr-pull", "api").data
    operator.stop()

    forged = json.dumps({"auths": {ECR_HOST: {"username": "AWS", "password": "tenant-chosen",
                                               "auth": b64("AWS:tenant-chosen")}}}).encode()
    forged_annotations = {
        "regcred.dev/content-hash": dc.content_hash(forged),
        "regcred.dev/minted-time": "2014-12-31T13:00:00Z",  # newer than the real mint
        "regcred.dev/expiration-time": "2030-01-01T00:00:00Z",
        "regcred.dev/provider-hash": aws.secrets(SELECTOR)["web"].metadata.annotations["regcred.dev/provider-hash"],
    }
    aws.core.patch_namespaced_secret("ecr-pull", "web", {
        "metadata": {"annotations": forged_annotations}, "data": dc.encode_data(forged)})
    aws.namespace("sandbox")  # not selected
    aws.core.create_namespaced_secret("sandbox", {
        "metadata": {"name": "ecr-pull", "labels": {"app.kubernetes.io/managed-by": "regcred-operator",
                                                    "regcred.dev/credential": "ecr"},
                     "annotations": {**forged_annotations, "regcred.dev/minted-time": "2014-12-31T13:30:00Z"}},
        "type": "kubernetes.io/dockerconfigjson", "data": dc.encode_data(forged)})

    clock.advance(datetime.timedelta(hours=2))
    second = operator.start(clock=clock, settings=settings_for(moto_url))
    aws.namespace("batch", {"pulls-from": "ecr"})
    eventually(lambda: _equal({ns: s.data for ns, s in aws.secrets(SELECTOR).items()},
                              {"web": minted, "api": minted, "batch": minted}))
    assert second.reconciler.tokens.provider_calls == 0  # the operator's own record served: no mint either
    assert aws.credential("ecr")["status"]["expirationTime"] == "2015-01-01T00:00:00Z"
    assert aws.credential("ecr")["status"]["lastRefreshTime"] == "2014-12-31T12:00:00Z"


def test_the_token_store_is_the_operators_own(aws: Cluster, operator: OperatorFactory, moto_url: str) -> None:
    """One Secret per credential in the operator's namespace, not a pull Secret (nothing can mount it by its
    type, and it is never counted among the credential's outputs); deleted with the credential."""
    runtime = operator.start(clock=ManualClock(START), settings=settings_for(moto_url))
    aws.apply_credential("ecr", ecr_spec())
    eventually(lambda: _equal(set(aws.secrets(SELECTOR)), {"web", "api"}))
    store = eventually(lambda: aws.core.read_namespaced_secret("regcred-token-ecr", "regcred-system"))
    assert store.type == "regcred.dev/token"
    assert store.metadata.labels == {"app.kubernetes.io/managed-by": "regcred-operator", "regcred.dev/token-of": "ecr"}
    assert store.data == aws.core.read_namespaced_secret("ecr-pull", "web").data
    assert store.metadata.annotations["regcred.dev/expiration-time"] == "2015-01-01T00:00:00Z"
    assert runtime.reconciler.tokens.provider_calls == 1

    aws.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", "ecr")
    eventually(lambda: _equal(aws.secrets(SELECTOR), {}))
    eventually(lambda: _equal([s.metadata.name for s in aws.core.list_namespaced_secret("regcred-system").items
                               if s.metadata.name.startswith("regcred-token-")], []))


def test_refresh_happens_at_two_thirds_of_the_lifetime(aws: Cluster, operator: OperatorFactory, moto_url: str) -> None:
    clock = ManualClock(START)
    runtime = operator.start(clock=clock, settings=settings_for(moto_url))
    aws.apply_credential("ecr", ecr_spec())
    eventually(lambda: _equal(minted_times(aws), {"2014-12-31T12:00:00Z"}))

    # 12 h lifetime: the refresh is due at 8 h, made earlier by at most 5 minutes of jitter.
    clock.advance(datetime.timedelta(hours=7, minutes=54))
    time.sleep(1)
    assert runtime.reconciler.tokens.provider_calls == 1
    assert minted_times(aws) == {"2014-12-31T12:00:00Z"}

    clock.advance(datetime.timedelta(minutes=7))  # now 8 h 01 min after the first mint
    eventually(lambda: _equal(minted_times(aws), {"2014-12-31T20:01:00Z"}))
    assert runtime.reconciler.tokens.provider_calls == 2
    eventually(lambda: _equal(aws.credential("ecr")["status"]["lastRefreshTime"], "2014-12-31T20:01:00Z"))
    assert aws.posted("TokenRefreshed")


def test_before_expiry_sets_the_refresh_time(aws: Cluster, operator: OperatorFactory, moto_url: str) -> None:
    clock = ManualClock(START)
    runtime = operator.start(clock=clock, settings=settings_for(moto_url))
    aws.apply_credential("ecr", ecr_spec(refresh={"beforeExpiry": "1h"}))
    eventually(lambda: _equal(minted_times(aws), {"2014-12-31T12:00:00Z"}))

    clock.advance(datetime.timedelta(hours=10, minutes=50))  # 1 h 10 min before expiry: not yet
    time.sleep(1)
    assert runtime.reconciler.tokens.provider_calls == 1
    clock.advance(datetime.timedelta(minutes=11))  # 59 min before expiry
    eventually(lambda: _equal(runtime.reconciler.tokens.provider_calls, 2))


def test_a_provider_outage_keeps_serving_the_valid_token_and_never_touches_what_is_written(
    aws: Cluster, operator: OperatorFactory, moto_url: str
) -> None:
    clock = ManualClock(START)
    runtime = operator.start(clock=clock, settings=settings_for(moto_url))
    aws.apply_credential("ecr", ecr_spec())
    eventually(lambda: _equal(set(aws.secrets(SELECTOR)), {"web", "api"}))
    before = {ns: (s.data, s.metadata.resource_version) for ns, s in aws.secrets(SELECTOR).items()}

    aws.core.patch_namespaced_secret("aws-keys", "regcred-system", {"data": {"AWS_ACCESS_KEY_ID": None}})
    clock.advance(datetime.timedelta(hours=8, minutes=1))  # refresh due: the mint now fails
    eventually(lambda: _equal(aws.condition("ecr")["reason"], "InvalidSourceSecret"))
    message = aws.condition("ecr")["message"]
    assert "AWS_ACCESS_KEY_ID" in message
    assert "valid until 2015-01-01T00:00:00Z and is still served" in message
    assert aws.condition("ecr", "TokenReady")["status"] == "False"
    assert {ns: (s.data, s.metadata.resource_version) for ns, s in aws.secrets(SELECTOR).items()} == before
    assert "example-secret-access-key" not in str(aws.credential("ecr")["status"])

    # The held token has hours left: a new namespace and a deleted Secret are served with it meanwhile.
    aws.namespace("batch", {"pulls-from": "ecr"})
    aws.core.delete_namespaced_secret("ecr-pull", "api")
    eventually(lambda: _equal({ns: s.data for ns, s in aws.secrets(SELECTOR).items()},
                              {ns: before["web"][0] for ns in ("web", "api", "batch")}))
    assert aws.secrets(SELECTOR)["web"].metadata.resource_version == before["web"][1]

    calls = runtime.reconciler.tokens.provider_calls
    clock.advance(datetime.timedelta(minutes=10))  # past the back-off: tried again
    eventually(lambda: _greater(runtime.reconciler.tokens.provider_calls, calls))

    aws.core.patch_namespaced_secret("aws-keys", "regcred-system", {"data": {"AWS_ACCESS_KEY_ID": "QUtJQUVYQU1QTEU="}})
    clock.advance(datetime.timedelta(seconds=3))  # the provider is back: within one back-off (at most 2 s here)
    eventually(lambda: _equal(aws.condition("ecr")["status"], "True"))
    eventually(lambda: _equal(minted_times(aws) - {"2014-12-31T12:00:00Z"} != set(), True))
    after = {ns: (s.data, s.metadata.resource_version) for ns, s in aws.secrets(SELECTOR).items()}

    # Broken again until the token has expired: nothing valid is left to serve, what is written stays.
    aws.core.patch_namespaced_secret("aws-keys", "regcred-system", {"data": {"AWS_ACCESS_KEY_ID": None}})
    clock.advance(datetime.timedelta(hours=4))
    eventually(lambda: _assert("left unchanged" in aws.condition("ecr")["message"]))
    assert aws.condition("ecr", "TokenReady")["status"] == "False"
    assert {ns: (s.data, s.metadata.resource_version) for ns, s in aws.secrets(SELECTOR).items()} == after

    # A restart while the mint keeps failing: the expiry of what is written (from the operator's own record)
    # is still exported, so that the token-expired alert can fire.
    operator.stop()
    assert _gauge(metrics.TOKEN_EXPIRY, "ecr") is None  # a stopped loop forgets its gauges
    operator.start(clock=clock, settings=settings_for(moto_url))
    eventually(lambda: _equal(_gauge(metrics.TOKEN_EXPIRY, "ecr"),
                              datetime.datetime(2015, 1, 1, tzinfo=datetime.UTC).timestamp()))


def _gauge(gauge: Any, credential: str) -> float | None:
    samples = [s for metric in gauge.collect() for s in metric.samples if s.labels.get("credential") == credential]
    return samples[0].value if samples else None


def _assert(value: bool) -> None:
    assert value


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _greater(actual: int, than: int) -> None:
    assert actual > than
