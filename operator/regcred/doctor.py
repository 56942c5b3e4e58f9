"""`regcred doctor`: why is this pod stuck pulling its image, and what fixes it? For people, on the current kubeconfig.

For each container the kubelet reports as failing to pull (ErrImagePull / ImagePullBackOff), the checks
follow the order a good engineer debugs in: the image reference, the kubelet's message, whether the
registry is private (an anonymous probe), the pod's and its ServiceAccount's ``imagePullSecrets``, each
pull Secret (exists, type, an entry for this registry, managed by us, expiry), a probe of the registry with
the pod's own credential, and a verdict: the cause and a fix a person can act on.

Nothing secret is printed: Secrets are described by name, type and registry host only; the probe's
details are scrubbed of passwords, tokens and user names.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import quote

from regcred import CREDENTIAL_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from regcred import dockerconfig as dc
from regcred.classify import Category, Classification, classify
from regcred.diagnosis import StuckContainer, stuck_containers
from regcred.fanout import EXPIRATION_ANNOTATION, format_time, parse_time
from regcred.imageref import ImageRef, InvalidImageReference
from regcred.kube import KubeApi, KubeError
from regcred.probe import Credentials, Prober, ProbeResult, Verdict

OK, BAD, WARN = "✓", "✗", "!"
DOCKERCFG_TYPE = "kubernetes.io/dockercfg"
DOCKERCFG_KEY = ".dockercfg"
PULL_SECRET_TYPES = (dc.SECRET_TYPE, DOCKERCFG_TYPE)
# Causes beyond the classifier's categories, for what only the cluster's objects can tell.
POD_LACKS_SECRET = "pod_lacks_secret"  # noqa: S105 - a cause name, not a password
NO_CREDENTIAL = "no_credential"
_MESSAGE_SHOWN = 300
EXIT_HEALTHY, EXIT_STUCK, EXIT_ERROR = 0, 1, 2


# -- what was found ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KubeletReport:
    reason: str
    message: str
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
class Remedy:
    cause: str
    fix: str
    restart_would_help: bool


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
    verdict: Remedy

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
        probe = self.probe or self.anonymous
        return {
            "namespace": self.namespace,
            "pod": self.pod,
            "container": self.container,
            "image": self.image,
            "kubelet": {
                "reason": self.kubelet.reason,
                "message": self.scrubbed(self.kubelet.message),
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
                "detail": self.scrubbed(probe.detail),
                "secret": self.probe_secret if self.probe is not None else None,
            },
            "verdict": {
                "cause": self.verdict.cause,
                "fix": self.verdict.fix,
                "restartWouldHelp": self.verdict.restart_would_help,
            },
        }

    def scrubbed(self, text: str) -> str:
        return scrub(text, [s.credentials for s in self.secrets if s.credentials])


def scrub(text: str, credentials: Sequence[Credentials]) -> str:
    """Belt and braces over the probe's own scrubbing: no user name or password in what we print."""
    for username, password in credentials:
        for value in (password, base64.b64encode(f"{username}:{password}".encode()).decode()):
            if len(value) >= 4:
                text = text.replace(value, "<redacted>")
        if username:
            text = text.replace(f"user {username!r}", "the Secret's user")
            if len(username) >= 3:
                text = text.replace(username, "<user>")
    return text


# -- reading the cluster -----------------------------------------------------------------------


class PodNotFound(Exception):
    pass


