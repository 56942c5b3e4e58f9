"""What tenants write on workloads, pods and pull Secrets, and what the kubelet says, is read or ignored.

Diagnosis and remediation read the `regcred.dev/remediated` record and the `regcred.dev/remediate` opt-out on
workloads and namespaces, the Job controller's failure count on pods, kubelet waiting messages and `Failed`
Events (whose text quotes a registry or a proxy), and `regcred doctor` reads every pull Secret a pod names.
All of it is tenant-writable. The property: each reader returns (a value, None, or "not this"), never raises,
and takes bounded time on megabyte inputs; and the Remediator, on an in-memory cluster (tests/fake_kube.py),
handles a stuck pod whatever its workload, namespace, ServiceAccount, Secret and Events say.
"""

from __future__ import annotations

import base64
import datetime
import json
import random
import time
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from regcred import dockerconfig as dc
from regcred.classify import classify, extract_image
from regcred.clock import ManualClock
from regcred.config import Settings
from regcred.diagnosis import (
    BACKOFF_PREFIX,
    FAILED_PREFIX,
    Action,
    decide,
    pull_error,
    pull_events,
    stuck_containers,
)
from regcred.doctor import _auths, _credentials, remediation_record
from regcred.fanout import CONTENT_HASH_ANNOTATION
from regcred.probe import ProbeResult, Verdict
from regcred.reconcile import Reconciler
from regcred.remediation import Remediator
from regcred.workloads import (
    JOB_INDEX_FAILURES,
    KINDS,
    OPT_OUT_ANNOTATION,
    REMEDIATED_ANNOTATION,
    already_done,
    job_retries_left,
    opted_out,
    plan,
    record_patch,
    remediations_of,
    rollout_patch,
)
from tests.fake_kube import FakeKube
from tests.hostile import BYTES, HOSTILE_TEXT, JSON_VALUES, TEXT, TIMESTAMPS, json_text

NOW = datetime.datetime(2026, 12, 1, 18, 0, tzinfo=datetime.UTC)
CREDENTIAL = "fuzzed"
FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
BOUND_SECONDS = 2.0  # per example, on a loaded machine: a quadratic parse of a megabyte takes minutes


# -- workloads: the remediation record, the opt-out, the Job's failure count ------------------------------------

RECORDS = st.one_of(
    json_text(),
    st.dictionaries(st.one_of(st.just(CREDENTIAL), HOSTILE_TEXT), JSON_VALUES, max_size=3).map(json.dumps),
    st.fixed_dictionaries({"revision": st.one_of(st.just("rev-1"), HOSTILE_TEXT), "time": TIMESTAMPS}).map(
        lambda entry: json.dumps({CREDENTIAL: entry})),
)
ANNOTATIONS = st.fixed_dictionaries({}, optional={REMEDIATED_ANNOTATION: RECORDS, OPT_OUT_ANNOTATION: TEXT,
                                                   JOB_INDEX_FAILURES: TEXT})
WORKLOAD = st.fixed_dictionaries({
    "kind": st.sampled_from(sorted(KINDS)),
    "annotations": ANNOTATIONS,
    "spec": st.fixed_dictionaries({}, optional={
        "paused": st.booleans(), "suspend": st.booleans(),
        "backoffLimit": st.integers(0, 10), "backoffLimitPerIndex": st.integers(0, 10),
        "updateStrategy": st.fixed_dictionaries({"type": st.sampled_from(["OnDelete", "RollingUpdate"])}),
        "podManagementPolicy": st.sampled_from(["OrderedReady", "Parallel"]),
    }),
    "pod_annotations": ANNOTATIONS,
    "namespace_annotations": ANNOTATIONS,
})


def workload_example(**annotations: str) -> dict[str, Any]:
    return {"kind": "Job", "annotations": annotations, "spec": {"backoffLimitPerIndex": 3},
            "pod_annotations": annotations, "namespace_annotations": {}}


