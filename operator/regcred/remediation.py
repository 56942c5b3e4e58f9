"""Repairing workloads whose pods are stuck pulling — only when a fresh credential fixes them.

For each stuck pod, every credential serving the pod's namespace decides (diagnosis.decide); a
credential-shaped cause on its registry gets one remediation per workload per credential revision,
with a cooldown, a global rate limit, opt-outs and a dry-run; every other cause is explained in an
Event on the workload and counted in the credential's status.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from regcred import metrics
from regcred.clock import Clock
from regcred.config import Settings
from regcred.diagnosis import (
    CREDENTIAL_REJECTED as CREDENTIAL_REJECTED_REASON,
)
from regcred.diagnosis import (
    MAX_EVENTS,
    Action,
    Decision,
    PullEvent,
    StuckContainer,
    decide,
    pull_events,
    served,
    stuck_containers,
)
from regcred.fanout import CONTENT_HASH_ANNOTATION, format_time, parse_time
from regcred.imageref import ImageRef
from regcred.kube import KubeApi, KubeError
from regcred.probe import Prober, ProbeResult
from regcred.reconcile import Reconciler, Serving
from regcred.status import CREDENTIAL_REJECTED, MAX_REJECTION_SAMPLE, Condition
from regcred.workloads import (
    KINDS,
    already_done,
    controller_of,
    opted_out,
    plan,
    record_patch,
    rollout_patch,
    template_pull_secrets,
)

logger = logging.getLogger("regcred")

MAX_REMEDIATIONS_IN_STATUS = 20
DECISION_MEMORY = datetime.timedelta(minutes=10)  # the kubelet's image back-off tops out at 5 minutes
PROBE_MEMORY = datetime.timedelta(minutes=1)
# A rolled workload's stuck pod still there this long after the rollout: the rollout did not take effect
# (a Deployment's default progressDeadlineSeconds is 600).
EFFECT_GRACE = datetime.timedelta(minutes=10)


@dataclasses.dataclass(frozen=True)
class Seen:
    """What the operator saw of one stuck container, in its own memory (never read back from the cluster)."""

    first_seen: datetime.datetime
    failed_at: datetime.datetime | None  # when a retry was last seen failing (ErrImagePull again)
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Target:
    """The object a remediation acts on: a workload, or the bare pod when nothing controls it."""

    kind: str
    body: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.body.get("metadata") or {}).get("namespace", ""))

    @property
    def api_version(self) -> str:
        """Known from the kind: the body may come from a LIST, whose items carry no apiVersion or kind."""
        return "v1" if self.kind == "Pod" else KINDS[self.kind].api


class RateLimiter:
    """A sliding window: at most `limit` actions in any 60 seconds of the operator's clock."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit, self.clock = limit, clock
        self._times: collections.deque[datetime.datetime] = collections.deque()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        now = self.clock.now()
        with self._lock:
            while self._times and now - self._times[0] >= datetime.timedelta(minutes=1):
                self._times.popleft()
            if len(self._times) >= self.limit:
                return False
            self._times.append(now)
            return True


