#!/usr/bin/env bash
# Installs everything the tests need, then runs lint, type-check and the full test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-registry.sh
.venv/bin/ruff check operator tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
