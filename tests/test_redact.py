"""regcred.redact: the one scrubber, then the cut; the log filter over the secrets the operator holds."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from regcred import logs
from regcred.redact import ELLIPSIS, HELD, MARKER, HeldSecrets, map_strings, redact, redact_json
from tests.log_scan import needles

PASSWORD = "s3cret-Pa55word/with+odd=chars"
USER = "robot$acme"
PAT = "ghp_EchoEchoEchoEchoEchoEchoEcho0123456789"


def b64(text: str, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(text.encode()).decode()


@pytest.mark.parametrize("form", [
    PASSWORD,
    json.dumps(PASSWORD)[1:-1],  # JSON-escaped: the slash
    b64(PASSWORD), b64(PASSWORD).rstrip("="), b64(PASSWORD, urlsafe=True), b64(PASSWORD, urlsafe=True).rstrip("="),
    b64(f"{USER}:{PASSWORD}"), b64(f"{USER}:{PASSWORD}").rstrip("="), b64(f"{USER}:{PASSWORD}", urlsafe=True),
], ids=["plain", "json", "b64", "b64-unpadded", "b64url", "b64url-unpadded", "basic", "basic-unpadded", "basic-url"])
def test_every_form_is_replaced(form: str) -> None:
    text = f"the registry says: {form} is wrong"
    assert redact(text, credentials=[(USER, PASSWORD)]) == f"the registry says: {MARKER} is wrong"


def test_base64_inside_a_longer_base64_text() -> None:
    """A .dockerconfigjson echoed whole: the password's base64 sits at any alignment inside it."""
    config = json.dumps({"auths": {"r.example.com": {"password": PASSWORD}}})
    for prefix in ("", "x", "xy"):
        text = b64(prefix + config)
        leaks = [n for n in needles({"password": PASSWORD}) if n in redact(text, [PASSWORD])]
        assert not leaks


def test_lines_of_a_multi_line_secret() -> None:
    pem = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n"
           "-----END PRIVATE KEY-----")
    text = "could not parse MIIEvQIBADANBgkqhkiG9w0BAQEFAASC BKcwggSjAgEAAoIBAQC7"  # the lines, joined by a space
    assert redact(text, [pem]) == f"could not parse {MARKER} {MARKER}"


def test_scrubbed_before_cut() -> None:
    """A secret that straddles the limit is replaced whole, so no prefix of it survives the cut."""
    text = "x" * 190 + f" token {PAT} rejected"
    cut = redact(text, [PAT], limit=200)
    assert len(cut) <= 200 and cut.endswith(ELLIPSIS)
    assert not any(PAT[:n] in cut for n in range(4, len(PAT) + 1))
    assert redact("short", [PAT], limit=200) == "short"
    assert redact(f"{'x' * 185} {PAT}", [PAT], limit=190) == "x" * 185 + f" {ELLIPSIS}"  # no half marker


def test_overlapping_and_adjacent_secrets_become_one_marker() -> None:
    assert redact("a abcdefghij b", ["abcdefgh", "defghij"]) == f"a {MARKER} b"  # overlapping: no "ij" left
    assert redact("a abcdefghijkl b", ["abcdef", "ghijkl"]) == f"a {MARKER} b"  # adjacent
    assert redact("a abcdefgh b", ["abcd", "abcdefgh"]) == f"a {MARKER} b"  # nested: the longest wins


def test_short_secrets_are_not_replaced() -> None:
    """A three-letter "password" would blank out ordinary words (nor is any secret found in the marker)."""
    assert redact("the abc of it", ["abc", "", "dact"]) == "the abc of it"


def test_held_secrets_are_hidden_without_being_named() -> None:
    HELD.hold("test", credentials=[(USER, PASSWORD)])
    assert redact(f"echo {PASSWORD} and {b64(f'{USER}:{PASSWORD}')}") == f"echo {MARKER} and {MARKER}"
    assert redact_json({"message": [f"echo {PASSWORD}", 3]}) == {"message": [f"echo {MARKER}", 3]}
    HELD.forget("test")
    assert PASSWORD in redact(f"echo {PASSWORD}")


def test_held_secrets_are_bounded() -> None:
    held = HeldSecrets()
    held.MAX_OWNERS = 2
    for index in range(HeldSecrets.PER_OWNER + 2):
        held.hold("a", f"token-number-{index}")
    held.hold("b", "token-of-b")
    held.hold("c", "token-of-c")  # "a" is the oldest owner: dropped
    spans = held.needles().spans
    assert spans("token-of-b token-of-c") and not spans("token-number-5")
    held.forget("b")
    assert not held.needles().spans("token-of-b")
    kept = HeldSecrets()
    for index in range(HeldSecrets.PER_OWNER + 2):
        kept.hold("a", f"token-number-{index}")
    assert [bool(kept.needles().spans(f"token-number-{i}")) for i in range(6)] == [False, False, True, True, True, True]


def test_map_strings_keys_and_values() -> None:
    assert map_strings({"k": ["v", 1, ("t",)]}, str.upper) == {"K": ["V", 1, ["T"]]}


def test_the_log_filter_hides_held_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(logs.RedactHeld())
    HELD.hold("test", PAT)
    logger = logging.getLogger("regcred.test")
    logger.warning("GitHub said %s", f"bad token {PAT}")
    try:
        raise ValueError(f"echoed {PAT}")
    except ValueError:
        logger.exception("failed")
    assert PAT not in caplog.text and MARKER in caplog.text
    assert all(PAT not in repr(record.__dict__) for record in caplog.records)
