"""`regcred doctor`: why is this pod stuck pulling its image, what does regcred-operator do about it, and what
fixes it? For people, on the current kubeconfig.

For each container the kubelet reports as failing to pull (ErrImagePull / ImagePullBackOff), the walk
follows the order a good engineer debugs in: the image reference, the kubelet's pull error (from the
container status, or the pod's own `Failed` Events before Kubernetes 1.32), whether the registry is
private (an anonymous probe), the pod's and its ServiceAccount's ``imagePullSecrets``, each pull Secret
(exists, type, an entry for this registry, managed by us, expiry), and a probe with the pod's own credential.

The verdict is not the doctor's own: it is the operator's decision (`regcred.diagnosis.decide`), reached
with the inputs the operator uses — the pod, its ServiceAccount's pull secrets, each RegistryCredential
whose Secret serves the pod's namespace and registry (the Secret in place, its revision, when it reached
the namespace), the pod's template's pull secrets, the pod's `Failed` Events and a probe with the
credential in place. The doctor renders that decision (cause, action, why), what the operator did already
(the workload's `regcred.dev/remediated` record, the credential's status.remediations and its
CredentialRejected condition) or will do (the per-kind plan, opt-outs, cooldown), and a fix for people.
Only the operator's memory is out of reach (when it first saw the pod failing): the doctor knows the
failure time from Events only, so where the operator's own observations decide, the doctor may say
"not known" where the operator knows.

Nothing secret is printed: Secrets are described by name, type and registry host only; the probe's
details are scrubbed of passwords, tokens and user names.

Exit codes: 0 no pod is stuck pulling (or the named pod is not), 1 at least one container is stuck (each
diagnosed), 2 an error (the named pod does not exist, the API failed, no kubeconfig).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import functools
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import quote

from regcred import CREDENTIAL_LABEL, GROUP, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PLURAL, VERSION, argocd
from regcred import dockerconfig as dc
from regcred.classify import CREDENTIAL_CATEGORIES, Category, Classification, classify
from regcred.diagnosis import (
    MAX_EVENTS,
    PULL_SECRET_NOT_IN_TEMPLATE,
    Action,
    Decision,
    StuckContainer,
    decide,
    pull_error,
    pull_events,
    revision_reached,
    secret_in_place,
    served,
    stuck_containers,
)
from regcred.fanout import EXPIRATION_ANNOTATION, format_time, parse_time
from regcred.imageref import ImageRef, InvalidImageReference
from regcred.kube import KubeApi, KubeError
from regcred.models import CredentialSpec, SpecError, parse_credential
from regcred.probe import Prober, ProbeResult, Verdict
from regcred.redact import Credentials, map_strings, redact
from regcred.status import CREDENTIAL_REJECTED
from regcred.workloads import (
    Target,
    already_done,
    opted_out,
    plan,
    remediations_of,
    target_of,
    template_pull_secrets,
)

OK, BAD, WARN = "✓", "✗", "!"
DOCKERCFG_TYPE = "kubernetes.io/dockercfg"
DOCKERCFG_KEY = ".dockercfg"
PULL_SECRET_TYPES = (dc.SECRET_TYPE, DOCKERCFG_TYPE)
_MESSAGE_SHOWN = 300

# Terminal escape sequences, whole: CSI (ESC [ or 8-bit CSI, parameters, intermediates, final byte); OSC, DCS,
# SOS, PM and APC strings up to their terminator (BEL or ST) or, unterminated, the next ESC or the end; any
# other ESC sequence (intermediates and a final byte).
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"
)
# What is left of C0 (but tab and newline), DEL, C1, and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]+")


def printable(text: str, *, one_line: bool = True) -> str:
    """``text`` from a tenant, a kubelet or a registry, safe to show on a terminal.

    Escape sequences are removed whole, then every other control character; with ``one_line`` line breaks
    and tabs become a space (a message cannot forge a line of the report), otherwise tab and newline stay.
    """
    text = _ESCAPE_SEQUENCE.sub("", text)
    if one_line:
        text = _LINE_BREAKS.sub(" ", text)
    return _CONTROL.sub("", text)


def shown(text: str, credentials: Sequence[Credentials], *, one_line: bool = True, limit: int | None = None) -> str:
    """``text`` as the report shows it: :func:`printable`, then without the Secrets' ``credentials`` (user
    names too: the report names Secrets, never who they log in as), then cut to ``limit``."""
    text = printable(text, one_line=one_line)
    for username, _ in credentials:
        text = text.replace(f"user {username!r}", "the Secret's user")
    return redact(text, [username for username, _ in credentials], credentials=credentials, limit=limit)


EXIT_HEALTHY, EXIT_STUCK, EXIT_ERROR = 0, 1, 2
MAX_FIELD = 64  # characters kept of each field read from it
# Which decision to show when several credentials serve the same image: the one the operator acts on first.
_PRIORITY = {Action.REMEDIATE: 0, Action.REJECTED: 1, Action.EXPLAIN: 2, Action.IGNORE: 3}


# -- what was found ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KubeletReport:
    reason: str
    message: str  # the pull error (the container status's, or the newest Failed Event's)
    source: str  # "container status" | "Event" | "" (no message anywhere)
    classification: Classification


@dataclasses.dataclass(frozen=True)
class SecretCheck:
    """One pull Secret as it bears on one image. The credential itself is kept out of repr and output."""

    name: str
    source: str  # "pod" | "serviceAccount" (carried by the ServiceAccount, lacking on the pod)
    exists: bool | None  # None: it could not be read
    type: str | None = None
    hosts: tuple[str, ...] = ()  # the auths keys, for "it has entries for ..."
    matched_key: str | None = None
    managed: bool = False
    credential: str | None = None  # the RegistryCredential that wrote it
    expiration_time: datetime.datetime | None = None
    expired: bool | None = None
    error: str | None = None
    credentials: Credentials | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def usable_type(self) -> bool:
        return self.type in PULL_SECRET_TYPES

    @property
    def has_entry(self) -> bool:
        return self.matched_key is not None


@dataclasses.dataclass(frozen=True)
class Serving:
    """A RegistryCredential whose Secret is in the pod's namespace, as the doctor reads it from the cluster
    (the operator holds the same in memory: regcred.serving.Serving)."""

    name: str
    spec: CredentialSpec
    body: Mapping[str, Any] = dataclasses.field(repr=False)
    secret: Mapping[str, Any] = dataclasses.field(repr=False)
    hosts: tuple[str, ...]
    revision: str | None
    since: datetime.datetime | None
    credentials: Credentials | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class OperatorView:
    """The operator's decision for one stuck container and one credential, and what it did or will do."""

    credential: str | None  # None: no RegistryCredential serves this image in the pod's namespace
    decision: Decision
    done: tuple[str, ...]
    next: str
    fix: str

    def to_json(self) -> dict[str, Any]:
        return {
            "credential": self.credential,
            "cause": str(self.decision.cause),
            "ambiguous": self.decision.ambiguous,
            "action": str(self.decision.action),
            "why": self.decision.why,
            # The Event reason of an explanation (RestartWouldNotHelp, PullSecretNotInTemplate, CredentialRejected).
            "reason": self.decision.reason if self.decision.action in (Action.EXPLAIN, Action.REJECTED) else None,
            "timing": str(self.decision.timing),
            "done": list(self.done),
            "next": self.next,
            "fix": self.fix,
            "restartWouldHelp": self.decision.action is Action.REMEDIATE,
        }


