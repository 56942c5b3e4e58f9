"""Why is a pod stuck pulling, and would a restart with the credential in place fix it? Pure functions over API dicts.

The decision (docs/decisions.md, "Remediate only when a fresh credential will fix it"): act only when
(a) the image's registry is one this credential serves,
(b) the cause is credential-shaped (unauthorized, forbidden, secret_missing, or the pod lacks the pull
secret its ServiceAccount now carries) or ambiguous/unknown and a probe with the credential in place
shows the image can be pulled, (c) the credential in place is in the namespace, and (d) the Secret a
new pod will use differs from the one the stuck pod failed with: the failure happened before the
current revision was written (see `failure_timing`), or the pod lacks a Secret that admission will
add to its replacement. A pod that failed with the current revision, when a probe with that revision
is refused too, is evidence that the credential itself is bad: that is reported on the credential
(`Action.REJECTED`), not "fixed" by restarts. Everything else is explained, never restarted.

Everything read here is tenant-writable (pod messages, Events): texts are cut to `MAX_TEXT`, at most
`MAX_EVENTS` Events are looked at, and a forged Event can at worst make its own pod's workload restart
once per credential revision.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from regcred import dockerconfig as dc
from regcred.classify import CREDENTIAL_CATEGORIES, Category, Classification, classify
from regcred.fanout import CONTENT_HASH_ANNOTATION, format_time, parse_time
from regcred.imageref import ImageRef, InvalidImageReference
from regcred.probe import ProbeResult, Verdict

PULL_WAITING_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})
MAX_TEXT = 4096  # characters of a tenant-writable message that are looked at
MAX_EVENTS = 50  # a pod's Failed Events looked at (the kubelet aggregates repeats into one Event with a count)

# The kubelet's texts (pkg/kubelet/images/image_manager.go, EnsureImageExists): a failed pull posts a
# Warning Event, reason "Failed" (events.FailedToPullImage), message `Failed to pull image "<image>": <err>`;
# while the pull backs off, the waiting message is `Back-off pulling image "<image>"`. From v1.32
# (kubernetes/kubernetes PR 127918) the back-off message carries the stored pull error as well:
# `Back-off pulling image "<image>": <ErrImagePull|ErrRegistryUnavailable|...>: <err>`
# (m.prevPullErrMsg.Store(backOffKey, fmt.Sprintf("%s: %s", err, msg))).
FAILED_PREFIX = 'Failed to pull image "'
BACKOFF_PREFIX = 'Back-off pulling image "'


@dataclasses.dataclass(frozen=True)
class StuckContainer:
    name: str
    image: str
    reason: str  # the kubelet's waiting reason
    message: str


def stuck_containers(pod: Mapping[str, Any]) -> list[StuckContainer]:
    """The containers (init containers included) the kubelet reports as failing to pull."""
    status = pod.get("status") or {}
    found = []
    for entry in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (entry.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PULL_WAITING_REASONS:
            found.append(StuckContainer(str(entry.get("name", ""))[:253], str(entry.get("image", ""))[:MAX_TEXT],
                                        waiting["reason"], str(waiting.get("message") or "")[:MAX_TEXT]))
    return found


def served(image: str, hosts: Sequence[str]) -> bool:
    """Whether a pull secret with `auths` for these hosts applies to this image (as the kubelet matches)."""
    try:
        return bool(ImageRef.parse(image).matching_auth_keys(hosts))
    except InvalidImageReference:
        return False


# -- the pull error behind a stuck container --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PullEvent:
    """One of the kubelet's `Failed to pull image` Events of a pod: the image, the error, when it last happened."""

    image: str
    error: str
    time: datetime.datetime | None


def pull_events(events: Iterable[Mapping[str, Any]]) -> list[PullEvent]:
    """The pull failures among a pod's Events (reason Failed), newest first, at most MAX_EVENTS looked at."""
    found = []
    for index, event in enumerate(events):
        if index >= MAX_EVENTS:
            break
        message = str(event.get("message") or "")[:MAX_TEXT]
        if event.get("reason") != "Failed" or not message.startswith(FAILED_PREFIX):
            continue
        image, sep, error = message[len(FAILED_PREFIX):].partition('": ')
        if not sep:
            continue
        series = event.get("series") or {}
        # An aggregated Event moves lastTimestamp (core/v1) or series.lastObservedTime (events.k8s.io/v1).
        time = max(filter(None, (parse_time(event.get("lastTimestamp")), parse_time(series.get("lastObservedTime")),
                                 parse_time(event.get("eventTime")), parse_time(event.get("firstTimestamp")))),
                   default=None)
        found.append(PullEvent(image, error, time))
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return sorted(found, key=lambda e: e.time or epoch, reverse=True)


