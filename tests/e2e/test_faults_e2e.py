"""One failure costs only itself: a failed write, a failed read, a stalled call, a refused source Secret.

Faults are injected into the emulated API's answers to the operator's own client (its User-Agent), so
kopf's watches are unaffected; the resync period is five minutes, so anything repaired within the
`eventually` timeout was repaired by the operator's own retry, not by a resync.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from regcred.kube import USER_AGENT
from regcred.models import DOCKER_HUB_HOST
from regcred_sandbox import EmulatedCluster
from tests.e2e import test_core_loop
from tests.e2e.harness import TEST_SETTINGS, Cluster, OperatorFactory, eventually
from tests.e2e.test_core_loop import CREDENTIAL, SELECTED, SELECTOR, static_spec

pytestmark = [pytest.mark.e2e, pytest.mark.emulated_only]  # injected faults: only the emulator has them

shop = test_core_loop.shop  # the same namespaces and source Secret


def emulated(cluster: Cluster) -> EmulatedCluster:
    assert isinstance(cluster.backend, EmulatedCluster)
    return cluster.backend


def synced(cluster: Cluster, namespaces: set[str] = SELECTED) -> None:
    assert set(cluster.secrets(SELECTOR)) == namespaces
    assert cluster.condition(CREDENTIAL)["status"] == "True"


def operator_requests(cluster: Cluster, method: str, resource: str, namespace: str | None = None) -> list[Any]:
    return [r for r in emulated(cluster).requests if r.user_agent == USER_AGENT and r.method == method
            and r.resource == resource and (namespace is None or r.namespace == namespace)]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Expected API errors are one line each, never a traceback (nor a restarted daemon)."""
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


def test_a_failed_write_is_retried_in_seconds_after_what_the_server_asked(
    shop: Cluster, operator: OperatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: synced(shop))

    emulated(shop).inject_fault("POST", "secrets", status=429, namespace="shop-a", user_agent=USER_AGENT)
    shop.core.delete_namespaced_secret("hub-pull", "shop-a")
    eventually(lambda: synced(shop))  # within seconds: the resync is minutes away

    posts = operator_requests(shop, "POST", "secrets", "shop-a")
    refused, retried = posts[-2], posts[-1]
    assert (refused.status, retried.status) == (429, 201)
    assert retried.at - refused.at >= 1.0  # the emulator's Retry-After: 1
    no_tracebacks(caplog)


def test_a_failed_secret_write_leaves_the_service_accounts_alone(
    shop: Cluster, operator: OperatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """While a namespace's Secret is being written again, its ServiceAccounts keep their entry: detaching it
    would cost two writes (off, then on again at the retry) and pods made meanwhile would go without it."""
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: synced(shop))
    eventually(lambda: _equal(shop.pull_secrets("shop-a"), ["hub-pull"]))

    emulated(shop).reset_requests()
    emulated(shop).inject_fault("POST", "secrets", status=500, namespace="shop-a", user_agent=USER_AGENT)
    shop.core.delete_namespaced_secret("hub-pull", "shop-a")
    eventually(lambda: _equal([r.status for r in operator_requests(shop, "POST", "secrets", "shop-a")], [500, 201]))
    eventually(lambda: synced(shop))
    assert shop.pull_secrets("shop-a") == ["hub-pull"]
    assert operator_requests(shop, "PUT", "serviceaccounts") == []
    no_tracebacks(caplog)


def test_a_409_on_create_is_looked_at_before_it_is_called_a_conflict(
    shop: Cluster, operator: OperatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A create refused with 409 although no Secret of that name is there (it was deleted in between, or the
    answer was a stale one): not reported as "a Secret you do not manage", created on the next try."""
    emulated(shop).inject_fault("POST", "secrets", status=409, namespace="shop-a", user_agent=USER_AGENT)
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: synced(shop))
    assert shop.events("SecretConflict") == []
    assert shop.credential(CREDENTIAL)["status"]["namespaces"]["conflicts"] == 0
    no_tracebacks(caplog)


@pytest.mark.parametrize(("method", "resource"), [
    ("GET", "namespaces"), ("GET", "serviceaccounts"), ("PATCH", "registrycredentials"), ("POST", "events"),
])
def test_a_failed_read_or_status_write_costs_one_quick_retry(
    shop: Cluster, operator: OperatorFactory, caplog: pytest.LogCaptureFixture, method: str, resource: str
) -> None:
    """Listing namespaces or ServiceAccounts, writing the status, posting an Event: each fails twice, and the
    credential still converges within seconds, logging one line per failure and no traceback."""
    emulated(shop).inject_fault(method, resource, status=500, times=2, user_agent=USER_AGENT)
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: synced(shop))
    eventually(lambda: _equal(shop.pull_secrets("shop-a"), ["hub-pull"]))
    assert shop.credential(CREDENTIAL)["status"]["namespaces"]["synced"] == 3
    assert [r.status for r in operator_requests(shop, method, resource)][:2] == [500, 500]
    no_tracebacks(caplog)


def test_a_stalled_call_times_out_and_the_credential_keeps_going(
    shop: Cluster, operator: OperatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A create that never gets an answer (a half-open connection) gives up after the read timeout; the other
    namespaces are served meanwhile, the stalled one on the next try, and later changes still get through
    (the credential's reconciliation is not stuck holding its lock)."""
    settings = dataclasses.replace(TEST_SETTINGS, api_read_timeout=1.0)
    emulated(shop).inject_fault("POST", "secrets", status=503, stall=12, namespace="shop-a", user_agent=USER_AGENT)
    operator.start(settings=settings)
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: _equal(set(shop.secrets(SELECTOR)), {"payments", "shop-b"}), timeout=5)
    eventually(lambda: synced(shop), timeout=8)

    shop.core.patch_namespaced_secret("hub", "regcred-system", {"data": {"password": "ZGNrcl9wYXRfMg=="}})
    shop.apply_credential(CREDENTIAL, static_spec(serviceAccounts=["default", "builder"]))  # wakes it now
    eventually(lambda: _equal({shop.dockerconfig(ns, "hub-pull")["auths"][DOCKER_HUB_HOST]["password"]
                               for ns in SELECTED}, {"dckr_pat_2"}))
    assert any("Timeout" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    no_tracebacks(caplog)


def test_a_source_secret_the_operator_may_not_read_is_reported_in_a_sentence(
    shop: Cluster, operator: OperatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    emulated(shop).inject_fault("GET", "secrets", status=403, namespace="regcred-system", name="hub", times=None,
                                user_agent=USER_AGENT)
    operator.start()
    shop.apply_credential(CREDENTIAL, static_spec())
    eventually(lambda: _equal(shop.condition(CREDENTIAL)["reason"], "SourceSecretForbidden"))
    message = shop.condition(CREDENTIAL)["message"]
    assert "may not read Secret regcred-system/hub" in message
    assert "rbac.sourceSecretNamespaces" in message
    no_tracebacks(caplog)


def _equal(actual: object, expected: object) -> None:
    assert actual == expected
