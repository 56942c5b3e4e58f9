"""regcred.peering: when a paused replica hands a peering event on to kopf (which may resume it), and when not."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from regcred import peering

LIFETIME = 60


class Toggle:
    def __init__(self, on: bool) -> None:
        self.on = on

    def is_on(self) -> bool:
        return self.on


class Settings:
    class peering:  # the shape of kopf's settings.peering
        name = "regcred-operator"
        priority = 200
        lifetime = LIFETIME


def entry(priority: int) -> dict[str, Any]:
    return {"priority": priority, "lifetime": LIFETIME, "lastseen": datetime.datetime.now(datetime.UTC).isoformat()}


def event(age_seconds: float, status: dict[str, Any], type_: str | None = "MODIFIED") -> dict[str, Any]:
    created = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age_seconds)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    return {"type": type_, "object": {"metadata": {"name": "regcred-operator", "creationTimestamp": created},
                                      "status": status}}


def handed_to_kopf(raw_event: dict[str, Any], *, paused: bool = True, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the guarded processor called kopf's; a wait is cut short (the next event), so no keep-alive."""
    calls: list[dict[str, Any]] = []
    touched: list[Any] = []

    async def kopf_process(**kwargs: Any) -> None:
        calls.append(kwargs)

    async def touch(**kwargs: Any) -> None:
        touched.append(kwargs)

    monkeypatch.setattr(peering.kopf_peering, "touch", touch)

    async def run() -> None:
        pressure = asyncio.Event()
        pressure.set()
        await peering.guarded(kopf_process)(raw_event=raw_event, settings=Settings, identity="me",
                                             conflicts_found=Toggle(paused), stream_pressure=pressure,
                                             resource=None, namespace=None)
    asyncio.run(run())
    assert not touched
    return bool(calls)


def test_a_paused_replica_waits_for_a_new_peering_object_to_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf resumes a paused replica on an empty object: one just created (a first install, a recreation)
    lists none of the live replicas yet."""
    assert not handed_to_kopf(event(1, {"me": entry(200)}), monkeypatch=monkeypatch)
    assert not handed_to_kopf(event(LIFETIME, {"me": entry(200)}), monkeypatch=monkeypatch)
    assert handed_to_kopf(event(LIFETIME + 3, {"me": entry(200)}), monkeypatch=monkeypatch)


def test_a_paused_replica_waits_for_its_own_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not handed_to_kopf(event(3600, {}), monkeypatch=monkeypatch)
    assert not handed_to_kopf(event(3600, {"other": entry(100)}, type_=None), monkeypatch=monkeypatch)


def test_taking_over_from_a_lower_replica_waits_for_it_to_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not handed_to_kopf(event(3600, {"me": entry(200), "lower": entry(100)}), monkeypatch=monkeypatch)
    # A higher one: kopf keeps this replica paused itself.
    assert handed_to_kopf(event(3600, {"me": entry(200), "higher": entry(300)}), monkeypatch=monkeypatch)


def test_an_active_replica_and_deletions_go_to_kopf_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    assert handed_to_kopf(event(1, {}), paused=False, monkeypatch=monkeypatch)
    assert handed_to_kopf(event(1, {}, type_="DELETED"), monkeypatch=monkeypatch)


def test_install_wraps_kopfs_processor_once() -> None:
    original = peering.kopf_peering.process_peering_event
    try:
        peering.install()
        wrapped = peering.kopf_peering.process_peering_event
        peering.install()
        assert peering.kopf_peering.process_peering_event is wrapped
        assert getattr(wrapped, "regcred_guarded", False)
    finally:
        peering.kopf_peering.process_peering_event = original  # type: ignore[assignment]
