#!/usr/bin/env bash
# Installs everything the tests need, then runs lint, type-check and the full test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-registry.sh
# The real control plane the end-to-end tests also run on (built once, cached outside the repository).
KUBEBUILDER_ASSETS="$(bash scripts/control-plane.sh)"
export KUBEBUILDER_ASSETS
.venv/bin/ruff check operator tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
