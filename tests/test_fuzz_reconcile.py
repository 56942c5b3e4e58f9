"""A reconciliation survives whatever tenants put in the cluster: it returns, and says why it cannot serve.

`Reconciler.reconcile()` runs against an in-memory API (tests/fake_kube.py), no kopf, no network, over
generated scenes: the source Secret of a static credential or of a GitHub PAT (keys missing, values binary,
huge, not UTF-8, JSON nested thousands deep), the operator's own Secrets in tenant namespaces with their data
and annotations edited (times out of range, hashes forged so that the token is adopted), Secrets of the same
name it does not manage, ServiceAccounts with odd imagePullSecrets and `regcred.dev/attached-secrets` values,
namespaces with odd labels, and what the registry answers the probe of spec.verify.image. The properties:
reconcile() returns an Outcome, twice in a row; the published status has a Ready condition with a sentence, and
Ready=False has a reason; no secret value reaches status or an Event.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import random
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from regcred import CREDENTIAL_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred import dockerconfig as dc
from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.fanout import (
    ATTACHED_ANNOTATION,
    CONTENT_HASH_ANNOTATION,
    EXPIRATION_ANNOTATION,
    MINTED_ANNOTATION,
    PROVIDER_HASH_ANNOTATION,
)
from regcred.models import EcrSpec
from regcred.probe import Prober
from regcred.providers import Provider, Token, provider_for
from regcred.reconcile import Outcome, Reconciler
from regcred.status import READY
from regcred.tokens import provider_hash
from tests.canned_http import session
from tests.fake_kube import FakeKube
from tests.hostile import BYTES, HOSTILE_TEXT, JSON_VALUES, TIMESTAMPS, json_text
from tests.test_fuzz_probe import ANSWERS as PROBE_ANSWERS

NAME = "fuzzed"
SECRET_NAME = "pull"
REGISTRY = "registry.example.com"
SOURCE = ("regcred-system", "source")
CANARY = "c4n4ry-s3cr3t"  # in every secret value: it must show nowhere
NAMESPACES = ["team-a", "team-b", "kube-system", "regcred-system"]
NOW = datetime.datetime(2026, 12, 1, 18, 0, tzinfo=datetime.UTC)
RENEWABLE = Token(hosts=(REGISTRY,), username="AWS", password=f"{CANARY}-ecr",
                  expires_at=NOW + datetime.timedelta(hours=12))


@dataclasses.dataclass
class Renewable:
    """A renewable provider (as ECR's) without a cloud: the same token each time."""

    user_managed = False

    def mint(self, read_secret: Any) -> Token:
        return RENEWABLE

    def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
        return None


def providers(spec: Any, config: Settings) -> Provider:
    return Renewable() if isinstance(spec, EcrSpec) else provider_for(spec, config)


PROVIDERS = {
    "static": {"static": {"registry": REGISTRY, "secretRef": {"namespace": SOURCE[0], "name": SOURCE[1]}}},
    # A registry without a known GitHub API: the PAT is read and written unchecked, no request is made.
    "ghcr": {"ghcr": {"registry": REGISTRY, "username": "bot",
                      "tokenSecretRef": {"namespace": SOURCE[0], "name": SOURCE[1]}}},
    "ecr": {"ecr": {"region": "eu-west-1"}},
}

# A Secret value: hostile bytes, or a plausible value that carries the canary.
VALUES = st.one_of(BYTES, st.text(max_size=20).map(lambda text: f"{CANARY}{text}".encode()))
SOURCE_DATA = st.one_of(
    st.none(),  # the source Secret does not exist
    st.dictionaries(st.one_of(st.sampled_from(["username", "password", "token"]), HOSTILE_TEXT), VALUES, max_size=4),
    st.fixed_dictionaries({"username": st.text(max_size=10).map(str.encode), "password": VALUES,
                           "token": VALUES}),
)
LABELS = st.dictionaries(st.one_of(st.just("team"), HOSTILE_TEXT), st.one_of(st.just("a"), HOSTILE_TEXT), max_size=3)
NAMESPACE = st.fixed_dictionaries({"labels": LABELS, "terminating": st.booleans()})

# The operator's own Secret in a namespace, as a tenant may have left it: edited into garbage, or forged (the
# content the operator would write now, both hashes right, so that it adopts the token) with odd times.
GARBAGE_SECRET = st.fixed_dictionaries({
    "managed": st.booleans(),
    "type": st.sampled_from([dc.SECRET_TYPE, "Opaque", "kubernetes.io/dockercfg"]),
    "data": st.one_of(st.just("intact"), BYTES.map(lambda raw: base64.b64encode(raw).decode()), HOSTILE_TEXT,
                      st.none()),
    "content_hash": st.one_of(st.just("intact"), HOSTILE_TEXT),
    "provider_hash": st.one_of(st.just("intact"), HOSTILE_TEXT),
    "minted": TIMESTAMPS,
    "expires": st.one_of(st.none(), TIMESTAMPS),
})
# Forged: what the operator would write now, or any document, with its content hash right.
DOCUMENTS = st.one_of(
    BYTES,
    JSON_VALUES.map(lambda auths: json.dumps({"auths": auths}).encode()),
    st.dictionaries(HOSTILE_TEXT, JSON_VALUES, max_size=3).map(
        lambda odd: json.dumps({"auths": {REGISTRY: {"username": "u", "password": "p"}, **odd}}).encode()),
)
FORGED_SECRET = st.fixed_dictionaries({
    "managed": st.just(True), "type": st.just(dc.SECRET_TYPE),
    "data": st.one_of(st.just("intact"), DOCUMENTS.map(lambda raw: ("forged", raw))),
    "content_hash": st.just("intact"), "provider_hash": st.just("intact"),
    "minted": TIMESTAMPS, "expires": st.one_of(st.none(), TIMESTAMPS),
})
EXISTING_SECRET = st.one_of(st.none(), GARBAGE_SECRET, FORGED_SECRET)
PULL_SECRET_ENTRIES = st.lists(st.one_of(
    st.fixed_dictionaries({"name": st.one_of(st.just(SECRET_NAME), HOSTILE_TEXT)}),
    st.just({}),
    st.text(max_size=5), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2),
), max_size=4)
SERVICE_ACCOUNT = st.fixed_dictionaries({
    "imagePullSecrets": st.one_of(PULL_SECRET_ENTRIES, st.none(), HOSTILE_TEXT),
    "attached": st.one_of(st.none(), st.just(json.dumps({NAME: SECRET_NAME})), json_text()),
})
SCENE = st.fixed_dictionaries({
    "provider": st.sampled_from(sorted(PROVIDERS)),
    "service_accounts": st.sampled_from([["default"], ["*"], ["default", "builder"], []]),
    "source": SOURCE_DATA,
    "namespaces": st.fixed_dictionaries({name: NAMESPACE for name in NAMESPACES}),
    "secrets": st.fixed_dictionaries({name: EXISTING_SECRET for name in NAMESPACES}),
    "accounts": st.fixed_dictionaries({name: st.lists(SERVICE_ACCOUNT, max_size=2) for name in NAMESPACES[:2]}),
    # spec.verify.image: what the registry answers the probe of a freshly minted token
    "verify": st.one_of(st.none(), PROBE_ANSWERS),
})


