"""Argo CD repository credential templates: the credential's token as Secrets Argo CD reads for Helm charts
in OCI registries (optional, `spec.argocd`).

What Argo CD reads: a Secret in its namespace labelled `argocd.argoproj.io/secret-type: repo-creds` whose keys
`url`, `type` (`helm`), `enableOCI` (`"true"`), `username` and `password` make a credential template
(https://argo-cd.readthedocs.io/en/stable/operator-manual/argocd-repo-creds-yaml/). A repository uses the
template whose `url` is the longest prefix of its own URL, both normalized (lower case, no `.git`; Argo CD's
util/db `getRepositoryCredentialIndex`). Helm OCI repository URLs carry no scheme
(`argocd repocreds add localhost:5000/myrepo --enable-oci --type helm` in its command reference), so neither
does the template's `url`.

These Secrets carry the credential label like the pull Secrets (one LIST finds all a credential wrote, and the
managed-Secret watch sees them) plus `regcred.dev/output: argocd`, which is what keeps them out of the pull
Secrets' fan-out (`split`). Pure functions over plain dicts; nothing here talks to the API.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from regcred import CREDENTIAL_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred.fanout import (
    CONTENT_HASH_ANNOTATION,
    EXPIRATION_ANNOTATION,
    MINTED_ANNOTATION,
    OUTPUT_LABEL,
    SecretAction,
    format_time,
    merge_patch,
)
from regcred.models import DOCKER_HUB_HOST, ArgoCdSpec
from regcred.providers import Token
from regcred.status import FailedNamespace

OUTPUT_ARGOCD = "argocd"
ARGOCD_SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"  # noqa: S105 - a label key, not a password
# Argo CD reads the label and the keys, not the Secret's type.
SECRET_TYPE = "Opaque"  # noqa: S105 - a type name, not a password
# Docker Hub's key in `auths` is not where Helm talks OCI to it.
_DOCKER_HUB_OCI = "registry-1.docker.io"


def is_output(secret: Mapping[str, Any]) -> bool:
    """Whether a Secret the credential label selects is an Argo CD template rather than a pull Secret."""
    return OUTPUT_LABEL in (((secret.get("metadata") or {}).get("labels")) or {})


def split(secrets: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pull Secrets, Argo CD templates) of what one credential-labelled LIST returned."""
    pull: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for secret in secrets:
        (outputs if is_output(secret) else pull).append(secret)
    return pull, outputs


def namespaces(spec: ArgoCdSpec | None, status: Mapping[str, Any]) -> frozenset[str]:
    """Where this credential's templates are or were: the spec's namespace and the one its status last named
    (a spec that dropped `argocd` or moved it still has a template to delete there)."""
    found = {spec.namespace} if spec is not None else set()
    published = status.get("argocd")
    where = published.get("namespace") if isinstance(published, Mapping) else None
    if isinstance(where, str) and where:
        found.add(where)
    return frozenset(found)


def data_hash(data: Mapping[str, Any]) -> str:
    """A short digest of a Secret's data, safe to show; the same for the desired and the written Secret."""
    return hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()[:32]


def secret_hash(secret: Mapping[str, Any]) -> str:
    data = secret.get("data")
    return data_hash(data if isinstance(data, Mapping) else {})


@dataclasses.dataclass(frozen=True)
class RepoCreds:
    """One credential template as it must be written."""

    credential: str
    namespace: str
    name: str
    url: str
    username: str = dataclasses.field(repr=False)
    password: str = dataclasses.field(repr=False)
    minted_at: datetime.datetime
    expires_at: datetime.datetime | None

    @property
    def data(self) -> dict[str, str]:
        plain = {"type": "helm", "enableOCI": "true", "url": self.url, "username": self.username,
                 "password": self.password}
        return {key: base64.b64encode(value.encode()).decode() for key, value in plain.items()}

    @property
    def labels(self) -> dict[str, str]:
        return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, CREDENTIAL_LABEL: self.credential, OUTPUT_LABEL: OUTPUT_ARGOCD,
                ARGOCD_SECRET_TYPE_LABEL: "repo-creds"}

    @property
    def annotations(self) -> dict[str, str]:
        annotations = {CONTENT_HASH_ANNOTATION: data_hash(self.data), MINTED_ANNOTATION: format_time(self.minted_at)}
        if self.expires_at is not None:
            annotations[EXPIRATION_ANNOTATION] = format_time(self.expires_at)
        return annotations

    def body(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels,
                             "annotations": self.annotations},
                "type": SECRET_TYPE, "data": self.data}

    def diff(self, existing: Mapping[str, Any]) -> dict[str, Any] | None:
        """The merge patch that makes an existing template this one, or None when it is."""
        return merge_patch(existing, self.labels, self.annotations, self.data)