@dataclasses.dataclass(frozen=True)
class ContainerReport:
    namespace: str
    pod: str
    container: str
    written_image: str
    ref: ImageRef | None
    ref_error: str | None
    kubelet: KubeletReport
    anonymous: ProbeResult | None
    service_account: str
    service_account_error: str | None
    pod_secrets: tuple[str, ...]
    account_secrets: tuple[str, ...]
    secrets: tuple[SecretCheck, ...]
    probe: ProbeResult | None  # with the pod's credential; None when it has none for this registry
    probe_secret: str | None
    target: str  # what the operator would act on ("Deployment shop/web", "Pod shop/web-1")
    views: tuple[OperatorView, ...]  # one per serving credential, the one acted on first; at least one

    @property
    def verdict(self) -> OperatorView:
        return self.views[0]

    @property
    def image(self) -> str:
        return str(self.ref) if self.ref else self.written_image

    @property
    def registry_public(self) -> bool | None:
        if self.anonymous is None:
            return None
        if self.anonymous.verdict in (Verdict.OK, Verdict.NOT_FOUND):
            return True  # the registry answered an anonymous request about the image itself
        if self.anonymous.verdict in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN):
            return False
        return None

    def to_json(self) -> dict[str, Any]:
        """The report as `regcred doctor -o json` prints it: every string as :meth:`shown` shows it."""
        probe = self.probe or self.anonymous
        report = {
            "namespace": self.namespace,
            "pod": self.pod,
            "container": self.container,
            "image": self.image,
            "kubelet": {
                "reason": self.kubelet.reason,
                "message": self.kubelet.message,
                "source": self.kubelet.source,
                "category": str(self.kubelet.classification.category),
                "ambiguous": self.kubelet.classification.ambiguous,
            },
            "registryPublic": self.registry_public,
            "pullSecrets": {
                "pod": list(self.pod_secrets),
                "serviceAccount": list(self.account_secrets),
                "serviceAccountName": self.service_account,
            },
            "secrets": [
                {
                    "name": s.name,
                    "source": s.source,
                    "exists": s.exists,
                    "type": s.type,
                    "hasEntry": s.has_entry,
                    "managed": s.managed,
                    "expirationTime": format_time(s.expiration_time) if s.expiration_time else None,
                    "expired": s.expired,
                }
                for s in self.secrets
            ],
            "probe": None if probe is None else {
                "verdict": str(probe.verdict),
                "detail": probe.detail,
                "secret": self.probe_secret if self.probe is not None else None,
            },
            "target": self.target,
            "verdict": self.verdict.to_json(),
            "decisions": [v.to_json() for v in self.views],
        }
        shown_report: dict[str, Any] = map_strings(report, lambda text: self.shown(text, one_line=False))
        return shown_report

    def shown(self, text: str, *, one_line: bool = True, limit: int | None = None) -> str:
        """Belt and braces over the probe's own scrubbing: see :func:`shown`."""
        return shown(text, [s.credentials for s in self.secrets if s.credentials], one_line=one_line, limit=limit)


# -- reading the cluster -----------------------------------------------------------------------


class PodNotFound(Exception):
    pass


