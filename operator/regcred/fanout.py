"""What to write where: desired pull Secrets and ServiceAccount attachments, diffed against the cluster.

Pure functions over plain dicts as the API returns them; nothing here talks to the API.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from regcred import CREDENTIAL_LABEL, GROUP, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred import dockerconfig as dc

# Annotations on each written Secret: enough to reuse its token after an operator restart without minting.
EXPIRATION_ANNOTATION = f"{GROUP}/expiration-time"
MINTED_ANNOTATION = f"{GROUP}/minted-time"
CONTENT_HASH_ANNOTATION = f"{GROUP}/content-hash"
PROVIDER_HASH_ANNOTATION = f"{GROUP}/provider-hash"
# On a pull Secret that several credentials compose (regcred.shared): which ones, for people (never read back).
SHARED_BY_ANNOTATION = f"{GROUP}/shared-by"
# On ServiceAccounts: which credential added which imagePullSecrets entry, so that only those are removed.
ATTACHED_ANNOTATION = f"{GROUP}/attached-secrets"
# On the Secrets a credential writes besides its pull Secrets (regcred.argocd): what they are for. The pull
# Secrets never carry it, which is how the two are told apart in one LIST.
OUTPUT_LABEL = f"{GROUP}/output"
MAX_ATTACHED_LENGTH = 16_384  # {credential name: secret name} for a few hundred credentials


def format_time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime.datetime | None:
    """An RFC 3339 time in UTC; None for anything else, and for a time that UTC cannot hold (year 1 at +01:00)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.astimezone(datetime.UTC) if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    except (ValueError, OverflowError):
        return None


@dataclasses.dataclass(frozen=True)
class SecretContent:
    """What a pull Secret must hold right now: one credential's token, or the entries of the credentials that
    share its name in that namespace (regcred.shared; ``credential`` is then the first of them by name)."""

    credential: str
    secret_name: str
    content: bytes = dataclasses.field(repr=False)
    provider_hash: str
    minted_at: datetime.datetime
    expires_at: datetime.datetime | None
    # The credentials whose Secret of this name it is (any of them may be the one its label names), and
    # those whose entries it holds when more than one.
    members: frozenset[str] = frozenset()
    shared_by: tuple[str, ...] = ()

    @property
    def labels(self) -> dict[str, str]:
        return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, CREDENTIAL_LABEL: self.credential}

    @functools.cached_property
    def data(self) -> dict[str, str]:
        """The encoded data, once: every namespace's body and patch shares its strings (thousands of them)."""
        return dc.encode_data(self.content)

    @functools.cached_property
    def annotations(self) -> dict[str, str]:
        annotations = {
            CONTENT_HASH_ANNOTATION: dc.content_hash(self.content),
            PROVIDER_HASH_ANNOTATION: self.provider_hash,
            MINTED_ANNOTATION: format_time(self.minted_at),
        }
        if self.expires_at is not None:
            annotations[EXPIRATION_ANNOTATION] = format_time(self.expires_at)
        if len(self.shared_by) > 1:
            annotations[SHARED_BY_ANNOTATION] = ",".join(self.shared_by)
        return annotations

    secret_type = dc.SECRET_TYPE

    def owns(self, existing: Mapping[str, Any]) -> bool:
        """Whether an existing Secret is this credential's pull Secret (not another's, nor its Argo CD output)."""
        labels = (existing.get("metadata") or {}).get("labels") or {}
        return (labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and OUTPUT_LABEL not in labels
                and labels.get(CREDENTIAL_LABEL) in (self.members or {self.credential}))

    def repair(self, existing: Mapping[str, Any]) -> dict[str, Any] | None:
        return diff_secret(self, existing)

    def body(self, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.secret_name,
                "namespace": namespace,
                "labels": self.labels,
                "annotations": dict(self.annotations),
            },
            "type": dc.SECRET_TYPE,
            "data": dict(self.data),
        }


@dataclasses.dataclass(frozen=True)
class SecretAction:
    verb: str  # create | patch | delete | recreate
    namespace: str
    name: str
    # The merge patch for patch, or the body for create and recreate when there is no ``content``.
    body: Mapping[str, Any] | None = None
    # What a pull Secret must hold: create and recreate build its body when they write (a plan over thousands
    # of namespaces holds no bodies, and namespaces with the same content share one object).
    content: SecretContent | None = None


