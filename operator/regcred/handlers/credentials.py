"""RegistryCredential handlers: one long-lived loop per credential, and cleanup on deletion."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import kopf

from regcred import GROUP, PLURAL, VERSION
from regcred.models import force_sync_request
from regcred.remediation import sweep_needed
from regcred.runtime import Runtime


# backoff: after an unexpected error (the API unreachable), start the loop again in 10 s, not kopf's 60 s.
# No cancellation_backoff: on shutdown or a peering pause kopf cancels the loop at once (it logs that as a
# warning, which regcred.logs keeps out of the default log), so that it is gone before another replica acts.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10, backoff=10)
async def keep_credential_fresh(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile now, then sleep until the token's refresh time, a resync, or a wake-up from an event.

    A daemon rather than a timer: the next run time depends on the token's expiry, not on a fixed period.
    """
    runtime: Runtime = memo["runtime"]
    wake = runtime.wakeups.register(name)
    swept = False  # this daemon runs from start-up, or since this replica took over: sweep once it serves
    try:
        while True:
            wake.clear()
            snapshot = copy.deepcopy(dict(body))
            runtime.wakeups.taken(name, (snapshot.get("metadata") or {}).get("generation"))
            runtime.track_sources(name, snapshot)  # a change to a Secret it reads wakes it up
            before = runtime.reconciler.served.get(name)
            outcome = await asyncio.to_thread(runtime.reconciler.reconcile, snapshot)
            for other in outcome.wake:  # those it shares Secrets with, when that changed (regcred.shared)
                runtime.wakeups.kick(other)
            after = runtime.reconciler.served.get(name)
            if runtime.settings.remediation_enabled and sweep_needed(before, after, outcome.writes, swept=swept):
                await asyncio.to_thread(runtime.remediator.sweep, name)  # stuck pods may be fixable now
            swept = swept or after is not None
            await runtime.clock.sleep_until(outcome.wake_at, wake)
            # Let a burst of events (a namespace created with its ServiceAccount) settle into one run.
            await asyncio.sleep(runtime.settings.debounce.total_seconds())
    finally:
        runtime.wakeups.unregister(name)
        runtime.sources.forget(name)
        # kopf stops the daemons when peering pauses this replica (and starts them again when it resumes):
        # nothing cached may outlive the pause, and the gauges are the active replica's alone. Not awaited: forget
        # waits for a pass in flight to end, and kopf holds a deleted credential's finalizer until this loop has
        # ended, re-checking only every cancellation_timeout (10 s).
        asyncio.get_running_loop().run_in_executor(None, runtime.forget, name)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def notice_spec_change(event: kopf.RawEvent, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A new generation (the spec changed), or a new value of the force-sync annotation, is applied at once
    rather than at the next resync. The view keeps every credential: which ones share a Secret (regcred.shared)."""
    runtime: Runtime = memo["runtime"]
    runtime.reconciler.view.credential_event(body, event.get("type") == "DELETED")
    wakeups = runtime.wakeups
    if wakeups.new_generation(name, body.metadata.get("generation")) or force_sync_request(body):
        wakeups.kick(name)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def remove_written_objects(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Delete the credential's Secrets and its ServiceAccount entries before the finalizer goes."""
    runtime: Runtime = memo["runtime"]
    for other in await asyncio.to_thread(runtime.reconciler.cleanup, name, copy.deepcopy(dict(body))):
        runtime.wakeups.kick(other)  # its Secrets changed under them, and their status names it