class Doctor:
    """Diagnoses stuck pods; caches ServiceAccounts, Secrets and probes across the pods of one run."""

    def __init__(self, kube: KubeApi, prober: Prober, now: datetime.datetime) -> None:
        self.kube, self.prober, self.now = kube, prober, now
        self._accounts: dict[tuple[str, str], tuple[tuple[str, ...], str | None]] = {}
        self._secrets: dict[tuple[str, str], tuple[dict[str, Any] | None, str | None]] = {}
        self._probes: dict[tuple[str, Credentials | None], ProbeResult] = {}

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
        events: list[dict[str, Any]] | None = None
        reports = []
        for container in stuck:
            written = _spec_image(spec, container.name) or container.image
            kubelet = _kubelet_report(container)
            if kubelet.classification.category is Category.UNKNOWN:
                if events is None:
                    events = self._failed_events(namespace, name)
                kubelet = _from_events(container, written, events) or kubelet
            reports.append(self._diagnose_container(
                namespace, name, container.name, written, kubelet, account, account_error, pod_secrets,
                account_secrets,
            ))
        return reports

    def _diagnose_container(
        self, namespace: str, pod: str, container: str, written: str, kubelet: KubeletReport, account: str,
        account_error: str | None, pod_secrets: tuple[str, ...], account_secrets: tuple[str, ...],
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
            probe_secret=probe_secret, verdict=Remedy("", "", False),
        )
        return dataclasses.replace(report, verdict=decide(report))

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

    def _failed_events(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        try:
            events = self.kube.list_all(
                _path(namespace, "events"),
                fieldSelector=f"involvedObject.name={pod},involvedObject.kind=Pod",
            )
        except KubeError:
            return []  # the Events are a help, not a requirement
        failed = [e for e in events if e.get("reason") == "Failed" and e.get("message")]
        return sorted(failed, key=_event_time, reverse=True)

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


def _kubelet_report(container: StuckContainer) -> KubeletReport:
    return KubeletReport(container.reason, container.message, "container status" if container.message else "",
                         classify(container.message, container.reason))


def _from_events(container: StuckContainer, image: str, events: Sequence[Mapping[str, Any]]) -> KubeletReport | None:
    """The newest informative `Failed` Event, preferring one that names this container's image.

    The kubelet also posts uninformative ones ("Error: ErrImagePull"): those are skipped when a better one exists.
    """
    candidates = [(str(e.get("message")), classify(str(e.get("message")), str(e.get("reason") or ""))) for e in events]
    informative = [(m, c) for m, c in candidates if c.category is not Category.UNKNOWN]
    chosen = next(((m, c) for m, c in informative if image and image in m), None)
    chosen = chosen or next(iter(informative), None) or next(iter(candidates), None)
    if chosen is None:
        return None
    return KubeletReport(container.reason, chosen[0], "Event", chosen[1])


def _event_time(event: Mapping[str, Any]) -> datetime.datetime:
    created = (event.get("metadata") or {}).get("creationTimestamp")
    for value in (event.get("lastTimestamp"), event.get("eventTime"), created):
        parsed = parse_time(value)
        if parsed is not None:
            return parsed
    return datetime.datetime.min.replace(tzinfo=datetime.UTC)


def _auths(secret: Mapping[str, Any], type_: str) -> dict[str, Mapping[str, Any]]:
    """The docker-config entries the kubelet would read from this Secret ({} for other types)."""
    if type_ == dc.SECRET_TYPE:
        raw = dc.decode_data(secret)
    elif type_ == DOCKERCFG_TYPE:
        encoded = (secret.get("data") or {}).get(DOCKERCFG_KEY)
        try:
            raw = base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
        except binascii.Error:
            raw = None
    else:
        return {}
    try:
        document = json.loads(raw) if raw else {}
    except ValueError:
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
        except (binascii.Error, UnicodeDecodeError):
            return None
        if sep and user and secret:
            return user, secret
    return None


# -- the verdict ---------------------------------------------------------------------------------

_NODE_SIDE = {
    Category.PLATFORM: ("{image} has no variant for the node's OS/architecture ({evidence}): push a multi-platform "
                        "image or choose a tag built for the node; restarting will not help."),
    Category.OTHER: ("The node itself failed the pull ({evidence}): free disk space or fix the node (or move the pod); "
                     "the registry and the credential are fine."),
    Category.UNREACHABLE: ("{image} can be pulled from here, but the node cannot reach {registry} ({evidence}): check "
                           "the nodes' DNS, proxy and firewall; restarting will not help."),
    Category.TLS: ("{image} can be pulled from here, but the node's TLS connection to {registry} fails ({evidence}): "
                   "give the nodes' container runtime the registry's CA; restarting will not help."),
    Category.RATE_LIMITED: ("{registry} is rate-limiting the node's pulls ({evidence}): wait, or pull with an "
                            "authenticated account; the kubelet retries by itself."),
    Category.INVALID_REFERENCE: ("The kubelet cannot use the image reference ({evidence}): fix the image in the pod "
                                 "spec; restarting will not help."),
}


def decide(report: ContainerReport) -> Remedy:
    """The cause and its fix, from everything found. Pure: reads the report only."""
    ref, kubelet = report.ref, report.kubelet.classification
    if ref is None:
        return Remedy(str(Category.INVALID_REFERENCE),
                        f"{report.written_image!r} is not a valid image reference ({report.ref_error}): fix the image "
                        "in the pod spec; restarting will not help.", False)
    where = report.namespace
    pod_checks = [s for s in report.secrets if s.source == "pod"]
    lacking = [s for s in report.secrets if s.source == "serviceAccount"]
    pod_has_credential = any(s.credentials for s in pod_checks)
    anonymous_ok = report.anonymous is not None and report.anonymous.ok
    effective = report.probe if report.probe is not None else report.anonymous
    assert effective is not None

    missing = [s.name for s in pod_checks if s.exists is False]
    if missing and not pod_has_credential and not anonymous_ok:
        names = ", ".join(missing)
        return Remedy(str(Category.SECRET_MISSING),
                        f"The pull secret {names} named by the pod does not exist in {where}: create it (or point a "
                        f"RegistryCredential at namespace {where}); the kubelet picks it up at its next retry.", False)
    if not pod_has_credential and report.probe is not None and report.probe.ok and not anonymous_ok:
        secret, account = report.probe_secret, report.service_account
        return Remedy(POD_LACKS_SECRET,
                      f"The pod was created before its ServiceAccount {account} carried {secret}: delete the pod "
                      "(or restart its workload) so it picks the secret up.", True)

    if effective.ok:
        node_side = _NODE_SIDE.get(kubelet.category)
        if node_side is not None:
            return Remedy(str(kubelet.category), node_side.format(
                image=ref, registry=ref.registry, evidence=kubelet.evidence or kubelet.category), False)
        how = f"with Secret {report.probe_secret}" if report.probe is not None else "anonymously"
        return Remedy(str(kubelet.category),
                        f"{ref} can be pulled {how} now: the kubelet retries with back-off (at most 5 minutes apart); "
                        "delete the pod to retry at once.", True)

    if effective.verdict is Verdict.NOT_FOUND:
        if "repository" in effective.detail and "does not exist on" in effective.detail:
            fix = f"The repository {ref.repository} does not exist on {ref.registry}: fix the image name; "
        elif ref.digest:
            fix = f"The digest {ref.digest} does not exist in {ref.name}: fix the image digest; "
        else:
            fix = f"The tag {ref.tag} does not exist in {ref.name}: fix the image tag; "
        return Remedy(str(Category.NOT_FOUND), fix + "restarting will not help.", False)

    if effective.verdict in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN) and report.probe is not None:
        return _refused(report, ref)
    if effective.verdict in (Verdict.UNAUTHORIZED, Verdict.FORBIDDEN):
        return _no_credential(report, ref, pod_checks, lacking)

    texts = {
        Verdict.RATE_LIMITED: (Category.RATE_LIMITED, f"{ref.registry} is rate-limiting pulls: wait, or pull with an "
                               "authenticated account (higher limits); the kubelet retries by itself."),
        Verdict.UNREACHABLE: (Category.UNREACHABLE, f"{ref.registry} cannot be reached from here either: check the "
                              "registry's address and the network (DNS, proxy, firewall); restarting will not help."),
        Verdict.TLS: (Category.TLS, f"The TLS connection to {ref.registry} fails: fix the registry's certificate or "
                      "trust its CA; restarting will not help."),
        Verdict.SERVER_ERROR: (Category.REGISTRY_SERVER_ERROR, f"{ref.registry} answers with server errors: wait for "
                               "it to recover; the kubelet retries by itself."),
    }
    category, fix = texts.get(effective.verdict, (
        Category.OTHER, f"{ref.registry} gives an unexpected answer (see the probe): check that it is the registry "
                        "you mean; restarting will not help."))
    return Remedy(str(category), fix, False)


