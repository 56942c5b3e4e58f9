"""The chart is packaged by scripts/package-chart.sh, with the project's one version number."""

from __future__ import annotations

import subprocess
import tarfile
import tomllib
from pathlib import Path

import yaml

from tests.deploy.chart_tools import CHART, ROOT


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_the_chart_carries_the_projects_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == project_version()


def test_the_packaging_script_makes_an_installable_archive(tmp_path: Path) -> None:
    result = subprocess.run(["bash", "scripts/package-chart.sh", str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=True)
    archive = Path(result.stdout.strip().splitlines()[-1])
    assert archive == tmp_path / f"regcred-operator-{project_version()}.tgz"
    with tarfile.open(archive) as packed:
        names = set(packed.getnames())
        chart = yaml.safe_load(packed.extractfile("regcred-operator/Chart.yaml").read())  # type: ignore[union-attr]
    assert chart["appVersion"] == project_version()
    assert {"regcred-operator/values.yaml", "regcred-operator/values.schema.json", "regcred-operator/README.md",
            "regcred-operator/templates/NOTES.txt",
            "regcred-operator/files/crds/registrycredentials.regcred.dev.yaml"} <= names