def _same_image(a: str, b: str) -> bool:
    try:
        return a == b or ImageRef.parse(a) == ImageRef.parse(b)
    except InvalidImageReference:
        return False


def pull_error(stuck: StuckContainer, events: Sequence[PullEvent]) -> tuple[str, PullEvent | None]:
    """The text that says why the pull failed, and the newest Failed Event for this container's image.

    The waiting message, unless it is only the back-off notice: then the pull error a v1.32+ kubelet
    appends to it, or else (before v1.32) the newest Failed Event's error. "" when none says more.
    """
    newest = next((e for e in events if _same_image(e.image, stuck.image)), None)
    message = stuck.message
    if message.startswith(BACKOFF_PREFIX):
        _image, sep, rest = message[len(BACKOFF_PREFIX):].partition('": ')
        if sep and rest:  # v1.32+: "<ErrImagePull>: <the pull error>"
            kind, sep, error = rest.partition(": ")
            return (error if sep and kind.startswith("Err") else rest), newest
        return (newest.error if newest is not None else ""), newest
    return message or (newest.error if newest is not None else ""), newest


# -- when did it fail: before or after the credential in place was written? --------------------------------


class Timing(enum.StrEnum):
    BEFORE = "before"  # the pod failed before the current revision was in place: a new pod uses another Secret
    CURRENT = "current"  # it failed with the current revision in place: a new pod would use the same one
    UNKNOWN = "unknown"


def failure_timing(
    *, failed_at: datetime.datetime | None, first_seen: datetime.datetime | None,
    created_at: datetime.datetime | None, revision_since: datetime.datetime | None,
) -> Timing:
    """Whether the pod's last failed pull came before the current credential revision was written.

    ``failed_at`` is the newest known failed pull: the newest Failed Event's time (second precision,
    the node's clock), or when the operator saw the container turn to ErrImagePull again.
    ``first_seen`` is when the operator first saw the container failing (its own memory: an upper
    bound of the failure, so it proves only "before"). ``created_at`` is the pod's creationTimestamp,
    set by the API server: a pod created after the revision was written never had another one.
    ``revision_since`` is when the operator wrote the current revision (its own record, Serving.since).
    A time within the revision's second is not decisive either way.
    """
    if revision_since is None:
        return Timing.UNKNOWN
    since = revision_since.replace(microsecond=0)
    after = since + datetime.timedelta(seconds=1)
    if failed_at is not None:
        if failed_at < since:
            return Timing.BEFORE
        if failed_at >= after:
            return Timing.CURRENT
    if first_seen is not None and first_seen < revision_since:
        return Timing.BEFORE
    if created_at is not None and created_at >= after:
        return Timing.CURRENT
    return Timing.UNKNOWN


# -- the credential in place, as the operator and `regcred doctor` both read it --------------------------------


def secret_in_place(secret: Mapping[str, Any] | None, revision: str | None, hosts: Sequence[str] = ()) -> bool:
    """Whether the namespace's Secret holds this revision of the entries of these hosts (a Secret may hold other
    credentials' entries too, regcred.shared), judged by its content (a tenant can write the annotations of
    its copy); with revision None, whether it holds content as the operator wrote it (the content and its
    content-hash annotation agree)."""
    content = dc.decode_data(secret or {})
    if content is None:
        return False
    if revision is not None:
        return (dc.member_revision(content, hosts) if hosts else dc.content_hash(content)) == revision
    written = (((secret or {}).get("metadata") or {}).get("annotations") or {}).get(CONTENT_HASH_ANNOTATION)
    return written == dc.content_hash(content)


def revision_reached(since: datetime.datetime | None, secret: Mapping[str, Any] | None) -> datetime.datetime | None:
    """When the revision reached the namespace: when the operator made it (its own record, published as
    status.lastRefreshTime), or when the Secret there was created (set by the API server; a Secret restored,
    or a namespace selected later), whichever is later."""
    created = parse_time(((secret or {}).get("metadata") or {}).get("creationTimestamp"))
    return max(filter(None, (since, created)), default=None)


# -- the decision --------------------------------------------------------------------------------------------


class Action(enum.StrEnum):
    REMEDIATE = "remediate"  # a restart with the credential in place will fix it
    EXPLAIN = "explain"  # our registry, but a restart would not help: say why on the workload
    REJECTED = "rejected"  # the credential in place is refused by its registry: report it on the credential
    IGNORE = "ignore"  # not this credential's registry (or not yet in place): none of our business


