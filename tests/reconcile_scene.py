"""A scene for the Reconciler and its parts without an API server: the in-memory API (tests/fake_kube.py)
with counters and injected failures, a renewable provider without a cloud, and credentials to reconcile."""

from __future__ import annotations

import dataclasses
import datetime
import random
from typing import Any

from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.kube import KubeError
from regcred.models import EcrSpec
from regcred.probe import ProbeResult, Verdict
from regcred.providers import Provider, ProviderError, Token, provider_for
from regcred.reconcile import Reconciler
from tests.fake_kube import FakeKube

NOW = datetime.datetime(2026, 12, 1, 18, 0, tzinfo=datetime.UTC)
REGISTRY = "registry.example.com"
NAME = "shop"
SETTINGS = Settings(write_concurrency=2)
ECR = {"ecr": {"region": "eu-west-1"}}
STATIC = {"static": {"registry": REGISTRY, "secretRef": {"namespace": "regcred-system", "name": "source"}}}


class Kube(FakeKube):
    """The in-memory API, counting status writes and failing what a test asks it to."""

    def __init__(self, namespaces: tuple[str, ...] = ()) -> None:
        super().__init__([{"metadata": {"name": name, "labels": {"team": "a"}}, "status": {"phase": "Active"}}
                          for name in namespaces])
        self.status_writes = 0
        self.failing: dict[str, KubeError] = {}  # namespace: what a write of a Secret there answers
        self.status_error: KubeError | None = None

    def _fail(self, namespace: str) -> None:
        if namespace in self.failing:
            raise self.failing[namespace]

    def create_secret(self, namespace: str, body: Any) -> dict[str, Any]:
        self._fail(namespace)
        return super().create_secret(namespace, body)

    def patch_secret(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        self._fail(namespace)
        return super().patch_secret(namespace, name, patch)

    def patch_credential_status(self, name: str, status: Any) -> None:
        if self.status_error is not None:
            raise self.status_error
        self.status_writes += 1
        super().patch_credential_status(name, status)

    def pull_secret(self, namespace: str, name: str = "pull") -> dict[str, Any] | None:
        return self.secrets.get((namespace, name))

    def condition(self, type_: str, name: str = NAME) -> dict[str, Any]:
        return next(c for c in self.status[name]["conditions"] if c["type"] == type_)


@dataclasses.dataclass
class Cloud:
    """A renewable provider (as ECR's) without a cloud: tokens valid for `lifetime`, or the error set."""

    lifetime: datetime.timedelta = datetime.timedelta(hours=12)
    error: ProviderError | None = None
    clock: Any = None
    minted: int = 0
    user_managed = False

    def mint(self, read_secret: Any) -> Token:
        if self.error is not None:
            raise self.error
        self.minted += 1
        return Token(hosts=(REGISTRY,), username="AWS", password=f"token-{self.minted}",
                     expires_at=self.clock.now() + self.lifetime)

    def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
        return None

    def factory(self, spec: Any, settings: Settings) -> Provider:
        return self if isinstance(spec, EcrSpec) else provider_for(spec, settings)


@dataclasses.dataclass
class Prober:
    """Answers every probe with one verdict, and records what was probed."""

    verdict: Verdict = Verdict.OK
    probed: list[str] = dataclasses.field(default_factory=list)

    def probe(self, image: Any, credentials: Any = None) -> ProbeResult:
        self.probed.append(str(image))
        status = 200 if self.verdict is Verdict.OK else 401
        return ProbeResult(self.verdict, status, f"The registry said {self.verdict}.")


def credential(provider: dict[str, Any] | None = None, *, generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": NAME, "generation": generation},
            "spec": {"secretName": "pull", "namespaces": {"selector": {"matchLabels": {"team": "a"}}},
                     "serviceAccounts": ["default"], "provider": provider or ECR, **spec}}


def scene_reconciler(kube: FakeKube, clock: ManualClock, cloud: Cloud) -> Reconciler:
    """A Reconciler over the in-memory API, minting from `cloud`, probing nothing, with a seeded jitter."""
    return Reconciler(kube, SETTINGS, clock, providers=cloud.factory, prober=Prober(),  # type: ignore[arg-type]
                      rng=random.Random(0))
