"""The CRD as shipped: `crds/` at the top of the repository is the single source (linked into the package)."""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml

CRD_FILE = "registrycredentials.regcred.dev.yaml"


def load_crd() -> dict[str, Any]:
    text = importlib.resources.files("regcred").joinpath("crds", CRD_FILE).read_text()
    crd: dict[str, Any] = yaml.safe_load(text)
    return crd
