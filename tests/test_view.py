"""The view of namespaces and ServiceAccounts: which credentials an event concerns, and LISTs that never undo
a newer event."""

from __future__ import annotations

from typing import Any

from regcred.fanout import ATTACHED_ANNOTATION, attach_update
from regcred.models import parse_credential
from regcred.view import AccountInfo, ClusterView, NamespaceInfo, concerned_by_account, concerned_by_namespace

SPEC = parse_credential("hub", {
    "provider": {"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
    "secretName": "hub-pull", "namespaces": {"selector": {"matchLabels": {"team": "shop"}}},
    "serviceAccounts": ["default"]})


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def account(ns: str, name: str, pull: list[str], attached: str | None = None) -> dict[str, Any]:
    annotations = {ATTACHED_ANNOTATION: attached} if attached is not None else {}
    return {"metadata": {"namespace": ns, "name": name, "annotations": annotations},
            "imagePullSecrets": [{"name": p} for p in pull]}


def test_a_namespace_concerns_the_credentials_whose_selection_it_enters_or_leaves() -> None:
    served = [("hub", SPEC, frozenset({"shop-a"}))]
    assert concerned_by_namespace(served, NamespaceInfo.of(namespace("ops", team="ops")), False, ()) == []
    assert concerned_by_namespace(served, NamespaceInfo.of(namespace("shop-b", team="shop")), False, ()) == ["hub"]
    assert concerned_by_namespace(served, NamespaceInfo.of(namespace("shop-a", team="ops")), False, ()) == ["hub"]
    assert concerned_by_namespace(served, NamespaceInfo.of(namespace("shop-a", team="shop")), True, ()) == ["hub"]
    assert concerned_by_namespace(served, NamespaceInfo.of(namespace("shop-a", team="shop")), False, ()) == []
    # namespaces mode: a namespace the operator does not serve concerns nobody
    assert concerned_by_namespace(served, NamespaceInfo.of(namespace("shop-b", team="shop")), False,
                                  ("shop-a",)) == []


def test_an_account_concerns_a_credential_exactly_when_attach_update_would_change_it() -> None:
    served = [("hub", SPEC, frozenset({"shop-a"}))]
    cases = [
        (account("shop-a", "default", []), True),  # lacks the entry
        (account("shop-a", "default", ["hub-pull"], '{"hub": "hub-pull"}'), False),  # the operator's own write
        (account("shop-a", "default", ["hub-pull"]), False),  # someone else's entry of that name: not claimed
        (account("shop-a", "builder", []), False),  # not a selected account
        (account("ops", "default", ["hub-pull"], '{"hub": "hub-pull"}'), True),  # no longer served: detach
        (account("shop-a", "default", ["old-pull"], '{"hub": "old-pull"}'), True),  # secretName changed
    ]
    for body, expected in cases:
        info = AccountInfo.of(body)
        wanted = info.namespace == "shop-a" and info.name == "default"
        assert (attach_update(body, "hub", "hub-pull" if wanted else None) is not None) == expected, body
        assert concerned_by_account(served, info) == (["hub"] if expected else []), body


def test_a_full_list_never_undoes_a_newer_event() -> None:
    view = ClusterView()
    view.namespace_event(namespace("old"), deleted=False)
    mark = view.mark()  # the LIST starts here; then, while it is on its way:
    view.namespace_event(namespace("new", team="shop"), deleted=False)  # created after the LIST's snapshot
    view.namespace_event(namespace("gone"), deleted=True)  # deleted after it
    view.namespace_event(namespace("old", team="shop"), deleted=False)  # relabelled after it
    view.replace_namespaces([namespace("old"), namespace("gone"), namespace("stale")], mark)
    known = {n.name: dict(n.labels) for n in view.namespaces()}
    assert known == {"old": {"team": "shop"}, "new": {"team": "shop"}, "stale": {}}

    later = view.mark()
    view.replace_namespaces([namespace("old", team="shop")], later)  # a newer LIST: what it lacks is gone
    assert {n.name for n in view.namespaces()} == {"old"}


def test_a_full_list_serves_every_full_pass_that_comes_soon_after() -> None:
    import datetime

    view, calls = ClusterView(), []
    start = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    age = datetime.timedelta(seconds=30)

    def lister() -> list[dict[str, Any]]:
        calls.append(1)
        return [namespace(f"ns-{len(calls)}")]

    assert view.refresh("namespaces", lister, start, age)
    assert not view.refresh("namespaces", lister, start + datetime.timedelta(seconds=29), age)
    assert [ns.name for ns in view.namespaces()] == ["ns-1"]
    assert view.refresh("namespaces", lister, start + age, age)
    assert [ns.name for ns in view.namespaces()] == ["ns-2"]
    view.clear()  # a paused replica: what it listed is stale
    assert view.refresh("namespaces", lister, start + age, age) and len(calls) == 3


def test_an_older_service_account_event_does_not_replace_the_answer_to_a_later_write() -> None:
    view = ClusterView()
    written = {"metadata": {"namespace": "shop", "name": "default", "resourceVersion": "21",
                            "annotations": {ATTACHED_ANNOTATION: '{"hub": "hub-pull"}'}},
               "imagePullSecrets": [{"name": "hub-pull"}]}
    earlier = {"metadata": {"namespace": "shop", "name": "default", "resourceVersion": "20"}}
    view.account_event(written, deleted=False)  # the answer to the operator's patch
    assert view.account_event(earlier, deleted=False).pull_secrets == ("hub-pull",)  # the late watch event
    assert [a.name for a in view.accounts_attached_to("hub")] == ["default"]
    view.account_event({**earlier, "metadata": {**earlier["metadata"], "resourceVersion": "22"}}, deleted=False)
    assert view.accounts_attached_to("hub") == []  # a newer version (someone removed the entry) is taken
