"""A paused replica resumes only on a peering object old enough to list every live replica.

kopf (``kopf/_core/engines/peering.py``, ``process_peering_event``) decides on every event of the peering
object from the entries in its ``status`` alone: with no live entry of a higher priority it resumes a paused
replica ("Resuming operations after the pause"). A peering object that was just created (a first install,
or one deleted and created again, as a Helm hook did on every upgrade) has no entries, so every standby
resumed on it at once, and paused again only when the active replica's next keep-alive
(``peering.keepalive``: every ``lifetime`` minus 5-10 s) put its entry back: up to a minute with two
replicas acting.

With ``settings.peering.mandatory`` a replica starts paused (``kopf/_core/reactor/orchestration.py``,
``spawn_missing_peerings``: the toggle is pre-activated). This module keeps a paused replica paused

- while the object is younger than one peering lifetime (plus a margin): by then every replica alive
  when it was created has written its keep-alive into it;
- until its own keep-alive entry is in the object: then every other replica has it too (in this event),
  and a replica of lower priority that acts pauses on it;
- for TAKEOVER_GRACE after that when a live replica of lower priority is listed: the time it takes that
  replica, if it is the one acting, to stop its credential loops (their cancellation timeout);

then kopf's own rule decides. An active replica is never paused by these: it stays the one that acts.

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
# How long a replica of lower priority may take to stop acting once it sees a higher one: kopf cancels the
# credential loops (cancellation_timeout=10 in handlers/credentials.py) and waits for them.
TAKEOVER_GRACE = datetime.timedelta(seconds=10)

Processor = Callable[..., Awaitable[None]]


def settled_at(body: dict[str, Any], lifetime: int) -> datetime.datetime | None:
    """When a peering object is old enough to hold the keep-alive of every replica alive at its creation."""
    created = (body.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return None
    when = datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return when + datetime.timedelta(seconds=lifetime) + MARGIN


def guarded(process: Processor) -> Processor:
    """kopf's peering-event processor, but a paused replica resumes only as the module's docstring says."""
    first_listed: dict[str, datetime.datetime] = {}  # identity: when its own entry was first seen

    @functools.wraps(process)
    async def process_peering_event(**kwargs: Any) -> None:
        raw_event, settings, identity = kwargs["raw_event"], kwargs["settings"], kwargs["identity"]
        paused = kwargs.get("conflicts_found")
        body = raw_event.get("object") or {}
        if (paused is None or not paused.is_on() or raw_event.get("type") == "DELETED"
                or (body.get("metadata") or {}).get("name") != settings.peering.name):
            await process(**kwargs)
            return
        now = datetime.datetime.now(datetime.UTC)
        entries: dict[str, Any] = body.get("status") or {}
        if identity not in entries:  # our keep-alive is on its way: its event brings us back here
            logger.debug("Staying paused until this replica's keep-alive is in %s.", settings.peering.name)
            return
        listed = first_listed.setdefault(identity, now)
        until = [settled_at(body, settings.peering.lifetime)]
        peers = [kopf_peering.Peer(identity=kopf_peering.Identity(key), **value)
                 for key, value in entries.items() if key != identity and isinstance(value, dict)]
        if any(not peer.is_dead and peer.priority < settings.peering.priority for peer in peers):
            until.append(listed + TAKEOVER_GRACE)
        waits = [(when - now).total_seconds() for when in until if when is not None and when > now]
        if not waits:
            await process(**kwargs)
            return
        logger.debug("Staying paused on %s for %.1f s more (a young peering object, or a replica of lower "
                     "priority that may still be stopping).", settings.peering.name, max(waits))
        # As kopf waits for a blocking peer to expire: until then, or until the next event; then a keep-alive
        # makes the event that brings us back here.
        if await aiotime.sleep(max(waits), wakeup=kwargs.get("stream_pressure")) is None:
            await kopf_peering.touch(identity=identity, settings=settings,
                                     resource=kwargs["resource"], namespace=kwargs["namespace"])

    process_peering_event.regcred_guarded = True  # type: ignore[attr-defined]
    return process_peering_event


def install() -> None:
    """Wrap kopf's processor (once per process): kopf's orchestration looks it up each time it starts a
    peering observer (``functools.partial(peering.process_peering_event, ...)``)."""
    if not getattr(kopf_peering.process_peering_event, "regcred_guarded", False):
        kopf_peering.process_peering_event = guarded(kopf_peering.process_peering_event)  # type: ignore[assignment]
