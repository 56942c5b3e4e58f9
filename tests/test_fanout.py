"""Planning the writes: only what differs is written; others' Secrets and ServiceAccount entries are kept."""

import base64
import datetime
import json
import random

import pytest

from regcred import dockerconfig as dc
from regcred.fanout import ATTACHED_ANNOTATION, SecretContent, attach_update, plan_secrets
from regcred.providers import Token
from regcred.tokens import refresh_time

NOW = datetime.datetime(2026, 11, 21, 12, 0, tzinfo=datetime.UTC)
TOKEN = Token(hosts=("a.example", "b.example"), username="robot", password="s3cret", expires_at=NOW)


def content(token: Token = TOKEN) -> SecretContent:
    return SecretContent("shop", "regcred", dc.render(token), "p1", NOW, token.expires_at)


def test_dockerconfigjson_has_an_entry_per_host_with_auth() -> None:
    auths = json.loads(dc.render(TOKEN))["auths"]
    assert set(auths) == {"a.example", "b.example"}
    assert auths["a.example"]["auth"] == base64.b64encode(b"robot:s3cret").decode()
    assert dc.parse_token(dc.render(TOKEN), NOW) == TOKEN


def test_the_token_password_is_not_in_its_repr() -> None:
    assert "s3cret" not in repr(TOKEN) and "s3cret" not in repr(content())


def test_first_sync_creates_everywhere_and_a_resync_writes_nothing() -> None:
    desired = content()
    first = plan_secrets(desired, ["a", "b"], [])
    assert [(a.verb, a.namespace) for a in first] == [("create", "a"), ("create", "b")]
    written = [desired.body(a.namespace) for a in first]  # what the writer creates
    assert plan_secrets(desired, ["a", "b"], written) == []


def test_a_new_token_patches_and_a_namespace_that_left_is_deleted() -> None:
    old = [content().body("a"), content().body("gone")]
    rotated = content(Token(("a.example",), "robot", "n3w", NOW))
    actions = {(a.verb, a.namespace) for a in plan_secrets(rotated, ["a"], old)}
    assert actions == {("patch", "a"), ("delete", "gone")}


def test_an_edited_secret_is_patched_back_including_removed_extra_keys() -> None:
    edited = content().body("a")
    edited["data"]["extra"] = "eA=="
    (action,) = plan_secrets(content(), ["a"], [edited])
    assert action.verb == "patch"
    assert action.body is not None and action.body["data"]["extra"] is None


def test_a_renamed_secret_is_created_under_the_new_name_and_the_old_one_deleted() -> None:
    renamed = SecretContent("shop", "pull", dc.render(TOKEN), "p1", NOW, NOW)
    actions = {(a.verb, a.name) for a in plan_secrets(renamed, ["a"], [content().body("a")])}
    assert actions == {("create", "pull"), ("delete", "regcred")}


def test_without_a_token_nothing_is_created_or_changed() -> None:
    assert plan_secrets(None, ["a"], [content().body("a")]) == []


def account(*entries: str, owned: dict[str, str] | None = None) -> dict[str, object]:
    annotations = {ATTACHED_ANNOTATION: json.dumps(owned)} if owned else {}
    return {"metadata": {"name": "default", "namespace": "a", "resourceVersion": "7", "annotations": annotations},
            "imagePullSecrets": [{"name": e} for e in entries]}


def test_attaching_keeps_other_entries_and_records_ownership() -> None:
    updated = attach_update(account("theirs"), "shop", "regcred")
    assert updated is not None
    assert updated["imagePullSecrets"] == [{"name": "theirs"}, {"name": "regcred"}]
    assert json.loads(updated["metadata"]["annotations"][ATTACHED_ANNOTATION]) == {"shop": "regcred"}
    assert updated["metadata"]["resourceVersion"] == "7"  # the write is guarded by what was read
    assert attach_update(updated, "shop", "regcred") is None


def test_detaching_removes_only_what_the_operator_added() -> None:
    updated = attach_update(account("theirs", "regcred", owned={"shop": "regcred"}), "shop", None)
    assert updated is not None and updated["imagePullSecrets"] == [{"name": "theirs"}]
    assert ATTACHED_ANNOTATION not in updated["metadata"]["annotations"]


def test_an_entry_someone_else_added_is_never_claimed_nor_removed() -> None:
    assert attach_update(account("regcred"), "shop", "regcred") is None
    assert attach_update(account("regcred"), "shop", None) is None


def test_default_refresh_is_at_two_thirds_of_the_lifetime_minus_a_little_jitter() -> None:
    minted = NOW
    expires = minted + datetime.timedelta(hours=12)
    at = refresh_time(minted, expires, None, random.Random(1))
    assert minted + datetime.timedelta(hours=7, minutes=55) <= at <= minted + datetime.timedelta(hours=8)


def test_before_expiry_is_honoured_but_capped_at_half_the_lifetime() -> None:
    minted = NOW
    at = refresh_time(minted, minted + datetime.timedelta(hours=12), datetime.timedelta(minutes=30), random.Random(1))
    assert minted + datetime.timedelta(hours=11, minutes=27) <= at <= minted + datetime.timedelta(hours=11, minutes=30)
    short = refresh_time(minted, minted + datetime.timedelta(minutes=15), datetime.timedelta(minutes=30),
                         random.Random(1))
    assert short >= minted + datetime.timedelta(minutes=7)


@pytest.mark.parametrize("hostile", ["[" * 1000, "{" * 100_000, json.dumps({"shop": ["x"] * 10}),
                                     json.dumps([1, 2]), "not json", json.dumps({"a": "b" * 20_000})])
def test_a_hostile_attached_secrets_annotation_is_ignored_not_raised(hostile: str) -> None:
    """Tenants can annotate their ServiceAccounts: whatever they write, attaching still works."""
    account = {"metadata": {"name": "default", "namespace": "shop", "annotations": {ATTACHED_ANNOTATION: hostile}},
               "imagePullSecrets": [{"name": "theirs"}]}
    updated = attach_update(account, "shop", "regcred")
    assert updated is not None
    assert [e["name"] for e in updated["imagePullSecrets"]] == ["theirs", "regcred"]
    assert json.loads(updated["metadata"]["annotations"][ATTACHED_ANNOTATION]) == {"shop": "regcred"}