def _refused(report: ContainerReport, ref: ImageRef) -> Remedy:
    assert report.probe is not None
    check = next(s for s in report.secrets if s.name == report.probe_secret)
    regcred = f"kubectl get regcred {check.credential}" if check.credential else "kubectl get regcred"
    if report.probe.verdict is Verdict.FORBIDDEN:
        fix = (f"The registry denied the account in Secret {check.name} pull access to {ref.name}: grant it pull "
               "access, or use an account that has it; restarting will not help.")
        return Remedy(str(Category.FORBIDDEN), fix, False)
    if check.expired and check.expiration_time is not None:
        fix = (f"The registry refused the credentials in Secret {check.name}: they expired at "
               f"{format_time(check.expiration_time)}; check the RegistryCredential's status ({regcred}).")
    elif check.managed:
        fix = (f"The registry refused the credentials in Secret {check.name} for {ref.registry}: check the "
               f"RegistryCredential's status ({regcred}) and the account it uses; restarting will not help.")
    else:
        fix = (f"The registry refused the credentials in Secret {check.name} for {ref.registry}: put a valid user "
               "name and password (or token) in it, or let a RegistryCredential manage it; restarting will not help.")
    if check.source == "serviceAccount":
        fix += f" The pod also lacks {check.name}, which its ServiceAccount carries: delete the pod once it works."
    return Remedy(str(Category.UNAUTHORIZED), fix, False)


