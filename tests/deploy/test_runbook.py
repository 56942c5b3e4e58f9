"""docs/runbook.md and deploy/alerts/ stay in step: every alert has its section, and its runbook_url finds it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.chart_tools import ROOT
from tests.deploy.test_alerts import RULES_FILE, rules

RUNBOOK = ROOT / "docs" / "runbook.md"


def headings() -> list[str]:
    """The runbook's headings, outside fenced code blocks."""
    found, fenced = [], False
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+?)\s*$", line)):
            found.append(match.group(1))
    return found


def anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_section_and_every_alert_section_an_alert() -> None:
    alerts = {rule["alert"] for rule in rules()}
    sections = {h for h in headings() if re.fullmatch(r"Regcred[A-Z][A-Za-z]+", h)}
    assert alerts - sections == set(), f"alerts without a section in {RUNBOOK.name}"
    assert sections - alerts == set(), f"sections in {RUNBOOK.name} for alerts {RULES_FILE.name} does not have"


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_alert_links_to_its_section(rule: dict[str, Any]) -> None:
    url = rule["annotations"].get("runbook_url")
    assert url == f"docs/runbook.md#{anchor(rule['alert'])}"
    path, _, fragment = url.partition("#")
    assert (ROOT / path).is_file()
    assert fragment in {anchor(h) for h in headings()}


def test_the_runbooks_own_links_find_their_sections() -> None:
    anchors = {anchor(h) for h in headings()}
    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text())
    assert links
    assert set(links) <= anchors, set(links) - anchors


def test_the_runbook_names_only_metrics_the_operator_exports() -> None:
    from tests.deploy.test_alerts import exported_series

    named = set(re.findall(r"\bregcred_[a-z_]+", RUNBOOK.read_text()))
    assert named
    assert named <= set(exported_series()), named - set(exported_series())
