"""A paused replica resumes only on a peering object old enough to list every live replica.

kopf (``kopf/_core/engines/peering.py``, ``process_peering_event``) decides on every event of the peering
object from the entries in its ``status`` alone: with no live entry of a higher priority it resumes a paused
replica ("Resuming operations after the pause"). A peering object that was just created (a first install,
or one deleted and created again, as a Helm hook did on every upgrade) has no entries, so every standby
resumed on it at once, and paused again only when the active replica's next keep-alive
(``peering.keepalive``: every ``lifetime`` minus 5-10 s) put its entry back: up to a minute with two
replicas acting.

With ``settings.peering.mandatory`` a replica starts paused (``kopf/_core/reactor/orchestration.py``,
``spawn_missing_peerings``: the toggle is pre-activated). This module keeps a paused replica paused while
the object is younger than one peering lifetime (plus a margin): by then every replica alive when it was
created has written its keep-alive into it, and kopf's own rule decides again. An active replica is
never paused by a young object: it stays the one that acts.

The clock comparison (the API server's creationTimestamp against this process's clock) is the one kopf
makes already: every entry's ``lastseen`` is the writing replica's clock.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kopf._cogs.aiokits import aiotime
from kopf._core.engines import peering as kopf_peering

logger = logging.getLogger("regcred")

# For the peering object's creationTimestamp (whole seconds) and a keep-alive's own round trip.
MARGIN = datetime.timedelta(seconds=2)

Processor = Callable[..., Awaitable[None]]


def settled_at(body: dict[str, Any], lifetime: int) -> datetime.datetime | None:
    """When a peering object is old enough to hold the keep-alive of every replica alive at its creation."""
    created = (body.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return None
    when = datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return when + datetime.timedelta(seconds=lifetime) + MARGIN


def guarded(process: Processor) -> Processor:
    """kopf's peering-event processor, but a paused replica waits for the object to settle before resuming."""

    @functools.wraps(process)
    async def process_peering_event(**kwargs: Any) -> None:
        raw_event = kwargs["raw_event"]
        settings = kwargs["settings"]
        paused = kwargs.get("conflicts_found")
        body = raw_event.get("object") or {}
        if (paused is not None and paused.is_on() and raw_event.get("type") != "DELETED"
                and (body.get("metadata") or {}).get("name") == settings.peering.name):
            settled = settled_at(body, settings.peering.lifetime)
            now = datetime.datetime.now(datetime.UTC)
            if settled is not None and now < settled:
                logger.debug("The peering object %s is younger than a keep-alive: staying paused until %s.",
                             settings.peering.name, settled.isoformat())
                # As kopf waits for a blocking peer to expire: until then, or until the next event.
                if await aiotime.sleep((settled - now).total_seconds(), wakeup=kwargs.get("stream_pressure")) is None:
                    await kopf_peering.touch(identity=kwargs["identity"], settings=settings,
                                             resource=kwargs["resource"], namespace=kwargs["namespace"])
                return
        await process(**kwargs)

    process_peering_event.regcred_guarded = True  # type: ignore[attr-defined]
    return process_peering_event


def install() -> None:
    """Wrap kopf's processor (once per process): kopf's orchestration looks it up each time it starts a
    peering observer (``functools.partial(peering.process_peering_event, ...)``)."""
    if not getattr(kopf_peering.process_peering_event, "regcred_guarded", False):
        kopf_peering.process_peering_event = guarded(kopf_peering.process_peering_event)  # type: ignore[assignment]
