#!/usr/bin/env bash
# Installs the operator and runs it against the emulated cluster with an example RegistryCredential.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m regcred_sandbox.demo "$@"
