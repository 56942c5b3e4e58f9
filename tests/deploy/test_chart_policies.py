"""The chart's optional hardening: the ValidatingAdmissionPolicy (admissionPolicy) and the NetworkPolicy
(networkPolicy), as rendered. What the policy does on a real API server is tested in
tests/e2e/test_admission_real_e2e.py; the NetworkPolicy is enforced by a CNI plugin, which the test
control plane does not run, so only its shape is checked here."""

from __future__ import annotations

from typing import Any

from tests.deploy.chart_tools import NAMESPACE, SCENARIOS, Manifest, of_kind, one, render, rule_triples

HARDENED = SCENARIOS["hardened"]
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
# Write verbs as admission operations (a PATCH is admitted as an UPDATE).
OPERATIONS = {"create": "CREATE", "update": "UPDATE", "patch": "UPDATE", "delete": "DELETE"}
# Writes the ClusterRole grants that the policy leaves to RBAC, and why.
NOT_CONFINED = {
    ("", "events", "CREATE"),  # Events: the operator's own reports, no one's object
    ("regcred.dev", "registrycredentials", "UPDATE"),  # kopf's finalizer and annotations on its own CRs
    ("regcred.dev", "registrycredentials/status", "UPDATE"),
    ("kopf.dev", "clusterkopfpeerings", "CREATE"),  # kopf's peering objects
    ("kopf.dev", "clusterkopfpeerings/status", "UPDATE"),
    ("kopf.dev", "kopfpeerings", "CREATE"),  # (namespaces mode)
    ("kopf.dev", "kopfpeerings/status", "UPDATE"),
}


def policy(values: dict[str, Any] | None = None) -> Manifest:
    return one(render(values or HARDENED), "ValidatingAdmissionPolicy")


def matched(vap: Manifest) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, operation) the policy's matchConstraints select."""
    return {(group, resource, operation)
            for rule in vap["spec"]["matchConstraints"]["resourceRules"]
            for group in rule["apiGroups"] for resource in rule["resources"] for operation in rule["operations"]}


def test_both_are_off_by_default() -> None:
    for scenario, values in SCENARIOS.items():
        if scenario != "hardened":
            objects = render(values)
            assert not [o for o in objects if o["kind"] in (*POLICY_KINDS, "NetworkPolicy")], scenario


def test_the_policy_checks_only_the_operators_own_requests() -> None:
    objects = render(HARDENED)
    vap, binding = (one(objects, kind) for kind in POLICY_KINDS)
    account = one(objects, "ServiceAccount")["metadata"]
    (condition,) = vap["spec"]["matchConditions"]
    assert condition["expression"] == (
        f'request.userInfo.username == "system:serviceaccount:{NAMESPACE}:{account["name"]}"')
    assert vap["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"] == {"policyName": vap["metadata"]["name"], "validationActions": ["Deny"]}
    assert all(v["reason"] == "Forbidden" and v["messageExpression"] for v in vap["spec"]["validations"])
    # An existing ServiceAccount, and a policy that only reports.
    other = render({"serviceAccount": {"create": False, "name": "ops"},
                    "admissionPolicy": {"enabled": True, "validationActions": ["Warn", "Audit"]}})
    assert "system:serviceaccount:regcred-system:ops" in one(other, "ValidatingAdmissionPolicy")[
        "spec"]["matchConditions"][0]["expression"]
    assert one(other, "ValidatingAdmissionPolicyBinding")["spec"]["validationActions"] == ["Warn", "Audit"]


def test_every_write_rbac_grants_is_confined_by_the_policy_or_listed_as_not() -> None:
    granted_somewhere: set[tuple[str, str, str]] = set()
    for values in (HARDENED, {**HARDENED, "watchNamespaces": ["team-a"]}):
        objects = render(values)
        granted = {(group, resource, OPERATIONS[verb])
                   for role in (*of_kind(objects, "ClusterRole"), *of_kind(objects, "Role"))
                   for group, resource, verb in rule_triples(role) if verb in OPERATIONS}
        assert granted - matched(policy(values)) <= NOT_CONFINED
        assert matched(policy(values)) - granted == set()  # nothing is matched that RBAC does not allow
        granted_somewhere |= granted
    assert granted_somewhere >= NOT_CONFINED  # the list names only writes the chart grants


def test_the_network_policy_allows_dns_the_api_server_registries_and_scrapes() -> None:
    objects = render(HARDENED)
    network = one(objects, "NetworkPolicy")
    deployment = one(objects, "Deployment")
    assert network["metadata"]["namespace"] == NAMESPACE
    assert network["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert network["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, api, registries = network["spec"]["egress"]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert api == {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
                   "to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}, {"ipBlock": {"cidr": "10.96.0.1/32"}}]}
    assert registries == {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 5000}],
                          "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}
    (ingress,) = network["spec"]["ingress"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {p["port"] for p in ingress["ports"]} == {p["containerPort"] for p in container["ports"]}
    assert ingress["from"] == HARDENED["networkPolicy"]["ingressPeers"]


def test_the_network_policys_defaults() -> None:
    network = one(render({"networkPolicy": {"enabled": True}, "metrics": {"enabled": False}}), "NetworkPolicy")
    dns, api, registries = network["spec"]["egress"]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert "to" not in api  # the API server is not a pod: any address, on its ports
    assert registries["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    (ingress,) = network["spec"]["ingress"]
    assert ingress == {"ports": [{"protocol": "TCP", "port": 8080}]}  # health only, from anyone
    no_egress = one(render({"networkPolicy": {"enabled": True, "egressCidrs": []}}), "NetworkPolicy")
    assert len(no_egress["spec"]["egress"]) == 2  # DNS and the API server only (e.g. with an in-cluster proxy)
