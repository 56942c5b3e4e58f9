"""Source Secrets are watched: a rotation, a creation or a deletion is applied in seconds, with the resync
at five minutes (only the watch can do it); other Secrets cost nothing; and the force-sync annotation."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from typing import Any

import pytest

from regcred.clock import ManualClock
from regcred.kube import USER_AGENT
from regcred.models import DOCKER_HUB_HOST, FORCE_SYNC_ANNOTATION
from regcred_sandbox import EmulatedCluster
from tests.e2e.harness import OPERATOR_USER_AGENTS, TEST_SETTINGS, Cluster, OperatorFactory, b64, eventually
from tests.e2e.test_core_loop import CREDENTIAL, SELECTED, SELECTOR, shop, static_spec  # noqa: F401 - a fixture
from tests.e2e.test_freshness import START, aws, ecr_spec, settings_for  # noqa: F401 - a fixture

pytestmark = pytest.mark.e2e

# Nothing but a watch can notice a source change within a test's patience: the resync is at 5 minutes, and
# a failed mint (the source Secret missing) is retried only after as long.
SLOW_RETRIES = dataclasses.replace(TEST_SETTINGS, retry_initial=datetime.timedelta(minutes=5),
                                   retry_max=datetime.timedelta(minutes=5))
assert TEST_SETTINGS.resync_interval >= datetime.timedelta(minutes=5)


def passwords(cluster: Cluster) -> dict[str, str]:
    return {ns: cluster.dockerconfig(ns, "hub-pull")["auths"][DOCKER_HUB_HOST]["password"] for ns in SELECTED}


def ready(cluster: Cluster, name: str = CREDENTIAL) -> None:
    assert cluster.condition(name)["status"] == "True"


def operator_requests(cluster: Cluster) -> list[tuple[str, str, str | None, str | None]]:
    """The operator's requests since the last reset, but its watches (open streams, not work)."""
    return [(r.verb, r.resource, r.namespace, r.name) for r in cluster.backend.requests
            if r.user_agent in OPERATOR_USER_AGENTS and r.verb != "watch"]


def test_a_rotated_source_secret_reaches_every_namespace_within_seconds(
    shop: Cluster, operator: OperatorFactory  # noqa: F811
) -> None:
    operator.start(settings=SLOW_RETRIES)
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: _equal(passwords(shop), dict.fromkeys(SELECTED, "dckr_pat_1")))
    eventually(lambda: ready(shop))
    time.sleep(0.5)  # the first sync's events settle: nothing else wakes the credential up from here

    rotated = time.monotonic()
    shop.core.patch_namespaced_secret("hub", "regcred-system", {"data": {"password": b64("dckr_pat_2")}})
    eventually(lambda: _equal(passwords(shop), dict.fromkeys(SELECTED, "dckr_pat_2")))
    print(f"rotation applied in every namespace after {time.monotonic() - rotated:.2f}s")


def test_a_missing_source_secret_is_served_as_soon_as_it_is_created(
    shop: Cluster, operator: OperatorFactory  # noqa: F811
) -> None:
    shop.core.delete_namespaced_secret("hub", "regcred-system")
    operator.start(settings=SLOW_RETRIES)
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: _equal(shop.condition(CREDENTIAL)["reason"], "SourceSecretNotFound"))
    time.sleep(0.5)

    created = time.monotonic()
    shop.source_secret("regcred-system", "hub", {"username": "acme-ci", "password": "dckr_pat_1"})
    eventually(lambda: ready(shop))
    eventually(lambda: _equal(passwords(shop), dict.fromkeys(SELECTED, "dckr_pat_1")))
    print(f"created source Secret served after {time.monotonic() - created:.2f}s")


def test_a_deleted_source_secret_is_noticed_at_once(shop: Cluster, operator: OperatorFactory) -> None:  # noqa: F811
    operator.start(settings=SLOW_RETRIES)
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: ready(shop))
    before = {ns: s.data for ns, s in shop.secrets(SELECTOR).items()}
    time.sleep(0.5)

    shop.core.delete_namespaced_secret("hub", "regcred-system")
    eventually(lambda: _equal(shop.condition(CREDENTIAL)["reason"], "SourceSecretNotFound"))
    assert shop.condition(CREDENTIAL)["status"] == "False"
    assert {ns: s.data for ns, s in shop.secrets(SELECTOR).items()} == before  # left as they are


