"""Where the operator's memory goes (issue 12 point 4): RSS of `regcred run` in its own process against the
emulated API with N namespaces (each with a `default` ServiceAccount), P pods (10% Pending in ErrImagePull with
a kubelet Warning Event, the rest Running) and C static credentials each selecting a fifth of the namespaces.

Prints figures; asserts nothing. RSS (VmRSS of the operator's process) after start with no credential, after
convergence (every Secret written), after a steady period, and after deleting the credentials.

With --in-process the operator runs embedded in this process under tracemalloc instead (the emulator shares the
process: its allocations are set apart by file, the operator-only view excludes regcred_sandbox, aiohttp's
server side and this file), and the top allocation sites are printed: growth from before the operator started
to after its start (no credential), and from there to convergence.

    PYTHONPATH=operator:. .venv/bin/python bench/memory.py                              # 2,000 ns, 20,000 pods, 5
    PYTHONPATH=operator:. .venv/bin/python bench/memory.py --namespaces 200 --pods 2000 --steady 10
    PYTHONPATH=operator:. .venv/bin/python bench/memory.py --in-process --namespaces 500 --pods 5000
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import gc
import logging
import os
import pathlib
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from regcred import GROUP, PLURAL, VERSION
from regcred_sandbox import EmulatedCluster
from regcred_sandbox.server import ApiServer

CREDENTIAL_LABEL = "regcred.dev/credential"
BATCH = 500
IMAGE = "registry.example.com/team/app:1.0"
ROOT = pathlib.Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(0.5)
    return time.monotonic() - started


def settle(pid: int, timeout: float = 120, quiet: float = 5) -> float:
    """Wait until the process's RSS has not moved by more than 1 MB for `quiet` seconds; its RSS."""
    deadline = time.monotonic() + timeout
    last, since = rss_mb(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss_mb(pid)
        if abs(now - last) > 1:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return rss_mb(pid)


def _bulk(cluster: EmulatedCluster, bodies: list[dict[str, Any]],
          status: Callable[[dict[str, Any]], dict[str, Any] | None] = lambda body: None) -> None:
    """Create objects straight in the emulator's store (on its loop), as its API would, a batch at a time;
    `status(body)`: a status to write afterwards through the status path (pods), or None."""
    for start in range(0, len(bodies), BATCH):
        batch = bodies[start:start + BATCH]

        def create(server: ApiServer, batch: list[dict[str, Any]] = batch) -> None:
            for body in batch:
                created = server.apply(body)
                wanted = status(body)
                if wanted is not None:
                    store = server.find_store("pods")
                    server._write(store, created, {**created, "status": wanted},
                                  status_only=True, dry_run=False)

        cluster._call(create)  # the benchmark's bulk path: no HTTP request per object


def populate(cluster: EmulatedCluster, namespaces: int, pods: int) -> None:
    names = [f"team-{i:05d}" for i in range(namespaces)]
    _bulk(cluster, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "regcred-system"}},
                    {"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": "hub", "namespace": "regcred-system"},
                     "data": {"username": base64.b64encode(b"robot").decode(),
                              "password": base64.b64encode(b"unused").decode()}}])
    _bulk(cluster, [{"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": name, "labels": {"group": str(i % 5)}}} for i, name in enumerate(names)])
    _bulk(cluster, [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}
                    for name in names])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies, events = [], []
    for i in range(pods):
        namespace, name = names[i % namespaces], f"app-{i // namespaces:04d}-7f9c4-x{i:05d}"
        bodies.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": namespace, "labels": {"app": "app", "pending": str(i % 10 == 0).lower()}},
            "spec": {"containers": [{"name": "app", "image": IMAGE}], "nodeName": "node-1"}})
        if i % 10 == 0:
            events.append({"apiVersion": "v1", "kind": "Event",
                           "metadata": {"name": f"{name}.17f00000{i:08x}", "namespace": namespace},
                           "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name,
                                              "namespace": namespace},
                           "reason": "Failed", "type": "Warning",
                           "message": f'Failed to pull image "{IMAGE}": 401 Unauthorized',
                           "source": {"component": "kubelet"}, "firstTimestamp": when, "lastTimestamp": when,
                           "count": 1})

    def status(body: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["labels"]["pending"] == "true":
            return {"phase": "Pending", "containerStatuses": [{"name": "app", "image": IMAGE, "ready": False,
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "401 Unauthorized"}}}]}
        return {"phase": "Running", "podIP": "10.0.0.1", "startTime": when,
                "containerStatuses": [{"name": "app", "image": IMAGE, "ready": True, "restartCount": 0,
                                       "state": {"running": {"startedAt": when}}}]}

    _bulk(cluster, bodies, status)
    _bulk(cluster, events)


