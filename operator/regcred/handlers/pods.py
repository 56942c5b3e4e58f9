"""Pods stuck pulling: diagnosed, and repaired when a fresh credential will fix them."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from regcred.diagnosis import stuck_containers
from regcred.runtime import Runtime


# The API server sends only Pending pods (lifecycle.configure sets the field selector): the kubelet
# writes ErrImagePull/ImagePullBackOff into their status within seconds of a failed pull. An event that
# comes before its credential is served finds nothing to do here: the sweep when the credential starts
# being served (credentials.keep_credential_fresh) looks at the pod again. Errors are retried, never raised.
@kopf.on.event("v1", "pods")
async def pod_stuck_pulling(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    if event.get("type") == "DELETED":  # a rollout made for this pod took effect
        await asyncio.to_thread(runtime.remediator.pod_gone, dict(body))
        return
    if not stuck_containers(body):
        return
    await asyncio.to_thread(runtime.remediator.handle_pod, dict(body))