# The crashes this test found, kept as examples.
@example(shape=workload_example(**{REMEDIATED_ANNOTATION: '{"fuzzed": "x"}'}), strategy="RolloutRestart", per_pod=False)
@example(shape=workload_example(**{REMEDIATED_ANNOTATION: "[" * 100_000}), strategy="RolloutRestart", per_pod=False)
@example(shape=workload_example(**{JOB_INDEX_FAILURES: "²"}), strategy="DeletePods", per_pod=True)
@FUZZ
@given(shape=WORKLOAD, strategy=st.sampled_from(["RolloutRestart", "DeletePods"]), per_pod=st.booleans())
def test_workload_and_namespace_annotations_are_read_or_ignored(
    shape: dict[str, Any], strategy: str, per_pod: bool
) -> None:
    workload = {"metadata": {"name": "web", "namespace": "shop", "annotations": shape["annotations"]},
                "spec": shape["spec"]}
    pod = {"metadata": {"name": "web-1", "namespace": "shop", "annotations": shape["pod_annotations"]}}
    namespace = {"metadata": {"name": "shop", "annotations": shape["namespace_annotations"]}}
    started = time.monotonic()

    done = remediations_of(workload)
    assert all(isinstance(entry, dict) for entry in done.values())
    why = already_done(workload, CREDENTIAL, "rev-2", NOW, datetime.timedelta(minutes=10), per_pod=per_pod)
    assert why is None or isinstance(why, str)
    assert isinstance(opted_out(workload, namespace, None), bool)
    for patch in (rollout_patch(workload, CREDENTIAL, "rev-2", NOW), record_patch(workload, CREDENTIAL, "rev-2", NOW)):
        written = json.loads(patch["metadata"]["annotations"][REMEDIATED_ANNOTATION])
        assert written[CREDENTIAL]["revision"] == "rev-2"
    assert job_retries_left(workload, pod) is None or isinstance(job_retries_left(workload, pod), str)
    decided = plan(shape["kind"], workload, pod, strategy)
    assert decided.action in (None, "RolloutRestart", "DeletePods")
    record = remediation_record(workload, CREDENTIAL)
    assert record is None or all(isinstance(field, str) and len(field) <= 64 for field in record)

    assert time.monotonic() - started < BOUND_SECONDS


# -- the kubelet's messages and Events -----------------------------------------------------------------------------

IMAGES = st.one_of(st.sampled_from(["registry.example.com/team/app:1.0", "nginx", "ghcr.io/o/r@sha256:" + "a" * 64]),
                   HOSTILE_TEXT)
MESSAGES = st.one_of(
    TEXT,
    st.tuples(IMAGES, TEXT).map(lambda parts: f'{FAILED_PREFIX}{parts[0]}": {parts[1]}'),
    st.tuples(IMAGES, TEXT).map(lambda parts: f'{BACKOFF_PREFIX}{parts[0]}": ErrImagePull: {parts[1]}'),
    st.tuples(TEXT, TEXT).map(lambda parts: f"rpc error: code = Unknown desc = [{parts[0]}, rpc error: code = "
                                            f"NotFound desc = {parts[1]}]"),
    st.tuples(TEXT, TEXT).map(lambda parts: f"(Mirrors also failed: [{parts[0]}]): {parts[1]}"),
)
REASONS = st.one_of(st.sampled_from(["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "RegistryUnavailable",
                                     "FailedToRetrieveImagePullSecret"]), HOSTILE_TEXT, st.none())
CONTAINER_STATUS = st.fixed_dictionaries({
    "name": HOSTILE_TEXT, "image": IMAGES,
    "state": st.fixed_dictionaries({"waiting": st.fixed_dictionaries({
        "reason": st.sampled_from(["ErrImagePull", "ImagePullBackOff"]), "message": MESSAGES})}),
})
EVENT = st.fixed_dictionaries({
    "reason": st.sampled_from(["Failed", "BackOff"]), "message": MESSAGES,
    "lastTimestamp": TIMESTAMPS, "firstTimestamp": TIMESTAMPS, "eventTime": st.one_of(st.none(), TIMESTAMPS),
    "series": st.fixed_dictionaries({}, optional={"lastObservedTime": TIMESTAMPS}),
})
POD = st.fixed_dictionaries({
    "metadata": st.fixed_dictionaries({"name": st.just("web-1"), "namespace": st.just("shop"),
                                       "creationTimestamp": TIMESTAMPS}),
    "spec": st.fixed_dictionaries({"imagePullSecrets": st.lists(
        st.fixed_dictionaries({"name": st.one_of(st.just("pull"), HOSTILE_TEXT)}), max_size=3)}),
    "status": st.fixed_dictionaries({"containerStatuses": st.lists(CONTAINER_STATUS, min_size=1, max_size=2),
                                     "initContainerStatuses": st.lists(CONTAINER_STATUS, max_size=1)}),
})


@FUZZ
@given(pod=POD, events=st.lists(EVENT, max_size=4), message=MESSAGES, reason=REASONS,
       account=st.lists(st.one_of(st.just("pull"), HOSTILE_TEXT), max_size=2), in_place=st.booleans())
