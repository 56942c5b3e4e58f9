"""Cluster events that can change what a credential must write: they only wake the credentials up."""

from __future__ import annotations

from typing import Any

import kopf

from regcred import CREDENTIAL_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred import dockerconfig as dc


@kopf.on.event("v1", "namespaces")
async def namespace_changed(memo: kopf.Memo, **_: Any) -> None:
    """A namespace created, relabelled or deleted may enter or leave any credential's selection."""
    memo["runtime"].wakeups.kick_all()


@kopf.on.event("v1", "serviceaccounts")
async def service_account_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """A new namespace's `default` ServiceAccount appears a moment after the namespace itself."""
    if event.get("type") in ("ADDED", "MODIFIED"):
        memo["runtime"].wakeups.kick_all()


# The label filter here is a guard; the API server already filters (see lifecycle.configure).
@kopf.on.event("v1", "secrets", labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE})
async def managed_secret_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A written Secret that was deleted or edited by someone else is restored by its credential."""
    credential = body.metadata.labels.get(CREDENTIAL_LABEL)
    if not credential:
        return
    # Intact means: holds what the operator serves now (its own record), whatever the annotations claim.
    serving = memo["runtime"].reconciler.serving.get(credential)
    content = dc.decode_data(body)
    intact = serving is not None and content is not None and dc.content_hash(content) == serving.revision
    if event.get("type") == "DELETED" or not intact:
        memo["runtime"].wakeups.kick(credential)
