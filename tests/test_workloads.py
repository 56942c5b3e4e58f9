"""Restart bookkeeping: once per workload per credential revision, a cooldown, opt-outs, OrderedReady."""

from __future__ import annotations

import datetime
import json

from regcred.workloads import (
    REMEDIATED_ANNOTATION,
    already_done,
    controller_of,
    opted_out,
    ordered_ready,
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
