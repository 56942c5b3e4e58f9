"""Why is a pod stuck pulling, and would a fresh credential fix it? Pure functions over API dicts.

The decision follows DESIGN.md: act only when (a) the image's registry is one this credential serves,
(b) the cause is credential-shaped (unauthorized, forbidden, secret_missing, or the pod lacks the pull
secret its ServiceAccount now carries) or ambiguous and a probe with the fresh credential shows the
image exists, and (c) the fresh Secret is in place. Everything else is explained, never restarted.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from regcred.classify import CREDENTIAL_CATEGORIES, Category, Classification, classify
from regcred.imageref import ImageRef, InvalidImageReference
from regcred.probe import ProbeResult

PULL_WAITING_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})


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
            found.append(StuckContainer(entry.get("name", ""), entry.get("image", ""), waiting["reason"],
                                        waiting.get("message") or ""))
    return found


def served(image: str, hosts: Sequence[str]) -> bool:
    """Whether a pull secret with `auths` for these hosts applies to this image (as the kubelet matches)."""
    try:
        return bool(ImageRef.parse(image).matching_auth_keys(hosts))
    except InvalidImageReference:
        return False


class Action(enum.StrEnum):
    REMEDIATE = "remediate"  # a restart with the fresh credential will fix it
    EXPLAIN = "explain"  # our registry, but a restart would not help: say why on the workload
    IGNORE = "ignore"  # not this credential's registry: none of our business


@dataclasses.dataclass(frozen=True)
class Decision:
    action: Action
    cause: Category
    ambiguous: bool
    why: str  # a sentence for Events and status


def decide(
    pod: Mapping[str, Any],
    stuck: StuckContainer,
    *,
    served_hosts: Sequence[str],
    secret_name: str,
    account_pull_secrets: Iterable[str],
    secret_in_place: bool,
    probe: Callable[[ImageRef], ProbeResult] | None = None,
    events: Sequence[str] = (),
) -> Decision:
    """What to do about one stuck container, for one credential.

    ``events`` are the messages of the pod's recent Failed/BackOff Events, used when the container
    status carries no message. ``probe`` checks the image with the fresh credential (ambiguous causes).
    """
    message = stuck.message or next((e for e in events if e), "")
    classification = classify(message, stuck.reason)
    try:
        image = ImageRef.parse(stuck.image)
    except InvalidImageReference as error:
        return Decision(Action.IGNORE, Category.INVALID_REFERENCE, False, f"{error}")
    if not image.matching_auth_keys(served_hosts):
        return Decision(Action.IGNORE, classification.category, classification.ambiguous,
                        f"{image.registry} is not a registry this credential serves.")

    pod_secrets = {ref.get("name") for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []}
    lacks_secret = secret_name not in pod_secrets and secret_name in set(account_pull_secrets)
    why = _cause_sentence(image, classification, lacks_secret, secret_name)
    # Words registries use for both "missing" and "private" decide nothing: the registry itself does.
    credential_shaped = lacks_secret or (
        classification.category in CREDENTIAL_CATEGORIES and not classification.ambiguous)
    if not lacks_secret and classification.ambiguous:
        if probe is None:
            return Decision(Action.EXPLAIN, classification.category, True,
                            f"{why} The message does not tell a missing image from a private one.")
        result = probe(image)
        if not result.ok:
            return Decision(Action.EXPLAIN, classification.category, True,
                            f"{why} A probe with the fresh credential says: {result.detail}")
        credential_shaped = True
        why = f"{why} A probe with the fresh credential can pull {image}."
    if not credential_shaped:
        return Decision(Action.EXPLAIN, classification.category, classification.ambiguous,
                        f"{why} A restart would not help.")
    if not secret_in_place:
        return Decision(Action.IGNORE, classification.category, classification.ambiguous,
                        f"{why} The fresh Secret is not in place yet.")
    return Decision(Action.REMEDIATE, classification.category, classification.ambiguous, why)


def _cause_sentence(image: ImageRef, classification: Classification, lacks_secret: bool, secret_name: str) -> str:
    if lacks_secret:
        return (f"The pod was created before its ServiceAccount carried {secret_name}, so it pulls {image} "
                "without it.")
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
    return f"{sentence} (kubelet: {classification.evidence})" if classification.evidence else sentence