def credential(index: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RegistryCredential",
            "metadata": {"name": f"c{index}"},
            "spec": {"provider": {"static": {"registry": f"registry{index}.example.com",
                                             "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
                     "secretName": f"pull-{index}",
                     "namespaces": {"selector": {"matchLabels": {"group": str(index % 5)}}},
                     "serviceAccounts": ["default"]}}


def written(cluster: EmulatedCluster) -> int:
    def count(server: ApiServer) -> int:
        return sum(1 for obj in server.objects_of("secrets")
                   if CREDENTIAL_LABEL in (obj["metadata"].get("labels") or {}))
    return cluster._call(count)


def expected_secrets(namespaces: int, credentials: int) -> int:
    return sum(len(range(i % 5, namespaces, 5)) for i in range(credentials))


def install(cluster: EmulatedCluster) -> None:
    from regcred.manifests import load_crd

    cluster.install_crd(load_crd())


def add_credentials(cluster: EmulatedCluster, credentials: int) -> None:
    _bulk(cluster, [credential(i) for i in range(credentials)])


def delete_credentials(cluster: EmulatedCluster, credentials: int) -> None:
    from regcred.kube import KubeApi

    kube = KubeApi(cluster.api_client())
    for i in range(credentials):
        kube.request("DELETE", f"/apis/{GROUP}/{VERSION}/{PLURAL}/c{i}")


def credentials_gone(cluster: EmulatedCluster) -> bool:
    return not cluster.list_objects(f"{PLURAL}.{GROUP}")


# -- Out of process: RSS -----------------------------------------------------------------------------------------

def run_subprocess(cluster: EmulatedCluster, args: argparse.Namespace) -> None:
    env = dict(os.environ, KUBECONFIG=cluster.kubeconfig_path, REGCRED_PEERING_NAME="", REGCRED_METRICS_PORT="0",
               REGCRED_STATE_NAMESPACE="regcred-system",
               PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    log = open(args.log, "w") if args.log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "regcred.cli", "run", "--log-level", "warning"],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        time.sleep(3)
        baseline = settle(process.pid)
        print(f"{'RSS after start, no credential':<44}{baseline:7.1f} MB  ({time.monotonic() - started:.0f}s)")
        expected = expected_secrets(args.namespaces, args.credentials)
        add_credentials(cluster, args.credentials)
        took = wait(lambda: written(cluster) >= expected, args.timeout, "convergence")
        converged = rss_mb(process.pid)
        print(f"{f'RSS at convergence ({expected} Secrets, {took:.0f}s)':<44}{converged:7.1f} MB  "
              f"(+{converged - baseline:.1f})")
        settled = settle(process.pid, timeout=60)
        print(f"{'RSS once settled after convergence':<44}{settled:7.1f} MB  (+{settled - baseline:.1f})")
        time.sleep(args.steady)
        steady = rss_mb(process.pid)
        print(f"{f'RSS after {args.steady:.0f}s steady':<44}{steady:7.1f} MB  (+{steady - baseline:.1f})")
        delete_credentials(cluster, args.credentials)
        took = wait(lambda: credentials_gone(cluster), args.timeout, "deletion")
        after = settle(process.pid, timeout=60)
        print(f"{'RSS after deleting the credentials':<44}{after:7.1f} MB  (+{after - baseline:.1f}; "
              f"{written(cluster)} Secrets left; gone in {took:.0f}s)")
        if process.poll() is not None:
            print(f"the operator exited with {process.returncode}")
    finally:
        logging.getLogger("regcred_sandbox").setLevel(logging.CRITICAL)  # the operator's watches cut at exit
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if args.log:
            log.close()  # type: ignore[union-attr]


# -- In process: tracemalloc -------------------------------------------------------------------------------------

OWNERS = (("regcred_sandbox", "/regcred_sandbox/"), ("regcred", "/regcred/"), ("kopf", "/kopf/"),
          ("kubernetes", "/kubernetes/"), ("aiohttp", "/aiohttp/"))
NOT_OPERATOR = ("/regcred_sandbox/", "/aiohttp/web", "/bench/memory.py")


def owner(trace: tracemalloc.Traceback) -> tuple[str, str]:
    """Whose allocation: the innermost frame in the emulator, regcred, kopf or the kubernetes client (so JSON
    that aiohttp decodes is charged to whoever asked for it), else in aiohttp, else the innermost frame; with
    the nearest caller of that frame in another file of regcred (who asked regcred/kube.py for that response)."""
    frames = list(reversed(trace))  # tracemalloc lists the most recent call last
    for markers in (OWNERS[:-1], OWNERS[-1:]):
        for index, frame in enumerate(frames):
            for who, marker in markers:
                if marker in frame.filename:
                    caller = next((f for f in frames[index + 1:]
                                   if "/regcred/" in f.filename and f.filename != frame.filename), None)
                    via = f" <- {_short(caller.filename)}:{caller.lineno}" if caller is not None else ""
                    return who, f"{_short(frame.filename)}:{frame.lineno}{via}"
    frame = frames[0]
    return "other", f"{_short(frame.filename)}:{frame.lineno}"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/operator/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def emulator_thread(trace: tracemalloc.Traceback) -> bool:
    return any(marker in frame.filename for frame in trace for marker in NOT_OPERATOR)


def report(title: str, after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, top: int) -> None:
    diffs = after.compare_to(before, "traceback")
    by_owner: collections.Counter[str] = collections.Counter()
    by_site: collections.Counter[tuple[str, str]] = collections.Counter()
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    emulator = 0
    for diff in diffs:
        if emulator_thread(diff.traceback):
            emulator += diff.size_diff
            continue
        who, site = owner(diff.traceback)
        by_owner[who] += diff.size_diff
        by_site[who, site] += diff.size_diff
        counts[who, site] += diff.count_diff
    print(f"\n{title}: operator {sum(by_owner.values()) / 2**20:+.1f} MB traced "
          f"(emulator and this script, excluded: {emulator / 2**20:+.1f} MB)")
    for who, size in by_owner.most_common():
        print(f"  {who:<12} {size / 2**20:+8.1f} MB")
    print(f"  top {top} sites (innermost frame in regcred / kopf / kubernetes, else aiohttp, else any):")
    for (who, site), size in by_site.most_common(top):
        print(f"  {size / 2**20:+8.2f} MB {counts[who, site]:>+9} blocks  {who:<11} {site}")


def run_in_process(cluster: EmulatedCluster, args: argparse.Namespace) -> None:
    from regcred.clock import SystemClock
    from regcred.config import Settings
    from regcred.embedded import EmbeddedOperator
    from regcred.kube import USER_AGENT, KubeApi
    from regcred.reconcile import Reconciler
    from regcred.runtime import Runtime

    os.environ["KUBECONFIG"] = cluster.kubeconfig_path
    settings = Settings.from_env(dict(os.environ, REGCRED_PEERING_NAME="", REGCRED_METRICS_PORT="0",
                                      REGCRED_STATE_NAMESPACE="regcred-system"))
    tracemalloc.start(args.frames)
    gc.collect()
    before = tracemalloc.take_snapshot()
    clock = SystemClock()
    client = cluster.api_client()
    client.user_agent = USER_AGENT
    kube = KubeApi(client)
    runtime = Runtime(settings=settings, kube=kube, reconciler=Reconciler(kube, settings, clock), clock=clock)
    with EmbeddedOperator(runtime):
        started = time.monotonic()
        settle(os.getpid(), quiet=5)
        gc.collect()
        idle = tracemalloc.take_snapshot()
        print(f"started and settled in {time.monotonic() - started:.0f}s; process RSS {rss_mb(os.getpid()):.1f} MB "
              "(emulator and tracemalloc included)")
        expected = expected_secrets(args.namespaces, args.credentials)
        add_credentials(cluster, args.credentials)
        took = wait(lambda: written(cluster) >= expected, args.timeout, "convergence")
        time.sleep(5)
        gc.collect()
        converged = tracemalloc.take_snapshot()
        print(f"converged ({expected} Secrets) in {took:.0f}s; process RSS {rss_mb(os.getpid()):.1f} MB")
        report("start, no credential (minus before the operator)", idle, before, args.top)
        report("convergence (minus start)", converged, idle, args.top)
    tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespaces", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=20000, help="in total; every tenth Pending in ErrImagePull")
    parser.add_argument("--credentials", type=int, default=5, help="each selects a fifth of the namespaces")
    parser.add_argument("--steady", type=float, default=60, help="seconds of steady state after convergence")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed for convergence, deletion")
    parser.add_argument("--in-process", action="store_true", help="embedded under tracemalloc: allocation sites")
    parser.add_argument("--frames", type=int, default=25, help="tracemalloc frames (--in-process)")
    parser.add_argument("--top", type=int, default=15, help="allocation sites printed (--in-process)")
    parser.add_argument("--log", help="the operator's output to this file (default: discarded)")
    args = parser.parse_args()

    with EmulatedCluster() as cluster:
        install(cluster)
        started = time.monotonic()
        populate(cluster, args.namespaces, args.pods)
        print(f"{args.namespaces} namespaces, {args.pods} pods ({len(range(0, args.pods, 10))} Pending), "
              f"{args.credentials} credentials; populated in {time.monotonic() - started:.0f}s")
        if args.in_process:
            run_in_process(cluster, args)
        else:
            run_subprocess(cluster, args)


if __name__ == "__main__":
    main()
