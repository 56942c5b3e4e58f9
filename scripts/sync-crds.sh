#!/usr/bin/env bash
# Copies the CRDs from crds/ (the single source of truth) into the Helm chart, which renders them
# from files/crds/ behind `crds.enabled`. Run it after every change to crds/;
# tests/deploy/test_crd_sync.py fails while the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
target=deploy/regcred-operator/files/crds
mkdir -p "$target"
# Files removed from crds/ go from the chart as well.
for copy in "$target"/*.yaml; do
    [ -e "$copy" ] || continue
    [ -e "crds/$(basename "$copy")" ] || rm -v "$copy"
done
for source in crds/*.yaml; do
    cp "$source" "$target/"
done
echo "CRDs synced into $target: $(cd "$target" && ls *.yaml | tr '\n' ' ')"
