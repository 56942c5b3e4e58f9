"""Driving the operator end to end: kopf in this process, the emulated API or a real control plane over HTTP."""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime
import faulthandler
import functools
import importlib.metadata
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest

from regcred import GROUP, PLURAL, VERSION
from regcred.clock import Clock, SystemClock
from regcred.config import Settings
from regcred.embedded import EmbeddedOperator
from regcred.kube import USER_AGENT, KubeApi, KubeError, load_api_client
from regcred.reconcile import Outcome, Reconciler
from regcred.runtime import Runtime
from regcred.tokens import ProviderFactory
from regcred_sandbox import EmulatedCluster
from tests.control_plane import ControlPlane

T = TypeVar("T")

# Both serve api_client(), kubeconfig_path, install_crd(), requests and reset_requests().
Backend = EmulatedCluster | ControlPlane

# The operator's two clients, as the request logs (the emulator's, the real server's audit log) show them.
OPERATOR_USER_AGENTS = (USER_AGENT, f"kopf/{importlib.metadata.version('kopf')}")

# Short enough that the tests do not wait on them; the production defaults are in Settings.
TEST_SETTINGS = Settings(
    resync_interval=datetime.timedelta(minutes=5),
    debounce=datetime.timedelta(seconds=0.05),
    retry_initial=datetime.timedelta(seconds=1),
    retry_max=datetime.timedelta(seconds=2),
)


def eventually(check: Callable[[], T], timeout: float = 10, interval: float = 0.05) -> T:
    """Retry an assertion until it passes or the timeout runs out (then its last failure is raised)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError, kubernetes.client.ApiException):
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Cluster:
    """What a test does to the cluster, through the official client, as a user or the kubelet would."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.real = isinstance(backend, ControlPlane)
        self.client = backend.api_client()
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)

    def namespace(self, name: str, labels: dict[str, str] | None = None, *, accounts: tuple[str, ...] = ("default",)
                  ) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
        except kubernetes.client.ApiException as error:  # default, kube-system, ... exist from the start
            if error.status != 409:
                raise
            self.core.patch_namespace(name, {"metadata": {"labels": labels or {}}})
        for account in accounts:  # what the controller-manager does in a real cluster
            try:
                self.core.create_namespaced_service_account(name, {"metadata": {"name": account}})
            except kubernetes.client.ApiException as error:
                if error.status != 409:
                    raise

    def relabel(self, name: str, labels: dict[str, str | None]) -> None:
        self.core.patch_namespace(name, {"metadata": {"labels": labels}})

    def source_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            namespace, {"metadata": {"name": name}, "data": {k: b64(v) for k, v in data.items()}}
        )

    def apply_credential(self, name: str, spec: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": name},
                "spec": spec}
        try:
            current = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
            self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        else:
            # The operator writes status meanwhile (a new resourceVersion): read again and retry, as kubectl would.
            for attempt in range(5):
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                try:
                    self.custom.replace_cluster_custom_object(GROUP, VERSION, PLURAL, name, body)
                    return
                except kubernetes.client.ApiException as error:
                    if error.status != 409 or attempt == 4:
                        raise
                current = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)

    def credential(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        return result

    def condition(self, name: str, type_: str = "Ready") -> dict[str, Any]:
        for condition in self.credential(name).get("status", {}).get("conditions", []):
            if condition["type"] == type_:
                return dict(condition)
        raise AssertionError(f"no {type_} condition yet")

    def secrets(self, label_selector: str) -> dict[str, Any]:
        """{namespace: secret} for the Secrets matching a label selector."""
        items = self.core.list_secret_for_all_namespaces(label_selector=label_selector).items
        return {s.metadata.namespace: s for s in items}

    def dockerconfig(self, namespace: str, name: str) -> dict[str, Any]:
        secret = self.core.read_namespaced_secret(name, namespace)
        assert secret.type == "kubernetes.io/dockerconfigjson"
        config: dict[str, Any] = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))
        return config

    def pull_secrets(self, namespace: str, account: str = "default") -> list[str]:
        found = self.core.read_namespaced_service_account(account, namespace)
        return [ref.name for ref in found.image_pull_secrets or []]

    def api_request(self, method: str, path: str, body: Any = None) -> Any:
        """A raw API call (for kinds and subresources the typed client makes verbose), as a dict."""
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        return KubeApi(self.client).request(method, path, body=body, content_type=content_type)

    def pod_names(self, namespace: str) -> set[str]:
        return {p.metadata.name for p in self.core.list_namespaced_pod(namespace).items}

    def events(self, reason: str | None = None) -> list[Any]:
        items = self.core.list_event_for_all_namespaces().items
        return [e for e in items if reason is None or e.reason == reason]

    def posted(self, reason: str) -> list[Any]:
        """The Events of this reason, once there is one: a pass posts the credential's Events after its status
        write, so a test that saw the status must wait for them."""
        def found() -> list[Any]:
            events = self.events(reason)
            assert events, f"no {reason} Event"
            return events
        return eventually(found)