def intact_content(provider: str, source: dict[str, bytes] | None) -> bytes:
    """What the operator would write now, when the source can be read at all (else anything)."""
    if provider == "ecr":
        return dc.render(RENEWABLE)
    source = source or {}
    try:
        if provider == "static":
            username, password = source["username"].decode(), source["password"].decode()
        else:
            username, password = "bot", source["token"].decode().strip()
    except (KeyError, UnicodeDecodeError):
        username, password = "nobody", CANARY
    return dc.render(Token(hosts=(REGISTRY,), username=username, password=password, expires_at=None))


def build(scene: dict[str, Any]) -> tuple[FakeKube, dict[str, Any]]:
    spec = {
        "secretName": SECRET_NAME,
        "namespaces": {"names": ["team-b"], "selector": {"matchLabels": {"team": "a"}}, "exclude": ["kube-system"]},
        "serviceAccounts": scene["service_accounts"],
        "provider": PROVIDERS[scene["provider"]],
    }
    if scene["verify"] is not None:
        spec["verify"] = {"image": f"{REGISTRY}/team/app:1.0"}
    credential = {"metadata": {"name": NAME, "generation": 1}, "spec": spec}
    kube = FakeKube([
        {"metadata": {"name": name, "labels": shape["labels"]},
         "status": {"phase": "Terminating" if shape["terminating"] else "Active"}}
        for name, shape in scene["namespaces"].items()
    ])
    if scene["source"] is not None:
        kube.put_source_secret(*SOURCE, scene["source"])
    content = intact_content(scene["provider"], scene["source"])
    for namespace, existing in scene["secrets"].items():
        if existing is None:
            continue
        written, data = content, existing["data"]
        if data == "intact":
            data = base64.b64encode(content).decode()
        elif isinstance(data, tuple):
            written = data[1]
            data = base64.b64encode(written).decode()
        annotations = {
            CONTENT_HASH_ANNOTATION: dc.content_hash(written) if existing["content_hash"] == "intact"
            else existing["content_hash"],
            PROVIDER_HASH_ANNOTATION: provider_hash(spec) if existing["provider_hash"] == "intact"
            else existing["provider_hash"],
            MINTED_ANNOTATION: existing["minted"],
            **({EXPIRATION_ANNOTATION: existing["expires"]} if existing["expires"] is not None else {}),
        }
        labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, CREDENTIAL_LABEL: NAME} if existing["managed"] else {}
        kube.put_secret({"metadata": {"namespace": namespace, "name": SECRET_NAME, "labels": labels,
                                      "annotations": annotations},
                         "type": existing["type"], "data": {dc.DATA_KEY: data} if data is not None else {}})
    for namespace, accounts in scene["accounts"].items():
        for name, account in zip(["default", "builder"], accounts, strict=False):
            annotations = {ATTACHED_ANNOTATION: account["attached"]} if account["attached"] is not None else {}
            kube.put_service_account({"metadata": {"namespace": namespace, "name": name, "annotations": annotations},
                                      "imagePullSecrets": account["imagePullSecrets"]})
    return kube, credential


