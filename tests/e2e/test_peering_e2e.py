"""Several replicas in one peering object (issue 11 points 7 and 8): only one ever acts, through a failover, a
flip back and a peering object recreated under them; a replica that was paused acts on what is, not on what
it cached before the pause.

The replicas are operators in this process (harness.Replica), each with its own Runtime: what each did is
counted on its own Reconciler, and a watcher thread checks that no two have credential loops at once.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml

from regcred.clock import Clock, ManualClock, SystemClock
from regcred.config import Settings
from regcred.models import ProviderSpec
from regcred.providers.base import Provider, ProviderError, SecretReader, Token
from regcred.tokens import ProviderFactory
from tests.e2e.harness import PEERING_NAME, Cluster, OperatorFactory, Replica, eventually

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SELECTOR = "regcred.dev/credential=hub"
PEERING = f"/apis/kopf.dev/v1/clusterkopfpeerings/{PEERING_NAME}"
SPEC = {
    "provider": {"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
    "secretName": "hub-pull",
    "namespaces": {"selector": {"matchLabels": {"team": "shop"}}},
}


class Registry:
    """A renewable provider (as ECR or GAR are) shared by the replicas: every mint a new token, valid for 12 hours
    on the minting replica's clock; ``broken`` makes minting fail."""

    def __init__(self) -> None:
        self.minted = 0
        self.broken = False
        self._lock = threading.Lock()

    def provider(self, clock: Clock) -> ProviderFactory:
        registry = self

        class Minting:
            user_managed = False

            def mint(self, read_secret: SecretReader) -> Token:
                if registry.broken:
                    raise ProviderError("The registry is down.", reason="RegistryDown")
                with registry._lock:
                    registry.minted += 1
                    number = registry.minted
                return Token(("docker.io",), "robot", f"token-{number}", clock.now() + datetime.timedelta(hours=12))

            def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
                return None

        def factory(spec: ProviderSpec, settings: Settings) -> Provider:
            return Minting()
        return factory


