"""The reporter without an API server: status written only when it changed, Events on Ready transitions and new
tokens, a condition set by remediation kept by the next pass, and the gauges."""

from __future__ import annotations

import datetime

import prometheus_client as prom
import pytest

from regcred.clock import ManualClock
from regcred.kube import KubeError
from regcred.report import Reporter
from regcred.serving import CredentialLocks
from regcred.status import CREDENTIAL_REJECTED, READY, Condition
from tests.reconcile_scene import NAME, NOW, SETTINGS, Kube, credential

READY_TRUE = Condition(READY, "True", "Ready", "Pull secrets are up to date in every selected namespace.")
READY_FALSE = Condition(READY, "False", "Forbidden", "Could not create Secret team-a/pull: Forbidden.")


@pytest.fixture
def kube() -> Kube:
    return Kube()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def reporter(kube: Kube, clock: ManualClock) -> Reporter:
    return Reporter(kube, SETTINGS, clock, CredentialLocks())  # type: ignore[arg-type]


def test_the_status_is_written_only_when_it_changed(kube: Kube, clock: ManualClock, reporter: Reporter) -> None:
    body = credential()
    assert reporter.publish(body, [READY_TRUE], {"registries": ["r.example.com"]})
    assert kube.status_writes == 1
    assert kube.status[NAME]["observedGeneration"] == 1 and kube.status[NAME]["provider"] == "ecr"
    clock.advance(datetime.timedelta(minutes=5))
    # The object handed in still shows no status (watch lag): the reporter's own record says nothing changed.
    assert reporter.publish(body, [READY_TRUE], {"registries": ["r.example.com"]})
    assert kube.status_writes == 1
    reporter.publish(body, [READY_TRUE], {"registries": ["r.example.com", "s.example.com"]})
    assert kube.status_writes == 2


def test_an_event_is_posted_on_each_ready_transition_and_for_a_new_token(kube: Kube, reporter: Reporter) -> None:
    body = credential()
    reporter.publish(body, [READY_TRUE], {}, minted_event=("TokenRefreshed", "Minted a token."))
    assert [(e["type"], e["reason"]) for e in kube.events] == [("Normal", "TokenRefreshed"), ("Normal", "Ready")]
    reporter.publish(body, [READY_TRUE], {})
    assert len(kube.events) == 2  # no transition, no Event
    reporter.publish(body, [READY_FALSE], {})
    reporter.publish(body, [READY_FALSE], {})
    assert [(e["type"], e["reason"], e["message"]) for e in kube.events[2:]] == [
        ("Warning", "Forbidden", READY_FALSE.message)]
    assert kube.condition(READY)["lastTransitionTime"]


def test_a_status_that_cannot_be_written_posts_no_event_and_is_tried_again(kube: Kube, reporter: Reporter) -> None:
    kube.status_error = KubeError(500, "InternalError", "no")
    assert not reporter.publish(credential(), [READY_TRUE], {})
    assert kube.events == []
    kube.status_error = None
    assert reporter.publish(credential(), [READY_TRUE], {})
    assert kube.condition(READY)["status"] == "True" and len(kube.events) == 1


def test_a_condition_set_by_remediation_is_kept_by_the_next_pass(kube: Kube, reporter: Reporter) -> None:
    body = credential()
    reporter.publish(body, [READY_TRUE], {})
    rejected = Condition(CREDENTIAL_REJECTED, "True", "RegistryRejected", "The registry refuses it.")
    assert reporter.publish_condition(body, rejected)
    assert not reporter.publish_condition(body, rejected)  # unchanged: not written again
    reporter.publish(body, [READY_TRUE], {"registries": ["r.example.com"]})
    assert kube.status[NAME]["registries"] == ["r.example.com"]
    assert kube.condition(CREDENTIAL_REJECTED)["status"] == "True"


def _sample(name: str, **labels: str) -> float | None:
    return prom.REGISTRY.get_sample_value(name, {"credential": NAME, **labels})


def test_the_gauges_follow_the_pass_and_go_with_the_credential(reporter: Reporter) -> None:
    expires = NOW + datetime.timedelta(hours=12)
    reporter.served(NAME, True, expires, {"selected": 3, "synced": 2, "failed": 1, "conflicts": 0})
    assert _sample("regcred_credential_ready") == 1
    assert _sample("regcred_token_expiry_timestamp_seconds") == expires.timestamp()
    assert _sample("regcred_namespaces", state="failed") == 1
    reporter.not_ready(NAME)
    assert _sample("regcred_credential_ready") == 0
    reporter.forget(NAME)
    assert _sample("regcred_credential_ready") is None and _sample("regcred_namespaces", state="synced") is None