# The Event reason that goes with an explanation.
RESTART_WOULD_NOT_HELP = "RestartWouldNotHelp"
PULL_SECRET_NOT_IN_TEMPLATE = "PullSecretNotInTemplate"  # noqa: S105 - an Event reason
CREDENTIAL_REJECTED = "CredentialRejected"


@dataclasses.dataclass(frozen=True)
class Decision:
    action: Action
    cause: Category
    ambiguous: bool
    why: str  # a sentence for Events and status
    reason: str = RESTART_WOULD_NOT_HELP  # the Event reason of an explanation
    timing: Timing = Timing.UNKNOWN


def template_matters(pod: Mapping[str, Any], secret_name: str) -> bool:
    """Whether `decide` needs what a replacement pod will list (the template's imagePullSecrets, and the
    ServiceAccount's): only when the pod does not list the credential's Secret itself (with it listed, neither
    changes the decision)."""
    return secret_name not in _names((pod.get("spec") or {}).get("imagePullSecrets"))


def decide(
    pod: Mapping[str, Any],
    stuck: StuckContainer,
    *,
    served_hosts: Sequence[str],
    secret_name: str,
    account_pull_secrets: Iterable[str],
    secret_in_place: bool,
    probe: Callable[[ImageRef], ProbeResult] | None = None,
    events: Sequence[PullEvent] = (),
    revision_since: datetime.datetime | None = None,
    first_seen: datetime.datetime | None = None,
    failed_at: datetime.datetime | None = None,
    template_pull_secrets: Sequence[str] | None = None,
) -> Decision:
    """What to do about one stuck container, for one credential.

    ``events`` are the pod's kubelet pull failures (`pull_events`), newest first: the cause when the
    status says only "Back-off", and the time of the last failure. ``probe`` checks the image with the
    credential in place. ``template_pull_secrets`` are the imagePullSecrets of the pod template that
    will make the pod's replacement (None: no controller, the pod's own list stands for it).
    """
    try:
        image = ImageRef.parse(stuck.image)
    except InvalidImageReference as error:
        return Decision(Action.IGNORE, Category.INVALID_REFERENCE, False, f"{error}")
    message, newest = pull_error(stuck, events)
    classification = classify(message, stuck.reason if message else None)
    if not image.matching_auth_keys(served_hosts):
        return Decision(Action.IGNORE, classification.category, classification.ambiguous,
                        f"{image.registry} is not a registry this credential serves.")

    pod_secrets = _names((pod.get("spec") or {}).get("imagePullSecrets"))
    account = [str(n) for n in account_pull_secrets if n]
    template = pod_secrets if template_pull_secrets is None else [str(n) for n in template_pull_secrets]
    # The ServiceAccount admission plugin copies the account's imagePullSecrets into a pod only when the
    # pod lists none (plugin/pkg/admission/serviceaccount/admission.go: `if len(pod.Spec.ImagePullSecrets)
    # == 0`), so a replacement gets our Secret from its template's list, or from the account's when that is empty.
    has = secret_name in pod_secrets
    will_get = secret_name in template if template else secret_name in account
    lacks_secret = not has and will_get
    cause = _cause_sentence(image, classification, lacks_secret, secret_name)
    category, ambiguous = classification.category, classification.ambiguous
    unknown = category is Category.UNKNOWN
    credential_shaped = category in CREDENTIAL_CATEGORIES and not ambiguous

    def explain(why: str, reason: str = RESTART_WOULD_NOT_HELP, timing: Timing = Timing.UNKNOWN) -> Decision:
        return Decision(Action.EXPLAIN, category, ambiguous, why, reason, timing)

    # A pod without our Secret may have been told "not found" for a private image: the registry settles it.
    if not (credential_shaped or ambiguous or unknown or (lacks_secret and category is Category.NOT_FOUND)):
        return explain(f"{cause} A restart would not help.")
    if not has and not will_get:
        if template:
            return explain(
                f"{cause} The pod template lists its own imagePullSecrets ({', '.join(template[:5])}) without "
                f"{secret_name}, and the ServiceAccount admission plugin adds the ServiceAccount's pull secrets "
                f"only to pods that list none, so a restarted pod would not get {secret_name} either. Add "
                f"{secret_name} to the template's imagePullSecrets, or remove the template's list.",
                PULL_SECRET_NOT_IN_TEMPLATE)
        return explain(f"{cause} The pod does not use {secret_name} and its ServiceAccount does not carry it, "
                       "so a restart would not help.")
    if not secret_in_place:
        return Decision(Action.IGNORE, category, ambiguous, f"{cause} The fresh Secret is not in place yet.")
    if lacks_secret:  # its replacement gets a Secret it did not have: that changed, whenever it failed
        timing, when = Timing.BEFORE, ""
    else:
        timing = failure_timing(
            failed_at=max(filter(None, (failed_at, newest.time if newest else None)), default=None),
            first_seen=first_seen, created_at=parse_time((pod.get("metadata") or {}).get("creationTimestamp")),
            revision_since=revision_since)
        when = (f" It failed before the credential in place was written ({format_time(revision_since)})."
                if timing is Timing.BEFORE and revision_since is not None else "")
    if timing is Timing.BEFORE and credential_shaped:
        return Decision(Action.REMEDIATE, category, ambiguous, cause + when, timing=timing)
    # Failed with the credential in place, or not known when, or a cause the message does not give: the
    # registry, asked with the credential in place, settles it.
    if probe is None:
        return explain(f"{cause} {_undecided(timing, ambiguous, unknown)}", timing=timing)
    result = probe(image)
    if result.ok:
        if timing is Timing.CURRENT:
            return explain(f"{cause} It failed with the credential in place, and a probe with that credential "
                           f"can pull {image}, so a restart would not change the Secret the pod uses.", timing=timing)
        return Decision(Action.REMEDIATE, category, ambiguous,
                        f"{cause}{when} A probe with the credential in place can pull {image}.", timing=timing)
    if result.verdict in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN):
        rejected = Category.UNAUTHORIZED if result.verdict is Verdict.UNAUTHORIZED else Category.FORBIDDEN
        return Decision(Action.REJECTED, rejected, False,
                        f"{cause} A probe with the credential in place is refused too ({result.detail}): the "
                        "credential itself is rejected, and a restart would not help.", CREDENTIAL_REJECTED, timing)
    if result.verdict is Verdict.NOT_FOUND:
        return Decision(Action.EXPLAIN, Category.NOT_FOUND if unknown else category, ambiguous,
                        f"{cause} A probe with the credential in place says: {result.detail} A restart would not help.",
                        RESTART_WOULD_NOT_HELP, timing)
    return explain(f"{cause} A probe with the credential in place says: {result.detail}", timing=timing)


