"""Workloads behind stuck pods, and how to restart each kind: a strategy table, so no code switches on kind.

Pure functions over API dicts; the API calls themselves are in kube.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable, Mapping
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
MAX_RECORD = 16_384  # characters of a tenant-writable `regcred.dev/remediated` annotation that are parsed


def _never(_workload: Mapping[str, Any]) -> str | None:
    return None


def _harmless(_workload: Mapping[str, Any], _pod: Mapping[str, Any]) -> str | None:
    return None


def _blocks_nothing(_workload: Mapping[str, Any]) -> bool:
    return False


def deployment_paused(deployment: Mapping[str, Any]) -> str | None:
    """A paused Deployment rolls no template change until it is resumed; its ReplicaSet still replaces a
    deleted pod (pkg/controller/deployment/deployment_controller.go syncDeployment: `if d.Spec.Paused
    { return dc.sync(ctx, d, rsList) }`, which only scales)."""
    if (deployment.get("spec") or {}).get("paused") is True:
        return "the Deployment is paused (spec.paused), so a template change rolls nothing until it is resumed"
    return None


def on_delete(workload: Mapping[str, Any]) -> str | None:
    """`updateStrategy: OnDelete`: the controller makes a pod of the current template only when the old one is
    deleted (pkg/controller/daemon/daemon_controller.go syncDaemonSet rolls only RollingUpdate;
    pkg/controller/statefulset/stateful_set_control.go returns early for OnDeleteStatefulSetStrategyType)."""
    if ((workload.get("spec") or {}).get("updateStrategy") or {}).get("type") == "OnDelete":
        return "its updateStrategy is OnDelete, so a template change replaces no pod"
    return None


def ordered_ready(statefulset: Mapping[str, Any]) -> bool:
    """A StatefulSet whose rollout cannot pass a stuck pod (the default OrderedReady pod management)."""
    return ((statefulset.get("spec") or {}).get("podManagementPolicy") or "OrderedReady") == "OrderedReady"


JOB_INDEX_FAILURES = "batch.kubernetes.io/job-index-failure-count"  # on a pod, by the Job controller
JOB_FINISHED = frozenset({"Complete", "Failed", "FailureTarget", "SuccessCriteriaMet"})


def job_retries_left(job: Mapping[str, Any], pod: Mapping[str, Any]) -> str | None:
    """Why deleting a Job's stuck pod could make the Job fail, or None when it has retries to spare.

    The Job controller counts a deleted pod that had not succeeded as failed (pkg/controller/job/
    job_controller.go: "Count deleted Pods as failures to account for orphan Pods that never have a chance
    to reach the Failed phase"), and fails the Job once more pods failed than spec.backoffLimit (default
    6), or with spec.backoffLimitPerIndex an index more often than that. One retry is always kept for
    the pod's own failures: act only when failed + 1 < the limit. (A podFailurePolicy rule that Ignores
    DisruptionTarget does not make a DELETE free: only an eviction, preemption or the taint manager set
    that condition.)
    """
    spec, status = job.get("spec") or {}, job.get("status") or {}
    for condition in (status.get("conditions") or [])[:20]:
        if condition.get("type") in JOB_FINISHED and condition.get("status") == "True":
            return f"the Job has already finished ({condition.get('type')})"
    if spec.get("suspend") is True:
        return "the Job is suspended"
    per_index = spec.get("backoffLimitPerIndex")
    if isinstance(per_index, int):
        raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(JOB_INDEX_FAILURES, "0")
        count = int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 10 else None
        if count is None or count + 1 >= per_index:
            return (f"deleting the stuck pod counts as a failure of its index ({str(raw)[:10]} so far, "
                    f"spec.backoffLimitPerIndex {per_index}) and could fail that index")
        return None
    limit = spec.get("backoffLimit")
    limit = limit if isinstance(limit, int) else 6
    failed = status.get("failed")
    failed = failed if isinstance(failed, int) else 0
    if failed + 1 >= limit:
        return (f"deleting the stuck pod counts as a failed pod against spec.backoffLimit {limit} ({failed} "
                "failed so far) and could make the Job fail")
    return None


@dataclasses.dataclass(frozen=True)
class Kind:
    """How the operator deals with one kind of workload."""

    kind: str
    api: str  # apps/v1, batch/v1
    plural: str
    rollout: bool  # a pod-template annotation rolls its pods (Deployment, DaemonSet, StatefulSet)
    recreates_pods: bool  # a deleted pod is replaced by the controller
    # Why a template change would roll nothing right now (the stuck pod is deleted instead), or None.
    stalled: Callable[[Mapping[str, Any]], str | None] = _never
    # A rollout cannot pass a stuck pod, so that pod is deleted as well (OrderedReady StatefulSets).
    stuck_pod_blocks_rollout: Callable[[Mapping[str, Any]], bool] = _blocks_nothing
    # Why deleting the stuck pod would do harm (a Job out of retries), or None.
    deletion_harms: Callable[[Mapping[str, Any], Mapping[str, Any]], str | None] = _harmless


KINDS: dict[str, Kind] = {
    # A paused Deployment's ReplicaSet still replaces a deleted pod, with the current template.
    "Deployment": Kind("Deployment", "apps/v1", "deployments", rollout=True, recreates_pods=True,
                       stalled=deployment_paused),
    "DaemonSet": Kind("DaemonSet", "apps/v1", "daemonsets", rollout=True, recreates_pods=True, stalled=on_delete),
    "StatefulSet": Kind("StatefulSet", "apps/v1", "statefulsets", rollout=True, recreates_pods=True,
                        stalled=on_delete, stuck_pod_blocks_rollout=ordered_ready),
    # A Job's pod template is immutable: its stuck pods are deleted and the Job controller makes new ones,
    # but only while the Job has retries to spare.
    "Job": Kind("Job", "batch/v1", "jobs", rollout=False, recreates_pods=True, deletion_harms=job_retries_left),
    "ReplicaSet": Kind("ReplicaSet", "apps/v1", "replicasets", rollout=False, recreates_pods=True),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What remediation does to one workload: roll it, delete its stuck pod, both, or nothing (and why)."""

    action: str | None  # RolloutRestart | DeletePods | None: explain instead
    delete_pod: bool
    note: str  # why this way (or why not at all), for the Event; "" for the ordinary way


