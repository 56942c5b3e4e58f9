"""The operator's own record of each credential's token: one Secret per credential in the operator's namespace.

Why it exists: after a restart or a failover, the operator must know the token it minted (and when it
minted it, and when it expires) without minting again. The pull Secrets in target namespaces cannot be
that memory: anyone who can write Secrets in one target namespace could edit that copy (content, expiry,
annotations) and have it adopted and fanned out everywhere. Only the operator and the cluster's admins
write Secrets in the operator's namespace, so that is where the record lives; target-namespace Secrets
are outputs only (a tampered one is repaired, never read back).

Pure functions over plain dicts; the reconciler reads and writes through KubeApi.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Mapping
from typing import Any

from regcred import GROUP, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred import dockerconfig as dc
from regcred.fanout import (
    CONTENT_HASH_ANNOTATION,
    EXPIRATION_ANNOTATION,
    MINTED_ANNOTATION,
    PROVIDER_HASH_ANNOTATION,
    format_time,
    parse_time,
)

# Not the credential label: the store must never be listed as one of the credential's pull Secrets
# (those in namespaces the credential does not select are deleted).
TOKEN_OF_LABEL = f"{GROUP}/token-of"
STORE_TYPE = f"{GROUP}/token"  # a custom Secret type: nothing mounts or pulls with it by mistake
_PREFIX = "regcred-token-"
_MAX_NAME = 253  # a Secret's name is a DNS subdomain


def store_name(credential: str) -> str:
    """The store Secret's name for a credential (credential names are DNS subdomains too)."""
    name = _PREFIX + credential
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(credential.encode()).hexdigest()[:16]
    return f"{name[: _MAX_NAME - len(digest) - 1].rstrip('.-')}-{digest}"


@dataclasses.dataclass(frozen=True)
class StoredToken:
    """What the operator minted for a credential: the rendered content and its times."""

    content: bytes = dataclasses.field(repr=False)
    provider_hash: str
    minted_at: datetime.datetime
    expires_at: datetime.datetime | None

    @property
    def revision(self) -> str:
        return dc.content_hash(self.content)

    def annotations(self) -> dict[str, str]:
        annotations = {
            CONTENT_HASH_ANNOTATION: self.revision,
            PROVIDER_HASH_ANNOTATION: self.provider_hash,
            MINTED_ANNOTATION: format_time(self.minted_at),
        }
        if self.expires_at is not None:
            annotations[EXPIRATION_ANNOTATION] = format_time(self.expires_at)
        return annotations

    def body(self, credential: str, namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": store_name(credential),
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, TOKEN_OF_LABEL: credential},
                "annotations": self.annotations(),
            },
            "type": STORE_TYPE,
            "data": dc.encode_data(self.content),
        }

    def patch(self) -> dict[str, Any]:
        """A merge patch that makes an existing store Secret hold this token (an expiry that is gone is removed)."""
        annotations: dict[str, str | None] = {EXPIRATION_ANNOTATION: None, **self.annotations()}
        return {"metadata": {"annotations": annotations}, "data": dc.encode_data(self.content)}


def read_stored(secret: Mapping[str, Any] | None, credential: str) -> StoredToken | None:
    """The token recorded in a store Secret, or None when there is none or it is not intact."""
    if not secret:
        return None
    metadata = secret.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    content = dc.decode_data(secret)
    minted_at = parse_time(annotations.get(MINTED_ANNOTATION))
    provider_hash = annotations.get(PROVIDER_HASH_ANNOTATION)
    if (
        secret.get("type") != STORE_TYPE
        or (metadata.get("labels") or {}).get(TOKEN_OF_LABEL) != credential
        or content is None or minted_at is None or not isinstance(provider_hash, str)
        or annotations.get(CONTENT_HASH_ANNOTATION) != dc.content_hash(content)
    ):
        return None
    return StoredToken(content, provider_hash, minted_at, parse_time(annotations.get(EXPIRATION_ANNOTATION)))


__all__ = ["STORE_TYPE", "TOKEN_OF_LABEL", "StoredToken", "read_stored", "store_name"]