class Remediator:
    def __init__(self, kube: KubeApi, reconciler: Reconciler, settings: Settings, clock: Clock,
                 prober: Prober | None = None) -> None:
        self.kube, self.reconciler, self.settings, self.clock = kube, reconciler, settings, clock
        self.prober = prober or reconciler.prober
        self.limiter = RateLimiter(settings.remediations_per_minute, clock)
        # (credential, pod uid, container, cause) already explained: one Event each, not one per status update.
        self._explained: set[tuple[str, str, str, str]] = set()
        # The operator's own memory of stuck containers (uid, container) and of its recent decisions and probes.
        self._seen: dict[tuple[str, str], Seen] = {}
        self._decided: dict[tuple[str, str, str, str, str], tuple[Decision, datetime.datetime]] = {}
        self._probed: dict[tuple[str, str, str], tuple[ProbeResult, datetime.datetime]] = {}
        self._rejections: dict[str, tuple[str, list[str]]] = {}  # credential: (revision, pods that failed with it)
        self._noted: set[tuple[str, ...]] = set()
        # Pods whose workload was rolled for them, by (credential, pod uid): (when, the workload).
        self._acted: dict[tuple[str, str], tuple[datetime.datetime, Target]] = {}
        self.effect_grace = EFFECT_GRACE
        self._seen_lock = threading.Lock()
        self._lock = threading.Lock()
        self.actions: list[str] = []  # what was done, for tests and logs ("RolloutRestart Deployment shop/web")

    def sweep(self) -> None:
        """Look at every pending pod: after a credential's Secrets changed, pods stuck before may now be fixable."""
        if not self.reconciler.serving:
            return
        for pod in self.kube.list_pending_pods():
            self.handle_pod(pod)

    def handle_pod(self, pod: Mapping[str, Any]) -> None:
        stuck = stuck_containers(pod)
        if not stuck:
            return
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        for serving in list(self.reconciler.serving.values()):
            # Only credentials for this namespace and one of the images' registries: the others need no reads.
            if namespace in serving.namespaces and any(served(c.image, serving.token.hosts) for c in stuck):
                with self._lock:  # one decision at a time: the once-per-revision record must be read fresh
                    self._handle(pod, serving)

    def _handle(self, pod: Mapping[str, Any], serving: Serving) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        spec = serving.spec
        stuck = stuck_containers(pod)
        now = self.clock.now()
        self._check_effect(pod, serving, now)
        seen = {c.name: self._observe(uid, c, now) for c in stuck}
        target = self._target_of(pod)
        decisions = []
        events: list[PullEvent] | None = None
        for container in stuck:
            key = (spec.name, serving.revision, uid, container.name, container.image)
            remembered = self._decided.get(key)
            # One decision per pod, container and revision for a while: the status flipping between
            # ErrImagePull and ImagePullBackOff (each retry) neither re-decides nor counts again.
            if remembered is not None and now - remembered[1] < DECISION_MEMORY:
                decisions.append((container, remembered[0]))
                continue
            if events is None:
                events = self._pull_events(pod)
            decision = self._decide(pod, container, serving, target, events, seen[container.name])
            if decision.action is not Action.IGNORE:
                if len(self._decided) > 10_000:
                    self._decided.clear()
                self._decided[key] = (decision, now)
            decisions.append((container, decision))
        fixable = [d for _, d in decisions if d.action is Action.REMEDIATE]
        if fixable:
            self._remediate(pod, target, serving, fixable[0])
        rejected = [d for _, d in decisions if d.action is Action.REJECTED]
        if rejected:
            self._reject(pod, serving, rejected[0])
        for container, decision in decisions:
            if decision.action in (Action.EXPLAIN, Action.REJECTED):
                key2 = (spec.name, uid, container.name, str(decision.cause))
                if key2 not in self._explained:
                    if len(self._explained) > 10_000:  # bounded memory; at worst an Event is repeated
                        self._explained.clear()
                    self._explained.add(key2)
                    self._explain(target, serving, decision, reason=decision.reason)

    def _decide(self, pod: Mapping[str, Any], container: StuckContainer, serving: Serving, target: Target,
                events: list[PullEvent], seen: Seen) -> Decision:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        spec = serving.spec
        account_name = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        account = self.kube.read_namespaced("v1", "serviceaccounts", namespace, account_name) or {}
        secret = self.kube.read_namespaced("v1", "secrets", namespace, spec.secret_name) or {}
        in_place = ((secret.get("metadata") or {}).get("annotations") or {}).get(
            CONTENT_HASH_ANNOTATION) == serving.revision
        # The revision reached this namespace when the operator made it, or when the Secret here was created
        # (creationTimestamp is set by the API server; a Secret restored or a namespace selected later).
        since = max(filter(None, (serving.since, parse_time((secret.get("metadata") or {}).get(
            "creationTimestamp")))), default=None)
        return decide(pod, container, served_hosts=serving.token.hosts, secret_name=spec.secret_name,
                      account_pull_secrets=[r.get("name") for r in account.get("imagePullSecrets") or []],
                      secret_in_place=in_place, probe=lambda image: self._probe(serving, image), events=events,
                      revision_since=since, first_seen=seen.first_seen, failed_at=seen.failed_at,
                      template_pull_secrets=template_pull_secrets(target.body) if target.kind != "Pod" else None)

    def _observe(self, uid: str, container: StuckContainer, now: datetime.datetime) -> Seen:
        """What the operator itself saw of this container: when first failing, and when a retry last failed
        (the status turning to ErrImagePull again, after ImagePullBackOff or with another message)."""
        key = (uid, container.name)
        with self._seen_lock:
            before = self._seen.get(key)
            if before is None:
                if len(self._seen) > 10_000:
                    self._seen.clear()
                seen = Seen(now, None, container.reason, container.message)
            elif container.reason == "ErrImagePull" and (before.reason, before.message) != (
                    container.reason, container.message):
                seen = Seen(before.first_seen, now, container.reason, container.message)
            else:
                seen = dataclasses.replace(before, reason=container.reason, message=container.message)
            self._seen[key] = seen
            return seen

    def _pull_events(self, pod: Mapping[str, Any]) -> list[PullEvent]:
        """The pod's own Failed Events, newest first; none when they cannot be read (a courtesy, like Events)."""
        metadata = pod.get("metadata") or {}
        try:
            return pull_events(self.kube.list_pod_failure_events(
                metadata.get("namespace", ""), metadata.get("name", ""), metadata.get("uid"), limit=MAX_EVENTS))
        except KubeError as error:
            logger.warning("Could not list the Events of pod %s/%s: %s", metadata.get("namespace"),
                           metadata.get("name"), error.reason)
            return []

    def _probe(self, serving: Serving, image: ImageRef) -> ProbeResult:
        """The registry asked with the credential in place; one answer per image and revision for a minute."""
        key = (serving.name, serving.revision, str(image))
        now = self.clock.now()
        with self._seen_lock:
            cached = self._probed.get(key)
        if cached is not None and now - cached[1] < PROBE_MEMORY:
            return cached[0]
        result = self.prober.probe(image, (serving.token.username, serving.token.password))
        with self._seen_lock:
            if len(self._probed) > 1_000:
                self._probed.clear()
            self._probed[key] = (result, now)
        return result

    def _reject(self, pod: Mapping[str, Any], serving: Serving, decision: Decision) -> None:
        """Pods fail with the revision in place and the registry refuses it to a probe too: say so on the
        credential (condition, Event, metric) instead of restarting anything."""
        metadata = pod.get("metadata") or {}
        where = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
        hosts = ", ".join(serving.token.hosts)
        with self._seen_lock:
            evidence = self._rejections.get(serving.name)
            if evidence is None or evidence[0] != serving.revision:
                evidence = (serving.revision, [])
                self._rejections[serving.name] = evidence
            first = not evidence[1]
            if where not in evidence[1]:
                evidence[1].append(where)
            pods = list(evidence[1])
        sample = ", ".join(pods[:MAX_REJECTION_SAMPLE]) + (", ..." if len(pods) > MAX_REJECTION_SAMPLE else "")
        message = (f"The registry ({hosts}) rejects the credential in place (revision {serving.revision[:12]}): "
                   f"{len(pods)} pod(s) failed with it, e.g. {sample}; {decision.why} Fix the credential's source; "
                   "no workload is restarted for this revision.")[:1024]
        self.reconciler.rejected[serving.name] = serving.revision
        metrics.CREDENTIAL_REJECTED.labels(serving.name).set(1)
        try:
            self.reconciler.publish_condition(serving.credential, Condition(
                CREDENTIAL_REJECTED, "True", "RegistryRejected", message))
        except KubeError as error:
            logger.warning("Could not update %s's status: %s", serving.name, error.reason)
        if first:
            logger.warning("%s", message)
            self._post_credential(serving, "Warning", CREDENTIAL_REJECTED_REASON, message)

    def _target_of(self, pod: Mapping[str, Any]) -> Target:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        owner = controller_of(pod)
        if owner is not None and owner[0] == "ReplicaSet":
            replicaset = self.kube.read_namespaced("apps/v1", "replicasets", namespace, owner[1])
            owner = controller_of(replicaset) if replicaset else None
            if owner is None and replicaset is not None:
                return Target("ReplicaSet", replicaset)
        if owner is not None and owner[0] in KINDS:
            kind = KINDS[owner[0]]
            body = self.kube.read_namespaced(kind.api, kind.plural, namespace, owner[1])
            if body is not None:
                return Target(owner[0], body)
        return Target("Pod", pod)

    def _remediate(self, pod: Mapping[str, Any], target: Target, serving: Serving, decision: Decision) -> None:
        spec, now = serving.spec, self.clock.now()
        where = f"{target.kind} {target.namespace}/{target.name}"
        namespace = self.kube.read_namespace(target.namespace)
        news = self._first_time((spec.name, serving.revision, target.kind, target.namespace, target.name))
        if spec.remediation_strategy == "None" or opted_out(target.body, namespace):
            if news:
                self._count_and_explain(target, serving, decision, f"{decision.why} Remediation is turned off for "
                                        f"{where}; restart it to use the fresh credential.",
                                        event_reason="NotRemediated")
            return
        if target.kind == "Pod":
            if news:
                self._explain(target, serving, decision, reason="NotRemediated", message=(
                    f"{decision.why} The pod has no controller to recreate it, so regcred-operator does not "
                    "delete it; delete and recreate it to use the fresh credential."))
            return
        how = plan(target.kind, target.body, pod, spec.remediation_strategy)
        if how.action is None:  # deleting the stuck pod would do harm (a Job without retries to spare)
            if news:
                self._count_and_explain(target, serving, decision, f"{decision.why} {how.note}",
                                        event_reason="NotRemediated")
            return
        pod_uid = str((pod.get("metadata") or {}).get("uid", ""))
        if how.delete_pod and ("deleted", pod_uid) in self._noted:
            return  # this very pod was deleted already (the sweep and the watch can both bring it)
        skip = already_done(target.body, spec.name, serving.revision, now, spec.remediation_cooldown,
                            per_pod=how.action == "DeletePods")
        if skip is not None:
            logger.debug("Not remediating %s again: %s.", where, skip)
            return
        if not self.limiter.allow():
            logger.warning("Remediation of %s postponed: more than %d this minute.", where,
                           self.settings.remediations_per_minute)
            return
        kind = KINDS[target.kind]
        action, delete = how.action, how.delete_pod
        note = f" {how.note}" if how.note else ""
        if spec.remediation_dry_run:
            self._record(target, serving, "DryRun", decision, f"Would {_verb(action)} {where}: {decision.why}{note}")
            return
        if delete and not self._first_time(("deleted", pod_uid)):
            return
        pod_meta = pod.get("metadata") or {}
        if action == "RolloutRestart":
            self.kube.patch_namespaced(kind.api, kind.plural, target.namespace, target.name,
                                       rollout_patch(target.body, spec.name, serving.revision, now))
        else:
            self.kube.patch_namespaced(kind.api, kind.plural, target.namespace, target.name,
                                       record_patch(target.body, spec.name, serving.revision, now))
        if delete:
            self.kube.delete_pod(pod_meta.get("namespace", ""), pod_meta.get("name", ""), pod_meta.get("uid"))
        else:  # a rollout replaces the stuck pod only if it progresses: checked when the pod is seen again
            with self._seen_lock:
                if len(self._acted) > 10_000:
                    self._acted.clear()
                self._acted[(spec.name, pod_uid)] = (now, target)
        detail = " and deleted its stuck pod" if delete and action == "RolloutRestart" else ""
        self._record(target, serving, action, decision,
                     f"{'Restarted' if action == 'RolloutRestart' else 'Deleted the stuck pod of'} {where}{detail} "
                     f"to use the fresh credential of RegistryCredential {spec.name}: {decision.why}{note}")

    def _check_effect(self, pod: Mapping[str, Any], serving: Serving, now: datetime.datetime) -> None:
        """A pod whose workload was rolled for it, still stuck `effect_grace` later: the rollout did not replace
        it (paused meanwhile, maxUnavailable, new pods not becoming ready...). Said once, on the workload and
        the credential; nothing is done again for this revision."""
        metadata = pod.get("metadata") or {}
        with self._seen_lock:
            acted = self._acted.get((serving.name, str(metadata.get("uid", ""))))
            if acted is None or now - acted[0] < self.effect_grace:
                return
            del self._acted[(serving.name, str(metadata.get("uid", "")))]
        when, target = acted
        message = (f"{target.kind} {target.namespace}/{target.name} was restarted at {format_time(when)} to use the "
                   f"fresh credential of RegistryCredential {serving.name}, but its stuck pod "
                   f"{metadata.get('namespace', '')}/{metadata.get('name', '')} is still there: the rollout did not "
                   "replace it. Check `kubectl rollout status`, the update strategy and any PodDisruptionBudget, "
                   "or delete the pod.")
        logger.warning("%s", message)
        metrics.REMEDIATIONS_INEFFECTIVE.labels(serving.name).inc()
        self._post(target, "Warning", "RemediationIneffective", message)
        self._post_credential(serving, "Warning", "RemediationIneffective", message)

    def _first_time(self, key: tuple[str, ...]) -> bool:
        """Whether this is news (one Event per workload and revision, not one per pod status update)."""
        with self._seen_lock:
            if key in self._noted:
                return False
            if len(self._noted) > 10_000:
                self._noted.clear()
            self._noted.add(key)
            return True

    def _record(self, target: Target, serving: Serving, action: str, decision: Decision, message: str) -> None:
        now = format_time(self.clock.now())
        self.actions.append(f"{action} {target.kind} {target.namespace}/{target.name}")
        logger.info("%s", message)
        reason = "Remediated" if action != "DryRun" else "RemediationDryRun"
        self._post(target, "Normal", reason, message)
        self._post_credential(serving, "Normal", reason, message)
        if action != "DryRun":
            metrics.REMEDIATIONS.labels(serving.name, action, str(decision.cause)).inc()
        entry = {"time": now, "namespace": target.namespace, "kind": target.kind, "name": target.name,
                 "action": action, "reason": str(decision.cause)}
        self._update_status(serving.name, lambda status: {
            "remediations": [entry, *(status.get("remediations") or [])][:MAX_REMEDIATIONS_IN_STATUS]})

    def _explain(self, target: Target, serving: Serving, decision: Decision, *, reason: str | None = None,
                 message: str | None = None) -> None:
        self._count_and_explain(target, serving, decision, message or decision.why,
                                event_reason=reason or "RestartWouldNotHelp")

    def _count_and_explain(self, target: Target, serving: Serving, decision: Decision, message: str, *,
                           event_reason: str) -> None:
        self._post(target, "Warning", event_reason, message)
        metrics.PULL_FAILURES.labels(serving.name, str(decision.cause)).inc()
        cause = str(decision.cause)
        self._update_status(serving.name, lambda status: {"pullFailures": {
            **(status.get("pullFailures") or {}), cause: int((status.get("pullFailures") or {}).get(cause, 0)) + 1}})

    def _update_status(self, credential: str, change: Callable[[Mapping[str, Any]], dict[str, Any]]) -> None:
        """Read the credential's status, and patch in what `change` makes of it (a status field is a courtesy:
        failing to write it never stops a remediation)."""
        try:
            current = self.kube.read_credential(credential).get("status") or {}
            self.kube.patch_credential_status(credential, change(current))
        except KubeError as error:
            logger.warning("Could not update %s's status: %s", credential, error.reason)

    def _post(self, target: Target, type_: str, reason: str, message: str) -> None:
        """An Event on the workload (or bare pod), in its namespace; a failure is logged, never raised."""
        try:
            self.kube.post_event(target.body, api_version=target.api_version, kind=target.kind, type_=type_,
                                 reason=reason, message=message, namespace=target.namespace,
                                 now=format_time(self.clock.now()))
        except KubeError as error:
            logger.warning("Could not post Event %s: %s", reason, error.reason)

    def _post_credential(self, serving: Serving, type_: str, reason: str, message: str) -> None:
        try:
            self.reconciler.post_credential_event(serving.credential, type_, reason, message,
                                                  format_time(self.clock.now()))
        except KubeError as error:
            logger.warning("Could not post Event %s: %s", reason, error.reason)


def _verb(action: str) -> str:
    return "restart" if action == "RolloutRestart" else "delete the stuck pods of"