class Doctor:
    """Diagnoses stuck pods; caches ServiceAccounts, Secrets, credentials and probes across the pods of one run."""

    def __init__(self, kube: KubeApi, prober: Prober, now: datetime.datetime) -> None:
        self.kube, self.prober, self.now = kube, prober, now
        self._accounts: dict[tuple[str, str], tuple[tuple[str, ...], str | None]] = {}
        self._secrets: dict[tuple[str, str], tuple[dict[str, Any] | None, str | None]] = {}
        self._probes: dict[tuple[str, Credentials | None], ProbeResult] = {}
        self._credentials: list[tuple[dict[str, Any], CredentialSpec]] | None = None
        self._credentials_error: str | None = None  # why the RegistryCredentials could not be listed
        self._namespaces: dict[str, dict[str, Any] | None] = {}

    def find_pods(self, namespace: str | None, pod: str | None) -> list[dict[str, Any]]:
        """The named pod, or the Pending pods (of a namespace, or all); raises PodNotFound for a missing name."""
        if pod is not None and namespace is not None:
            try:
                found: dict[str, Any] = self.kube.request("GET", _path(namespace, "pods", pod))
            except KubeError as error:
                if error.not_found:
                    raise PodNotFound(f"pod {pod!r} not found in namespace {namespace!r}") from None
                raise
            return [found]
        path = _path(namespace, "pods") if namespace else "/api/v1/pods"
        if pod is not None:
            pods = self.kube.list_all(path, fieldSelector=f"metadata.name={pod}")
            if not pods:
                raise PodNotFound(f"pod {pod!r} not found in any namespace")
            return pods
        return self.kube.list_all(path, fieldSelector="status.phase=Pending")

    def diagnose(self, pod: Mapping[str, Any]) -> list[ContainerReport]:
        stuck = stuck_containers(pod)
        if not stuck:
            return []
        metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        pod_secrets = tuple(ref.get("name", "") for ref in spec.get("imagePullSecrets") or [] if ref.get("name"))
        account_secrets, account_error = self._account_secrets(namespace, account)
        # The operator's own inputs: the pod's Failed Events (one bounded LIST, selected by the server), the
        # credentials serving the namespace, the workload that would make the pod's replacement.
        try:
            events = pull_events(self.kube.list_pod_failure_events(namespace, name, metadata.get("uid"),
                                                                   limit=MAX_EVENTS))
        except KubeError:
            events = []  # the Events are a help, not a requirement (as for the operator)
        servings = self._serving(namespace)
        target = target_of(pod, self.kube.read_namespaced)
        reports = []
        for container in stuck:
            written = _spec_image(spec, container.name) or container.image
            text, newest = pull_error(container, events)
            source = "" if not text else (
                "Event" if newest is not None and text == newest.error and text not in container.message
                else "container status")
            kubelet = KubeletReport(container.reason, text, source, classify(text, container.reason if text else None))
            views = self._decisions(pod, container, servings, target, account_secrets, events)
            reports.append(self._diagnose_container(
                namespace, name, container.name, written, kubelet, account, account_error, pod_secrets,
                account_secrets, target, views,
            ))
        return reports

    def _decisions(
        self, pod: Mapping[str, Any], container: StuckContainer, servings: Sequence[Serving], target: Target,
        account_secrets: Sequence[str], events: Sequence[Any],
    ) -> tuple[OperatorView, ...]:
        """The operator's decision for this container, per credential serving its registry in the namespace."""
        views = []
        template = template_pull_secrets(target.body) if target.kind != "Pod" else None
        # As Remediator.handle_pod: a pod being deleted is neither diagnosed nor reported.
        deleting = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        for serving in [] if deleting else servings:
            if not served(container.image, serving.hosts):
                continue
            decision = decide(
                pod, container, served_hosts=serving.hosts, secret_name=serving.spec.secret_name,
                account_pull_secrets=account_secrets, secret_in_place=secret_in_place(serving.secret, None),
                probe=functools.partial(self._probe, credentials=serving.credentials), events=events,
                revision_since=serving.since, template_pull_secrets=template)
            views.append(self._view(pod, decision, serving, target))
        if not views:
            decision = decide(pod, container, served_hosts=(), secret_name="", account_pull_secrets=(),
                              secret_in_place=False, events=events)
            namespace = (pod.get("metadata") or {}).get("namespace", "")
            why = decision.why
            if deleting:
                why = "The pod is being deleted: regcred-operator neither diagnoses nor reports it."
            elif decision.cause is not Category.INVALID_REFERENCE:
                registry = _registry(container.image)
                why = (f"No RegistryCredential serves {registry} in namespace {namespace}: regcred-operator "
                       "leaves this pod alone.")
                if self._credentials_error is not None:
                    why = (f"The RegistryCredentials cannot be listed ({self._credentials_error}), so whether one "
                           f"serves {registry} in namespace {namespace} is not known; without one, regcred-operator "
                           "leaves this pod alone.")
            views.append(OperatorView(None, dataclasses.replace(decision, why=why), (), "nothing", ""))
        return tuple(sorted(views, key=lambda v: _PRIORITY[v.decision.action]))

    def _view(self, pod: Mapping[str, Any], decision: Decision, serving: Serving, target: Target) -> OperatorView:
        done, next_ = operator_actions(decision, serving, target, self._namespace(target), pod, self.now)
        return OperatorView(serving.name, decision, done, next_, "")

    def _diagnose_container(
        self, namespace: str, pod: str, container: str, written: str, kubelet: KubeletReport, account: str,
        account_error: str | None, pod_secrets: tuple[str, ...], account_secrets: tuple[str, ...],
        target: Target, views: tuple[OperatorView, ...],
    ) -> ContainerReport:
        lacking = tuple(s for s in account_secrets if s not in pod_secrets)
        try:
            ref: ImageRef | None = ImageRef.parse(written)
            ref_error = None
        except InvalidImageReference as error:
            ref, ref_error = None, error.reason
        checks: list[SecretCheck] = []
        anonymous = probe = None
        probe_secret = None
        if ref is not None:
            anonymous = self._probe(ref, None)
            checks = [self._check_secret(namespace, s, "pod", ref) for s in pod_secrets]
            if not pod_secrets:
                # Admission copies the ServiceAccount's secrets into pods that name none, at creation only:
                # these say what a new pod would get.
                checks += [self._check_secret(namespace, s, "serviceAccount", ref) for s in lacking]
            usable = next((c for c in checks if c.credentials), None)
            if usable is not None and usable.credentials is not None:
                probe, probe_secret = self._probe(ref, usable.credentials), usable.name
        report = ContainerReport(
            namespace=namespace, pod=pod, container=container, written_image=written, ref=ref, ref_error=ref_error,
            kubelet=kubelet, anonymous=anonymous, service_account=account, service_account_error=account_error,
            pod_secrets=pod_secrets, account_secrets=account_secrets, secrets=tuple(checks), probe=probe,
            probe_secret=probe_secret, target=target.where, views=views,
        )
        return dataclasses.replace(report, views=tuple(
            dataclasses.replace(v, fix=human_fix(report, v)) for v in views))

    # -- the operator's inputs, read from the cluster --

    def _serving(self, namespace: str) -> list[Serving]:
        """The RegistryCredentials whose managed Secret is in this namespace (none when they cannot be read)."""
        if self._credentials is None:
            try:
                items = self.kube.list_all(f"/apis/{GROUP}/{VERSION}/{PLURAL}")
            except KubeError as error:  # no CRD, or no right to read it: the pod is judged as one none serves
                items = []
                if not error.not_found:  # no CRD: no credential serves anything
                    self._credentials_error = f"{error.status} {error.reason}"
            self._credentials = []
            for item in items:
                name = str((item.get("metadata") or {}).get("name", ""))
                try:
                    self._credentials.append((item, parse_credential(name, item.get("spec") or {})))
                except SpecError:
                    continue  # the operator serves nothing for an invalid spec
        found = []
        for body, spec in self._credentials:
            secret, _error = self._read_secret(namespace, spec.secret_name)
            labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
            # Credentials that name the same Secret share it (regcred.shared): its label names one of them.
            sharing = {other.name for _, other in self._credentials if other.secret_name == spec.secret_name}
            if secret is None or labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or \
                    labels.get(CREDENTIAL_LABEL) not in sharing or argocd.is_output(secret):
                continue  # not this credential's pull Secret (an Argo CD template is no pull Secret either)
            auths = _auths(secret, str(secret.get("type") or ""))
            hosts = tuple(sorted(auths))
            if len(sharing) > 1:  # only its own entries: the registries its status names
                registries = (body.get("status") or {}).get("registries")
                hosts = tuple(h for h in hosts if isinstance(registries, list) and h in registries)
            credentials = _credentials(auths[hosts[0]]) if hosts else None
            content = dc.decode_data(secret)  # the revision is what it holds, whatever its annotations say
            revision = (dc.member_revision(content, hosts) if len(sharing) > 1 else dc.content_hash(content)) \
                if content is not None else None
            since = revision_reached(parse_time((body.get("status") or {}).get("lastRefreshTime")), secret)
            found.append(Serving(spec.name, spec, body, secret, hosts,
                                 str(revision)[:MAX_FIELD] if revision else None, since, credentials))
        return found

    def _namespace(self, target: Target) -> dict[str, Any] | None:
        name = str((target.body.get("metadata") or {}).get("namespace", ""))
        if name not in self._namespaces:
            try:
                self._namespaces[name] = self.kube.read_namespace(name)
            except KubeError:
                self._namespaces[name] = None
        return self._namespaces[name]

    def _account_secrets(self, namespace: str, name: str) -> tuple[tuple[str, ...], str | None]:
        key = (namespace, name)
        if key not in self._accounts:
            try:
                account = self.kube.read_service_account(namespace, name)
                names = tuple(r.get("name", "") for r in account.get("imagePullSecrets") or [] if r.get("name"))
                self._accounts[key] = (names, None)
            except KubeError as error:
                why = "it does not exist" if error.not_found else f"it cannot be read ({error.status} {error.reason})"
                self._accounts[key] = ((), why)
        return self._accounts[key]

    def _read_secret(self, namespace: str, name: str) -> tuple[dict[str, Any] | None, str | None]:
        key = (namespace, name)
        if key not in self._secrets:
            try:
                self._secrets[key] = (self.kube.request("GET", _path(namespace, "secrets", name)), None)
            except KubeError as error:
                self._secrets[key] = (None, None if error.not_found else f"{error.status} {error.reason}")
        return self._secrets[key]

    def _check_secret(self, namespace: str, name: str, source: str, ref: ImageRef) -> SecretCheck:
        secret, error = self._read_secret(namespace, name)
        if secret is None:
            return SecretCheck(name, source, exists=None if error else False, error=error)
        metadata = secret.get("metadata") or {}
        labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
        managed = labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        expires = parse_time(annotations.get(EXPIRATION_ANNOTATION)) if managed else None
        type_ = secret.get("type") or "Opaque"
        auths = _auths(secret, type_)
        matched = next(iter(ref.matching_auth_keys(auths)), None)
        return SecretCheck(
            name, source, exists=True, type=type_, hosts=tuple(sorted(auths)), matched_key=matched, managed=managed,
            credential=labels.get(CREDENTIAL_LABEL) if managed else None, expiration_time=expires,
            expired=None if expires is None else expires <= self.now,
            credentials=_credentials(auths[matched]) if matched is not None else None,
        )

    def _probe(self, ref: ImageRef, credentials: Credentials | None) -> ProbeResult:
        key = (str(ref), credentials)
        if key not in self._probes:
            self._probes[key] = self.prober.probe(ref, credentials)
        return self._probes[key]


