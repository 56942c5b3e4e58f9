"""Repairing workloads whose pods are stuck pulling — only when a fresh credential fixes them.

For each stuck pod, every credential serving the pod's namespace decides (diagnosis.decide); a
credential-shaped cause on its registry gets one remediation per workload per credential revision,
with a cooldown, a global rate limit, opt-outs and a dry-run; every other cause is explained in an
Event on the workload and counted in the credential's status.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from regcred import metrics
from regcred.backlog import Backlog, Held, RateLimiter, Retries, WorkloadKey
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
    revision_reached,
    secret_in_place,
    served,
    stuck_containers,
    template_matters,
)
from regcred.fanout import format_time
from regcred.imageref import ImageRef
from regcred.kube import MAX_EVENT_MESSAGE, KubeApi, KubeError
from regcred.probe import Prober, ProbeResult
from regcred.redact import redact
from regcred.report import Reporter
from regcred.serving import Serving, ServingRegistry
from regcred.status import CREDENTIAL_REJECTED, MAX_REJECTION_SAMPLE, Condition
from regcred.workloads import (
    KINDS,
    Plan,
    Target,
    already_done,
    opted_out,
    plan,
    read_target,
    record_patch,
    remediations_of,
    rollout_patch,
    template_pull_secrets,
    workload_ref,
)

logger = logging.getLogger("regcred")

MAX_REMEDIATIONS_IN_STATUS = 20
# status.remediations[].result: whether the action took effect (the stuck pod is gone).
PENDING, REPLACED, INEFFECTIVE = "Pending", "Replaced", "Ineffective"
DECISION_MEMORY = datetime.timedelta(minutes=10)  # the kubelet's image back-off tops out at 5 minutes
PROBE_MEMORY = datetime.timedelta(minutes=1)
# A rolled workload's stuck pod still there this long after the rollout: the rollout did not take effect
# (a Deployment's default progressDeadlineSeconds is 600).
EFFECT_GRACE = datetime.timedelta(minutes=10)
MAX_SHARED_READS = 10_000  # objects one sweep keeps for the pods that share them


class Reads:
    """What one sweep (or one pass over the backlog, or one pod's credentials) reads once for all its pods:
    ServiceAccounts, the credentials' Secrets (by revision), namespaces and the owner chain (ReplicaSets,
    workloads). At most MAX_SHARED_READS objects, gone with the sweep. Nothing is acted on as read here: the
    workload and its namespace are read again right before a remediation."""

    def __init__(self, kube: KubeApi, capacity: int = MAX_SHARED_READS) -> None:
        self.kube, self.capacity = kube, capacity
        self._objects: dict[tuple[str, ...], Mapping[str, Any] | None] = {}

    def _get(self, key: tuple[str, ...], read: Callable[[], Mapping[str, Any] | None]) -> Mapping[str, Any] | None:
        if key in self._objects:
            return self._objects[key]
        value = read()
        if len(self._objects) < self.capacity:
            self._objects[key] = value
        return value

    def read(self, api: str, plural: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._get((api, plural, namespace, name),
                         lambda: self.kube.read_namespaced(api, plural, namespace, name))

    def secret(self, namespace: str, name: str, revision: str) -> Mapping[str, Any] | None:
        """The credential's Secret in a namespace, as read while `revision` was the one served."""
        return self._get(("v1", "secrets", namespace, name, revision),
                         lambda: self.kube.read_namespaced("v1", "secrets", namespace, name))

    def namespace(self, name: str) -> Mapping[str, Any] | None:
        return self._get(("v1", "namespaces", "", name), lambda: self.kube.read_namespace(name))

    def refreshed(self, api: str, plural: str, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        """What was read afresh replaces what the sweep had read (its next pods see the object as it is now)."""
        if (api, plural, namespace, name) in self._objects or len(self._objects) < self.capacity:
            self._objects[(api, plural, namespace, name)] = body

    def cached(self, api: str, plural: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """An object this sweep has read already (None: not read, or not there)."""
        return self._objects.get((api, plural, namespace, name))


@dataclasses.dataclass(frozen=True)
class Seen:
    """What the operator saw of one stuck container, in its own memory (never read back from the cluster)."""

    first_seen: datetime.datetime
    failed_at: datetime.datetime | None  # when a retry was last seen failing (ErrImagePull again)
    reason: str
    message: str


class Remediator:
    def __init__(self, kube: KubeApi, served: ServingRegistry, reporter: Reporter, settings: Settings, clock: Clock,
                 prober: Prober) -> None:
        """``served`` and ``reporter``: the Reconciler's (what each credential serves, and its status record)."""
        self.kube, self.served, self.reporter, self.settings, self.clock = kube, served, reporter, settings, clock
        self.prober = prober
        self.limiter = RateLimiter(settings.remediations_per_minute, clock)
        # What the rate limit holds back, worked through oldest first as the window frees (work_due).
        self.backlog = Backlog(settings.remediation_backlog_size)
        # Pods whose handling failed on an API error, and sweeps whose LIST failed: tried again with back-off.
        self.retries = Retries(clock, initial=settings.retry_initial, maximum=settings.retry_max)
        # Called (from any thread) when there is new waiting work: the Runtime's work loop wakes up.
        self.notify: Callable[[], None] = lambda: None
        self._turn = threading.local()  # the backlog entry this thread is working on, if any
        self._pending_published: dict[str, int] = {}  # status.remediationsPending as last written
        self._pending_retry_at: datetime.datetime | None = None
        self._backlog_full_logged = False
        self._overflowed: set[str] = set()  # credentials whose workloads found the backlog full: swept again
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
        # Workloads restarted for a revision, by (credential, revision, namespace, kind, name): their further
        # stuck pods cost no read of the workload.
        self._done: set[tuple[str, str, str, str, str]] = set()
        # Which workload controls a ReplicaSet, by (namespace, name, uid): read again right before any action.
        self._owners: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.effect_grace = EFFECT_GRACE
        self._seen_lock = threading.Lock()
        self._lock = threading.Lock()
        self.actions: list[str] = []  # what was done, for tests and logs ("RolloutRestart Deployment shop/web")

    def reset(self) -> None:
        """Forget the waiting work and the memory of pods, decisions and probes when peering pauses this replica:
        the replica that acts meanwhile remediates and publishes, and this one starts afresh when it resumes
        (its credential loops sweep again once they serve). The rate limit's window stays: it is the cluster's."""
        with self._lock, self._seen_lock:
            self.backlog = Backlog(self.settings.remediation_backlog_size)
            self.retries = Retries(self.clock, initial=self.settings.retry_initial, maximum=self.settings.retry_max)
            self._pending_published, self._pending_retry_at = {}, None
            self._backlog_full_logged = False
            self._overflowed, self._explained, self._noted = set(), set(), set()
            self._seen, self._decided, self._probed, self._rejections, self._acted = {}, {}, {}, {}, {}

    # -- detection: which pods are looked at, and that none is lost ----------------------------------

    def sweep(self, credential: str | None = None) -> None:
        """Look at every pending pod (for one credential, or all): at start-up, when a credential is first
        served by this replica, and after its Secrets changed, pods stuck before may now be fixable.

        A failed LIST is tried again later (with back-off); a pod whose handling fails does not stop the others.
        """
        key = ("sweep", credential or "")
        if not any(credential in (None, name) for name in self.served.all()):
            self.retries.succeeded(key)  # nothing served (any more): nothing to look for
            return
        try:
            pods = self.kube.list_pending_pods()
        except Exception as error:  # an API error, or the API unreachable
            self._failed(key, f"listing pending pods for a sweep{f' of credential {credential}' if credential else ''}",
                         error)
            return
        self.retries.succeeded(key)
        reads = Reads(self.kube)  # what many pods share is read once per sweep
        handled = sum(self.handle_pod(pod, credential, reads=reads) for pod in pods)
        self.notify()  # the work loop publishes how many wait (and corrects a count a previous process left)
        logger.debug("Swept %d pending pod(s) for %s; %d handled.", len(pods), credential or "all credentials", handled)

    def handle_pod(self, pod: Mapping[str, Any], credential: str | None = None, *, reads: Reads | None = None
                   ) -> bool:
        """Diagnose one pod for every credential serving it (or only `credential`), and act.

        ``reads``: what the sweep that brings the pod has read already (ServiceAccounts, Secrets, owner chains).
        Never raises: an API error is logged and the pod is tried again later, with back-off. Returns
        whether the pod was handled (False: it failed and waits for a retry).
        """
        metadata = pod.get("metadata") or {}
        # A pod being deleted is already on its way out (a real server sends it once more with its
        # deletionTimestamp before DELETED; its ReplicaSet may be gone first in a background deletion):
        # nothing to diagnose, nothing to restart, no Event telling anyone to recreate it.
        if metadata.get("deletionTimestamp"):
            self.pod_gone(pod)
            return True
        stuck = stuck_containers(pod)
        if not stuck:
            return True
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        handled = True
        reads = reads or Reads(self.kube)  # shared by the credentials serving this pod
        for serving in self.served.all().values():
            if credential is not None and serving.name != credential:
                continue
            # Only credentials for this namespace and one of the images' registries: the others need no reads.
            if namespace not in serving.namespaces or not any(served(c.image, serving.token.hosts) for c in stuck):
                continue
            key = ("pod", namespace, name, serving.name)  # a failure is retried for this credential only
            try:
                with self._lock:  # one decision at a time: the once-per-revision record must be read fresh
                    self._handle(pod, serving, reads)
            except KubeError as error:
                self._failed(key, f"handling pod {namespace}/{name} for credential {serving.name}", error)
                handled = False
            except Exception as error:  # a bug must not lose the pod either: logged in full, tried again
                logger.exception("Handling pod %s/%s for credential %s failed.", namespace, name, serving.name)
                self._failed(key, f"handling pod {namespace}/{name}", error, logged=True)
                handled = False
            else:
                self.retries.succeeded(key)
        return handled

    def _failed(self, key: tuple[str, ...], what: str, error: Exception, *, logged: bool = False) -> None:
        due = self.retries.failed(key)
        reason = f"{error.status} {error.reason}" if isinstance(error, KubeError) else repr(error)
        if due is None:
            logger.error("Gave up %s after %d failures (last: %s); the next sweep looks at it again.", what,
                         self.retries.max_failures, reason)
        elif not logged:
            logger.warning("Failed %s (%s); trying again at %s.", what, reason, format_time(due))
        self.notify()

    # -- waiting work: retries and the rate limit's backlog ---------------------------------------------

    def next_due(self) -> datetime.datetime | None:
        """When work_due has something to do (None: nothing waits)."""
        times = [t for t in (self.retries.next_due(), self._pending_retry_at) if t is not None]
        if len(self.backlog):
            times.append(self.limiter.next_free())
        if self._pending_retry_at is None and self._pending_changes():
            times.append(self.clock.now())
        return min(times, default=None)

    def work_due(self) -> None:
        """Retry what failed and is due, let the backlog through as far as the rate limit allows, oldest
        first, and publish how many wait. Runs in the Runtime's work loop, on the active replica only."""
        for key in self.retries.due():
            if not isinstance(key, tuple):
                continue
            if key[0] == "sweep":
                self.sweep(key[1] or None)
            else:
                self._retry_pod(key)
        self._drain()
        if self._overflowed and len(self.backlog) <= self.backlog.capacity // 2:
            # What found the backlog full was not queued: now that there is room, look for it again.
            overflowed, self._overflowed = sorted(self._overflowed), set()
            self._backlog_full_logged = False
            for credential in overflowed:
                logger.info("The remediation backlog has room again: sweeping credential %s's pods again.",
                            credential)
                self.sweep(credential)
        self._publish_pending()

    def _retry_pod(self, key: tuple[str, ...]) -> None:
        _, namespace, name, credential = key
        try:
            pod = self.kube.read_pending_pod(namespace, name)
        except Exception as error:  # an API error, or the API unreachable
            self._failed(key, f"reading pod {namespace}/{name}", error)
            return
        if pod is None or not stuck_containers(pod):  # gone, or pulled meanwhile: nothing left to do
            self.retries.succeeded(key)
            return
        if self.handle_pod(pod, credential or None):  # also when the credential no longer serves it
            self.retries.succeeded(key)

    def _drain(self) -> None:
        reads = Reads(self.kube)
        while (held := self.backlog.oldest()) is not None and self.limiter.next_free() <= self.clock.now():
            self._turn.key = held.key
            self._turn.refused = False
            try:
                pod = self.kube.read_pending_pod(held.namespace, held.pod)
                if pod is not None and stuck_containers(pod):
                    # Decided again: the pod may have been fixed, the workload restarted or opted out meanwhile.
                    self.handle_pod(pod, held.credential, reads=reads)
            except Exception as error:  # the pod is retried on its own; the workload leaves the queue
                self._failed(("pod", held.namespace, held.pod, held.credential),
                             f"reading pod {held.namespace}/{held.pod}", error)
            finally:
                self._turn.key = None
            if self._turn.refused:  # the window filled up after all: it keeps its place
                break
            self.backlog.remove(held.key)
            logger.info("Took %s %s/%s (held back since %s) off the remediation backlog; %d still wait.",
                        held.kind, held.namespace, held.name, format_time(held.since), len(self.backlog))

    def _admit(self, pod: Mapping[str, Any], key: WorkloadKey, serving: Serving) -> bool:
        """The global rate limit: act now, or wait in the backlog behind the workloads already waiting
        (oldest first) — never dropped. Called with self._lock held, so admissions are one at a time."""
        turn = getattr(self._turn, "key", None) == key
        if (turn or not len(self.backlog)) and self.limiter.allow():  # nobody waits, or its turn came
            return True
        self._hold(pod, key, serving)
        return False

    def _must_wait(self, key: WorkloadKey) -> bool:
        """Whether _admit would hold the workload back now (asked without taking a slot): what has to wait
        is queued before its workload is read."""
        turn = getattr(self._turn, "key", None) == key
        return not ((turn or not len(self.backlog)) and self.limiter.next_free() <= self.clock.now())

    def _hold(self, pod: Mapping[str, Any], key: WorkloadKey, serving: Serving) -> None:
        """Queue the workload behind those already waiting (a backlog entry whose turn it is keeps its place)."""
        if getattr(self._turn, "key", None) == key:
            self._turn.refused = True
            return
        _, namespace, kind, name = key
        pod_name = str((pod.get("metadata") or {}).get("name", ""))
        if self.backlog.add(Held(*key, pod=pod_name, since=self.clock.now())):
            logger.info("Remediation of %s %s/%s waits for the rate limit (%d a minute); %d wait.", kind,
                        namespace, name, self.settings.remediations_per_minute, len(self.backlog))
        else:
            self._overflowed.add(serving.name)
            if not self._backlog_full_logged:  # once each time it fills up, not once per pod
                self._backlog_full_logged = True
                logger.error("The remediation backlog is full (%d workloads wait for the rate limit of %d a minute): "
                             "%s %s/%s and further ones are not queued now; their pods are looked at again when "
                             "half of it has been worked through.", self.backlog.capacity,
                             self.settings.remediations_per_minute, kind, namespace, name)
        self.notify()

    def _pending_changes(self) -> dict[str, int]:
        """{credential: waiting workloads} for the served credentials whose published count is out of date
        (at first, what the status says: a previous process, or replica, may have left a count there)."""
        counts = self.backlog.counts()
        serving = self.served.all()
        changes = {}
        for name, served_now in sorted(serving.items()):
            known = self._pending_published.get(name)
            if known is None:
                known = int(((served_now.credential.get("status") or {}).get("remediationsPending")) or 0)
            if known != counts.get(name, 0):
                changes[name] = counts.get(name, 0)
        return changes

    def _publish_pending(self) -> None:
        """status.remediationsPending of every credential whose count changed (a write only on a change)."""
        self._pending_retry_at = None
        for name in set(self._pending_published) - set(self.served.all()):  # deleted, or not served here
            self._pending_published.pop(name, None)
        for name, count in self._pending_changes().items():
            try:
                self.kube.patch_credential_status(name, {"remediationsPending": count})
            except KubeError as error:
                logger.warning("Could not update %s's status: %s", name, error.reason)
                self._pending_retry_at = self.clock.now() + self.settings.retry_initial
                continue
            metrics.REMEDIATIONS_PENDING.labels(name).set(count)
            self._pending_published[name] = count

    def _handle(self, pod: Mapping[str, Any], serving: Serving, reads: Reads) -> None:
        uid = (pod.get("metadata") or {}).get("uid", "")
        spec = serving.spec
        stuck = stuck_containers(pod)
        now = self.clock.now()
        self._check_effect(pod, serving, now)
        seen = {c.name: self._observe(uid, c, now) for c in stuck}
        found: list[Target] = []

        def target() -> Target:
            """The workload (or the bare pod) through the sweep's reads of the owner chain, when first needed."""
            if not found:
                found.append(read_target(pod, workload_ref(pod, reads.read), reads.read))
            return found[0]

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
            decision = self._decide(pod, container, serving, target, reads, events, seen[container.name])
            if decision.action is not Action.IGNORE:
                if len(self._decided) > 10_000:
                    self._decided.clear()
                self._decided[key] = (decision, now)
            decisions.append((container, decision))
        fixable = [d for _, d in decisions if d.action is Action.REMEDIATE]
        if fixable:
            self._remediate(pod, serving, fixable[0], reads)
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
                    self._explain(target(), serving, decision, reason=decision.reason)

    def _decide(self, pod: Mapping[str, Any], container: StuckContainer, serving: Serving,
                target: Callable[[], Target], reads: Reads, events: list[PullEvent], seen: Seen) -> Decision:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        spec = serving.spec
        account_name = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        secret = reads.secret(namespace, spec.secret_name, serving.revision) or {}
        in_place = secret_in_place(secret, serving.revision, serving.token.hosts)
        since = revision_reached(serving.since, secret)  # shared with `regcred doctor`
        # What a replacement pod will list (the template's pull secrets, else the ServiceAccount's) decides only
        # for a pod without the Secret: only then are the workload and the ServiceAccount read.
        matters = template_matters(pod, spec.secret_name)
        workload = target() if matters else None
        account = (reads.read("v1", "serviceaccounts", namespace, account_name) or {}) if matters else {}
        return decide(pod, container, served_hosts=serving.token.hosts, secret_name=spec.secret_name,
                      account_pull_secrets=[r.get("name") for r in account.get("imagePullSecrets") or []],
                      secret_in_place=in_place, probe=lambda image: self._probe(serving, image), events=events,
                      revision_since=since, first_seen=seen.first_seen, failed_at=seen.failed_at,
                      template_pull_secrets=template_pull_secrets(workload.body)
                      if workload is not None and workload.kind != "Pod" else None)

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
            if len(self._probed) > 1_000:  # bounded: the expired answers go first, then all
                self._probed = {k: v for k, v in self._probed.items() if now - v[1] < PROBE_MEMORY}
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
        message = redact(f"The registry ({hosts}) rejects the credential in place (revision {serving.revision[:12]}): "
                         f"{len(pods)} pod(s) failed with it, e.g. {sample}; {decision.why} Fix the credential's "
                         "source; no workload is restarted for this revision.",
                         credentials=[(serving.token.username, serving.token.password)], limit=MAX_EVENT_MESSAGE)
        self.served.reject(serving.name, serving.revision)
        self.reporter.rejected(serving.name, True)
        try:
            self.reporter.publish_condition(serving.credential, Condition(
                CREDENTIAL_REJECTED, "True", "RegistryRejected", message))
        except KubeError as error:
            logger.warning("Could not update %s's status: %s", serving.name, error.reason)
        if first:
            logger.warning("%s", message)
            self._post_credential(serving, "Warning", CREDENTIAL_REJECTED_REASON, message)

    def _remediate(self, pod: Mapping[str, Any], serving: Serving, decision: Decision, reads: Reads, *,
                   again: bool = False) -> None:
        """Repair the pod's workload. What needs no read is asked first (this process's record of the revision
        done, what this sweep has read of the workload, the rate limit and its backlog: what has to wait is
        queued unread); the owner chain, the workload and its namespace are read afresh right before acting."""
        spec, now = serving.spec, self.clock.now()
        namespace = str((pod.get("metadata") or {}).get("namespace", ""))
        ref = self._workload_ref(pod, reads)
        if isinstance(ref, Target):  # the bare pod, or an ownerless ReplicaSet as this sweep read it
            known: Target | None = ref
            kind_name, name = ref.kind, ref.name
        else:
            kind_name, name = ref
            body = reads.cached(KINDS[kind_name].api, KINDS[kind_name].plural, namespace, name)
            known = Target(kind_name, body) if body is not None else None
        news = self._first_time((spec.name, serving.revision, kind_name, namespace, name))
        if (spec.name, serving.revision, namespace, kind_name, name) in self._done:
            logger.debug("Not remediating %s %s/%s again: it was restarted for this credential revision.",
                         kind_name, namespace, name)
            return
        if known is not None and self._plan(pod, known, reads.namespace(namespace), serving, decision, news) is None:
            return
        key: WorkloadKey = (serving.name, namespace, kind_name, name)
        if self._must_wait(key):  # held back by the global rate limit: queued (never dropped), not read
            self._hold(pod, key, serving)
            return
        # Fresh: the owner chain, the once-per-revision record, the opt-outs and the workload as they are now.
        def fresh(api: str, plural: str, namespace: str, name: str) -> Mapping[str, Any] | None:
            body = self.kube.read_namespaced(api, plural, namespace, name)
            reads.refreshed(api, plural, namespace, name, body)
            return body

        now_ref = workload_ref(pod, fresh)
        if _identity(now_ref) != (kind_name, name):  # the chain changed since it was read: judged as it is now
            self._forget_owner(pod)
            if not again:
                self._remediate(pod, serving, decision, reads, again=True)
            return
        target = read_target(pod, now_ref, fresh)
        if target.kind == "Pod":  # gone: said of the pod itself, once
            news = self._first_time((spec.name, serving.revision, "Pod", namespace, target.name))
        fresh_namespace = self.kube.read_namespace(namespace)
        reads.refreshed("v1", "namespaces", "", namespace, fresh_namespace)
        how = self._plan(pod, target, fresh_namespace, serving, decision, news)
        if how is None:
            return
        if not self._admit(pod, key, serving):
            return
        kind = KINDS[target.kind]
        action, delete = how.action, how.delete_pod
        where = target.where
        note = f" {how.note}" if how.note else ""
        if spec.remediation_dry_run:
            self._record(target, serving, "DryRun", decision, None,
                         f"Would {_verb(action or '')} {where}: {decision.why}{note}")
            return
        pod_meta = pod.get("metadata") or {}
        pod_uid = str(pod_meta.get("uid", ""))
        if delete and not self._first_time(("deleted", pod_uid)):
            return
        if action == "RolloutRestart":
            self.kube.patch_namespaced(kind.api, kind.plural, target.namespace, target.name,
                                       rollout_patch(target.body, spec.name, serving.revision, now))
        else:
            self.kube.patch_namespaced(kind.api, kind.plural, target.namespace, target.name,
                                       record_patch(target.body, spec.name, serving.revision, now))
        if action != "DeletePods":
            self._remember_done(spec.name, serving.revision, target)
        if delete:
            self.kube.delete_pod(pod_meta.get("namespace", ""), pod_meta.get("name", ""), pod_meta.get("uid"))
        else:  # a rollout replaces the stuck pod only if it progresses: checked when the pod is seen again
            with self._seen_lock:
                if len(self._acted) > 10_000:
                    self._acted.clear()
                self._acted[(spec.name, pod_uid)] = (now, target)
        detail = " and deleted its stuck pod" if delete and action == "RolloutRestart" else ""
        # Done once the stuck pod is gone: at once when it was deleted here, when the rollout removes it otherwise.
        self._record(target, serving, action or "", decision, result=REPLACED if delete else PENDING, message=
                     f"{'Restarted' if action == 'RolloutRestart' else 'Deleted the stuck pod of'} {where}{detail} "
                     f"to use the fresh credential of RegistryCredential {spec.name}: {decision.why}{note}")

    def _workload_ref(self, pod: Mapping[str, Any], reads: Reads) -> Target | tuple[str, str]:
        """`workload_ref`, with this process's memory of which workload controls a ReplicaSet (by its uid): a pod
        whose decision is remembered costs no read until its workload may be acted on (then read afresh)."""
        key = _replicaset_of(pod)
        if key is not None:
            with self._seen_lock:
                remembered = self._owners.get(key)
            if remembered is not None:
                return remembered
        ref = workload_ref(pod, reads.read)
        if key is not None and not isinstance(ref, Target):
            with self._seen_lock:
                if len(self._owners) > 10_000:
                    self._owners.clear()
                self._owners[key] = ref
        return ref

    def _forget_owner(self, pod: Mapping[str, Any]) -> None:
        key = _replicaset_of(pod)
        with self._seen_lock:
            self._owners.pop(key or ("", "", ""), None)

    def _plan(self, pod: Mapping[str, Any], target: Target, namespace: Mapping[str, Any] | None, serving: Serving,
              decision: Decision, news: bool) -> Plan | None:
        """How to repair the workload, or None when it is not to be touched (said once, when `news`): turned
        off or opted out, a bare pod, harm in deleting, this pod deleted already, or done for this revision
        (its record) or within the cooldown."""
        spec = serving.spec
        where = target.where
        if spec.remediation_strategy == "None" or opted_out(target.body, namespace):
            if news:
                self._count_and_explain(target, serving, decision, f"{decision.why} Remediation is turned off for "
                                        f"{where}; restart it to use the fresh credential.",
                                        event_reason="NotRemediated")
            return None
        if target.kind == "Pod":
            if news:
                self._explain(target, serving, decision, reason="NotRemediated", message=(
                    f"{decision.why} The pod has no controller to recreate it, so regcred-operator does not "
                    "delete it; delete and recreate it to use the fresh credential."))
            return None
        how = plan(target.kind, target.body, pod, spec.remediation_strategy)
        if how.action is None:  # deleting the stuck pod would do harm (a Job without retries to spare)
            if news:
                self._count_and_explain(target, serving, decision, f"{decision.why} {how.note}",
                                        event_reason="NotRemediated")
            return None
        pod_uid = str((pod.get("metadata") or {}).get("uid", ""))
        if how.delete_pod and ("deleted", pod_uid) in self._noted:
            return None  # this very pod was deleted already (the sweep and the watch can both bring it)
        per_pod = how.action == "DeletePods"
        skip = already_done(target.body, spec.name, serving.revision, self.clock.now(), spec.remediation_cooldown,
                            per_pod=per_pod)
        if skip is not None:
            logger.debug("Not remediating %s again: %s.", where, skip)
            if not per_pod and (remediations_of(target.body).get(spec.name) or {}).get("revision") == serving.revision:
                self._remember_done(spec.name, serving.revision, target)
            return None
        return how

    def _remember_done(self, credential: str, revision: str, target: Target) -> None:
        """This process's record that the workload was restarted for the revision: its other stuck pods are not
        read again for it (the record on the workload stays the authority: it is read before any action)."""
        with self._seen_lock:
            if len(self._done) > 10_000:
                self._done.clear()
            self._done.add((credential, revision, target.namespace, target.kind, target.name))

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
        self._settle(serving.name, target, INEFFECTIVE)

    def pod_gone(self, pod: Mapping[str, Any]) -> None:
        """A pod was deleted (or is being deleted). If a rollout was made for it and its workload is still
        there, the rollout took effect: its status entry is settled as Replaced. A pod that goes with its
        workload (deleted by someone) settles nothing. Never raises."""
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        with self._seen_lock:
            gone = [(key, acted) for key, acted in self._acted.items() if key[1] == uid]
            for key, _ in gone:
                del self._acted[key]
        for (credential, _), (_, target) in gone:
            kind = KINDS[target.kind]
            try:
                workload = self.kube.read_namespaced(kind.api, kind.plural, target.namespace, target.name)
            except KubeError as error:
                logger.warning("Could not read %s %s/%s: %s", target.kind, target.namespace, target.name,
                               error.reason)
                continue
            if workload is None or (workload.get("metadata") or {}).get("deletionTimestamp"):
                continue
            with self._lock:  # status read-modify-writes one at a time (_record writes the same list)
                self._settle(credential, target, REPLACED)

    def _settle(self, credential: str, target: Target, result: str) -> None:
        """The newest Pending remediation of this workload in the credential's status gets its result."""
        def change(status: Mapping[str, Any]) -> dict[str, Any]:
            entries = [dict(e) for e in status.get("remediations") or [] if isinstance(e, Mapping)]
            for entry in entries:
                if (entry.get("namespace"), entry.get("kind"), entry.get("name"), entry.get("result")) == (
                        target.namespace, target.kind, target.name, PENDING):
                    entry["result"] = result
                    break
            return {"remediations": entries}
        self._update_status(credential, change)

    def _first_time(self, key: tuple[str, ...]) -> bool:
        """Whether this is news (one Event per workload and revision, not one per pod status update)."""
        with self._seen_lock:
            if key in self._noted:
                return False
            if len(self._noted) > 10_000:
                self._noted.clear()
            self._noted.add(key)
            return True

    def _record(self, target: Target, serving: Serving, action: str, decision: Decision, result: str | None,
                message: str) -> None:
        now = format_time(self.clock.now())
        self.actions.append(f"{action} {target.kind} {target.namespace}/{target.name}")
        logger.info("%s", message)
        reason = "Remediated" if action != "DryRun" else "RemediationDryRun"
        self._post(target, "Normal", reason, message)
        self._post_credential(serving, "Normal", reason, message)
        if action != "DryRun":
            metrics.REMEDIATIONS.labels(serving.name, action, str(decision.cause)).inc()
        entry = {"time": now, "namespace": target.namespace, "kind": target.kind, "name": target.name,
                 "action": action, "reason": str(decision.cause), **({"result": result} if result else {})}
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
            self.reporter.post_credential_event(serving.credential, type_, reason, message,
                                                format_time(self.clock.now()))
        except KubeError as error:
            logger.warning("Could not post Event %s: %s", reason, error.reason)


def sweep_needed(before: Serving | None, after: Serving | None, writes: int, *, swept: bool) -> bool:
    """Whether a reconciliation calls for a sweep of the credential's stuck pods: the first time it is served
    since this replica started or took over (pod events before that found nothing to serve them), a new
    revision (a refresh), namespaces newly served, or Secrets written (restored, or created)."""
    if after is None:
        return False
    return (not swept or before is None or writes > 0 or before.revision != after.revision
            or not after.namespaces <= before.namespaces)


def _identity(ref: Target | tuple[str, str]) -> tuple[str, str]:
    return (ref.kind, ref.name) if isinstance(ref, Target) else ref


def _replicaset_of(pod: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(namespace, name, uid) of the ReplicaSet controlling the pod, if one does."""
    metadata = pod.get("metadata") or {}
    for ref in metadata.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller"):
            if ref.get("kind") == "ReplicaSet" and ref.get("uid"):
                return str(metadata.get("namespace", "")), str(ref.get("name", "")), str(ref["uid"])
            return None
    return None


def _verb(action: str) -> str:
    return "restart" if action == "RolloutRestart" else "delete the stuck pods of"