class OneActor:
    """Watches the replicas from a thread: the moments when more than one had credential loops running."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self.both: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            if sum(1 for r in list(self.replicas) if r.embedded is not None and r.runtime.wakeups.active) > 1:
                self.both.append(time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def shop(cluster: Cluster) -> Cluster:
    """The peering CRDs as the chart installs them; no peering object: the first replica creates it."""
    for crd in yaml.safe_load_all((ROOT / "crds" / "kopf-peering.yaml").read_text()):
        cluster.backend.install_crd(crd)
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "hub", {"username": "robot", "password": "unused"})
    for name in ("web", "api"):
        cluster.namespace(name, {"team": "shop"})
    return cluster


@pytest.fixture
def one_actor(operator: OperatorFactory) -> Iterator[OneActor]:
    watcher = OneActor(operator.replicas)
    yield watcher
    watcher.stop()


def test_one_replica_acts_through_failover_flip_back_and_a_recreated_peering_object(
    shop: Cluster, operator: OperatorFactory, one_actor: OneActor
) -> None:
    registry = Registry()
    active = operator.start_replica(200, providers=registry.provider(SystemClock()))
    shop.apply_credential("hub", SPEC)
    eventually(lambda: _equal(set(shop.secrets(SELECTOR)), {"web", "api"}), timeout=30)
    standby = operator.start_replica(100, providers=registry.provider(SystemClock()))
    eventually(lambda: _equal(len(_peers(shop)), 2), timeout=30)

    # The standby never acts while the active one lives, also when the peering object is deleted and
    # created again empty (what the chart's post-upgrade hook did): kopf would resume it on the empty object.
    shop.namespace("cart", {"team": "shop"})
    eventually(lambda: _equal(set(shop.secrets(SELECTOR)), {"web", "api", "cart"}), timeout=30)
    shop.api_request("DELETE", PEERING)
    shop.api_request("POST", "/apis/kopf.dev/v1/clusterkopfpeerings", {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING_NAME}})
    eventually(lambda: _equal(len(_peers(shop)), 2), timeout=30)  # both keep-alives are back
    time.sleep(4 + 2 + 1)  # past the recreated object's first lifetime: the standby has decided again
    shop.namespace("checkout", {"team": "shop"})
    eventually(lambda: _equal(set(shop.secrets(SELECTOR)), {"web", "api", "cart", "checkout"}), timeout=30)
    assert standby.reconciler.passes == []
    assert not one_actor.both

    # Failover: the active replica stops; the standby takes over (the token from the store: no mint).
    active.stop()
    shop.namespace("search", {"team": "shop"})
    eventually(lambda: _equal(set(shop.secrets(SELECTOR)), {"web", "api", "cart", "checkout", "search"}), timeout=30)
    assert standby.reconciler.passes

    # Flip back: a replica of higher priority starts; it acts only once the standby stopped acting.
    back = operator.start_replica(300, providers=registry.provider(SystemClock()))
    eventually(lambda: _assert(back.reconciler.passes), timeout=60)
    first = back.reconciler.passes[0][0]
    assert all(end < first for _, end in standby.reconciler.passes)
    eventually(lambda: _assert(not standby.runtime.wakeups.active), timeout=10)
    shop.namespace("orders", {"team": "shop"})
    eventually(lambda: _equal(len(shop.secrets(SELECTOR)), 6), timeout=30)
    assert all(end < first for _, end in standby.reconciler.passes)

    assert registry.minted == 1  # minted once; every replica after the first took it from the store
    assert not one_actor.both, "two replicas had credential loops running at once"


def test_a_paused_replica_forgets_what_it_cached_and_its_gauges(
    shop: Cluster, operator: OperatorFactory, one_actor: OneActor
) -> None:
    registry = Registry()
    start = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    clock = ManualClock(start)
    first = operator.start_replica(200, clock=clock, providers=registry.provider(clock))
    shop.apply_credential("hub", SPEC)
    eventually(lambda: _equal(_tokens(shop), {"token-1"}), timeout=30)
    eventually(lambda: _equal(_gauge(), 1.0))

    # Another operator of higher priority appears: this replica pauses, and its gauges go with it.
    shop.api_request("PATCH", PEERING + "/status", {"status": {"intruder": {
        "priority": 1000, "lifetime": 3600, "lastseen": datetime.datetime.now(datetime.UTC).isoformat()}}})
    eventually(lambda: _assert(not first.runtime.wakeups.active), timeout=15)
    eventually(lambda: _equal(_gauge(), None), timeout=10)

    # A replica of higher priority than the first takes over when the intruder leaves; on its clock the token is
    # due for renewal, but the registry is down: it publishes TokenReady False.
    registry.broken = True
    later = ManualClock(start + datetime.timedelta(hours=11, minutes=59))
    second = operator.start_replica(300, clock=later, providers=registry.provider(later))
    shop.api_request("PATCH", PEERING + "/status", {"status": {"intruder": None}})
    eventually(lambda: _equal(shop.condition("hub", "TokenReady")["status"], "False"), timeout=60)
    assert not first.runtime.wakeups.active

    # It stops; the first resumes. Its token is still good by its own clock: TokenReady True, and it must say
    # so, although it published just that before its pause.
    registry.broken = False
    second.stop()
    eventually(lambda: _equal(shop.condition("hub", "TokenReady")["status"], "True"), timeout=30)
    eventually(lambda: _equal(_gauge(), 1.0))

    # Again, and this time the other replica renews the token: the first, resumed, must not write its old one
    # back (it takes the renewed one from the store).
    third = operator.start_replica(300, clock=later, providers=registry.provider(later))
    eventually(lambda: _equal(_tokens(shop), {"token-2"}), timeout=60)
    resumed_at = time.monotonic()
    third.stop()
    eventually(lambda: _assert(first.reconciler.passes_since(resumed_at) >= 1), timeout=30)
    shop.namespace("cart", {"team": "shop"})
    eventually(lambda: _equal(set(shop.secrets(SELECTOR)), {"web", "api", "cart"}), timeout=30)
    assert _tokens(shop) == {"token-2"}
    assert registry.minted == 2
    assert not one_actor.both


def _tokens(cluster: Cluster) -> set[str]:
    return {cluster.dockerconfig(ns, "hub-pull")["auths"]["docker.io"]["password"]
            for ns in cluster.secrets(SELECTOR)}


def _gauge() -> float | None:
    return prometheus_client.REGISTRY.get_sample_value("regcred_credential_ready", {"credential": "hub"})


def _peers(cluster: Cluster) -> dict[str, Any]:
    status: dict[str, Any] = cluster.api_request("GET", PEERING).get("status") or {}
    return status


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert(value: object) -> None:
    assert value