def _path(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def _spec_image(spec: Mapping[str, Any], container: str) -> str | None:
    for entry in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if entry.get("name") == container and entry.get("image"):
            return str(entry["image"])
    return None


def _auths(secret: Mapping[str, Any], type_: str) -> dict[str, Mapping[str, Any]]:
    """The docker-config entries the kubelet would read from this Secret ({} for other types)."""
    if type_ == dc.SECRET_TYPE:
        raw = dc.decode_data(secret)
    elif type_ == DOCKERCFG_TYPE:
        encoded = (secret.get("data") or {}).get(DOCKERCFG_KEY)
        try:
            raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except ValueError:  # binascii.Error, or a str that is not ASCII
            raw = None
    else:
        return {}
    try:
        document = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    if type_ == dc.SECRET_TYPE:
        document = document.get("auths") if isinstance(document, dict) else {}
    if not isinstance(document, dict):
        return {}
    return {str(k): v for k, v in document.items() if isinstance(v, Mapping)}


def _credentials(entry: Mapping[str, Any]) -> Credentials | None:
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username and password:
        return username, password
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, secret = base64.b64decode(auth, validate=True).decode().partition(":")
        except ValueError:  # not base64 (or not ASCII), not UTF-8
            return None
        if sep and user and secret:
            return user, secret
    return None


def _registry(image: str) -> str:
    try:
        return ImageRef.parse(image).registry
    except InvalidImageReference:
        return "its registry"


# -- what the operator did, and will do ------------------------------------------------------------


def remediation_record(workload: Mapping[str, Any], credential: str) -> tuple[str, str] | None:
    """(revision, time) of the operator's last remediation of this workload for this credential, from the
    workload's `regcred.dev/remediated` annotation (tenant-writable: read with bounds by remediations_of)."""
    entry = remediations_of(workload).get(credential) or {}
    revision, time = entry.get("revision"), entry.get("time")
    if revision is None or time is None:
        return None
    return revision[:MAX_FIELD], time[:MAX_FIELD]


def _status_remediations(credential: Mapping[str, Any], target: Target) -> list[str]:
    """The credential's status.remediations (the operator's last 20) that name this workload."""
    metadata = target.body.get("metadata") or {}
    found = []
    entries = (credential.get("status") or {}).get("remediations")
    for entry in (entries if isinstance(entries, list) else [])[:20]:
        if not isinstance(entry, Mapping):
            continue
        if (entry.get("kind"), entry.get("namespace"), entry.get("name")) == (
                target.kind, metadata.get("namespace"), metadata.get("name")):
            result = f", {str(entry['result'])[:MAX_FIELD]}" if entry.get("result") else ""  # Pending, Replaced...
            found.append(f"{str(entry.get('action'))[:MAX_FIELD]} at {str(entry.get('time'))[:MAX_FIELD]} "
                         f"(cause {str(entry.get('reason'))[:MAX_FIELD]}{result})")
    return found


def operator_actions(
    decision: Decision, serving: Serving, target: Target, namespace: Mapping[str, Any] | None,
    pod: Mapping[str, Any], now: datetime.datetime,
) -> tuple[tuple[str, ...], str]:
    """What the operator did already about this pod for this credential, and what it will do (the Remediator's
    rules: strategy, opt-outs, the per-kind plan, once per revision, cooldown, dry run)."""
    spec, where = serving.spec, target.where
    done = [f"{serving.name}: {entry}" for entry in _status_remediations(serving.body, target)]
    if decision.action is Action.IGNORE:
        return tuple(done), "nothing (" + decision.why.rsplit(". ", 1)[-1].rstrip(".") + ")"
    if decision.action is Action.EXPLAIN:
        return tuple(done), (f"a {decision.reason} Warning Event on {where}, the cause counted in "
                             f"status.pullFailures of {serving.name}; no restart")
    if decision.action is Action.REJECTED:
        condition = next((c for c in ((serving.body.get("status") or {}).get("conditions") or [])[:20]
                          if isinstance(c, Mapping) and c.get("type") == CREDENTIAL_REJECTED), None)
        if condition is not None and condition.get("status") == "True":
            done.append(f"reported {serving.name} rejected (CredentialRejected=True since "
                        f"{str(condition.get('lastTransitionTime'))[:MAX_FIELD]})")
        return tuple(done), (f"report {serving.name} rejected by its registry (condition CredentialRejected, a "
                             "Warning Event, the metric regcred_credential_rejected); no restart for this revision")
    # Action.REMEDIATE
    record = remediation_record(target.body, serving.name)
    if record is not None:
        done.append(f"remediated {where} for revision {record[0][:12]} at {record[1]}"
                    + (" (the revision in place)" if record[0] == serving.revision else ""))
    if spec.remediation_strategy == "None" or opted_out(target.body, namespace):
        return tuple(done), f"nothing: remediation is turned off for {where} (a NotRemediated Event says so)"
    if target.kind == "Pod":
        return tuple(done), "nothing: the pod has no controller to recreate it, so it is only reported (NotRemediated)"
    how = plan(target.kind, target.body, pod, spec.remediation_strategy)
    if how.action is None:
        return tuple(done), f"nothing: {how.note}"
    skip = already_done(target.body, serving.name, serving.revision or "", now, spec.remediation_cooldown,
                        per_pod=how.action == "DeletePods")
    if skip is not None:
        return tuple(done), f"nothing more: {skip}"
    verb = "restart" if how.action == "RolloutRestart" else "delete the stuck pod of"
    if spec.remediation_dry_run:
        return tuple(done), f"nothing: dry run (would {verb} {where})"
    note = f" ({how.note})" if how.note else ""
    also = " and delete this stuck pod" if how.delete_pod and how.action == "RolloutRestart" else ""
    return tuple(done), f"{verb} {where}{also}{note}, once for this credential revision"


# -- the fix, for people -----------------------------------------------------------------------------

_NODE_SIDE = {
    Category.PLATFORM: "Push a multi-platform image or choose a tag built for the node's OS/architecture",
    Category.OTHER: "Look at the node (disk space, the container runtime) or move the pod",
    Category.UNREACHABLE: "Check the nodes' DNS, proxy and firewall towards {registry}",
    Category.TLS: "Give the nodes' container runtime the CA of {registry}, or fix its certificate",
    Category.RATE_LIMITED: "Wait, or pull with an authenticated account (higher limits); the kubelet retries",
    Category.REGISTRY_SERVER_ERROR: "Wait for {registry} to recover; the kubelet retries by itself",
    Category.INVALID_REFERENCE: "Fix the image reference in the pod spec",
}


def _namespace_exists(kube: KubeApi, namespace: str) -> bool:
    """Whether the namespace exists (an empty one and a mistyped one must not both say "nothing stuck")."""
    try:
        return kube.read_namespace(namespace) is not None
    except KubeError as error:
        if error.status == 403:  # may list pods there but not read the namespace: assume it exists
            return True
        raise


_PLAIN_HTTP = "server gave HTTP response to HTTPS client"  # Go's net/http, as the container runtime reports it


def human_fix(report: ContainerReport, view: OperatorView) -> str:
    """What a person does about the operator's decision, helped by the walk's findings."""
    decision, ref = view.decision, report.ref
    if ref is None:
        return f"{report.written_image!r} is not a valid image reference ({report.ref_error}): fix the image."
    if decision.action is Action.REMEDIATE:
        if view.next.startswith(("restart", "delete")):
            return f"Nothing to do: regcred-operator will {view.next}."
        if any(view.done) and view.next.startswith("nothing more"):
            return "Wait for the rollout; if the pod stays stuck, delete it."
        return "Delete the pod (or restart its workload) so that its replacement uses the credential in place."
    if decision.action is Action.REJECTED:
        return (f"The registry refuses the credential of RegistryCredential {view.credential} itself: fix its "
                f"source (kubectl describe registrycredential {view.credential}); restarting will not help.")
    if decision.reason == PULL_SECRET_NOT_IN_TEMPLATE:
        return decision.why[decision.why.rfind("Add "):] if "Add " in decision.why else decision.why
    cause = decision.cause
    if cause is Category.TLS and _PLAIN_HTTP in report.kubelet.message:
        return (f"{ref.registry} serves plain HTTP: configure it as an insecure registry in the nodes' container "
                f"runtime (containerd: hosts.toml with an http:// server), or serve it over TLS; check it with "
                f"`regcred doctor --insecure-registry {ref.registry}`; restarting will not help.")
    if cause in _NODE_SIDE:
        return _NODE_SIDE[cause].format(registry=ref.registry) + "; restarting will not help."
    if cause is Category.NOT_FOUND and not decision.ambiguous:
        probe = report.probe or report.anonymous
        if probe is not None and probe.verdict is Verdict.NOT_FOUND:
            return f"Fix the image reference: {probe.detail.rstrip('.')}; restarting will not help."
        what = f"digest {ref.digest}" if ref.digest else f"tag {ref.tag}"
        return f"Fix the image reference: the {what} of {ref.name} does not exist; restarting will not help."
    if cause in CREDENTIAL_CATEGORIES or decision.ambiguous or cause is Category.UNKNOWN:
        return _credential_fix(report, view)
    return "See the kubelet's message above."


def _credential_fix(report: ContainerReport, view: OperatorView) -> str:
    """The registry wants credentials the pod does not have, or refuses the ones it has."""
    ref, ns = report.ref, report.namespace
    assert ref is not None
    pod_checks = [s for s in report.secrets if s.source == "pod"]
    lacking = [s for s in report.secrets if s.source == "serviceAccount"]
    missing = [s.name for s in pod_checks if s.exists is False]
    wrong_type = [s for s in pod_checks if s.exists and not s.usable_type]
    no_entry = [s.name for s in pod_checks if s.exists and s.usable_type and not s.has_entry]
    unusable = [s.name for s in pod_checks if s.has_entry and s.credentials is None]
    served_by = f"RegistryCredential {view.credential}" if view.credential else "a RegistryCredential"
    if report.probe is not None and report.probe.verdict in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN):
        check = next(s for s in report.secrets if s.name == report.probe_secret)
        if check.expired and check.expiration_time is not None:
            return (f"The registry refuses the credentials in Secret {check.name}: they expired at "
                    f"{format_time(check.expiration_time)}; check its RegistryCredential's status.")
        owner = f"RegistryCredential {check.credential}" if check.credential else "the Secret's owner"
        return (f"The registry refuses the credentials in Secret {check.name} for {ref.registry}: fix them "
                f"({owner}); restarting will not help.")
    if report.probe is not None and report.probe.ok:
        if lacking:
            return (f"The pod lacks {lacking[0].name}, which its ServiceAccount carries: delete the pod (or restart "
                    "its workload) so that its replacement gets it.")
        return (f"{ref} can be pulled with Secret {report.probe_secret} now: the kubelet retries with back-off "
                "(at most 5 minutes apart); delete the pod to retry at once.")
    if missing:
        return (f"The pull secret {', '.join(missing)} named by the pod does not exist in {ns}: create it (or point "
                f"{served_by} at namespace {ns}); the kubelet picks it up at its next retry.")
    if wrong_type:
        s = wrong_type[0]
        return (f"The pull secret {s.name} in {ns} has type {s.type}, which the kubelet ignores: recreate it as "
                f"{dc.SECRET_TYPE} with an entry for {ref.registry}.")
    if unusable:
        return (f"The entry for {ref.registry} in the pull secret {unusable[0]} in {ns} has no user name and "
                "password: rewrite it, or point a RegistryCredential at that registry.")
    if no_entry:
        names = ", ".join(no_entry)
        subject = (f"The pull secret {names} in {ns} has" if len(no_entry) == 1
                   else f"None of the pull secrets {names} in {ns} has")
        return f"{subject} no entry for {ref.registry}: point a RegistryCredential at that registry."
    if report.anonymous is not None and report.anonymous.ok:
        return (f"{ref} can be pulled anonymously now: the kubelet retries with back-off; delete the pod to retry "
                "at once.")
    if view.credential is None:
        return (f"Neither the pod nor its ServiceAccount {report.service_account} has a pull secret for "
                f"{ref.registry}: create a RegistryCredential for {ref.registry} that selects namespace {ns} (it "
                "attaches the secret to the ServiceAccount), then delete the pod so that it picks the secret up.")
    return f"See the decision above, and RegistryCredential {view.credential}'s status."



