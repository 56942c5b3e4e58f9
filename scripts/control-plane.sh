#!/usr/bin/env bash
# Builds the real control plane the end-to-end tests run against: kube-apiserver and
# kube-controller-manager from k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3.
#
# Binaries go to a cache folder outside the repository (never committed), one folder per pinned
# version set, and are rebuilt only when a pin changes. Prints that folder on stdout, the
# envtest convention for KUBEBUILDER_ASSETS.
#
# If KUBEBUILDER_ASSETS already names a folder holding the three binaries, nothing is built.
#
# Why these versions: Kubernetes v1.36.3 is the newest patch of the newest minor whose go.mod the
# machine's Go 1.26 accepts without a toolchain download (v1.37 asks for a newer Go), and it is
# the minor the Python client 37.x speaks to. etcd v3.6.8 is exactly what that kube-apiserver's
# go.mod requires (Debian's etcd 3.4 and PyPI's 3.5.1 are older than it supports).
set -euo pipefail

KUBERNETES_VERSION=v1.36.3
ETCD_VERSION=v3.6.8

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    for binary in etcd kube-apiserver kube-controller-manager; do
        if [[ ! -x "$KUBEBUILDER_ASSETS/$binary" ]]; then
            echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $binary" >&2
            exit 1
        fi
    done
    echo "$KUBEBUILDER_ASSETS"
    exit 0
fi

cache_root="${REGCRED_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/regcred-operator/control-plane}"
target="$cache_root/kubernetes-$KUBERNETES_VERSION-etcd-$ETCD_VERSION"
if [[ -x "$target/etcd" && -x "$target/kube-apiserver" && -x "$target/kube-controller-manager" ]]; then
    echo "$target"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
        export PATH="/usr/local/go/bin:$PATH"
    else
        echo "Go is needed to build the control plane (or set KUBEBUILDER_ASSETS to prebuilt binaries)" >&2
        exit 1
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$target.partial"
log() { echo "control-plane: $*" >&2; }

# Official builds: static binaries, these tags, the version stamped into component-base.
export CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath" GOTOOLCHAIN=local

# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging paths
# that a module download does not have; a throw-away wrapper module replaces each with its
# published v0.Y.Z instead (the same minor and patch as the release).
log "resolving k8s.io/kubernetes $KUBERNETES_VERSION"
kubernetes_mod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
staging_version="v0.${KUBERNETES_VERSION#v1.}"
mkdir -p "$work/kubernetes"
{
    echo "module regcred.dev/control-plane/kubernetes"
    echo
    echo "go $(awk '$1 == "go" {print $2; exit}' "$kubernetes_mod")"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    awk -v v="$staging_version" '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print "replace " $1 " => " $1 " " v}' "$kubernetes_mod"
} >"$work/kubernetes/go.mod"

ldflags_kubernetes="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
ldflags_kubernetes+=" -X k8s.io/component-base/version.gitMajor=1"
ldflags_kubernetes+=" -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
ldflags_kubernetes+=" -X k8s.io/component-base/version.gitTreeState=clean"
for component in kube-apiserver kube-controller-manager; do
    log "building $component $KUBERNETES_VERSION (a first build takes several minutes on 2 cores)"
    (cd "$work/kubernetes" &&
        go get "k8s.io/kubernetes/cmd/$component@$KUBERNETES_VERSION" >&2 &&
        go build -tags selinux,notest -ldflags "$ldflags_kubernetes" \
            -o "$target.partial/$component" "k8s.io/kubernetes/cmd/$component" >&2)
done

# etcd's server module replaces its sibling modules with ../ paths too: the same wrapper trick.
log "building etcd $ETCD_VERSION"
mkdir -p "$work/etcd"
cat >"$work/etcd/go.mod" <<EOF
module regcred.dev/control-plane/etcd

go 1.24.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

replace go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
replace go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
replace go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
replace go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
EOF
(cd "$work/etcd" &&
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 &&
    go build -ldflags "-s -w" -o "$target.partial/etcd" go.etcd.io/etcd/server/v3 >&2)

rm -rf "$target"
mv "$target.partial" "$target"
log "built into $target"
echo "$target"
