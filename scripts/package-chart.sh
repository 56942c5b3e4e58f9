#!/usr/bin/env bash
# Packages the Helm chart into dist/regcred-operator-<version>.tgz with Helm's own packager (the Helm SDK
# that the chart tests use, so no helm binary is needed). The chart's version and appVersion are the
# project's version from pyproject.toml: one number for the wheel, the image tag and the chart
# (tests/deploy/test_chart_package.py fails while Chart.yaml says otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
exec .venv/bin/python - "$@" <<'PYTHON'
import sys
import tomllib
from pathlib import Path

import helm_python as helm

version = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]
destination = Path(sys.argv[1] if len(sys.argv) > 1 else "dist")
destination.mkdir(parents=True, exist_ok=True)
print(helm.package("deploy/regcred-operator", destination=destination, version=version, app_version=version))
PYTHON
