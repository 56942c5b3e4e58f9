"""Whole-operator fan-out with ServiceAccounts (issue 12's fan-out rows): `regcred run` in its own process against
an API server in another process, static credentials into N namespaces that each have a `default` ServiceAccount.

Prints figures; asserts nothing. Three runs, each on a fresh cluster with a fresh operator:

- one credential, `serviceAccounts: ["default"]`;
- one credential, `serviceAccounts: []` (Secrets only);
- five credentials (distinct registries and secretNames), all selecting every namespace, `["default"]`.

Each run is measured from creating the credentials until converged (every Secret written and every `default`
ServiceAccount carrying every entry, polled from the server's state every 0.25 s, not through the operator),
then until the operator has been quiet (no request but its watches) for --quiet seconds. Requests are the
operator's and kopf's, by verb and resource, watches excluded. Passes: the LISTs of a credential's Secrets
(one per reconciliation pass); "that changed something": its `Credential <name>:` info log lines. CPU and RSS
are the operator process's. Beside each run: the floor (the writes needed, Secrets and ServiceAccounts, / write
concurrency x latency) and a sequential GET-then-create/replace loop over the same objects on a fresh cluster
(each ServiceAccount read and PUT once with all its entries).

With the emulated API (the default) the server runs in a child process with --latency added to every request.
With --real the control plane of the tests (KUBEBUILDER_ASSETS; its controller-manager creates the `default`
ServiceAccounts) is used instead: no latency is injected there, passes are counted from the log lines only.

    PYTHONPATH=operator:. .venv/bin/python bench/fanout_accounts.py                     # 2,000 namespaces, 5 ms
    PYTHONPATH=operator:. .venv/bin/python bench/fanout_accounts.py --namespaces 200 --no-baseline
    PYTHONPATH=operator:. .venv/bin/python bench/fanout_accounts.py --real --namespaces 200
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import multiprocessing
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

from regcred import CREDENTIAL_LABEL, GROUP, PLURAL, VERSION
from regcred.config import Settings
from regcred.kube import USER_AGENT

ROOT = pathlib.Path(__file__).resolve().parent.parent
WRITE_VERBS = {"create", "update", "patch", "delete"}
SYSTEM = "regcred-system"
SOURCE = "hub"  # the static provider's source Secret
BATCH = 500
POLL = 0.1
BASELINE_AGENT = "regcred-bench-baseline"  # tells its requests from a real controller-manager's
PREFIX = "team-"  # the benchmark's namespaces (a real cluster's own have `default` ServiceAccounts too)


@dataclasses.dataclass(frozen=True)
class Request:
    """What the benchmark needs of one request record, from the emulator's log or the real server's audit log."""
    verb: str
    resource: str  # with its subresource: "regcredentials/status"
    status: int
    user_agent: str
    credential: str | None  # a LIST of one credential's Secrets (emulator only: the audit log has no query)


def operator_request(request: Request) -> bool:
    return (request.user_agent.startswith((USER_AGENT, "kopf/"))) and request.verb != "watch"


# -- The emulated API in its own process -------------------------------------------------------------------------

def _emulator_main(conn: Connection) -> None:
    """The child process: an EmulatedCluster, driven by (command, args) messages from the benchmark."""
    import logging

    from regcred.manifests import load_crd
    from regcred_sandbox import EmulatedCluster
    from regcred_sandbox.server import ApiServer

    logging.getLogger("regcred_sandbox").setLevel(logging.CRITICAL)  # the operator's watches cut at its exit
    with EmulatedCluster() as cluster:
        cluster.install_crd(load_crd())

        def bulk(bodies: list[dict[str, Any]]) -> None:
            """Straight into the store on the server's loop (no HTTP request per object), a batch at a time."""
            for start in range(0, len(bodies), BATCH):
                batch = bodies[start:start + BATCH]

                def create(server: ApiServer, batch: list[dict[str, Any]] = batch) -> None:
                    for body in batch:
                        server.apply(body)

                cluster._call(create)

        def records() -> list[Request]:
            found = []
            for r in cluster.requests:
                # A pass LISTs its credential's Secrets once, in pages: its first page counts the pass.
                selector = "" if "continue" in (r.params or {}) else (r.params or {}).get("labelSelector", "")
                credential = next((term.split("=", 1)[1] for term in selector.split(",")
                                   if term.startswith(f"{CREDENTIAL_LABEL}=")), None)
                found.append(Request(r.verb, r.resource + (f"/{r.subresource}" if r.subresource else ""),
                                     r.status, r.user_agent, credential))
            return found

        def progress(secret_names: list[str], accounts: bool) -> tuple[int, int]:
            def count(server: ApiServer) -> tuple[int, int]:
                wanted = set(secret_names)
                secrets = sum(1 for obj in server.objects_of("secrets")
                              if obj["metadata"]["name"] in wanted
                              and CREDENTIAL_LABEL in (obj["metadata"].get("labels") or {}))
                done = sum(1 for obj in server.objects_of("serviceaccounts") if _counted(obj)
                           and _carries(obj, secret_names if accounts else []))
                return secrets, done
            return cluster._call(count)

        commands: dict[str, Callable[..., Any]] = {
            "bulk": bulk, "records": records, "progress": progress,
            "reset": cluster.reset_requests,
            "latency": lambda seconds: setattr(cluster, "latency", seconds),
        }
        conn.send((cluster.kubeconfig_path, cluster.url))
        while True:
            command, args = conn.recv()
            if command == "stop":
                break
            conn.send(commands[command](*args))
    conn.send(None)