def _undecided(timing: Timing, ambiguous: bool, unknown: bool) -> str:
    if ambiguous:
        return "The message does not tell a missing image from a private one."
    if unknown:
        return "Neither the pod's status nor its Events say why the pull failed."
    if timing is Timing.CURRENT:
        return "It failed with the credential in place, so a restart would not change the Secret the pod uses."
    return "It is not known whether it failed before the credential in place was written."


def _names(refs: object) -> list[str]:
    if not isinstance(refs, list):
        return []
    return [str(ref.get("name"))[:253] for ref in refs[:100] if isinstance(ref, Mapping) and ref.get("name")]


def _cause_sentence(image: ImageRef, classification: Classification, lacks_secret: bool, secret_name: str) -> str:
    texts = {
        Category.NOT_FOUND: f"{image.reference} does not exist in {image.registry}/{image.repository}.",
        Category.UNAUTHORIZED: f"{image.registry} refused the pod's credentials for {image}.",
        Category.FORBIDDEN: f"{image.registry} denied access to {image} for the pod's credentials.",
        Category.SECRET_MISSING: f"A pull secret of the pod is missing, so {image} is pulled without it.",
        Category.RATE_LIMITED: f"{image.registry} is rate-limiting pulls of {image}.",
        Category.UNREACHABLE: f"{image.registry} cannot be reached from the node.",
        Category.TLS: f"The TLS connection to {image.registry} fails.",
        Category.INVALID_REFERENCE: f"{image} is not a valid image reference.",
        Category.PLATFORM: f"{image} has no variant for the node's platform.",
        Category.REGISTRY_SERVER_ERROR: f"{image.registry} answers with server errors.",
    }
    sentence = texts.get(classification.category, f"Pulling {image} fails ({classification.category}).")
    if lacks_secret:
        lacking = (f"The pod was created before its ServiceAccount carried {secret_name}, so it pulls {image} "
                   "without it.")
        if classification.category in CREDENTIAL_CATEGORIES or classification.category is Category.UNKNOWN:
            return lacking
        return f"{sentence} {lacking}"
    return f"{sentence} (kubelet: {classification.evidence})" if classification.evidence else sentence
