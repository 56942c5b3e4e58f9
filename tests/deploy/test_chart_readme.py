"""The chart's README stays true: its values table lists every value, and its Argo CD health check works."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import lupa
import pytest

from tests.deploy.chart_tools import CHART
from tests.deploy.test_chart_values import documented_keys

README = CHART / "README.md"
HEALTH_KEY = "resource.customizations.health.regcred.dev_RegistryCredential: |"


def test_the_values_table_lists_every_value() -> None:
    text = README.read_text()
    start = text.index("\n## Values\n") + 1
    section = text[start:text.index("\n#", start)]
    listed = re.findall(r"^\| `([A-Za-z.]+)` \|", section, flags=re.MULTILINE)
    assert listed == [key for key, _ in documented_keys()]


def argo_health_check() -> str:
    text = README.read_text()
    start = text.index(HEALTH_KEY) + len(HEALTH_KEY) + 1
    block = text[start:text.index("```", start)]
    return textwrap.dedent(block)


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the README's Lua health check as Argo CD does: `obj` in, a table {status, message} out."""
    lua = lupa.LuaRuntime()
    check = lua.eval(f"function(obj)\n{argo_health_check()}\nend")
    result = check(lua.table_from(obj, recursive=True))
    return {str(k): str(v) for k, v in result.items()}


def credential(generation: int, observed: int | None, *conditions: dict[str, str]) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conditions)}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": "hub", "generation": generation}, "status": status}


READY = {"type": "Ready", "status": "True", "reason": "Ready", "message": "Pull secrets are up to date."}
NOT_READY = {"type": "Ready", "status": "False", "reason": "MintFailed", "message": "The Secret is missing."}
TOKEN = {"type": "TokenReady", "status": "True", "reason": "Minted", "message": "Fresh."}


@pytest.mark.parametrize(("obj", "expected"), [
    ({"metadata": {"name": "hub", "generation": 1}}, "Progressing"),
    (credential(1, 1, TOKEN, READY), "Healthy"),
    (credential(1, 1, NOT_READY), "Degraded"),
    (credential(2, 1, READY), "Progressing"),  # the new spec is not applied yet
    (credential(1, 1, {**READY, "status": "Unknown"}), "Progressing"),
    (credential(1, 1, TOKEN), "Progressing"),
    (credential(1, None, READY), "Healthy"),
])
def test_the_argo_cd_health_check(obj: dict[str, Any], expected: str) -> None:
    verdict = health(obj)
    assert verdict["status"] == expected
    assert verdict["message"]
    if expected == "Degraded":
        assert verdict["message"] == "MintFailed: The Secret is missing."