@dataclasses.dataclass(frozen=True)
class RepoCredsSet:
    """Every template a credential must have now (empty without `spec.argocd`), as the writer needs them."""

    credential: str
    templates: tuple[RepoCreds, ...] = ()

    secret_type = SECRET_TYPE

    def owns(self, existing: Mapping[str, Any]) -> bool:
        labels = (existing.get("metadata") or {}).get("labels") or {}
        return (labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and labels.get(CREDENTIAL_LABEL) == self.credential
                and labels.get(OUTPUT_LABEL) == OUTPUT_ARGOCD)

    def repair(self, existing: Mapping[str, Any]) -> dict[str, Any] | None:
        metadata = existing.get("metadata") or {}
        wanted = self.get(metadata.get("namespace", ""), metadata.get("name", ""))
        return wanted.diff(existing) if wanted is not None else None

    def get(self, namespace: str, name: str) -> RepoCreds | None:
        return next((t for t in self.templates if (t.namespace, t.name) == (namespace, name)), None)

    @property
    def revisions(self) -> frozenset[str]:
        """The data hashes of the templates: a watched template holding another is repaired."""
        return frozenset(data_hash(t.data) for t in self.templates)


def oci_prefix(host: str) -> str:
    return _DOCKER_HUB_OCI if host == DOCKER_HUB_HOST else host


def desired(credential: str, spec: ArgoCdSpec | None, token: Token, minted_at: datetime.datetime,
            expires_at: datetime.datetime | None) -> RepoCredsSet:
    """The templates for a token. With `url`, one; without, one per registry host the token serves (a template
    has one prefix, and an ECR token for several registryIds opens each of them): named `name` for a single
    host, `name-<8 hex digits of the host's SHA-256>` for several, so that a name never moves to another host."""
    if spec is None:
        return RepoCredsSet(credential)
    base = spec.name or f"regcred-{credential}"
    urls = [spec.url] if spec.url else sorted({oci_prefix(host) for host in token.hosts})
    templates = tuple(
        RepoCreds(credential, spec.namespace,
                  base if len(urls) == 1 else f"{base[:243]}-{hashlib.sha256(url.encode()).hexdigest()[:8]}",
                  url, token.username, token.password, minted_at, expires_at)
        for url in urls)
    return RepoCredsSet(credential, templates)


def plan(wanted: RepoCredsSet, existing: Iterable[Mapping[str, Any]]) -> list[SecretAction]:
    """Create what is missing, patch what differs, recreate a template whose type changed, delete the rest."""
    actions: list[SecretAction] = []
    present: set[tuple[str, str]] = set()
    for secret in existing:
        metadata = secret.get("metadata") or {}
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        template = wanted.get(namespace, name)
        if template is None:
            actions.append(SecretAction("delete", namespace, name))
            continue
        present.add((namespace, name))
        if secret.get("type") != SECRET_TYPE:
            actions.append(SecretAction("recreate", namespace, name, template.body()))
        elif (patch := template.diff(secret)) is not None:
            actions.append(SecretAction("patch", namespace, name, patch))
    for template in wanted.templates:
        if (template.namespace, template.name) not in present:
            actions.append(SecretAction("create", template.namespace, template.name, template.body()))
    return actions


def status(spec: ArgoCdSpec | None, wanted: RepoCredsSet, failures: list[FailedNamespace]
           ) -> dict[str, Any] | None:
    """`status.argocd`: where the templates are, their names, whether they are in place, and the first failure
    (a conflict with someone else's Secret, a refused write). None (removed) once there is nothing to report."""
    if spec is None and not failures:
        return None
    found: dict[str, Any] = {
        "namespace": spec.namespace if spec is not None else failures[0].namespace,
        "secrets": [t.name for t in wanted.templates],
        "synced": not failures,
    }
    if failures:
        found["reason"], found["message"] = failures[0].reason, failures[0].message
    return found


__all__ = ["OUTPUT_LABEL", "RepoCreds", "RepoCredsSet", "desired", "is_output", "namespaces", "plan",
           "secret_hash", "split", "status"]
