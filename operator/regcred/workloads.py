"""Workloads behind stuck pods, and how to restart each kind: a strategy table, so no code switches on kind.

Pure functions over API dicts; the API calls themselves are in kube.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any

from regcred import GROUP
from regcred.fanout import format_time, parse_time

# On a workload: {credential: {"revision": ..., "time": ...}} of the remediations done, so that one
# credential revision restarts a workload at most once, across operator restarts.
REMEDIATED_ANNOTATION = f"{GROUP}/remediated"
# On a pod template: what made the operator roll it (like kubectl's restartedAt, under our prefix).
RESTARTED_AT_ANNOTATION = f"{GROUP}/restartedAt"
REVISION_ANNOTATION = f"{GROUP}/credential-revision"
# On a workload or namespace: "false" keeps the operator's hands off.
OPT_OUT_ANNOTATION = f"{GROUP}/remediate"


@dataclasses.dataclass(frozen=True)
class Kind:
    """How the operator deals with one kind of workload."""

    kind: str
    api: str  # apps/v1, batch/v1
    plural: str
    rollout: bool  # a pod-template annotation rolls its pods (Deployment, DaemonSet, StatefulSet)
    recreates_pods: bool  # a deleted pod is replaced by the controller


KINDS: dict[str, Kind] = {
    "Deployment": Kind("Deployment", "apps/v1", "deployments", rollout=True, recreates_pods=True),
    "DaemonSet": Kind("DaemonSet", "apps/v1", "daemonsets", rollout=True, recreates_pods=True),
    "StatefulSet": Kind("StatefulSet", "apps/v1", "statefulsets", rollout=True, recreates_pods=True),
    # A Job's pod template is immutable: its stuck pods are deleted and the Job controller makes new ones.
    "Job": Kind("Job", "batch/v1", "jobs", rollout=False, recreates_pods=True),
    "ReplicaSet": Kind("ReplicaSet", "apps/v1", "replicasets", rollout=False, recreates_pods=True),
}


def controller_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the object's controlling owner, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("kind", ""), ref.get("name", "")
    return None


def opted_out(*objects: Mapping[str, Any] | None) -> bool:
    return any(
        ((o.get("metadata") or {}).get("annotations") or {}).get(OPT_OUT_ANNOTATION, "").lower() == "false"
        for o in objects if o is not None
    )


def remediations_of(workload: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    raw = ((workload.get("metadata") or {}).get("annotations") or {}).get(REMEDIATED_ANNOTATION)
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def already_done(
    workload: Mapping[str, Any], credential: str, revision: str, now: datetime.datetime,
    cooldown: datetime.timedelta,
) -> str | None:
    """Why not to act again (the same revision was remediated, or within the cooldown), or None."""
    last = remediations_of(workload).get(credential)
    if not last:
        return None
    if last.get("revision") == revision:
        return f"it was already restarted for this credential revision at {last.get('time')}"
    when = parse_time(last.get("time"))
    if when is not None and now - when < cooldown:
        return f"it was restarted at {last.get('time')}, within the cooldown"
    return None


def rollout_patch(
    workload: Mapping[str, Any], credential: str, revision: str, now: datetime.datetime
) -> dict[str, Any]:
    """A merge patch that rolls the workload's pods, as `kubectl rollout restart` does, and records why."""
    stamp = format_time(now)
    return {
        "metadata": {"annotations": {REMEDIATED_ANNOTATION: _recorded(workload, credential, revision, stamp)}},
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp,
                                                           REVISION_ANNOTATION: revision}}}},
    }


def record_patch(
    workload: Mapping[str, Any], credential: str, revision: str, now: datetime.datetime
) -> dict[str, Any]:
    """A merge patch that only records a remediation (pods were deleted instead of rolled)."""
    return {"metadata": {"annotations": {
        REMEDIATED_ANNOTATION: _recorded(workload, credential, revision, format_time(now))}}}


def _recorded(workload: Mapping[str, Any], credential: str, revision: str, stamp: str) -> str:
    done = remediations_of(workload)
    done[credential] = {"revision": revision, "time": stamp}
    return json.dumps(done, sort_keys=True)


def template_pull_secrets(workload: Mapping[str, Any]) -> list[str]:
    """The imagePullSecrets a workload's pod template lists (what its next pods start with, before admission)."""
    refs = (((workload.get("spec") or {}).get("template") or {}).get("spec") or {}).get("imagePullSecrets")
    if not isinstance(refs, list):
        return []
    return [str(r["name"]) for r in refs[:100] if isinstance(r, Mapping) and r.get("name")]


def ordered_ready(statefulset: Mapping[str, Any]) -> bool:
    """A StatefulSet whose rollout cannot pass a stuck pod (the default OrderedReady pod management)."""
    return ((statefulset.get("spec") or {}).get("podManagementPolicy") or "OrderedReady") == "OrderedReady"
