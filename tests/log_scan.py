"""Scanning what a test logged and printed for secrets, in every form they could take (tests/conftest.py's
``debug_logging`` sets logging up as `regcred run --debug` does)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import pytest


def base64_forms(secret: str) -> set[str]:
    """How ``secret`` looks inside any base64 text: the part of its encoding that does not depend on what
    comes before or after it, for each of the three alignments, in the standard and URL-safe alphabets."""
    raw = secret.encode()
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        core = encoded[(offset * 4 + 2) // 3 : len(encoded) - 2]
        if len(core) >= 8:
            forms.update({core, core.translate(str.maketrans("+/", "-_"))})
    return forms


def needles(secrets: Mapping[str, str]) -> dict[str, str]:
    """What may not appear, and a name for each: the secret, each long line of it, their base64 forms."""
    found: dict[str, str] = {}
    for name, secret in secrets.items():
        found[secret] = name
        for line in secret.splitlines():
            if len(line) >= 16 and not line.startswith("-----"):
                found.setdefault(line, f"{name} (a line)")
        for form in base64_forms(secret):
            found.setdefault(form, f"base64 of {name}")
    return found


def assert_nothing_printed(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
                           secrets: Mapping[str, str], *, server_side: tuple[str, ...] = ()) -> None:
    """Nothing logged (caplog, this test phase) or printed (capsys) holds one of ``secrets`` in any form;
    records of the loggers ``server_side`` (an emulated cloud running in this process) are left out."""
    captured = capsys.readouterr()
    texts = [captured.out, captured.err]
    for record in caplog.records:
        if record.name.split(".")[0] in server_side:
            continue
        texts.append(f"{record.name} {record.getMessage()} {record.__dict__!r}")
    text = "\n".join(texts)
    assert caplog.records, "nothing was logged: the scan would prove nothing"
    leaks = sorted({name for needle, name in needles(secrets).items() if needle in text})
    assert not leaks, f"printed or logged at --debug: {leaks}"
