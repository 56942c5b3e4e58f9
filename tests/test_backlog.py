"""Waiting work without a cluster: the rate limit's window, its backlog, retries with back-off, and when to sweep."""

from __future__ import annotations

import datetime

from regcred.backlog import Backlog, Held, RateLimiter, Retries
from regcred.clock import ManualClock
from regcred.models import parse_credential
from regcred.providers import Token
from regcred.remediation import sweep_needed
from regcred.serving import Serving

START = datetime.datetime(2026, 3, 2, 9, 0, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)


def test_the_rate_limit_says_when_its_window_frees() -> None:
    clock = ManualClock(START)
    limiter = RateLimiter(3, clock)
    assert limiter.next_free() == START
    assert limiter.allow()
    clock.advance(10 * SECOND)
    assert [limiter.allow() for _ in range(3)] == [True, True, False]
    assert limiter.next_free() == START + datetime.timedelta(minutes=1)  # the oldest leaves the window then
    clock.advance(50 * SECOND)
    assert limiter.next_free() == clock.now()
    assert limiter.allow()
    assert not limiter.allow()


def held(name: str, pod: str = "p", credential: str = "c") -> Held:
    return Held(credential, "shop", "Deployment", name, pod=pod, since=START)


def test_the_backlog_keeps_one_entry_per_workload_oldest_first_and_is_bounded() -> None:
    backlog = Backlog(capacity=3)
    assert backlog.add(held("a")) and backlog.add(held("b", "b-1"))
    assert backlog.add(held("b", "b-2"))  # the same workload: its place is kept, with the newer pod
    assert backlog.add(held("a", credential="other"))  # per workload and credential
    assert not backlog.add(held("d"))  # full
    assert [key[3] for key in backlog.waiting()] == ["a", "b", "a"]
    oldest = backlog.oldest()
    assert oldest is not None and oldest.name == "a"
    backlog.remove(oldest.key)
    second = backlog.oldest()
    assert second is not None and (second.name, second.pod) == ("b", "b-2")
    assert backlog.counts() == {"c": 1, "other": 1}
    assert len(backlog) == 2


def test_retries_back_off_exponentially_and_give_up_after_a_bound() -> None:
    clock = ManualClock(START)
    retries = Retries(clock, initial=10 * SECOND, maximum=30 * SECOND, max_failures=4)
    key = ("pod", "shop", "web-1", "")
    assert retries.failed(key) == START + 10 * SECOND
    assert retries.due() == []
    assert retries.next_due() == START + 10 * SECOND
    clock.advance(10 * SECOND)
    assert retries.due() == [key]
    assert retries.failed(key) == clock.now() + 20 * SECOND
    assert retries.failed(key) == clock.now() + 30 * SECOND  # capped
    assert retries.failed(key) == clock.now() + 30 * SECOND
    assert retries.failed(key) is None  # the fifth failure: given up, forgotten
    assert len(retries) == 0
    retries.failed(key)
    retries.succeeded(key)
    assert retries.next_due() is None


def serving(revision: str, *namespaces: str) -> Serving:
    spec = parse_credential("c", {"provider": {"static": {"registry": "r.example.com", "secretRef": {
        "namespace": "s", "name": "n"}}}, "secretName": "pull", "namespaces": {"names": ["shop"]}})
    return Serving({}, spec, frozenset(namespaces), Token(("r.example.com",), "u", "p", None), revision)


def test_a_sweep_follows_first_serving_refresh_new_namespaces_and_writes_only() -> None:
    one = serving("rev1", "shop")
    assert not sweep_needed(None, None, 0, swept=False)  # nothing served (a failed mint): nothing to sweep for
    assert sweep_needed(None, one, 0, swept=False)  # first served
    assert sweep_needed(one, one, 0, swept=False)  # served before, but this daemon (this replica) is new
    assert not sweep_needed(one, one, 0, swept=True)  # a resync that changed nothing
    assert sweep_needed(one, serving("rev2", "shop"), 0, swept=True)  # a refresh
    assert sweep_needed(one, serving("rev1", "shop", "new"), 0, swept=True)  # a namespace newly served
    assert not sweep_needed(serving("rev1", "shop", "gone"), one, 0, swept=True)  # one namespace fewer
    assert sweep_needed(one, one, 1, swept=True)  # a Secret written (restored)
