"""Cluster events that can change what a credential must write: they only wake the credentials up."""

from __future__ import annotations

from typing import Any

import kopf

from regcred import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred.view import concerned_by_account, concerned_by_namespace


@kopf.on.event("v1", "namespaces")
async def namespace_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A namespace created, relabelled or deleted wakes the credentials whose selection it enters or leaves."""
    runtime = memo["runtime"]
    deleted = event.get("type") == "DELETED"
    namespace = runtime.reconciler.view.namespace_event(body, deleted)
    # Judged against what each credential serves or, with a pass in flight, what that pass works from (the view
    # is updated first: a pass that records itself after this event reads the namespaces again, Reconciler._begin).
    judged = runtime.reconciler.served.judged()
    for name in concerned_by_namespace(judged, namespace, deleted, runtime.settings.watch_namespaces):
        runtime.wakeups.kick(name)


@kopf.on.event("v1", "serviceaccounts")
async def service_account_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A ServiceAccount that lacks a credential's entry (a new namespace's `default` appears a moment after the
    namespace), or carries one it should not, wakes that credential."""
    runtime = memo["runtime"]
    deleted = event.get("type") == "DELETED"
    account = runtime.reconciler.view.account_event(body, deleted)
    if not deleted:
        for name in concerned_by_account(runtime.reconciler.served.judged(), account):
            runtime.wakeups.kick(name)


# The label filter here is a guard; the API server already filters (see lifecycle.configure).
@kopf.on.event("v1", "secrets", labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE})
async def managed_secret_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A written Secret that was deleted or edited by someone else is restored by its credential (by every
    credential sharing it, regcred.shared)."""
    runtime = memo["runtime"]
    for name in runtime.reconciler.concerned_by_secret(body, event.get("type") == "DELETED"):
        runtime.wakeups.kick(name)
