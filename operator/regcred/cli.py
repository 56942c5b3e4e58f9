"""`regcred run` (the operator) and `regcred doctor` (why pods are stuck pulling)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="regcred", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="run the operator against the cluster named by KUBECONFIG, ~/.kube/config or in-cluster config"
    )
    run.add_argument("--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--verbose", action="store_true", help="log more")
    run.add_argument("--debug", action="store_true", help="log everything kopf does (no secret values)")
    from regcred import doctor

    doctor.add_arguments(commands.add_parser(
        "doctor", help="explain why pods are stuck pulling images, step by step, with the fix"))
    args = parser.parse_args(argv)

    if args.command == "run":
        import kopf

        import regcred.handlers  # noqa: F401 - registers the handlers
        from regcred import logs
        from regcred.config import Settings

        logs.configure(verbose=args.verbose, debug=args.debug)  # kopf's, with the HTTP libraries held at INFO
        namespaces = Settings.from_env().watch_namespaces
        kopf.run(clusterwide=not namespaces, namespaces=namespaces, liveness_endpoint=args.liveness)
        return 0
    return doctor.run_from_args(args)


if __name__ == "__main__":
    sys.exit(main())