def _no_credential(
    report: ContainerReport, ref: ImageRef, pod_checks: Sequence[SecretCheck], lacking: Sequence[SecretCheck],
) -> Remedy:
    """The registry wants credentials and the pod has none for it."""
    ns = report.namespace
    wrong_type = [s for s in pod_checks if s.exists and not s.usable_type]
    no_entry = [s.name for s in pod_checks if s.exists and s.usable_type and not s.has_entry]
    unusable = [s.name for s in pod_checks if s.has_entry and s.credentials is None]
    if wrong_type:
        s = wrong_type[0]
        fix = (f"The pull secret {s.name} in {ns} has type {s.type}, which the kubelet ignores: recreate it as "
               f"{dc.SECRET_TYPE} with an entry for {ref.registry}.")
    elif unusable:
        fix = (f"The entry for {ref.registry} in the pull secret {unusable[0]} in {ns} has no user name and password: "
               "rewrite it (docker login writes both), or point a RegistryCredential at that registry.")
    elif no_entry:
        names = ", ".join(no_entry)
        subject = (f"The pull secret {names} in {ns} has" if len(no_entry) == 1
                   else f"None of the pull secrets {names} in {ns} has")
        fix = f"{subject} no entry for {ref.registry}: point a RegistryCredential at that registry."
        others = [s for s in report.account_secrets if s not in report.pod_secrets]
        if others:
            fix += (f" (Its ServiceAccount's {', '.join(others)} is not added to a pod that names its own pull "
                    "secrets: list it in the workload's imagePullSecrets if it serves that registry.)")
    elif lacking:
        names = ", ".join(s.name for s in lacking)
        fix = (f"Neither the pod nor its ServiceAccount's pull secret {names} has an entry for {ref.registry}: "
               "point a RegistryCredential at that registry, then delete the pod.")
    else:
        fix = (f"{ref.registry} needs credentials and neither the pod nor its ServiceAccount {report.service_account} "
               f"has a pull secret: create a RegistryCredential for {ref.registry} that selects namespace {ns} (it "
               "attaches the secret to the ServiceAccount), then delete the pod so it picks the secret up.")
    return Remedy(NO_CREDENTIAL, fix, False)


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
        message = report.scrubbed(report.kubelet.message)
        shown = message if len(message) <= _MESSAGE_SHOWN else message[: _MESSAGE_SHOWN - 1] + "…"
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
        detail = report.scrubbed(report.probe.detail)
        mark = OK if report.probe.ok else BAD
        lines.append((mark, "probe", f"{report.probe.verdict} with Secret {report.probe_secret}: {detail}"))
    elif ref is not None:
        lines.append((WARN, "probe", "no credential for this registry, so only the anonymous probe above"))

    lines.append((WARN if report.verdict.restart_would_help else BAD, "verdict", report.verdict.fix))
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
    for index, report in enumerate(reports):
        if index:
            out.write("\n")
        out.write(f"Pod {report.namespace}/{report.pod}, container {report.container}: {report.kubelet.reason}\n")
        for mark, step, finding in steps(report, now):
            if not mark:
                out.write(f"{'':<19}{finding}\n")
            else:
                out.write(f"  {mark} {step + ':':<14} {finding}\n")
    pods = len({(r.namespace, r.pod) for r in reports})
    out.write(f"\n{len(reports)} container{'s' if len(reports) != 1 else ''} in {pods} pod{'s' if pods != 1 else ''} "
              "stuck pulling.\n")


# -- the command -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `regcred doctor`."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", help="the namespace to look in (default: the kubeconfig context's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="look in every namespace")
    parser.add_argument("pod", nargs="?", metavar="POD", help="diagnose this pod only")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                        help="probe this host[:port] over plain HTTP (repeatable)")


def current_namespace(kubeconfig: str | None = None) -> str:
    """The namespace of the kubeconfig's current context, else the in-cluster one, else `default`."""
    import kubernetes

    # Like load_api_client: read KUBECONFIG now, the client library read it when first imported.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    try:
        _, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig
        )
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
    namespace = None if args.all_namespaces else (args.namespace or current_namespace())
    prober = Prober(insecure_registries=args.insecure_registry)
    return run_doctor(namespace, args.pod, args.output, prober=prober, out=out, err=err)


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
            err.write(f"regcred doctor: cannot load a kubeconfig: {error}\n")
            return EXIT_ERROR
    doctor = Doctor(kube, prober or Prober(), now)
    try:
        pods = doctor.find_pods(namespace, pod)
        reports = [report for found in pods for report in doctor.diagnose(found)]
    except PodNotFound as error:
        err.write(f"regcred doctor: {error}\n")
        return EXIT_ERROR
    except KubeError as error:
        err.write(f"regcred doctor: the Kubernetes API answered {error}\n")
        return EXIT_ERROR

    if output == "json":
        out.write(json.dumps([r.to_json() for r in reports], indent=2) + "\n")
    elif reports:
        render_text(reports, out, now)
    elif pod is not None:
        found = pods[0]
        phase = (found.get("status") or {}).get("phase") or "unknown"
        where = (found.get("metadata") or {}).get("namespace", namespace)
        out.write(f"Pod {where}/{pod} is not stuck pulling an image (phase {phase}).\n")
    else:
        scope = f"namespace {namespace}" if namespace else "any namespace"
        out.write(f"No pod in {scope} is stuck pulling an image. ✓\n")
    return EXIT_STUCK if reports else EXIT_HEALTHY
