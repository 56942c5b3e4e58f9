"""The emulator's pure parts: patch formats, selectors, printer columns."""

from __future__ import annotations

from typing import Any

import pytest

from regcred_sandbox.patches import PatchError, PatchFormatError, json_patch, merge_patch, strategic_merge_patch
from regcred_sandbox.selectors import FieldSelector, LabelSelector, SelectorError
from regcred_sandbox.tables import human_duration, jsonpath


def test_json_patch_operations_and_immutability() -> None:
    doc = {"metadata": {"finalizers": ["a"]}, "spec": {"x": 1, "list": [1, 2, 3]}}
    result = json_patch(doc, [
        {"op": "add", "path": "/metadata/finalizers/-", "value": "b"},
        {"op": "add", "path": "/spec/list/0", "value": 0},
        {"op": "remove", "path": "/spec/list/3"},
        {"op": "replace", "path": "/spec/x", "value": 2},
        {"op": "copy", "from": "/spec/x", "path": "/spec/y"},
        {"op": "move", "from": "/spec/y", "path": "/spec/a~1b"},
        {"op": "test", "path": "/spec/a~1b", "value": 2},
    ])
    assert result == {"metadata": {"finalizers": ["a", "b"]}, "spec": {"x": 2, "list": [0, 1, 2], "a/b": 2}}
    assert doc == {"metadata": {"finalizers": ["a"]}, "spec": {"x": 1, "list": [1, 2, 3]}}


@pytest.mark.parametrize(("ops", "error"), [
    ([{"op": "test", "path": "/a", "value": 2}], PatchError),
    ([{"op": "remove", "path": "/missing"}], PatchError),
    ([{"op": "replace", "path": "/list/5", "value": 1}], PatchError),
    ([{"op": "frobnicate", "path": "/a"}], PatchFormatError),
    ([{"op": "add", "path": "a", "value": 1}], PatchFormatError),
    ({"op": "add"}, PatchFormatError),
])
def test_json_patch_errors(ops: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        json_patch({"a": 1, "list": []}, ops)


def test_merge_patch() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"b": None, "d": 3}, "l": [3]}) == {
        "a": {"c": 2, "d": 3}, "l": [3]}


def test_strategic_merge_patch_directives() -> None:
    pod = {"spec": {
        "containers": [{"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
                       {"name": "b", "image": "b:1"}],
        "tolerations": [{"key": "x"}],
        "volumes": [{"name": "v", "emptyDir": {}}],
    }, "metadata": {"finalizers": ["one"], "labels": {"keep": "me"}}}
    patched = strategic_merge_patch(pod, {
        "spec": {
            "containers": [{"name": "a", "ports": [{"containerPort": 443, "name": "https"}]},
                           {"name": "b", "$patch": "delete"}],
            "tolerations": [{"key": "y"}],  # no merge key: replaced
            "volumes": [{"name": "w", "secret": {"secretName": "s"}}],
            "$setElementOrder/containers": [{"name": "a"}],
        },
        "metadata": {"finalizers": ["two"], "labels": {"$patch": "replace", "new": "one"}},
    }, kind="Pod")
    assert patched["spec"]["containers"] == [{"name": "a", "image": "a:1", "ports": [
        {"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}]}]
    assert patched["spec"]["tolerations"] == [{"key": "y"}]
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["v", "w"]
    assert patched["metadata"] == {"finalizers": ["one", "two"], "labels": {"new": "one"}}
    assert pod["spec"]["containers"][1]["name"] == "b"  # the original is intact

    replaced = strategic_merge_patch(pod, {"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}})
    assert replaced["spec"]["containers"] == [{"name": "c"}]
    conditions = strategic_merge_patch({"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
                                       {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert conditions["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    ("", {}, True),
    ("a=b", {"a": "b"}, True),
    ("a=b", {"a": "c"}, False),
    ("a!=b", {}, True),
    ("app.kubernetes.io/managed-by=regcred-operator", {"app.kubernetes.io/managed-by": "regcred-operator"}, True),
    ("a in (b, c),d", {"a": "c", "d": ""}, True),
    ("a notin (b,c)", {"a": "c"}, False),
    ("!a", {"a": "x"}, False),
    ("a=", {"a": ""}, True),
])
def test_label_selector_matching(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert LabelSelector.parse(selector).matches({"metadata": {"labels": labels}}) is matches


@pytest.mark.parametrize("selector", ["a in (b", "a=b=c", "=b", "a in (b c)", "a@b"])
def test_label_selector_errors(selector: str) -> None:
    with pytest.raises(SelectorError):
        LabelSelector.parse(selector)


def test_field_selectors() -> None:
    obj = {"metadata": {"name": "n"}, "status": {"phase": "Running"}, "spec": {"ready": True}}
    assert FieldSelector.parse("status.phase=Running,metadata.name==n").matches(obj)
    assert FieldSelector.parse("spec.ready=true,spec.nodeName=").matches(obj)
    assert not FieldSelector.parse("status.phase!=Running").matches(obj)
    with pytest.raises(SelectorError):
        FieldSelector.parse("status.phase")


def test_printer_column_jsonpath_and_ages() -> None:
    obj = {"status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}],
                      "list": [{"n": 1}, {"n": 2}]}}
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert jsonpath(obj, "{.status.list[-1].n}") == 2
    assert jsonpath(obj, ".status.list[*].n") == 1
    assert jsonpath(obj, ".status.missing") is None
    assert [human_duration(s) for s in (5, 130, 700, 3 * 3600 + 60, 50 * 3600, 400 * 86400)] == [
        "5s", "2m10s", "11m", "3h1m", "2d2h", "400d"]
