#!/usr/bin/env bash
# Installs what the real-registry tests need (tests/registry/): Debian's `docker-registry` (CNCF
# distribution 2.8, binary /usr/bin/docker-registry) and `htpasswd` from `apache2-utils`.
# Idempotent and quiet: does nothing when both are present; runs `apt-get update` only when the
# package lists are missing or an install from them fails.
set -euo pipefail

missing=()
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-registry.sh: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
else
    SUDO=()
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
# A fresh machine (or a slim image) often has empty package lists: update first in that case,
# and once more if the install fails on stale lists.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    "${SUDO[@]}" apt-get update -qq >/dev/null
fi
if ! apt_install 2>/dev/null; then
    "${SUDO[@]}" apt-get update -qq >/dev/null
    apt_install
fi
