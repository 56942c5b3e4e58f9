"""The operator end to end at `--debug` (logging set up by the function `regcred run` calls) prints no secret.

A static credential is fanned out: the operator reads the source Secret and writes pull Secrets through the
Kubernetes client, whose REST logger would log every response body at DEBUG. Everything the operator logs
and prints while it does that (kopf's own debug lines included) is searched for the password, the
user:password pair and their base64 forms (tests/log_scan.py). The test itself reads only the credential's
status while capturing, so whatever is found was logged by the operator. (The Kubernetes client of
today logs no bodies; this keeps it, kopf and the operator's own DEBUG lines so.)
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import Cluster, OperatorFactory, eventually
from tests.log_scan import assert_nothing_printed

pytestmark = pytest.mark.e2e

USERNAME = "acme-ci"
PASSWORD = "dckr_pat_L0gSc4nD0N0tPr1nt"


def test_the_operator_at_debug_logs_no_secret(cluster: Cluster, operator: OperatorFactory,
                                              debug_logging: pytest.LogCaptureFixture,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cluster.namespace("regcred-system")
    cluster.namespace("shop-a", {"team": "shop"})
    cluster.namespace("shop-b", {"team": "shop"})
    cluster.source_secret("regcred-system", "hub", {"username": USERNAME, "password": PASSWORD})
    debug_logging.clear()
    capsys.readouterr()

    operator.start()
    cluster.apply_credential("hub", {
        "provider": {"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
        "secretName": "hub-pull",
        "namespaces": {"selector": {"matchLabels": {"team": "shop"}}},
    })

    def synced() -> None:
        status = cluster.credential("hub").get("status", {})
        assert status.get("namespaces", {}).get("synced") == 2
        assert cluster.condition("hub")["status"] == "True"

    eventually(synced)
    operator.stop()

    assert any(r.name.startswith("kopf") and r.levelname == "DEBUG" for r in debug_logging.records)
    secrets = {"the password": PASSWORD, "user:password": f"{USERNAME}:{PASSWORD}"}
    if operator.identity is not None:  # a real cluster: the operator's own ServiceAccount token
        secrets["the operator's token"] = operator.identity[1]
    assert_nothing_printed(debug_logging, capsys, secrets=secrets)
    assert set(cluster.secrets("regcred.dev/credential=hub")) == {"shop-a", "shop-b"}  # after the scan
