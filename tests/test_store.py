"""The token store's Secret: what is written is what is read back, and anything else is not a record."""

from __future__ import annotations

import copy
import datetime

import pytest

from regcred import dockerconfig as dc
from regcred.providers import Token
from regcred.store import STORE_TYPE, StoredToken, read_stored, store_name

MINTED = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
CONTENT = dc.render(Token(hosts=("registry.example.test",), username="AWS", password="minted-token",
                          expires_at=None))
STORED = StoredToken(CONTENT, "0123456789abcdef", MINTED, MINTED + datetime.timedelta(hours=12))


def test_a_record_reads_back_as_written() -> None:
    body = STORED.body("ecr", "regcred-system")
    assert body["metadata"]["name"] == "regcred-token-ecr"
    assert body["type"] == STORE_TYPE
    assert "regcred.dev/credential" not in body["metadata"]["labels"]  # never one of the pull Secrets
    assert read_stored(body, "ecr") == STORED


def test_a_record_without_expiry_patches_the_old_expiry_away() -> None:
    without = StoredToken(CONTENT, "0123456789abcdef", MINTED, None)
    body = STORED.body("ecr", "regcred-system")
    body["metadata"]["annotations"].update({k: v for k, v in without.patch()["metadata"]["annotations"].items()})
    body["metadata"]["annotations"] = {k: v for k, v in body["metadata"]["annotations"].items() if v is not None}
    assert read_stored(body, "ecr") == without


def _broken(change: str) -> dict[str, object]:
    body = copy.deepcopy(STORED.body("ecr", "regcred-system"))
    metadata = body["metadata"]
    if change == "type":
        body["type"] = dc.SECRET_TYPE
    elif change == "other credential":
        metadata["labels"]["regcred.dev/token-of"] = "other"
    elif change == "content edited":
        body["data"] = dc.encode_data(CONTENT.replace(b"minted-token", b"edited-token"))
    elif change == "no minted time":
        del metadata["annotations"]["regcred.dev/minted-time"]
    elif change == "no provider hash":
        del metadata["annotations"]["regcred.dev/provider-hash"]
    elif change == "data not base64":
        body["data"] = {".dockerconfigjson": "%%%"}
    return body


@pytest.mark.parametrize("change", ["type", "other credential", "content edited", "no minted time",
                                    "no provider hash", "data not base64"])
def test_anything_but_an_intact_record_is_no_record(change: str) -> None:
    assert read_stored(_broken(change), "ecr") is None


def test_no_secret_is_no_record() -> None:
    assert read_stored(None, "ecr") is None


def test_store_names_stay_valid_secret_names() -> None:
    long = "a" * 250
    assert len(store_name(long)) <= 253
    assert store_name(long) != store_name("a" * 249)
    assert store_name("team.ecr") == "regcred-token-team.ecr"
