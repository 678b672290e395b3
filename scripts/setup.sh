#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine
# that has only the Rust toolchain, gcc, Python, e2fsprogs and qemu-utils.
# Idempotent; run as root (CI is root). Without root it only checks.
set -euo pipefail

# Debian packages the tests use as oracles or helpers.
PACKAGES=(e2fsprogs util-linux tar coreutils acl)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: missing Debian packages ${missing[*]} (run as root to install)" >&2
        exit 1
    fi
fi

# Loop devices for the kernel interop tests: make sure the driver is there.
if [ "$(id -u)" -eq 0 ] && [ ! -e /dev/loop-control ]; then
    modprobe loop 2>/dev/null || echo "setup: no loop driver; kernel interop tests will be skipped (they say so)"
fi
echo "setup: ok"
