"""crds/ is the single source of the CRDs; the chart renders its copy in files/crds/. They must not drift."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.chart_tools import CHART_CRDS, ROOT, TOP_LEVEL_CRDS, of_kind, render

FIX = "run `bash scripts/sync-crds.sh` to copy crds/ into the chart"


def test_the_chart_copy_equals_crds_byte_for_byte() -> None:
    sources = {p.name: p.read_bytes() for p in TOP_LEVEL_CRDS.glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in CHART_CRDS.glob("*.yaml")}
    assert sources, "no CRDs in crds/"
    assert set(copies) == set(sources), f"the chart's CRD files differ from crds/: {FIX}"
    stale = sorted(name for name in sources if copies[name] != sources[name])
    assert not stale, f"the chart's copy of {', '.join(stale)} differs from crds/: {FIX}"


def strip(crd: dict[str, Any]) -> dict[str, Any]:
    """A CRD without what the chart adds (its labels and the keep annotation)."""
    metadata = {k: v for k, v in crd["metadata"].items() if k not in ("labels", "annotations")}
    return {**crd, "metadata": metadata}


def test_the_chart_renders_every_crd_unchanged_but_for_labels_and_the_keep_annotation() -> None:
    sources = [doc for p in sorted(TOP_LEVEL_CRDS.glob("*.yaml")) for doc in yaml.safe_load_all(p.read_text()) if doc]
    rendered = of_kind(render(), "CustomResourceDefinition")
    def canonical(crds: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(strip(c), sort_keys=True) for c in crds)

    assert canonical(rendered) == canonical(sources)
    for crd in rendered:
        source = next(s for s in sources if s["metadata"]["name"] == crd["metadata"]["name"])
        assert (source["metadata"].get("labels") or {}).items() <= crd["metadata"]["labels"].items()


def test_the_sync_script_copies_new_files_and_removes_old_ones(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "sync-crds.sh", tmp_path / "scripts")
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "a.yaml").write_text("kind: A\n")
    stale = tmp_path / "deploy" / "regcred-operator" / "files" / "crds" / "gone.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("kind: Gone\n")
    subprocess.run(["bash", str(tmp_path / "scripts" / "sync-crds.sh")], check=True, capture_output=True)
    assert sorted(p.name for p in stale.parent.iterdir()) == ["a.yaml"]
    assert (stale.parent / "a.yaml").read_text() == "kind: A\n"