# The objects of the Helm chart that make the operator's identity and its permissions (with
# admissionPolicy.enabled, the policy that narrows them).
IDENTITY_KINDS = {
    "ServiceAccount": "/api/v1/namespaces/{namespace}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
    "ValidatingAdmissionPolicy": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
}


@functools.cache
def _chart_identity_objects(values_json: str) -> tuple[dict[str, Any], ...]:
    from tests.deploy.chart_tools import render  # the real Helm engine: slow to load, so only when needed

    return tuple(m for m in render(json.loads(values_json)) if m["kind"] in IDENTITY_KINDS)


def chart_identity_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, (Cluster)Roles and bindings, rendered with these values."""
    return [copy.deepcopy(m) for m in _chart_identity_objects(json.dumps(values or {}, sort_keys=True))]


def chart_identity(plane: ControlPlane, objects: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """Creates the chart's ServiceAccount and RBAC (default values unless ``objects`` are given) on a real
    cluster; returns (user name, a token of that ServiceAccount): the operator then has exactly the
    chart's permissions."""
    kube = KubeApi(plane.api_client())
    account: dict[str, Any] = {}
    for manifest in objects if objects is not None else chart_identity_objects():
        namespace = manifest["metadata"].get("namespace", "")
        if namespace:
            try:
                kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
            except KubeError as error:
                if error.status != 409:
                    raise
        try:
            kube.request("POST", IDENTITY_KINDS[manifest["kind"]].format(namespace=namespace), body=manifest)
        except KubeError as error:
            if error.status != 409:
                raise
        if manifest["kind"] == "ServiceAccount":
            account = manifest["metadata"]
    token = kube.request(
        "POST", f"/api/v1/namespaces/{account['namespace']}/serviceaccounts/{account['name']}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}})
    return f"system:serviceaccount:{account['namespace']}:{account['name']}", token["status"]["token"]


class CountingReconciler(Reconciler):
    """A Reconciler that records when each of its passes ran: which replica acted, and when."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passes: list[tuple[float, float]] = []  # (start, end), time.monotonic()

    def reconcile(self, credential: Mapping[str, Any]) -> Outcome:
        start = time.monotonic()
        try:
            return super().reconcile(credential)
        finally:
            self.passes.append((start, time.monotonic()))

    def passes_since(self, moment: float) -> int:
        return sum(1 for _, end in list(self.passes) if end >= moment)


@dataclasses.dataclass
class Replica:
    """One of several operators in this process, as the replicas of a Deployment: each its own Runtime, kopf
    and peering identity, all in one peering object."""

    runtime: Runtime
    reconciler: CountingReconciler
    embedded: EmbeddedOperator | None

    def stop(self) -> None:
        """As a pod that terminates: kopf leaves the peering (its keep-alive entry goes), then exits."""
        if self.embedded is not None:
            self.embedded.stop(timeout=60)
            self.embedded = None


PEERING_NAME = "regcred-operator"


class OperatorFactory:
    """Starts (and restarts) the operator: a fresh process-worth of memory each time.

    On a real cluster the operator authenticates as the Helm chart's ServiceAccount, bound only to the
    chart's rendered ClusterRole: every end-to-end test there is also a test of the chart's RBAC, and
    stop() fails the test if the API server refused the operator anything (a 403 in its audit log).
    """

    def __init__(self, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backend = backend
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("KUBECONFIG", backend.kubeconfig_path)  # how kopf itself logs in
        self.running: EmbeddedOperator | None = None
        self.replicas: list[Replica] = []  # start_replica(): several at once, peering
        self.runtimes: list[Runtime] = []
        self.identity: tuple[str, str] | None = None  # (user, token) on a real cluster
        self.expect_forbidden = False  # a test about a 403 says so; every other test fails on one

    def api_client(self, rbac: list[dict[str, Any]] | None = None) -> kubernetes.client.ApiClient:
        """A client with the operator's identity: on a real cluster the chart's ServiceAccount with the
        chart's RBAC (default values, or the ``rbac`` objects given the first time)."""
        if isinstance(self.backend, ControlPlane):
            if self.identity is None:
                self.identity = chart_identity(self.backend, rbac)
                path = Path(self.backend.folder) / "operator.kubeconfig"
                self.monkeypatch.setenv("KUBECONFIG", self.backend.write_kubeconfig(
                    path, self.identity[1], user="regcred-operator"))
            client = self.backend.api_client(self.identity[1])
        else:  # as `regcred run` makes it: its pool, and its retries (a call that got no answer is not repeated)
            client = load_api_client(self.backend.kubeconfig_path, pool_size=TEST_SETTINGS.write_concurrency + 4)
        client.user_agent = USER_AGENT  # as `regcred run` sets it: the request log tells operator from test
        return client

    def start(self, *, clock: Clock | None = None, settings: Settings = TEST_SETTINGS,
              rbac: list[dict[str, Any]] | None = None) -> Runtime:
        clock = clock or SystemClock()
        kube = KubeApi(self.api_client(rbac), namespaces=settings.watch_namespaces, timeout=settings.api_timeout)
        self._ensure_namespace(settings.state_namespace)
        runtime = Runtime(settings=settings, kube=kube, reconciler=Reconciler(kube, settings, clock), clock=clock)
        self.running = EmbeddedOperator(runtime).start()
        self.runtimes.append(runtime)
        return runtime

    def start_replica(self, priority: int, *, clock: Clock | None = None, settings: Settings = TEST_SETTINGS,
                      providers: ProviderFactory | None = None, lifetime: int = 4) -> Replica:
        """One more replica, peering with the others (short-lived keep-alives: failover in seconds)."""
        clock = clock or SystemClock()
        settings = dataclasses.replace(settings, peering_name=PEERING_NAME, peering_priority=priority,
                                       peering_lifetime_seconds=lifetime)
        kube = KubeApi(self.api_client(), namespaces=settings.watch_namespaces, timeout=settings.api_timeout)
        self._ensure_namespace(settings.state_namespace)
        reconciler = (CountingReconciler(kube, settings, clock, providers=providers) if providers is not None
                      else CountingReconciler(kube, settings, clock))
        runtime = Runtime(settings=settings, kube=kube, reconciler=reconciler, clock=clock)
        replica = Replica(runtime, reconciler, EmbeddedOperator(runtime).start())
        self.replicas.append(replica)
        self.runtimes.append(runtime)
        return replica

    def _ensure_namespace(self, name: str) -> None:
        """The operator's own namespace, as `helm install --create-namespace` leaves it (on a real cluster
        chart_identity has made it already)."""
        try:
            KubeApi(self.backend.api_client()).request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
        except KubeError as error:
            if error.status != 409:
                raise

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        if self.running is not None:
            try:
                self.running.stop(timeout=60)
            except RuntimeError:  # say where it hangs: every thread's stack, for whoever reads the failure
                faulthandler.dump_traceback(all_threads=True)
                raise
            self.running = None

    def forbidden(self) -> list[str]:
        """What the real API server refused the operator, from its audit log (always empty on the emulator)."""
        if not isinstance(self.backend, ControlPlane) or self.identity is None:
            return []
        return [f"{r.verb} {r.group or 'core'} {r.resource}{'/' + r.subresource if r.subresource else ''} "
                f"{r.namespace or ''}/{r.name or ''}"
                for r in self.backend.all_requests() if r.user == self.identity[0] and r.status == 403]