def plan(kind_name: str, workload: Mapping[str, Any], pod: Mapping[str, Any], strategy: str) -> Plan:
    """How to make a workload replace its stuck pod, with remediation.strategy RolloutRestart or DeletePods."""
    kind = KINDS[kind_name]
    stalled = kind.stalled(workload) if kind.rollout else None
    if strategy == "DeletePods" or not kind.rollout or stalled:
        harm = kind.deletion_harms(workload, pod)
        if harm:
            return Plan(None, False, f"regcred-operator leaves the {kind_name} alone: {harm}. Delete the stuck pod "
                                     "yourself if that is acceptable.")
        note = (f"{stalled[0].upper()}{stalled[1:]}: its stuck pod is deleted instead, and the {kind_name} "
                "recreates it.") if stalled else ""
        return Plan("DeletePods", True, note)
    return Plan("RolloutRestart", kind.stuck_pod_blocks_rollout(workload), "")


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
    """{credential: {"revision": ..., "time": ...}} from the workload's `regcred.dev/remediated` record.

    Tenant-writable: at most MAX_RECORD characters are parsed, nesting too deep to read counts as no record,
    and only entries that are objects are kept, with their string fields.
    """
    raw = ((workload.get("metadata") or {}).get("annotations") or {}).get(REMEDIATED_ANNOTATION)
    if not isinstance(raw, str) or not raw or len(raw) > MAX_RECORD:
        return {}
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {credential: {key: value for key, value in entry.items() if isinstance(value, str)}
            for credential, entry in parsed.items() if isinstance(entry, dict)}


def already_done(
    workload: Mapping[str, Any], credential: str, revision: str, now: datetime.datetime,
    cooldown: datetime.timedelta, *, per_pod: bool = False,
) -> str | None:
    """Why not to act again (the same revision was remediated, or within the cooldown), or None.

    ``per_pod``: the action replaces one stuck pod (DeletePods), so each stuck pod of the revision gets it;
    its replacement is made after the revision was written and is never deleted for it again.
    """
    last = remediations_of(workload).get(credential)
    if not last:
        return None
    if last.get("revision") == revision:
        if per_pod:
            return None
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


@dataclasses.dataclass(frozen=True)
class Target:
    """The object a remediation acts on: a workload, or the bare pod when nothing controls it."""

    kind: str
    body: Mapping[str, Any] = dataclasses.field(repr=False)

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.body.get("metadata") or {}).get("namespace", ""))

    @property
    def where(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def api_version(self) -> str:
        """Known from the kind: the body may come from a LIST, whose items carry no apiVersion or kind."""
        return "v1" if self.kind == "Pod" else KINDS[self.kind].api


# read(api, plural, namespace, name) -> the object, or None when it does not exist (KubeApi.read_namespaced).
Reader = Callable[[str, str, str, str], "Mapping[str, Any] | None"]


def workload_ref(pod: Mapping[str, Any], read: Reader) -> Target | tuple[str, str]:
    """The workload behind a stuck pod as far as it is known without reading the workload itself: (kind, name)
    of a known kind, found through a ReplicaSet to its Deployment; or the final Target (an ownerless
    ReplicaSet, or the bare pod when no known controller is found)."""
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    owner = controller_of(pod)
    if owner is not None and owner[0] == "ReplicaSet":
        replicaset = read("apps/v1", "replicasets", namespace, owner[1])
        owner = controller_of(replicaset) if replicaset else None
        if owner is None and replicaset is not None:
            return Target("ReplicaSet", replicaset)
    if owner is not None and owner[0] in KINDS:
        return owner
    return Target("Pod", pod)


def read_target(pod: Mapping[str, Any], ref: Target | tuple[str, str], read: Reader) -> Target:
    """The Target of a `workload_ref`: the workload read, or the bare pod when it does not exist."""
    if isinstance(ref, Target):
        return ref
    kind = KINDS[ref[0]]
    body = read(kind.api, kind.plural, (pod.get("metadata") or {}).get("namespace", ""), ref[1])
    return Target(ref[0], body) if body is not None else Target("Pod", pod)


def target_of(pod: Mapping[str, Any], read: Reader) -> Target:
    """The workload the operator acts on for a stuck pod: through a ReplicaSet to its Deployment (an
    ownerless ReplicaSet is itself the target); the bare pod when no known controller is found."""
    return read_target(pod, workload_ref(pod, read), read)
