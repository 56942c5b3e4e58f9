"""Deciding, per stuck container, whether a restart with the credential in place fixes it: only
credential-shaped causes on registries this credential serves, after the fresh Secret is in place, when
the pod failed with another Secret than the one it would use now; ambiguous ones settled by a probe; a
credential refused with its current revision reported as rejected."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from regcred.classify import Category
from regcred.diagnosis import (
    MAX_EVENTS,
    PULL_SECRET_NOT_IN_TEMPLATE,
    Action,
    PullEvent,
    Timing,
    decide,
    failure_timing,
    pull_events,
    stuck_containers,
    template_matters,
)
from regcred.fanout import format_time
from regcred.imageref import ImageRef
from regcred.probe import ProbeResult, Verdict

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
# When the credential in place was written, and a failure an hour before it (the pod stuck on the old token).
SINCE = datetime.datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=datetime.UTC)
EARLIER = SINCE - datetime.timedelta(hours=1)
LATER = SINCE + datetime.timedelta(minutes=5)


def pod(image: str, reason: str, message: str, pull_secrets: tuple[str, ...] = ("ecr-pull",),
        created: datetime.datetime = EARLIER) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": format_time(created)},
        "spec": {"imagePullSecrets": [{"name": s} for s in pull_secrets]},
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "app", "image": image, "state": {"waiting": {"reason": reason, "message": message}}},
        ]},
    }


def decision(body: dict[str, Any], **overrides: Any) -> Any:
    (stuck,) = stuck_containers(body)
    options: dict[str, Any] = {"served_hosts": [ECR], "secret_name": "ecr-pull",
                               "account_pull_secrets": ["ecr-pull"], "secret_in_place": True,
                               "revision_since": SINCE, "failed_at": EARLIER}
    options.update(overrides)
    return decide(body, stuck, **options)


EXPIRED = (f'failed to pull and unpack image "{ECR}/app:v1": failed to resolve reference "{ECR}/app:v1": '
           f"unexpected status from HEAD request to https://{ECR}/v2/app/manifests/v1: 403 Forbidden")
MISSING = (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ECR}/app:v2": failed to '
           f'resolve reference "{ECR}/app:v2": {ECR}/app:v2: not found')


def test_an_auth_failure_on_a_served_registry_is_remediated() -> None:
    result = decision(pod(f"{ECR}/app:v1", "ErrImagePull", EXPIRED))
    assert result.action is Action.REMEDIATE
    assert result.cause is Category.FORBIDDEN


def test_a_missing_tag_is_explained_not_restarted() -> None:
    result = decision(pod(f"{ECR}/app:v2", "ErrImagePull", MISSING))
    assert result.action is Action.EXPLAIN
    assert result.cause is Category.NOT_FOUND
    assert "v2 does not exist" in result.why
    assert "would not help" in result.why


def test_another_registry_is_none_of_our_business() -> None:
    result = decision(pod("ghcr.io/acme/app:v1", "ErrImagePull", "401 Unauthorized"))
    assert result.action is Action.IGNORE


def test_nothing_happens_before_the_fresh_secret_is_in_place() -> None:
    result = decision(pod(f"{ECR}/app:v1", "ImagePullBackOff", EXPIRED), secret_in_place=False)
    assert result.action is Action.IGNORE


def test_a_pod_created_before_its_account_carried_the_secret_is_remediated() -> None:
    result = decision(pod(f"{ECR}/app:v1", "ErrImagePull", EXPIRED, pull_secrets=()), probe=never)
    assert result.action is Action.REMEDIATE
    assert "before its ServiceAccount carried ecr-pull" in result.why
    # Told "not found" without credentials: the registry, asked with the credential, says whether it exists.
    hidden = pod(f"{ECR}/app:v2", "ErrImagePull", MISSING, pull_secrets=())
    assert decision(hidden, probe=answers(Verdict.OK)).action is Action.REMEDIATE
    gone = decision(hidden, probe=answers(Verdict.NOT_FOUND, 404))
    assert gone.action is Action.EXPLAIN
    assert "v2 does not exist" in gone.why


def test_an_ambiguous_message_is_settled_by_the_probe() -> None:
    hub = "docker.io/acme/private:1"
    ambiguous = ('Failed to pull image "acme/private:1": Error response from daemon: pull access denied for '
                 "acme/private, repository does not exist or may require 'docker login': denied: requested "
                 "access to the resource is denied")
    body = pod(hub, "ErrImagePull", ambiguous, pull_secrets=("hub",))
    served = {"served_hosts": ["https://index.docker.io/v1/"], "secret_name": "hub", "account_pull_secrets": []}

    def exists(image: ImageRef) -> ProbeResult:
        return ProbeResult(Verdict.OK, 200, f"{image} exists.")

    def missing(image: ImageRef) -> ProbeResult:
        return ProbeResult(Verdict.NOT_FOUND, 404, f"repository {image.repository} does not exist.")

    assert decision(body, probe=exists, **served).action is Action.REMEDIATE
    refused = decision(body, probe=missing, **served)
    assert refused.action is Action.EXPLAIN
    assert refused.ambiguous
    assert "does not exist" in refused.why


def failed_event(image: str, error: str, when: datetime.datetime, **extra: Any) -> dict[str, Any]:
    """A Failed Event as the kubelet posts it (pkg/kubelet/images/image_manager.go)."""
    return {"reason": "Failed", "type": "Warning", "message": f'Failed to pull image "{image}": {error}',
            "lastTimestamp": format_time(when.replace(microsecond=0)), **extra}


def never(image: ImageRef) -> ProbeResult:
    raise AssertionError(f"no probe expected for {image}")


def answers(verdict: Verdict, status: int = 200) -> Any:
    def probe(image: ImageRef) -> ProbeResult:
        return ProbeResult(verdict, status, f"{image}: {verdict}.")
    return probe


IMAGE = f"{ECR}/app:v1"
BACKOFF = f'Back-off pulling image "{IMAGE}"'


def test_a_pre_1_32_back_off_finds_its_cause_in_the_pods_failed_events() -> None:
    events = pull_events([
        {"reason": "BackOff", "message": BACKOFF, "lastTimestamp": format_time(EARLIER)},
        failed_event(f"{ECR}/other:v9", MISSING, EARLIER + datetime.timedelta(minutes=1)),
        {"reason": "Failed", "message": "Error: ErrImagePull", "lastTimestamp": format_time(LATER)},  # says nothing
        failed_event(IMAGE, EXPIRED, EARLIER),
    ])
    result = decision(pod(IMAGE, "ImagePullBackOff", BACKOFF), events=events, failed_at=None, probe=never)
    assert result.action is Action.REMEDIATE
    assert result.cause is Category.FORBIDDEN
    assert result.timing is Timing.BEFORE


def test_the_1_32_back_off_message_carries_the_pull_error() -> None:
    combined = f"{BACKOFF}: ErrImagePull: {EXPIRED}"
    result = decision(pod(IMAGE, "ImagePullBackOff", combined), probe=never)
    assert result.action is Action.REMEDIATE
    assert result.cause is Category.FORBIDDEN
    missing = decision(pod(f"{ECR}/app:v2", "ImagePullBackOff",
                           f'Back-off pulling image "{ECR}/app:v2": ErrImagePull: {MISSING}'), probe=never)
    assert missing.action is Action.EXPLAIN and missing.cause is Category.NOT_FOUND


def test_err_image_pull_and_back_off_of_the_same_failure_decide_alike() -> None:
    events = pull_events([failed_event(IMAGE, EXPIRED, EARLIER)])
    flipped = [decision(pod(IMAGE, reason, message), events=events, failed_at=None, probe=never)
               for reason, message in [("ErrImagePull", EXPIRED), ("ImagePullBackOff", BACKOFF),
                                       ("ImagePullBackOff", f"{BACKOFF}: ErrImagePull: {EXPIRED}")]]
    assert {(d.action, d.cause, d.timing) for d in flipped} == {(Action.REMEDIATE, Category.FORBIDDEN, Timing.BEFORE)}


def test_a_back_off_with_no_event_left_is_settled_by_a_probe_with_the_credential_in_place() -> None:
    body = pod(IMAGE, "ImagePullBackOff", BACKOFF)
    assert decision(body, failed_at=None, probe=answers(Verdict.OK)).action is Action.REMEDIATE
    assert decision(body, failed_at=None, probe=answers(Verdict.UNAUTHORIZED, 401)).action is Action.REJECTED
    gone = decision(body, failed_at=None, probe=answers(Verdict.NOT_FOUND, 404))
    assert (gone.action, gone.cause) == (Action.EXPLAIN, Category.NOT_FOUND)
    blind = decision(body, failed_at=None)
    assert blind.action is Action.EXPLAIN
    assert "Neither the pod's status nor its Events say" in blind.why


def test_a_failure_with_the_credential_in_place_is_not_restarted() -> None:
    body = pod(IMAGE, "ErrImagePull", EXPIRED)
    refused = decision(body, failed_at=LATER, probe=answers(Verdict.FORBIDDEN, 403))
    assert refused.action is Action.REJECTED
    assert refused.timing is Timing.CURRENT
    assert "the credential itself is rejected" in refused.why
    works = decision(body, failed_at=LATER, probe=answers(Verdict.OK))
    assert works.action is Action.EXPLAIN
    assert "would not change the Secret the pod uses" in works.why
    # A pod created after the revision was written never had another Secret, whatever the Events say.
    fresh = decision(pod(IMAGE, "ErrImagePull", EXPIRED, created=LATER), failed_at=None,
                     probe=answers(Verdict.UNAUTHORIZED, 401))
    assert fresh.action is Action.REJECTED


def test_a_failure_before_a_newer_revision_is_remediated_without_a_probe() -> None:
    events = pull_events([failed_event(IMAGE, EXPIRED, EARLIER)])
    result = decision(pod(IMAGE, "ErrImagePull", EXPIRED), events=events, failed_at=None, probe=never)
    assert result.action is Action.REMEDIATE
    assert "before the credential in place was written" in result.why


def test_a_template_with_its_own_pull_secrets_never_gets_the_attached_one() -> None:
    body = pod(IMAGE, "ErrImagePull", EXPIRED, pull_secrets=("team-pull",))
    result = decision(body, template_pull_secrets=["team-pull"], probe=never)
    assert result.action is Action.EXPLAIN
    assert result.reason == PULL_SECRET_NOT_IN_TEMPLATE
    assert "Add ecr-pull to the template's imagePullSecrets, or remove the template's list" in result.why
    # The template names our Secret: the next pod has it.
    assert decision(body, template_pull_secrets=["team-pull", "ecr-pull"], probe=never).action is Action.REMEDIATE
    # The template names none: admission copies the ServiceAccount's list, ours included.
    assert decision(body, template_pull_secrets=[], probe=never).action is Action.REMEDIATE
    assert decision(body, template_pull_secrets=[], account_pull_secrets=["team-pull"],
                    probe=never).action is Action.EXPLAIN


@pytest.mark.parametrize(("failed_at", "first_seen", "created_at", "expected"), [
    (EARLIER, None, EARLIER, Timing.BEFORE),
    (LATER, None, EARLIER, Timing.CURRENT),
    (SINCE.replace(microsecond=0), None, EARLIER, Timing.UNKNOWN),  # an Event in the revision's own second
    (None, SINCE - datetime.timedelta(seconds=3), EARLIER, Timing.BEFORE),  # the operator saw it failing before
    (None, LATER, EARLIER, Timing.UNKNOWN),  # first seen after: an upper bound proves nothing
    (None, LATER, LATER, Timing.CURRENT),  # created after the revision
])
def test_failure_timing(failed_at: datetime.datetime | None, first_seen: datetime.datetime | None,
                        created_at: datetime.datetime, expected: Timing) -> None:
    assert failure_timing(failed_at=failed_at, first_seen=first_seen, created_at=created_at,
                          revision_since=SINCE) is expected


def test_pull_events_are_bounded_and_newest_first() -> None:
    many = [failed_event(IMAGE, f"401 Unauthorized #{i}", EARLIER + datetime.timedelta(seconds=i))
            for i in range(MAX_EVENTS + 20)]
    found = pull_events(many)
    assert len(found) == MAX_EVENTS
    assert found[0] == PullEvent(IMAGE, f"401 Unauthorized #{MAX_EVENTS - 1}",
                                 (EARLIER + datetime.timedelta(seconds=MAX_EVENTS - 1)).replace(microsecond=0))
    huge = pull_events([failed_event(IMAGE, "x" * 1_000_000, EARLIER)])
    assert len(huge[0].error) < 5000


@pytest.mark.parametrize("message", [EXPIRED, MISSING, "Back-off pulling image", ""])
@pytest.mark.parametrize("failed_at", [EARLIER, LATER, None])
@pytest.mark.parametrize("verdict", [Verdict.OK, Verdict.UNAUTHORIZED, Verdict.NOT_FOUND])
def test_a_pod_listing_the_secret_is_decided_without_its_template_or_service_account(
        message: str, failed_at: datetime.datetime | None, verdict: Verdict) -> None:
    # What remediation leaves unread for such a pod (the workload, the ServiceAccount) changes no decision.
    body = pod(f"{ECR}/app:v1", "ErrImagePull", message, pull_secrets=("other", "ecr-pull"))
    assert not template_matters(body, "ecr-pull")
    assert template_matters(pod(f"{ECR}/app:v1", "ErrImagePull", message, pull_secrets=("other",)), "ecr-pull")
    unread = decision(body, template_pull_secrets=None, account_pull_secrets=[], failed_at=failed_at,
                      probe=answers(verdict))
    for template in ([], ["other"], ["ecr-pull"]):
        for account in ([], ["ecr-pull"], ["x"]):
            assert decision(body, template_pull_secrets=template, account_pull_secrets=account, failed_at=failed_at,
                            probe=answers(verdict)) == unread
