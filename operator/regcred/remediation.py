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
from regcred.diagnosis import Action, Decision, decide, served, stuck_containers
from regcred.fanout import CONTENT_HASH_ANNOTATION, format_time
from regcred.imageref import ImageRef
from regcred.kube import KubeApi, KubeError
from regcred.probe import Prober, ProbeResult
from regcred.reconcile import Reconciler, Serving
from regcred.workloads import (
    KINDS,
    already_done,
    controller_of,
    opted_out,
    ordered_ready,
    record_patch,
    rollout_patch,
)

logger = logging.getLogger("regcred")

MAX_REMEDIATIONS_IN_STATUS = 20


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
        metadata = pod.get("metadata") or {}
        namespace, uid = metadata.get("namespace", ""), metadata.get("uid", "")
        spec = serving.spec
        account_name = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        account = self.kube.read_namespaced("v1", "serviceaccounts", namespace, account_name) or {}
        secret = self.kube.read_namespaced("v1", "secrets", namespace, spec.secret_name) or {}
        in_place = ((secret.get("metadata") or {}).get("annotations") or {}).get(
            CONTENT_HASH_ANNOTATION) == serving.revision

        def probe(image: ImageRef) -> ProbeResult:
            return self.prober.probe(image, (serving.token.username, serving.token.password))

        decisions = [
            (container, decide(pod, container, served_hosts=serving.token.hosts, secret_name=spec.secret_name,
                               account_pull_secrets=[r.get("name") for r in account.get("imagePullSecrets") or []],
                               secret_in_place=in_place, probe=probe))
            for container in stuck_containers(pod)
        ]
        fixable = [d for _, d in decisions if d.action is Action.REMEDIATE]
        target = self._target_of(pod)
        if fixable:
            self._remediate(pod, target, serving, fixable[0])
        for container, decision in decisions:
            if decision.action is Action.EXPLAIN:
                key = (spec.name, uid, container.name, str(decision.cause))
                if key not in self._explained:
                    if len(self._explained) > 10_000:  # bounded memory; at worst an Event is repeated
                        self._explained.clear()
                    self._explained.add(key)
                    self._explain(target, serving, decision)

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
        if spec.remediation_strategy == "None" or opted_out(target.body, namespace):
            self._count_and_explain(target, serving, decision, f"{decision.why} Remediation is turned off for "
                                    f"{where}; restart it to use the fresh credential.", event_reason="NotRemediated")
            return
        if target.kind == "Pod":
            self._explain(target, serving, decision, reason="NotRemediated", message=(
                f"{decision.why} The pod has no controller to recreate it, so regcred-operator does not delete "
                "it; delete and recreate it to use the fresh credential."))
            return
        skip = already_done(target.body, spec.name, serving.revision, now, spec.remediation_cooldown)
        if skip is not None:
            logger.debug("Not remediating %s again: %s.", where, skip)
            return
        if not self.limiter.allow():
            logger.warning("Remediation of %s postponed: more than %d this minute.", where,
                           self.settings.remediations_per_minute)
            return
        kind = KINDS[target.kind]
        if spec.remediation_strategy == "DeletePods" or not kind.rollout:  # a Job's template is immutable
            action, delete = "DeletePods", True
        else:  # an OrderedReady StatefulSet cannot roll past a stuck pod: that pod goes as well
            action, delete = "RolloutRestart", target.kind == "StatefulSet" and ordered_ready(target.body)
        if spec.remediation_dry_run:
            self._record(target, serving, "DryRun", decision, f"Would {_verb(action)} {where}: {decision.why}")
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
        detail = " and deleted its stuck pod" if delete and action == "RolloutRestart" else ""
        self._record(target, serving, action, decision,
                     f"{'Restarted' if action == 'RolloutRestart' else 'Deleted the stuck pod of'} {where}{detail} "
                     f"to use the fresh credential of RegistryCredential {spec.name}: {decision.why}")

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

