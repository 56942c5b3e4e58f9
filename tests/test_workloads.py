"""Restart bookkeeping: once per workload per credential revision, a cooldown, opt-outs, OrderedReady."""

from __future__ import annotations

import datetime
import json

from regcred.workloads import (
    REMEDIATED_ANNOTATION,
    Plan,
    already_done,
    controller_of,
    opted_out,
    ordered_ready,
    plan,
    record_patch,
    rollout_patch,
)

NOW = datetime.datetime(2026, 11, 21, 12, 0, tzinfo=datetime.UTC)
COOLDOWN = datetime.timedelta(minutes=10)


def deployment(**annotations: str) -> dict[str, object]:
    return {"metadata": {"name": "web", "namespace": "shop", "annotations": annotations}, "spec": {}}


def test_a_rollout_records_the_revision_and_is_not_repeated_for_it() -> None:
    patch = rollout_patch(deployment(), "ecr", "rev-1", NOW)
    template = patch["spec"]["template"]["metadata"]["annotations"]
    assert template == {"regcred.dev/restartedAt": "2026-11-21T12:00:00Z", "regcred.dev/credential-revision": "rev-1"}
    done = deployment(**patch["metadata"]["annotations"])
    assert json.loads(done["metadata"]["annotations"][REMEDIATED_ANNOTATION]) == {  # type: ignore[index]
        "ecr": {"revision": "rev-1", "time": "2026-11-21T12:00:00Z"}}
    later = NOW + datetime.timedelta(hours=1)
    assert "already restarted for this credential revision" in (already_done(done, "ecr", "rev-1", later, COOLDOWN)
                                                                 or "")
    assert already_done(done, "ecr", "rev-2", later, COOLDOWN) is None
    assert "within the cooldown" in (already_done(done, "ecr", "rev-2", NOW + COOLDOWN / 2, COOLDOWN) or "")
    assert already_done(done, "other-credential", "rev-1", NOW, COOLDOWN) is None


def test_other_credentials_records_are_kept() -> None:
    first = deployment(**rollout_patch(deployment(), "a", "1", NOW)["metadata"]["annotations"])
    second = rollout_patch(first, "b", "9", NOW)["metadata"]["annotations"][REMEDIATED_ANNOTATION]
    assert set(json.loads(second)) == {"a", "b"}


def test_opt_out_by_annotation_on_workload_or_namespace() -> None:
    assert opted_out(deployment(**{"regcred.dev/remediate": "false"}), None)
    assert opted_out(deployment(), {"metadata": {"annotations": {"regcred.dev/remediate": "False"}}})
    assert not opted_out(deployment(), {"metadata": {}})


def test_controllers_and_ordered_ready() -> None:
    pod = {"metadata": {"ownerReferences": [{"kind": "Node", "name": "n"},
                                            {"kind": "ReplicaSet", "name": "web-5d9", "controller": True}]}}
    assert controller_of(pod) == ("ReplicaSet", "web-5d9")
    assert controller_of({"metadata": {}}) is None
    assert ordered_ready({"spec": {}})
    assert not ordered_ready({"spec": {"podManagementPolicy": "Parallel"}})


def job(**spec: object) -> dict[str, object]:
    status = spec.pop("status", {})
    return {"metadata": {"name": "migrate", "namespace": "shop"}, "spec": spec, "status": status}


STUCK: dict[str, object] = {"metadata": {"name": "migrate-x1"}}


def test_a_job_pod_is_deleted_only_with_retries_to_spare() -> None:
    assert plan("Job", job(), STUCK, "RolloutRestart") == Plan("DeletePods", True, "")  # default backoffLimit 6
    assert plan("Job", job(backoffLimit=6, status={"failed": 4}), STUCK, "RolloutRestart").action == "DeletePods"
    for exhausted in (job(backoffLimit=0), job(backoffLimit=1), job(backoffLimit=6, status={"failed": 5})):
        blocked = plan("Job", exhausted, STUCK, "RolloutRestart")
        assert blocked.action is None and not blocked.delete_pod
        assert "could make the Job fail" in blocked.note
    finished = job(status={"conditions": [{"type": "Failed", "status": "True"}]})
    assert "already finished" in plan("Job", finished, STUCK, "DeletePods").note


def test_a_job_with_a_limit_per_index_counts_the_index_failures() -> None:
    def pod(count: str) -> dict[str, object]:
        return {"metadata": {"annotations": {"batch.kubernetes.io/job-index-failure-count": count}}}

    per_index = job(backoffLimitPerIndex=3, completionMode="Indexed")
    assert plan("Job", per_index, pod("1"), "RolloutRestart").action == "DeletePods"
    assert plan("Job", per_index, pod("2"), "RolloutRestart").action is None
    assert plan("Job", per_index, pod("lots"), "RolloutRestart").action is None  # unreadable: hands off


def test_rollouts_that_roll_nothing_delete_the_stuck_pod_instead() -> None:
    on_delete = {"spec": {"updateStrategy": {"type": "OnDelete"}}}
    for kind in ("DaemonSet", "StatefulSet"):
        how = plan(kind, on_delete, STUCK, "RolloutRestart")
        assert (how.action, how.delete_pod) == ("DeletePods", True)
        assert "OnDelete" in how.note and f"the {kind} recreates it" in how.note
    paused = plan("Deployment", {"spec": {"paused": True}}, STUCK, "RolloutRestart")
    assert (paused.action, paused.delete_pod) == ("DeletePods", True)
    assert "paused" in paused.note
    assert plan("Deployment", {"spec": {}}, STUCK, "RolloutRestart") == Plan("RolloutRestart", False, "")
    assert plan("StatefulSet", {"spec": {}}, STUCK, "RolloutRestart") == Plan("RolloutRestart", True, "")
    assert plan("DaemonSet", {"spec": {"updateStrategy": {"type": "RollingUpdate"}}}, STUCK,
                "DeletePods") == Plan("DeletePods", True, "")


def test_delete_pods_replaces_each_stuck_pod_of_a_revision_once() -> None:
    done = deployment(**record_patch(deployment(), "ecr", "rev-1", NOW)["metadata"]["annotations"])
    assert already_done(done, "ecr", "rev-1", NOW, COOLDOWN, per_pod=True) is None
    assert already_done(done, "ecr", "rev-1", NOW, COOLDOWN) is not None
    assert "cooldown" in (already_done(done, "ecr", "rev-2", NOW, COOLDOWN, per_pod=True) or "")