# -- rendering -------------------------------------------------------------------------------------


def _duration(delta: datetime.timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def steps(report: ContainerReport, now: datetime.datetime) -> list[tuple[str, str, str]]:
    """(mark, step, finding) for each step, in the debugging order."""
    lines: list[tuple[str, str, str]] = []
    ref = report.ref
    if ref is None:
        lines.append((BAD, "image", f"{report.written_image!r} is not a valid reference: {report.ref_error}"))
    else:
        written = "" if report.written_image == str(ref) else f" (written {report.written_image})"
        lines.append((OK, "image", f"{ref}{written}"))

    verdict = report.kubelet.classification
    if report.kubelet.source:
        nuance = ", ambiguous: missing and private look alike" if verdict.ambiguous else ""
        evidence = f" ({verdict.evidence})" if verdict.evidence else ""
        mark = WARN if verdict.category is Category.UNKNOWN or verdict.ambiguous else BAD
        shown = report.shown(report.kubelet.message, limit=_MESSAGE_SHOWN)
        lines.append((mark, "kubelet", f"{verdict.category}{nuance}{evidence}, from the {report.kubelet.source}"))
        lines.append(("", "", f"“{shown}”"))
    else:
        lines.append((WARN, "kubelet", f"{report.kubelet.reason} with no message and no Failed Event"))

    if report.anonymous is not None:
        public = report.registry_public
        anon = report.anonymous
        if public is True and anon.ok:
            lines.append((OK, "registry", f"public: {ref} can be pulled anonymously"))
        elif public is True:
            lines.append((OK, "registry", f"answers anonymous requests: {anon.detail}"))
        elif public is False:
            refused = f"private: anonymous pulls are refused ({anon.status_code}), a pull secret is needed"
            lines.append((OK, "registry", refused))
        else:
            lines.append((WARN, "registry", f"cannot tell: {anon.detail}"))

    pod_list = ", ".join(report.pod_secrets) or "none"
    account = f"ServiceAccount {report.service_account}: "
    account += report.service_account_error or ", ".join(report.account_secrets) or "none"
    lacking = [s for s in report.account_secrets if s not in report.pod_secrets]
    if lacking and not report.pod_secrets:
        lines.append((WARN, "pull secrets", f"pod: none; {account} — the pod lacks {', '.join(lacking)}, "
                                            "so it was created before the ServiceAccount carried it"))
    elif lacking:
        lines.append((OK, "pull secrets", f"pod: {pod_list}; {account} (a pod that names its own pull secrets does "
                                          f"not get the ServiceAccount's {', '.join(lacking)})"))
    elif not report.pod_secrets:
        mark = OK if report.registry_public else BAD
        lines.append((mark, "pull secrets", f"pod: none; {account}"))
    else:
        lines.append((OK, "pull secrets", f"pod: {pod_list}; {account}"))

    for check in report.secrets:
        lines.append(_secret_line(check, report, now))

    if report.probe is not None:
        mark = OK if report.probe.ok else BAD
        probed = f"{report.probe.verdict} with Secret {report.probe_secret}"
        lines.append((mark, "probe", f"{probed}: {report.probe.detail}"))
    elif ref is not None:
        lines.append((WARN, "probe", "no credential for this registry, so only the anonymous probe above"))

    for view in report.views:
        decision = view.decision
        nuance = ", ambiguous" if decision.ambiguous else ""
        by = f"RegistryCredential {view.credential}" if view.credential else "no RegistryCredential"
        lines.append((BAD, "cause", f"{decision.cause}{nuance}"))
        lines.append((WARN if decision.action is Action.REMEDIATE else BAD, "operator",
                      f"{decision.action} ({by}): {decision.why}"))
        for done in view.done:
            lines.append((OK, "done", done))
        if view.credential is not None:
            lines.append(("", "", f"next: {view.next}"))
        lines.append((WARN, "fix", view.fix))
    return lines


def _secret_line(check: SecretCheck, report: ContainerReport, now: datetime.datetime) -> tuple[str, str, str]:
    label = "secret"
    whose = " (carried by the ServiceAccount only)" if check.source == "serviceAccount" else ""
    if check.exists is None:
        return WARN, label, f"{check.name} cannot be read ({check.error}){whose}"
    if not check.exists:
        return BAD, label, f"{check.name} does not exist in {report.namespace}{whose}"
    registry = report.ref.registry if report.ref else "?"
    parts = [f"type {check.type}"]
    mark = OK
    if not check.usable_type:
        parts.append("which the kubelet ignores")
        mark = BAD
    elif check.has_entry:
        parts.append(f"an entry for {check.matched_key}")
        if check.credentials is None:
            parts.append("without a user name and password")
            mark = BAD
    else:
        others = ", ".join(check.hosts) or "none"
        parts.append(f"no entry for {registry} (entries: {others})")
        mark = BAD
    if check.managed:
        parts.append(f"managed by regcred-operator (RegistryCredential {check.credential})")
        if check.expiration_time is not None:
            when = format_time(check.expiration_time)
            if check.expired:
                parts.append(f"expired at {when}, {_duration(now - check.expiration_time)} ago")
                mark = BAD
            else:
                parts.append(f"expires in {_duration(check.expiration_time - now)} ({when})")
    else:
        parts.append("not managed by regcred-operator")
    return mark, label, f"{check.name}: " + ", ".join(parts) + whose


def render_text(reports: Sequence[ContainerReport], out: TextIO, now: datetime.datetime) -> None:
    """The report for people; every line goes through :func:`shown` (kubelet, registry and tenant text)."""
    for index, report in enumerate(reports):
        if index:
            out.write("\n")
        header = f"Pod {report.namespace}/{report.pod}, container {report.container}: {report.kubelet.reason}"
        out.write(report.shown(header) + "\n")
        for mark, step, finding in steps(report, now):
            if not mark:
                out.write(report.shown(f"{'':<19}{finding}") + "\n")
            else:
                out.write(report.shown(f"  {mark} {step + ':':<14} {finding}") + "\n")
    pods = len({(r.namespace, r.pod) for r in reports})
    out.write(f"\n{len(reports)} container{'s' if len(reports) != 1 else ''} in {pods} pod{'s' if pods != 1 else ''} "
              "stuck pulling.\n")


# -- the command -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `regcred doctor`."""
    parser.epilog = ("The verdict is regcred-operator's own decision for each stuck container (remediate, explain, "
                     "rejected or ignore, with its cause and why), what it did or will do, and a fix.\n\n"
                     "exit codes:\n  0  no pod is stuck pulling\n  1  at least one container is stuck (each "
                     "diagnosed)\n  2  could not check (no kubeconfig, the API unreachable or refusing, an unknown "
                     "namespace or pod)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="the namespace to look in (default: the kubeconfig context's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="look in every namespace")
    parser.add_argument("pod", nargs="?", metavar="POD", help="diagnose this pod only")
    parser.add_argument("--kubeconfig", metavar="FILE",
                        help="the kubeconfig to use (default: KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", help="the kubeconfig context to use (default: its current context)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                        help="probe this host[:port] over plain HTTP (repeatable)")
    parser.add_argument("--token-realm-host", action="append", default=[], metavar="HOST",
                        help="trust this host[:port] as a registry's token service (repeatable; adds to "
                             "REGCRED_TOKEN_REALM_HOSTS)")


def current_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of the kubeconfig's current context, else the in-cluster one, else `default`."""
    import kubernetes

    # Like load_api_client: read KUBECONFIG now, the client library read it when first imported.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
        if context is not None:
            active = next((c for c in contexts or [] if c.get("name") == context), None)
        namespace = (active or {}).get("context", {}).get("namespace")
        if namespace:
            return str(namespace)
    except (kubernetes.config.ConfigException, OSError, TypeError):
        pass
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as file:
            return file.read().strip() or "default"
    except OSError:
        return "default"


def run_from_args(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`regcred doctor` as parsed by :func:`add_arguments`."""
    err = err if err is not None else sys.stderr
    namespace = None if args.all_namespaces else (args.namespace or current_namespace(args.kubeconfig, args.context))
    realm_hosts = [*args.token_realm_host, *os.environ.get("REGCRED_TOKEN_REALM_HOSTS", "").split(",")]
    prober = Prober(insecure_registries=args.insecure_registry, token_realm_hosts=realm_hosts)
    import kubernetes

    from regcred.kube import load_api_client

    try:
        kube = KubeApi(load_api_client(args.kubeconfig, context=args.context))
    except (kubernetes.config.ConfigException, OSError, ValueError) as error:
        err.write(printable(f"regcred doctor: cannot load a kubeconfig: {error}") + "\n")
        return EXIT_ERROR
    return run_doctor(namespace, args.pod, args.output, kube=kube, prober=prober, out=out, err=err)


def run_doctor(
    namespace: str | None,
    pod: str | None,
    output: str,
    *,
    kube: KubeApi | None = None,
    prober: Prober | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: datetime.datetime | None = None,
) -> int:
    """Diagnose the pods stuck pulling in ``namespace`` (None: all namespaces), or the one named ``pod``.

    Returns 0 when no pod is stuck, 1 when at least one is (each diagnosed), 2 on an error (a named pod that
    does not exist, an API failure). The report goes to ``out``, errors to ``err``: stdout and stderr as they
    are at call time by default.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    now = now or datetime.datetime.now(datetime.UTC)
    if kube is None:
        import kubernetes

        from regcred.kube import load_api_client

        try:
            kube = KubeApi(load_api_client())
        except (kubernetes.config.ConfigException, OSError, ValueError) as error:
            err.write(printable(f"regcred doctor: cannot load a kubeconfig: {error}") + "\n")
            return EXIT_ERROR
    doctor = Doctor(kube, prober or Prober(), now)
    try:
        if namespace is not None and not _namespace_exists(kube, namespace):
            err.write(printable(f"regcred doctor: namespace {namespace!r} does not exist") + "\n")
            return EXIT_ERROR
        pods = doctor.find_pods(namespace, pod)
        reports = [report for found in pods for report in doctor.diagnose(found)]
    except PodNotFound as error:
        err.write(printable(f"regcred doctor: {error}") + "\n")
        return EXIT_ERROR
    except KubeError as error:
        if error.status == 0:  # no answer at all
            err.write(printable(f"regcred doctor: cannot reach the Kubernetes API: {error.message}") + "\n")
        elif error.status == 403:
            err.write(printable(f"regcred doctor: the Kubernetes API refused: {error.message}") + "\n")
        else:
            err.write(printable(f"regcred doctor: the Kubernetes API answered {error}") + "\n")
        return EXIT_ERROR

    if output == "json":
        # json.dumps escapes control characters anyway; to_json keeps them out of the decoded text too.
        out.write(json.dumps([r.to_json() for r in reports], indent=2) + "\n")
    elif reports:
        render_text(reports, out, now)
    elif pod is not None:
        found = pods[0]
        phase = (found.get("status") or {}).get("phase") or "unknown"
        where = (found.get("metadata") or {}).get("namespace", namespace)
        out.write(printable(f"Pod {where}/{pod} is not stuck pulling an image (phase {phase}).") + "\n")
    else:
        scope = f"namespace {namespace}" if namespace else "any namespace"
        out.write(f"No pod in {scope} is stuck pulling an image. ✓\n")
    return EXIT_STUCK if reports else EXIT_HEALTHY