def test_kubelet_messages_and_events_are_classified_in_bounded_time(
    pod: dict[str, Any], events: list[dict[str, Any]], message: str, reason: str | None, account: list[str],
    in_place: bool,
) -> None:
    started = time.monotonic()
    verdict = classify(message, reason)
    assert len(verdict.evidence) <= 120
    image = extract_image(message)
    assert image is None or isinstance(image, str)

    failures = pull_events(events)
    for stuck in stuck_containers(pod):
        text, _newest = pull_error(stuck, failures)
        assert isinstance(text, str)
        decision = decide(pod, stuck, served_hosts=["registry.example.com", "ghcr.io"], secret_name="pull",
                          account_pull_secrets=account, secret_in_place=in_place, events=failures,
                          revision_since=NOW - datetime.timedelta(minutes=5), first_seen=NOW)
        assert decision.action in Action
        assert decision.why.strip(), decision
    assert time.monotonic() - started < BOUND_SECONDS


# -- pull Secrets as `regcred doctor` reads them --------------------------------------------------------------------

DOCUMENTS = st.one_of(
    BYTES,
    JSON_VALUES.map(lambda auths: json.dumps({"auths": auths}).encode()),
    st.dictionaries(HOSTILE_TEXT, st.fixed_dictionaries({}, optional={
        "username": JSON_VALUES, "password": JSON_VALUES,
        "auth": st.one_of(HOSTILE_TEXT, BYTES.map(lambda raw: base64.b64encode(raw).decode())),
    }), max_size=3).map(lambda auths: json.dumps({"auths": auths}).encode()),
)
ENCODED = st.one_of(DOCUMENTS.map(lambda raw: base64.b64encode(raw).decode()), HOSTILE_TEXT, st.none(),
                    st.integers())


@example(type_=dc.SECRET_TYPE, data={dc.DATA_KEY: base64.b64encode(b"[" * 100_000).decode()})
@example(type_="kubernetes.io/dockercfg", data={".dockercfg": "\u00e9"})
@example(type_=dc.SECRET_TYPE, data={dc.DATA_KEY: base64.b64encode(rb'{"auths": {"h": {"auth": "\u00e9"}}}').decode()})
@FUZZ
@given(type_=st.sampled_from([dc.SECRET_TYPE, "kubernetes.io/dockercfg", "Opaque"]),
       data=st.dictionaries(st.sampled_from([dc.DATA_KEY, ".dockercfg", "other"]), ENCODED, max_size=2))
def test_a_tenant_s_pull_secret_is_read_or_ignored(type_: str, data: dict[str, Any]) -> None:
    started = time.monotonic()
    secret = {"metadata": {"name": "pull", "namespace": "shop"}, "type": type_, "data": data}
    for host, entry in _auths(secret, type_).items():
        assert isinstance(host, str)
        credentials = _credentials(entry)
        assert credentials is None or all(isinstance(part, str) and part for part in credentials)
    content = dc.decode_data(secret)
    if content is not None:
        token = dc.parse_token(content, None)
        assert token is None or (isinstance(token.username, str) and isinstance(token.password, str))
    assert time.monotonic() - started < BOUND_SECONDS


# -- the whole of remediation, on an in-memory cluster -------------------------------------------------------------

REGISTRY = "registry.example.com"
OWNERS = st.sampled_from(["Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet", "none"])
VERDICTS = st.sampled_from(list(Verdict))


