#!/usr/bin/env bash
# Creates .venv with the locked dependencies and the package (editable, with the sandbox and test extras).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.lock
.venv/bin/python -m pip install --quiet --no-deps -e .
# The emulated API (operator/regcred_sandbox) is not part of the package: the demo, the tests and the
# benchmarks find it through this path entry, the image and a plain `pip install` never carry it.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$PWD/operator" > "$site/regcred-sandbox.pth"
