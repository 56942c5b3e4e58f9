"""`regcred run` (the operator) and `regcred doctor` (why pods are stuck pulling)."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys

EXIT_CONFIG = 2  # what `run` returns when it cannot start: no cluster configuration, no CRD

# The environment variables `regcred run` reads (regcred.config.Settings.from_env and the Kubernetes client).
RUN_ENVIRONMENT = (
    ("KUBECONFIG", "the kubeconfig file (else ~/.kube/config, else the in-cluster ServiceAccount)"),
    ("REGCRED_STATE_NAMESPACE", "the operator's own namespace: its token store (default: the pod's namespace)"),
    ("REGCRED_WATCH_NAMESPACES", "serve only these namespaces, comma-separated (default: all)"),
    ("REGCRED_PEERING_NAME", "kopf peering object shared by the replicas (empty: standalone)"),
    ("REGCRED_PEERING_PRIORITY", "this replica's priority (default: random)"),
    ("REGCRED_PEERING_LIFETIME_SECONDS", "how soon a standby takes over from a replica that died"),
    ("REGCRED_RESYNC_SECONDS", "re-check every credential this often"),
    ("REGCRED_WRITE_CONCURRENCY", "parallel API writes during a fan-out"),
    ("REGCRED_RETRY_INITIAL_SECONDS", "first back-off after a failed mint"),
    ("REGCRED_RETRY_MAX_SECONDS", "longest back-off after failed mints"),
    ("REGCRED_DEBOUNCE_SECONDS", "events within this window make one reconciliation"),
    ("REGCRED_API_TIMEOUT_SECONDS", "read timeout of each API call"),
    ("REGCRED_MAX_SOURCE_WATCHES", "at most this many source Secrets are watched"),
    ("REGCRED_EVENTS_NAMESPACE", "where Events about credentials go"),
    ("REGCRED_REMEDIATION", "false: never touch a workload"),
    ("REGCRED_REMEDIATIONS_PER_MINUTE", "cluster-wide limit on restarts and pod deletions"),
    ("REGCRED_REMEDIATION_BACKLOG_SIZE", "workloads that may wait for the rate limit"),
    ("REGCRED_METRICS_PORT", "Prometheus metrics port (0: off)"),
    ("REGCRED_METRICS_ADDRESS", "address the metrics are served on"),
    ("REGCRED_INSECURE_REGISTRIES", "registries probed over plain HTTP, comma-separated"),
    ("REGCRED_TOKEN_REALM_HOSTS", "more hosts trusted as a registry's token service"),
    ("REGCRED_ECR_ENDPOINT_URL", "the ECR API endpoint"),
    ("REGCRED_STS_ENDPOINT_URL", "the AWS STS endpoint"),
    ("REGCRED_ECR_PUBLIC_ENDPOINT_URL", "the ECR Public API endpoint (ecr with public: true)"),
    ("REGCRED_GITHUB_API_URL", "the GitHub API URL of every ghcr credential"),
    ("REGCRED_GOOGLE_IAM_ENDPOINT_URL", "Google's IAM credentials API"),
    ("REGCRED_GOOGLE_STS_ENDPOINT_URL", "Google's token-exchange (STS) URL"),
    ("REGCRED_GOOGLE_CREDENTIAL_SOURCES", "allowed subject-token sources of workload identity federation"),
    ("REGCRED_AZURE_AUTHORITY_HOST", "the Microsoft Entra ID authority of acr credentials"),
    ("REGCRED_ACR_EXCHANGE_URL", "base URL of ACR's token exchange instead of https://<registry>"),
)


def version() -> str:
    try:
        return importlib.metadata.version("regcred-operator")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a reader that left can be told from a failure
        return code
    except BrokenPipeError:  # `regcred doctor | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush must not fail
        return 1


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="regcred", description=__doc__)
    parser.add_argument("--version", action="version", version=f"regcred {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run the operator against the cluster named by KUBECONFIG, ~/.kube/config or in-cluster config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="environment:\n" + "\n".join(f"  {name:<36} {what}" for name, what in RUN_ENVIRONMENT)
        + f"\n\nexit codes: 0 stopped, {EXIT_CONFIG} could not start (no cluster configuration, the CRD missing)",
    )
    run.add_argument("--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                     help="the operator's log level (default info: one line per change, warnings that need a "
                          "person); HTTP and cloud libraries never go below info, and no level prints a secret")
    run.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON")
    run.add_argument("--verbose", action="store_true", help="the operator's debug lines and kopf's info lines")
    run.add_argument("--debug", action="store_true", help="everything at debug, kopf's too (no secret values)")
    from regcred import doctor

    doctor.add_arguments(commands.add_parser(
        "doctor", help="explain why pods are stuck pulling images, step by step, with the fix",
        formatter_class=argparse.RawDescriptionHelpFormatter))
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help and --version: their output is flushed here, not at exit
        sys.stdout.flush()
        return done.code if isinstance(done.code, int) else 2

    if args.command == "run":
        return run_operator(args)
    return doctor.run_from_args(args)


def run_operator(args: argparse.Namespace) -> int:
    import kopf

    import regcred.handlers  # noqa: F401 - registers the handlers
    from regcred import logs
    from regcred.config import Settings

    logs.configure(level=args.log_level, log_format=args.log_format, verbose=args.verbose, debug=args.debug)
    problem = startup_problem()
    if problem is not None:
        print(f"regcred run: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    namespaces = Settings.from_env().watch_namespaces
    kopf.run(clusterwide=not namespaces, namespaces=namespaces, liveness_endpoint=args.liveness)
    return 0


def startup_problem() -> str | None:
    """What keeps the operator from starting, in a sentence (None: nothing). Retrying cannot fix these: a
    missing cluster configuration or CRD is a person's job, so `run` exits instead of retrying forever."""
    import kubernetes

    from regcred import GROUP, PLURAL
    from regcred.kube import KubeApi, KubeError, load_api_client

    try:
        client = load_api_client()
    except (kubernetes.config.ConfigException, OSError, ValueError) as error:
        return (f"no cluster to run against: {error}. Set KUBECONFIG (or create ~/.kube/config), or run in a pod "
                "with a ServiceAccount.")
    crd = f"{PLURAL}.{GROUP}"
    try:  # a LIST by name: the chart grants list/watch on CRDs (what kopf needs), not get
        found = KubeApi(client).request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                        query={"fieldSelector": f"metadata.name={crd}"})
    except KubeError as error:
        if error.status == 0:
            return f"cannot reach the Kubernetes API: {error.message}."
        return None  # a refusal or a server error: kopf retries and says more; not fatal here
    finally:
        client.close()  # type: ignore[no-untyped-call]
    if not (found or {}).get("items"):
        return (f"the RegistryCredential CRD ({crd}) is not installed: kubectl apply -f crds/ "
                "(or install the Helm chart).")
    return None


if __name__ == "__main__":
    sys.exit(main())