def check_status(kube: FakeKube) -> None:
    status = kube.status.get(NAME) or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == READY), None)
    assert ready is not None, status
    assert ready["status"] in ("True", "False"), ready
    event(f"Ready={ready['status']} ({ready['reason']})")
    message = ready["message"]
    assert isinstance(message, str) and message.strip() and message.rstrip().endswith("."), ready
    if ready["status"] == "False":
        assert ready["reason"], ready
    published = json.dumps([status, kube.events], default=str)
    assert CANARY not in published, "a secret value reached status or an Event"


BASE_SCENE: dict[str, Any] = {
    "provider": "static", "service_accounts": ["default"], "source": {"username": b"u", "password": b"p"},
    "namespaces": {name: {"labels": {"team": "a"}, "terminating": False} for name in NAMESPACES},
    "secrets": {name: None for name in NAMESPACES}, "accounts": {"team-a": [], "team-b": []}, "verify": None,
}


def scene_with(secret: dict[str, Any] | None = None, account: dict[str, Any] | None = None) -> dict[str, Any]:
    """The base scene with one managed Secret in team-a, or one ServiceAccount there."""
    scene = {**BASE_SCENE, "secrets": {**BASE_SCENE["secrets"], "team-a": secret}}
    if account is not None:
        scene["accounts"] = {"team-a": [account], "team-b": []}
    return scene


def forged(data: Any = "intact", minted: str = "2026-12-01T17:00:00Z") -> dict[str, Any]:
    return {"managed": True, "type": dc.SECRET_TYPE, "data": data, "content_hash": "intact",
            "provider_hash": "intact", "minted": minted, "expires": None}


# The crashes this test found, kept as examples (each was an exception out of reconcile()).
@example(scene=scene_with(forged(minted="0001-01-01T00:00:00+01:00")))
@example(scene=scene_with({**forged(), "data": "\u00e9", "content_hash": "x"}))
@example(scene=scene_with(forged(("forged", b"[" * 100_000))))
@example(scene=scene_with(forged(("forged", json.dumps({"auths": {"a": {"username": "u", "password": "p"},
                                                                  "b": [1]}}).encode()))))
@example(scene=scene_with(account={"imagePullSecrets": ["ab", None, 1], "attached": None}))
@example(scene=scene_with(account={"imagePullSecrets": "0", "attached": None}))
@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(scene=SCENE)
def test_a_reconciliation_returns_and_says_why_whatever_tenants_wrote(scene: dict[str, Any]) -> None:
    kube, credential = build(scene)
    prober = Prober(session=session(scene["verify"] or [(500, [], b"")])[0])
    reconciler = Reconciler(kube, Settings(write_concurrency=2), ManualClock(NOW),  # type: ignore[arg-type]
                            providers=providers, prober=prober, rng=random.Random(0))
    try:
        for _ in range(2):  # the second one finds what the first wrote, and its own record of the status
            outcome = reconciler.reconcile(credential)
            assert isinstance(outcome, Outcome)
            assert outcome.wake_at > NOW
            check_status(kube)
    finally:
        reconciler.close()
