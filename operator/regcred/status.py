"""The public status of a RegistryCredential: conditions by the Kubernetes API conventions, and counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from regcred.redact import redact

# Conditions. `Ready` summarises the finer ones.
READY = "Ready"
TOKEN_READY = "TokenReady"  # noqa: S105 - a valid token is in hand (freshly minted or reused from the written Secrets)
SECRETS_SYNCED = "SecretsSynced"  # every selected namespace holds the current Secret
TOKEN_EXPIRING = "TokenExpiring"  # noqa: S105 - a user-managed token (a GitHub PAT) lapses soon: a person must replace it
VERIFIED = "Verified"  # the last freshly minted token could pull spec.verify.image
# Pods fail with the revision in place and a probe with it is refused too: the credential itself is bad.
CREDENTIAL_REJECTED = "CredentialRejected"
MAX_REJECTION_SAMPLE = 5  # pods named as evidence in the CredentialRejected condition

MAX_FAILED_NAMESPACES = 50  # a bounded sample: status is no place for thousands of names
MAX_MESSAGE = 32_768  # metav1.Condition's limit on a message


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str  # True | False | Unknown
    reason: str  # CamelCase
    message: str  # a sentence


def merge_conditions(
    current: Sequence[Mapping[str, Any]], new: Sequence[Condition], *, now: str, generation: int | None
) -> list[dict[str, Any]]:
    """Conditions with `new` applied: lastTransitionTime moves only when a condition's status changes.

    Every message is scrubbed of the secrets the operator holds here, where status is written.
    """
    previous = {c.get("type"): c for c in current}
    merged: list[dict[str, Any]] = []
    for condition in new:
        before = previous.pop(condition.type, None)
        transitioned = before is None or before.get("status") != condition.status
        entry = {
            "type": condition.type,
            "status": condition.status,
            "reason": condition.reason,
            "message": redact(condition.message, limit=MAX_MESSAGE),
            "lastTransitionTime": now if transitioned or before is None else before.get("lastTransitionTime", now),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
    merged.extend(dict(c) for c in previous.values())  # conditions owned by other features stay
    return merged


def find_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_:
            return condition  # type: ignore[no-any-return]
    return None


@dataclasses.dataclass(frozen=True)
class FailedNamespace:
    namespace: str
    reason: str  # CamelCase: SecretConflict, Forbidden, WriteFailed, ...
    message: str
    retry_after: float | None = dataclasses.field(default=None, compare=False)  # what the API server asked

    def as_status(self) -> dict[str, str]:
        return {"namespace": self.namespace, "reason": self.reason, "message": self.message}


def summarise_failures(failed: Sequence[FailedNamespace]) -> Condition:
    """The SecretsSynced condition from the namespaces that could not be written."""
    if not failed:
        return Condition(SECRETS_SYNCED, "True", "AllNamespacesSynced", "Every selected namespace has the Secret.")
    conflicts = [f for f in failed if f.reason == "SecretConflict"]
    others = len(failed) - len(conflicts)
    parts = []
    if conflicts:
        sample = ", ".join(f.namespace for f in conflicts[:5])
        parts.append(
            f"{len(conflicts)} namespace(s) already have a Secret of that name that regcred-operator does not "
            f"manage (e.g. {sample}); rename spec.secretName or delete those Secrets"
        )
    if others:
        sample = ", ".join(f.namespace for f in failed if f.reason != "SecretConflict")
        parts.append(f"{others} namespace(s) could not be written ({sample[:200]}); see status.failedNamespaces")
    reason = "SecretConflict" if conflicts and not others else "NamespacesFailed"
    return Condition(SECRETS_SYNCED, "False", reason, "; ".join(parts) + ".")
