"""The token source without an API server: when it mints, what it reuses (memory, the store after a restart),
how its back-off grows, and that a fresh token must pull spec.verify.image before it is served."""

from __future__ import annotations

import datetime
import random

import pytest

from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.imageref import ImageRef
from regcred.models import parse_credential
from regcred.probe import Verdict
from regcred.providers import ProviderError, Token
from regcred.store import store_name
from regcred.tokens import TokenSource, VerificationFailed, next_mint, provider_hash
from tests.reconcile_scene import NAME, NOW, REGISTRY, SETTINGS, Cloud, Kube, Prober, credential

MINUTE = datetime.timedelta(minutes=1)


def _source(kube: Kube, prober: Prober | None = None, settings: Settings = SETTINGS) -> TokenSource:
    return TokenSource(kube, settings, prober=prober or Prober(), rng=random.Random(0))  # type: ignore[arg-type]


def _pass(source: TokenSource, cloud: Cloud, clock: ManualClock, *, force: bool = False,
          body: dict[str, object] | None = None) -> tuple[Token, bool]:
    """What one pass does with tokens: the previous one, the one to serve, kept (and stored) when served."""
    body = body or credential()
    spec = parse_credential(NAME, body["spec"])  # type: ignore[arg-type]
    phash = provider_hash(body["spec"])  # type: ignore[arg-type]
    previous = source.previous(spec, phash)
    held, minted = source.token_for(spec, cloud, phash, previous, clock.now(), force=force)
    source.minted(NAME)
    source.keep(NAME, held)
    return held.token, minted


def test_a_renewable_token_is_reused_until_its_refresh_time_then_minted_again() -> None:
    kube, clock = Kube(), ManualClock(NOW)
    cloud = Cloud(lifetime=datetime.timedelta(hours=12), clock=clock)
    source = _source(kube)
    first, minted = _pass(source, cloud, clock)
    assert minted and source.provider_calls == 1
    held = source.previous(parse_credential(NAME, credential()["spec"]), provider_hash(credential()["spec"]))
    assert held is not None
    mint_at = next_mint(held, clock.now())
    # A third of the lifetime before expiry, made earlier by a jitter of at most 5 minutes.
    assert mint_at is not None
    assert NOW + datetime.timedelta(hours=8) - 5 * MINUTE <= mint_at <= NOW + datetime.timedelta(hours=8)

    clock.advance(mint_at - clock.now() - MINUTE)
    again, minted = _pass(source, cloud, clock)
    assert (again, minted, source.provider_calls) == (first, False, 1)
    clock.advance(MINUTE)
    renewed, minted = _pass(source, cloud, clock)
    assert minted and renewed.password != first.password and source.provider_calls == 2


def test_a_forced_sync_mints_even_with_a_fresh_token() -> None:
    kube, clock = Kube(), ManualClock(NOW)
    cloud, source = Cloud(clock=clock), _source(kube)
    _pass(source, cloud, clock)
    _, minted = _pass(source, cloud, clock, force=True)
    assert minted and source.provider_calls == 2


def test_a_restarted_operator_serves_the_stored_token_without_minting() -> None:
    kube, clock = Kube(), ManualClock(NOW)
    cloud = Cloud(clock=clock)
    first, _ = _pass(_source(kube), cloud, clock)
    assert kube.read_secret(SETTINGS.state_namespace, store_name(NAME)) is not None

    restarted = _source(kube)
    clock.advance(MINUTE)
    token, minted = _pass(restarted, cloud, clock)
    assert (token, minted, restarted.provider_calls) == (first, False, 0)


def test_a_changed_provider_block_means_a_new_token() -> None:
    kube, clock = Kube(), ManualClock(NOW)
    cloud, source = Cloud(clock=clock), _source(kube)
    _pass(source, cloud, clock)
    _, minted = _pass(source, cloud, clock, body=credential({"ecr": {"region": "us-east-1"}}))
    assert minted and source.provider_calls == 2


def test_a_token_that_arrives_expired_is_refused() -> None:
    kube, clock = Kube(), ManualClock(NOW)
    cloud = Cloud(lifetime=-MINUTE, clock=clock)
    with pytest.raises(ProviderError) as raised:
        _pass(_source(kube), cloud, clock)
    assert raised.value.reason == "TokenAlreadyExpired"
    assert kube.read_secret(SETTINGS.state_namespace, store_name(NAME)) is None  # nothing recorded


def test_the_mint_back_off_doubles_up_to_its_maximum_and_starts_afresh_after_a_success() -> None:
    settings = Settings(retry_initial=datetime.timedelta(seconds=10), retry_max=datetime.timedelta(seconds=60))
    source = _source(Kube(), settings=settings)
    blip = ProviderError("The cloud did not answer.")
    delays = [source.retry_delay(NAME, blip).total_seconds() for _ in range(5)]
    for delay, full in zip(delays, [10, 20, 40, 60, 60], strict=True):
        assert 0.8 * full <= delay <= full  # jitter only ever shortens it
    source.minted(NAME)
    assert source.retry_delay(NAME, blip).total_seconds() <= 10


def test_an_error_that_retrying_cannot_fix_waits_long() -> None:
    settings = Settings(retry_initial=datetime.timedelta(seconds=10), retry_max=datetime.timedelta(minutes=5))
    source = _source(Kube(), settings=settings)
    delay = source.retry_delay(NAME, ProviderError("No such role.", retryable=False))
    assert delay >= 0.8 * datetime.timedelta(minutes=5)


def test_a_fresh_token_must_pull_the_verify_image() -> None:
    token = Token(hosts=(REGISTRY,), username="AWS", password="fresh", expires_at=None)
    image = ImageRef.parse(f"{REGISTRY}/team/app:1.0")
    refused = Prober(Verdict.UNAUTHORIZED)
    with pytest.raises(VerificationFailed) as raised:
        _source(Kube(), refused).verify(image, token, NOW)
    assert raised.value.record["verdict"] == "unauthorized"
    assert "keep the previous token" in str(raised.value)

    accepted = Prober()
    record = _source(Kube(), accepted).verify(image, token, NOW)
    assert record["verdict"] == "ok" and accepted.probed == [str(image)]


def test_a_verify_image_on_another_registry_is_not_probed() -> None:
    token = Token(hosts=(REGISTRY,), username="AWS", password="fresh", expires_at=None)
    prober = Prober()
    with pytest.raises(ProviderError) as raised:
        _source(Kube(), prober).verify(ImageRef.parse("elsewhere.example.org/app:1"), token, NOW)
    assert (raised.value.reason, raised.value.retryable, prober.probed) == ("VerifyImageNotServed", False, [])