def diff_secret(desired: SecretContent, existing: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch that turns an existing managed Secret into the desired one, or None if it matches."""
    return merge_patch(existing, desired.labels, desired.annotations, desired.data)


def merge_patch(existing: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str],
                data: Mapping[str, str]) -> dict[str, Any] | None:
    """The merge patch that gives an existing Secret these labels, annotations (an expiry that is gone is
    removed) and exactly this data, or None if it has them; other labels and annotations are kept."""
    metadata = existing.get("metadata") or {}
    have_labels, have_annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
    patch: dict[str, Any] = {}
    wanted_labels = {k: v for k, v in labels.items() if have_labels.get(k) != v}
    wanted_annotations = {k: v for k, v in annotations.items() if have_annotations.get(k) != v}
    stale_annotations = {k: None for k in (EXPIRATION_ANNOTATION, SHARED_BY_ANNOTATION)
                         if k in have_annotations and k not in annotations}
    if wanted_labels:
        patch.setdefault("metadata", {})["labels"] = wanted_labels
    if wanted_annotations or stale_annotations:
        patch.setdefault("metadata", {})["annotations"] = {**wanted_annotations, **stale_annotations}
    have_data = existing.get("data") or {}
    if have_data != data:
        patch["data"] = {**{key: None for key in have_data if key not in data}, **data}
    return patch or None


def plan_secrets(
    desired: SecretContent | None, target_namespaces: Iterable[str], managed: Iterable[Mapping[str, Any]]
) -> list[SecretAction]:
    """Create or patch the Secret where it differs; delete managed Secrets no longer wanted.

    `managed` is every Secret labelled with this credential (from one LIST). With `desired` None
    (no token could be had), nothing is created or changed, and only unwanted Secrets are deleted.
    """
    targets = set(target_namespaces)
    if desired is None:
        return [SecretAction("delete", *_where(secret)) for secret in managed if _where(secret)[0] not in targets]
    return plan_composed(desired.credential, desired.secret_name, dict.fromkeys(targets, desired), managed)


def plan_composed(credential: str, secret_name: str, wanted: Mapping[str, SecretContent],
                  managed: Iterable[Mapping[str, Any]]) -> list[SecretAction]:
    """Create or patch the Secret named ``secret_name`` where it differs from what ``wanted`` says for its
    namespace; delete it where nothing is wanted, and the credential's Secrets of other names.

    `managed` is every pull Secret labelled with this credential or with one that shares the name (one LIST);
    another credential's Secrets of other names are its own business.
    """
    actions: list[SecretAction] = []
    present: set[str] = set()
    for secret in managed:
        namespace, name = _where(secret)
        if name != secret_name:
            if ((secret.get("metadata") or {}).get("labels") or {}).get(CREDENTIAL_LABEL) == credential:
                actions.append(SecretAction("delete", namespace, name))
            continue
        desired = wanted.get(namespace)
        if desired is None:
            actions.append(SecretAction("delete", namespace, name))
            continue
        present.add(namespace)
        if secret.get("type") != dc.SECRET_TYPE:  # the type is immutable: only a new Secret can fix it
            actions.append(SecretAction("recreate", namespace, name, content=desired))
        elif (patch := diff_secret(desired, secret)) is not None:
            actions.append(SecretAction("patch", namespace, name, patch, content=desired))
    for namespace in sorted(set(wanted) - present):
        actions.append(SecretAction("create", namespace, secret_name, content=wanted[namespace]))
    return actions


def _where(secret: Mapping[str, Any]) -> tuple[str, str]:
    metadata = secret.get("metadata") or {}
    return metadata.get("namespace", ""), metadata.get("name", "")


def attached_by(service_account: Mapping[str, Any]) -> dict[str, str]:
    """{credential: secret name} for the imagePullSecrets entries this operator added to a ServiceAccount."""
    raw = ((service_account.get("metadata") or {}).get("annotations") or {}).get(ATTACHED_ANNOTATION)
    # Tenant-writable: bounded in size, and nesting (`[[[[...`) is a parse failure, not a RecursionError.
    if not isinstance(raw, str) or len(raw) > MAX_ATTACHED_LENGTH:
        return {}
    try:
        parsed = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: v for k, v in parsed.items() if isinstance(k, str) and isinstance(v, str)}


def pull_secret_entries(service_account: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A ServiceAccount's imagePullSecrets entries; what is not a list of objects counts as no entry."""
    entries = service_account.get("imagePullSecrets")
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, Mapping)]


def attach_update(
    service_account: Mapping[str, Any], credential: str, secret_name: str | None
) -> dict[str, Any] | None:
    """The ServiceAccount with this credential's entry added (secret_name) or removed (None); None if unchanged.

    Entries added by people or other tools are kept; an entry that was already there before the operator
    came is not claimed, so removing the credential never takes away what someone else put there.
    """
    owned = attached_by(service_account)
    listed = pull_secret_entries(service_account)
    entries = [dict(e) for e in listed]
    previously = owned.pop(credential, None)
    if previously is not None and previously != secret_name and previously not in owned.values():
        entries = [e for e in entries if e.get("name") != previously]
    if secret_name is not None:
        if all(e.get("name") != secret_name for e in entries):
            entries.append({"name": secret_name})
            owned[credential] = secret_name
        elif previously == secret_name or secret_name in owned.values():
            # An entry another credential added for the same Secret (one they share, regcred.shared) is claimed
            # too: it stays when that credential goes.
            owned[credential] = secret_name
    if entries == listed and owned == attached_by(service_account):
        return None
    updated: dict[str, Any] = json.loads(json.dumps(service_account))
    updated["imagePullSecrets"] = entries
    annotations = updated.setdefault("metadata", {}).setdefault("annotations", {}) or {}
    if owned:
        annotations[ATTACHED_ANNOTATION] = json.dumps(owned, sort_keys=True)
    else:
        annotations.pop(ATTACHED_ANNOTATION, None)
    updated["metadata"]["annotations"] = annotations
    return updated


def wants_attachment(service_accounts: tuple[str, ...], name: str) -> bool:
    return "*" in service_accounts or name in service_accounts