def _counted(account: dict[str, Any]) -> bool:
    return bool(account["metadata"]["name"] == "default" and account["metadata"]["namespace"].startswith(PREFIX))


def _carries(account: dict[str, Any], secret_names: list[str]) -> bool:
    entries = {e.get("name") for e in account.get("imagePullSecrets") or [] if isinstance(e, dict)}
    return entries >= set(secret_names)


class Cluster(Protocol):
    kubeconfig_path: str

    def populate(self, namespaces: list[str]) -> None: ...
    def create(self, bodies: list[dict[str, Any]]) -> None: ...
    def set_latency(self, seconds: float) -> None: ...
    def reset(self) -> None: ...
    def records(self) -> list[Request]: ...
    def progress(self, secret_names: list[str], accounts: bool) -> tuple[int, int]: ...
    def api_client(self) -> Any: ...
    def cpu_seconds(self) -> float: ...
    def close(self) -> None: ...


class EmulatedProcess:
    """The emulated API server in a child process (its own GIL and CPU), driven over a pipe."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_emulator_main, args=(child,), name="emulated-api", daemon=True)
        self.process.start()
        self.kubeconfig_path, self.url = self._conn.recv()

    def _ask(self, command: str, *args: Any) -> Any:
        self._conn.send((command, args))
        return self._conn.recv()

    def populate(self, namespaces: list[str]) -> None:
        self._ask("bulk", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}}, source_secret()])
        self._ask("bulk", [namespace(name)
                           for name in namespaces])
        # As the namespace controller of a real cluster would (the emulator has none).
        self._ask("bulk", [{"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": "default", "namespace": name}} for name in namespaces])

    def create(self, bodies: list[dict[str, Any]]) -> None:
        self._ask("bulk", bodies)

    def set_latency(self, seconds: float) -> None:
        self._ask("latency", seconds)

    def reset(self) -> None:
        self._ask("reset")

    def records(self) -> list[Request]:
        found: list[Request] = self._ask("records")
        return found

    def progress(self, secret_names: list[str], accounts: bool) -> tuple[int, int]:
        found: tuple[int, int] = self._ask("progress", secret_names, accounts)
        return found

    def api_client(self) -> Any:
        import kubernetes.client

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    def cpu_seconds(self) -> float:
        assert self.process.pid is not None
        return cpu_seconds(self.process.pid)

    def close(self) -> None:
        self._conn.send(("stop", ()))
        self._conn.recv()
        self.process.join(30)


class RealControlPlane:
    """The tests' control plane (etcd, kube-apiserver, kube-controller-manager), its audit log as the records."""

    def __init__(self) -> None:
        from tests.control_plane import ControlPlane, assets_folder

        assets = assets_folder()
        if assets is None:
            raise SystemExit("--real needs KUBEBUILDER_ASSETS (scripts/control-plane.sh)")
        from regcred.manifests import load_crd

        self.plane = ControlPlane(assets)
        self.plane.start()
        self.plane.install_crd(load_crd())
        self.kubeconfig_path = self.plane.kubeconfig_path
        from regcred.kube import KubeApi

        self.kube = KubeApi(self.plane.api_client())

    def populate(self, namespaces: list[str]) -> None:
        self.create([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}}, source_secret()])
        self.create([namespace(name) for name in namespaces])
        wanted = set(namespaces)  # the controller-manager creates each namespace's `default` ServiceAccount
        wait(lambda: wanted <= {a["metadata"]["namespace"] for a in self._accounts()}, 600, "default ServiceAccounts")

    def create(self, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            metadata = body["metadata"]
            if body["kind"] == "Namespace":
                path = "/api/v1/namespaces"
            elif body["kind"] == "Secret":
                path = f"/api/v1/namespaces/{metadata['namespace']}/secrets"
            else:
                path = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
            self.kube.request("POST", path, body=body)

    def set_latency(self, seconds: float) -> None:
        pass  # a real API server has its own

    def reset(self) -> None:
        self.plane.reset_requests()

    def records(self) -> list[Request]:
        return [Request(r.verb, r.resource + (f"/{r.subresource}" if r.subresource else ""), r.status,
                        r.user_agent, None) for r in self.plane.requests]

    def _accounts(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kube.request("GET", "/api/v1/serviceaccounts")["items"]
        return [a for a in items if _counted(a)]

    def progress(self, secret_names: list[str], accounts: bool) -> tuple[int, int]:
        wanted = set(secret_names)
        secrets = sum(1 for s in self.kube.list_secrets(label_selector=CREDENTIAL_LABEL)
                      if s["metadata"]["name"] in wanted)
        return secrets, sum(1 for a in self._accounts() if _carries(a, secret_names if accounts else []))

    def api_client(self) -> Any:
        return self.plane.api_client()

    def cpu_seconds(self) -> float:
        return 0.0  # not measured: the control plane's several processes

    def close(self) -> None:
        self.plane.stop()


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"bench": "yes"}}}