def test_other_secrets_in_the_source_namespace_wake_nothing(
    shop: Cluster, operator: OperatorFactory  # noqa: F811
) -> None:
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: ready(shop))
    eventually(lambda: _equal(shop.credential(CREDENTIAL)["status"]["namespaces"]["synced"], 3))
    time.sleep(1.0)  # the first sync's events settle
    if not shop.real:  # the emulator records the query: the API server selects, the operator is sent nothing else
        watches = {(r.namespace, r.params.get("fieldSelector")) for r in shop.backend.requests
                   if r.user_agent == USER_AGENT and r.verb == "watch" and r.resource == "secrets"}
        assert watches == {("regcred-system", "metadata.name=hub")}

    shop.backend.reset_requests()
    shop.source_secret("regcred-system", "unrelated", {"password": "x"})
    shop.core.patch_namespaced_secret("unrelated", "regcred-system", {"data": {"password": b64("y")}})
    shop.core.delete_namespaced_secret("unrelated", "regcred-system")
    time.sleep(2.0)  # ample for a watch event, a debounce and a reconciliation
    assert operator_requests(shop) == []

    # The watched one does wake its credential up: it is read again (and the unchanged content writes nothing).
    shop.core.patch_namespaced_secret("hub", "regcred-system", {"metadata": {"labels": {"rotated": "no"}}})
    eventually(lambda: _in(("get", "secrets", "regcred-system", "hub"), operator_requests(shop)))


@pytest.mark.emulated_only  # injected faults
def test_a_refused_watch_is_logged_once_retried_and_recovers(
    shop: Cluster, operator: OperatorFactory, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    """A source namespace the operator may not list (namespaces mode without it in rbac.sourceSecretNamespaces):
    the credential is served as before, one warning says so, and the watch starts once it is allowed."""
    caplog.set_level(logging.INFO, logger="regcred")
    assert isinstance(shop.backend, EmulatedCluster)
    fault = shop.backend.inject_fault("list", "secrets", status=403, namespace="regcred-system", times=None,
                                      user_agent=USER_AGENT)
    operator.start()  # watch retries after 1 s, 2 s, 2 s, ...
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: ready(shop))
    eventually(lambda: _assert(fault.hits >= 3))
    warnings = [r.getMessage() for r in caplog.records if "Cannot watch source Secret" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "regcred-system/hub (403 Forbidden)" in warnings[0]

    shop.backend.clear_faults()
    eventually(lambda: _assert(any("Watching source Secret regcred-system/hub again" in r.getMessage()
                                   for r in caplog.records)))
    shop.core.patch_namespaced_secret("hub", "regcred-system", {"data": {"password": b64("dckr_pat_2")}})
    eventually(lambda: _equal(passwords(shop), dict.fromkeys(SELECTED, "dckr_pat_2")))
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_the_force_sync_annotation_mints_once_per_value(
    aws: Cluster, operator: OperatorFactory, moto_url: str  # noqa: F811
) -> None:
    clock = ManualClock(START)
    runtime = operator.start(clock=clock, settings=settings_for(moto_url))
    aws.apply_credential("ecr", ecr_spec())
    eventually(lambda: ready(aws, "ecr"))
    assert runtime.reconciler.tokens.provider_calls == 1

    annotate(aws, "ecr", {FORCE_SYNC_ANNOTATION: "1700000000"})  # the token is fresh: only the annotation mints
    eventually(lambda: _equal(aws.credential("ecr")["status"].get("lastForceSync"), "1700000000"))
    assert runtime.reconciler.tokens.provider_calls == 2
    eventually(lambda: ready(aws, "ecr"))

    # The same value again (with another change that makes an event), and a wake-up of every credential: no mint.
    annotate(aws, "ecr", {FORCE_SYNC_ANNOTATION: "1700000000", "team": "platform"})
    aws.namespace("batch", {"pulls-from": "ecr"})
    eventually(lambda: _in("batch", aws.secrets("regcred.dev/credential=ecr")))
    time.sleep(0.5)
    assert runtime.reconciler.tokens.provider_calls == 2

    # A restart does not mint for the value already handled.
    operator.stop()
    restarted = operator.start(clock=clock, settings=settings_for(moto_url))
    aws.namespace("jobs", {"pulls-from": "ecr"})
    eventually(lambda: _in("jobs", aws.secrets("regcred.dev/credential=ecr")))
    assert restarted.reconciler.tokens.provider_calls == 0

    annotate(aws, "ecr", {FORCE_SYNC_ANNOTATION: "1700000060"})  # a new value: one more
    eventually(lambda: _equal(aws.credential("ecr")["status"].get("lastForceSync"), "1700000060"))
    time.sleep(0.5)
    assert restarted.reconciler.tokens.provider_calls == 1


def annotate(cluster: Cluster, name: str, annotations: dict[str, Any]) -> None:
    """`kubectl annotate registrycredential NAME regcred.dev/force-sync=... --overwrite`"""
    cluster.custom.patch_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", name,
                                               {"metadata": {"annotations": annotations}})


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _in(item: object, container: Any) -> None:
    assert item in container


def _assert(value: object) -> None:
    assert value
