"""Operator start-up and shutdown: all kopf settings in one place, and the process's Runtime."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import Any

import kopf

import regcred.peering
from regcred import GROUP, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred.runtime import Runtime

logger = logging.getLogger("regcred")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own names for kopf's bookkeeping, so that nothing on users' objects says "kopf.zalando.org".
    settings.persistence.finalizer = f"{GROUP}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Watch only the Secrets this operator wrote, filtered by the API server: kopf's own label filters
    # run in the operator, which would stream every Secret of the cluster into it.
    settings.watching.label_selectors["v1", "secrets"] = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    # Watch only pods that are not running yet: a pod stuck pulling is Pending, and healthy pods, however
    # many, never reach the operator.
    settings.watching.field_selectors["v1", "pods"] = "status.phase=Pending"
    # Re-establish watches every few minutes: a silently dead connection must not go unnoticed for long.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Tests and the demo hand in a prepared Runtime (emulated cluster, manual clock) through the memo.
    if "runtime" not in memo:
        memo["runtime"] = Runtime.create()
    runtime: Runtime = memo["runtime"]
    # kopf's own calls (finalizers, peering keep-alives, watch connections) get the operator's bounds too:
    # its default is five minutes per call, during which a stuck patch blocks that object's handling.
    connect, read = runtime.settings.api_timeout
    settings.networking.connect_timeout = connect
    settings.networking.request_timeout = read
    settings.watching.connect_timeout = connect
    # Only one replica acts: the one with the highest priority in the shared peering object. Identical
    # replicas get random priorities so that they never tie (a tie pauses them all).
    peering = runtime.settings
    if peering.peering_name and not runtime.kube.ensure_peering(peering.peering_name):
        logger.warning("kopf's peering CRDs are not installed (crds/kopf-peering.yaml): running standalone; "
                       "run only one replica.")
        peering = dataclasses.replace(peering, peering_name="")
    settings.peering.standalone = not peering.peering_name
    settings.peering.name = peering.peering_name or "default"
    settings.peering.priority = (peering.peering_priority if peering.peering_priority is not None
                                 else secrets.randbelow(2**31 - 1) + 1)
    settings.peering.lifetime = peering.peering_lifetime_seconds
    if peering.peering_name:
        # Start paused, and resume only on a settled peering object (regcred.peering says why).
        settings.peering.mandatory = True
        regcred.peering.install()
    runtime.start_metrics()


@kopf.on.startup()
async def start_work(memo: kopf.Memo, **_: Any) -> None:
    """The loop that works through remediations held back by the rate limit and retries failed ones."""
    runtime: Runtime = memo["runtime"]
    runtime.start_work()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else the kubeconfig that KUBECONFIG (read now, not at import) names."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop_work()
        runtime.close()
