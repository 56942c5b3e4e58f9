"""`python -m regcred_sandbox.stuck_pod`: make a pod fail pulling in the sandbox, for a cause of your choice.

With KUBECONFIG pointing at the sandbox (`scripts/demo.sh --keep` prints it), this creates a Deployment and
one pod it controls, and then plays the kubelet: the pod's status and its Failed Event say the pull failed,
in the container runtime's own words for that cause. Then try `regcred doctor -n <namespace>` and watch what
the operator does (`kubectl get events -n <namespace>`, the Deployment's `regcred.dev/restartedAt`).
"""

from __future__ import annotations

import argparse
import datetime
import sys

from regcred.kube import KubeApi, KubeError, load_api_client
from regcred_sandbox.kubelet import deployment_with_pod, report_pull_failure

# What containerd reports for each cause (the forms regcred.classify reads), for an image IMAGE.
CAUSES = {
    "unauthorized": 'failed to pull and unpack image "IMAGE": failed to resolve reference "IMAGE": pull access '
                    "denied, repository does not exist or may require authorization: authorization failed: "
                    "no basic auth credentials: 401 Unauthorized",
    "forbidden": 'failed to pull and unpack image "IMAGE": failed to resolve reference "IMAGE": unexpected '
                 "status from HEAD request: 403 Forbidden",
    "not_found": 'rpc error: code = NotFound desc = failed to pull and unpack image "IMAGE": failed to resolve '
                 'reference "IMAGE": IMAGE: not found',
    "rate_limited": 'failed to pull and unpack image "IMAGE": failed to copy: httpReadSeeker: failed open: '
                    "unexpected status code 429 Too Many Requests - Server message: toomanyrequests: You have "
                    "reached your pull rate limit.",
    "unreachable": 'failed to pull and unpack image "IMAGE": failed to resolve reference "IMAGE": failed to do '
                   "request: dial tcp: lookup registry.invalid: no such host",
    "tls": 'failed to pull and unpack image "IMAGE": failed to resolve reference "IMAGE": failed to do request: '
           "tls: failed to verify certificate: x509: certificate signed by unknown authority",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regcred_sandbox.stuck_pod", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the Deployment's name (its pod is <name>-7f9c4)")
    parser.add_argument("-n", "--namespace", default="shop-2", help="where (default: shop-2, which the demo's "
                                                                    "credential serves)")
    parser.add_argument("--cause", choices=sorted(CAUSES), default="unauthorized", help="why the pull fails")
    parser.add_argument("--image", default="docker.io/acme/web:1.4", help="the image it fails to pull")
    parser.add_argument("--pull-secret", default="dockerhub-pull", help="the pod's imagePullSecrets entry")
    parser.add_argument("--failed-minutes-ago", type=float, default=10.0,
                        help="when the pull failed (default 10: before the demo's credential was refreshed, so "
                             "a restart with it will help)")
    args = parser.parse_args(argv)
    kube = KubeApi(load_api_client())
    try:
        pod = deployment_with_pod(kube, args.namespace, args.name, args.image, args.pull_secret)
        failed_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=args.failed_minutes_ago)
        report_pull_failure(kube, args.namespace, pod, args.image, CAUSES[args.cause].replace("IMAGE", args.image),
                            at=failed_at)
    except KubeError as error:
        print(f"stuck_pod: the API answered {error}", file=sys.stderr)
        return 2
    print(f"pod {args.namespace}/{pod} of Deployment {args.name} is stuck pulling {args.image} ({args.cause}).")
    print(f"Try: regcred doctor -n {args.namespace} {pod}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