def source_secret() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SOURCE, "namespace": SYSTEM},
            "data": {"username": base64.b64encode(b"robot").decode(),
                     "password": base64.b64encode(b"unused").decode()}}


def credential(index: int, accounts: list[str]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential", "metadata": {"name": f"c{index}"},
            "spec": {"provider": {"static": {"registry": f"registry{index}.example.com",
                                             "secretRef": {"namespace": SYSTEM, "name": SOURCE}}},
                     "secretName": f"pull-{index}",
                     "namespaces": {"selector": {"matchLabels": {"bench": "yes"}}},
                     "serviceAccounts": accounts}}


# -- The operator's process ----------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def memory_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (the peak RSS) in MB."""
    values = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(POLL)
    return time.monotonic() - started


@dataclasses.dataclass
class Result:
    converged: float
    quiet: float
    requests: list[Request]
    cpu: float
    rss: float
    peak: float
    server_cpu: float
    log_lines: collections.Counter[str]


def operator_requests(cluster: Cluster) -> int:
    return sum(1 for r in cluster.records() if operator_request(r))


def run_operator(cluster: Cluster, namespaces: list[str], credentials: int, accounts: list[str],
                 args: argparse.Namespace) -> Result:
    secret_names = [f"pull-{i}" for i in range(credentials)]
    env = dict(os.environ, KUBECONFIG=cluster.kubeconfig_path, REGCRED_PEERING_NAME="", REGCRED_METRICS_PORT="0",
               REGCRED_STATE_NAMESPACE=SYSTEM, REGCRED_WRITE_CONCURRENCY=str(args.concurrency),
               PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with tempfile.NamedTemporaryFile("w+", prefix="regcred-bench-", suffix=".log") as log:
        process = subprocess.Popen([sys.executable, "-m", "regcred.cli", "run", "--log-level", "info"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            def watching() -> bool:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the operator exited with {process.returncode}:\n{log.read()[-3000:]}")
                return {PLURAL, "namespaces", "serviceaccounts"} <= {
                    r.resource for r in cluster.records() if r.verb == "watch"}

            wait(watching, 120, "the operator's watches")
            time.sleep(1)  # its initial LISTs answered
            cluster.reset()
            cpu, server_cpu = cpu_seconds(process.pid), cluster.cpu_seconds()
            started = time.monotonic()
            cluster.create([credential(i, accounts) for i in range(credentials)])
            total = len(namespaces)
            converged = wait(lambda: cluster.progress(secret_names, bool(accounts)) == (total * credentials, total),
                             args.timeout, "convergence")
            last = operator_requests(cluster)
            quiet_since = time.monotonic()
            # Until the operator stops making requests (only its own: a real controller-manager never does).
            while time.monotonic() - quiet_since < args.quiet and time.monotonic() - started < args.timeout:
                time.sleep(POLL)
                now = operator_requests(cluster)
                if now != last:
                    last, quiet_since = now, time.monotonic()
            quiet = quiet_since - started
            requests = cluster.records()
            cpu = cpu_seconds(process.pid) - cpu
            server_cpu = cluster.cpu_seconds() - server_cpu
            rss, peak = memory_mb(process.pid)
            log.seek(0)
            lines = collections.Counter(m.group(1) for m in re.finditer(r"Credential (c\d+): ", log.read()))
            if process.poll() is not None:
                print(f"the operator exited with {process.returncode}")
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return Result(converged, quiet, requests, cpu, rss, peak, server_cpu, lines)


# -- The sequential baseline ---------------------------------------------------------------------------------------

def baseline(cluster: Cluster, namespaces: list[str], credentials: int, accounts: bool) -> float:
    """What a simple controller does, one request at a time: for each namespace and Secret, GET it, then create or
    replace it; then GET the `default` ServiceAccount and PUT it with every entry it lacks."""
    import kubernetes.client

    client = cluster.api_client()
    client.user_agent = BASELINE_AGENT
    core = kubernetes.client.CoreV1Api(client)
    data: dict[str, bytes | str] = {".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()}
    started = time.monotonic()
    for namespace in namespaces:
        for i in range(credentials):
            body = kubernetes.client.V1Secret(
                metadata=kubernetes.client.V1ObjectMeta(name=f"pull-{i}", labels={CREDENTIAL_LABEL: f"c{i}"}),
                type="kubernetes.io/dockerconfigjson", data=data)
            try:
                core.read_namespaced_secret(f"pull-{i}", namespace)
            except kubernetes.client.ApiException as error:
                if error.status != 404:
                    raise
                core.create_namespaced_secret(namespace, body)
            else:
                core.replace_namespaced_secret(f"pull-{i}", namespace, body)
        if accounts:
            account = core.read_namespaced_service_account("default", namespace)
            have = {entry.name for entry in account.image_pull_secrets or []}
            account.image_pull_secrets = list(account.image_pull_secrets or []) + [
                kubernetes.client.V1LocalObjectReference(name=f"pull-{i}") for i in range(credentials)
                if f"pull-{i}" not in have]
            core.replace_namespaced_service_account("default", namespace, account)
    return time.monotonic() - started


# -- Report --------------------------------------------------------------------------------------------------------

def report(title: str, result: Result, needed: int, baseline_run: tuple[float, list[Request]] | None,
           args: argparse.Namespace) -> dict[str, Any]:
    ours = [r for r in result.requests if operator_request(r)]
    by_kind = collections.Counter(f"{r.verb} {r.resource}" for r in ours)
    # ServiceAccount writes: PUTs (older operators) or merge patches guarded by the resourceVersion.
    account_puts = [r for r in ours if r.verb in ("update", "patch") and r.resource == "serviceaccounts"]
    conflicts = sum(1 for r in account_puts if r.status == 409)
    gets = sum(1 for r in ours if r.verb == "get")
    writes = sum(1 for r in ours if r.verb in WRITE_VERBS)
    passes = collections.Counter(r.credential for r in ours if r.verb == "list" and r.credential)
    floor = needed / args.concurrency * args.latency
    print(f"\n== {title} ==")
    print(f"converged in {result.converged:.2f} s (polled every {POLL} s); the operator's last request at "
          f"{result.quiet:.2f} s")
    print(f"operator process: {result.cpu:.1f} CPU s, RSS {result.rss:.0f} MB (peak {result.peak:.0f} MB)"
          + (f"; the emulated API's process {result.server_cpu:.1f} CPU s" if not args.real else ""))
    print(f"requests (operator and kopf, watches excluded): {len(ours)}; writes {writes}; GETs {gets}; "
          f"ServiceAccount writes {len(account_puts)} ({conflicts} answered 409)")
    for kind, count in sorted(by_kind.items(), key=lambda item: (-item[1], item[0])):
        failed = collections.Counter(r.status for r in ours if f"{r.verb} {r.resource}" == kind and r.status >= 400)
        extra = f"  (answered {dict(failed)})" if failed else ""
        print(f"  {count:>7}  {kind}{extra}")
    if not args.real:
        print(f"reconciliation passes (first pages of LISTs of a credential's Secrets): {sum(passes.values())} "
              f"{dict(sorted(passes.items()))}")
    print(f"passes that changed something ('Credential <name>:' info log lines): {sum(result.log_lines.values())} "
          f"{dict(sorted(result.log_lines.items()))}")
    if args.real:
        print(f"floor: not computed on the real control plane (no injected latency); {needed} writes needed")
    else:
        print(f"floor: {needed} writes needed / {args.concurrency} concurrent x {args.latency * 1000:.1f} ms = "
              f"{floor:.2f} s; converged in {result.converged / floor:.1f}x the floor")
    if baseline_run is not None:
        seconds, records = baseline_run
        print(f"sequential GET-then-write baseline (same objects, fresh cluster): {seconds:.2f} s, {len(records)} "
              f"requests, {sum(1 for r in records if r.verb in WRITE_VERBS)} writes "
              f"({seconds / result.converged:.1f}x the operator's time)")
    return {"seconds": result.converged, "requests": len(ours), "writes": writes, "puts": len(account_puts),
            "conflicts": conflicts, "gets": gets, "passes": sum(passes.values()) if not args.real else None,
            "floor": floor, "baseline": baseline_run[0] if baseline_run else None}


def scenario(args: argparse.Namespace, credentials: int, accounts: list[str]) -> dict[str, Any]:
    namespaces = [f"{PREFIX}{i:05d}" for i in range(args.namespaces)]
    title = (f"{credentials} credential(s) x {len(namespaces)} namespaces, serviceAccounts {accounts!r}, "
             f"{'real control plane' if args.real else f'{args.latency * 1000:.1f} ms per request'}")
    cluster: Cluster = RealControlPlane() if args.real else EmulatedProcess()
    try:
        cluster.populate(namespaces)
        cluster.set_latency(args.latency)
        result = run_operator(cluster, namespaces, credentials, accounts, args)
    finally:
        cluster.close()
    baseline_run = None
    if args.baseline:
        cluster = RealControlPlane() if args.real else EmulatedProcess()
        try:
            cluster.populate(namespaces)
            cluster.set_latency(args.latency)
            cluster.reset()
            seconds = baseline(cluster, namespaces, credentials, bool(accounts))
            baseline_run = (seconds, [r for r in cluster.records() if r.user_agent.startswith(BASELINE_AGENT)])
        finally:
            cluster.close()
    needed = len(namespaces) * credentials + (len(namespaces) if accounts else 0)
    return report(title, result, needed, baseline_run, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespaces", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.005, help="seconds added to every API request (emulated)")
    parser.add_argument("--concurrency", type=int, default=Settings().write_concurrency,
                        help="REGCRED_WRITE_CONCURRENCY for the operator")
    parser.add_argument("--credentials", type=int, default=5, help="in the many-credentials run")
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds without a request that end a run")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for convergence")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the sequential loops")
    parser.add_argument("--real", action="store_true", help="the real control plane (KUBEBUILDER_ASSETS) instead")
    args = parser.parse_args()
    if args.real:
        args.latency = 0.0
    print(f"{args.namespaces} namespaces; operator write concurrency {args.concurrency}; "
          + ("real control plane: no latency injected (each request takes what the server takes)" if args.real
             else f"emulated API in its own process, {args.latency * 1000:.1f} ms added to every request"))
    runs = [("one credential, ['default']", 1, ["default"]), ("one credential, []", 1, []),
            (f"{args.credentials} credentials, ['default']", args.credentials, ["default"])]
    results = {label: scenario(args, credentials, accounts) for label, credentials, accounts in runs}
    print(f"\n{'run':<28} {'converged':>10} {'floor':>7} {'requests':>9} {'writes':>7} {'SA writes':>9} "
          f"{'409s':>5} {'GETs':>6} {'passes':>7} {'baseline':>9}")
    for label, r in results.items():
        passes = "" if r["passes"] is None else str(r["passes"])
        floor = "" if args.real else f"{r['floor']:.2f}"
        base = "" if r["baseline"] is None else f"{r['baseline']:.1f}"
        print(f"{label:<28} {r['seconds']:>10.2f} {floor:>7} {r['requests']:>9} {r['writes']:>7} {r['puts']:>9} "
              f"{r['conflicts']:>5} {r['gets']:>6} {passes:>7} {base:>9}")
    with_accounts, without = results["one credential, ['default']"], results["one credential, []"]
    print(f"\nServiceAccounts ['default'] vs []: {with_accounts['seconds']:.2f} s vs {without['seconds']:.2f} s "
          f"({with_accounts['seconds'] / without['seconds']:.1f}x the time, "
          f"{with_accounts['requests'] / max(without['requests'], 1):.1f}x the requests)")


if __name__ == "__main__":
    main()