class FixedProber:
    """What a probe with the credential in place answers, without a registry."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict

    def probe(self, image: Any, credentials: Any = None) -> ProbeResult:
        status = 200 if self.verdict is Verdict.OK else 401
        return ProbeResult(self.verdict, status, f"The registry says {self.verdict}.")


def cluster(shape: dict[str, Any], pod: dict[str, Any]) -> tuple[FakeKube, dict[str, Any]]:
    kube = FakeKube([{"metadata": {"name": "shop", "annotations": shape["namespace_annotations"]},
                      "status": {"phase": "Active"}}])
    kube.put_source_secret("regcred-system", "source", {"username": b"puller", "password": b"pw"})
    kube.put_service_account({"metadata": {"namespace": "shop", "name": "default"},
                              "imagePullSecrets": [{"name": name} for name in shape["account_secrets"]]})
    credential = {"metadata": {"name": CREDENTIAL, "generation": 1}, "spec": {
        "secretName": "pull", "namespaces": {"names": ["shop"]}, "serviceAccounts": [],
        "provider": {"static": {"registry": REGISTRY, "secretRef": {"namespace": "regcred-system", "name": "source"}}},
        "remediation": {"strategy": shape["strategy"], "dryRun": shape["dry_run"]},
    }}
    owner = shape["owner"]
    if owner != "none":
        kind = KINDS[owner]
        workload = {"metadata": {"name": "web", "namespace": "shop", "uid": "w-1",
                                 "annotations": shape["annotations"]},
                    "spec": {**shape["spec"], "template": {"spec": {"imagePullSecrets": [
                        {"name": name} for name in shape["template_secrets"]]}}}}
        kube.objects[(kind.plural, "shop", "web")] = workload
        reference = {"kind": owner, "name": "web", "controller": True}
        if owner == "Deployment":  # through its ReplicaSet, as the pod's owner
            kube.objects[("replicasets", "shop", "web-1")] = {
                "metadata": {"name": "web-1", "namespace": "shop", "ownerReferences": [reference]}}
            reference = {"kind": "ReplicaSet", "name": "web-1", "controller": True}
        pod["metadata"]["ownerReferences"] = [reference]
    pod["metadata"].update({"uid": "p-1", "annotations": shape["pod_annotations"]})
    kube.pod_events[("shop", "web-1")] = shape["events"]
    return kube, credential


REMEDIATION = st.fixed_dictionaries({
    "owner": OWNERS, "strategy": st.sampled_from(["RolloutRestart", "DeletePods", "None"]), "dry_run": st.booleans(),
    "annotations": ANNOTATIONS, "pod_annotations": ANNOTATIONS, "namespace_annotations": ANNOTATIONS,
    "spec": WORKLOAD.map(lambda workload: workload["spec"]),
    # Most examples must get as far as a restart: the pull Secret in place and used, a probe that can pull.
    "account_secrets": st.one_of(st.just(["pull"]), st.lists(st.one_of(st.just("pull"), HOSTILE_TEXT.filter(bool)),
                                                             max_size=2)),
    "template_secrets": st.one_of(st.just([]), st.lists(st.one_of(st.just("pull"), HOSTILE_TEXT.filter(bool)),
                                                        max_size=2)),
    "events": st.lists(EVENT, max_size=3),
    "secret_annotations": st.one_of(st.none(), st.none(), st.dictionaries(st.just(CONTENT_HASH_ANNOTATION), TEXT)),
    "verdict": st.one_of(st.just(Verdict.OK), VERDICTS),
})
UNAUTHORIZED = f'{FAILED_PREFIX}{REGISTRY}/team/app:1.0": failed to authorize: 401 Unauthorized'
SERVED_POD = st.tuples(POD, st.one_of(st.just(UNAUTHORIZED), MESSAGES)).map(lambda parts: {
    **parts[0], "status": {"containerStatuses": [
        {**status, "image": f"{REGISTRY}/team/app:1.0",
         "state": {"waiting": {"reason": "ErrImagePull", "message": parts[1]}}}
        for status in parts[0]["status"]["containerStatuses"]]}})


@settings(FUZZ, max_examples=300)
@given(shape=REMEDIATION, pod=SERVED_POD)
def test_remediation_handles_a_stuck_pod_whatever_its_workload_says(shape: dict[str, Any], pod: dict[str, Any]) -> None:
    kube, credential = cluster(shape, pod)
    clock = ManualClock(NOW)
    config = Settings(write_concurrency=1)
    reconciler = Reconciler(kube, config, clock, rng=random.Random(0))  # type: ignore[arg-type]
    try:
        reconciler.reconcile(credential)
        assert CREDENTIAL in reconciler.served.all(), kube.status
        if shape["secret_annotations"] is not None:
            kube.secrets[("shop", "pull")]["metadata"]["annotations"] = shape["secret_annotations"]
        remediator = Remediator(kube, reconciler.served, reconciler.reporter, config, clock,  # type: ignore[arg-type]
                                prober=FixedProber(shape["verdict"]))  # type: ignore[arg-type]
        started = time.monotonic()
        assert remediator.handle_pod(pod), "handling the pod raised: see the log"
        clock.advance(datetime.timedelta(minutes=11))  # past the decision memory and the rollout's grace
        assert remediator.handle_pod(pod), "handling the pod again raised: see the log"
        remediator.pod_gone(pod)
        assert time.monotonic() - started < BOUND_SECONDS
        event(" ".join(sorted({e["reason"] for e in kube.events if e["kind"] != "RegistryCredential"})) or "no Event")
    finally:
        reconciler.close()
