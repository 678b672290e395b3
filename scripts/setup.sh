#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine
# that has only the Rust toolchain, gcc, Python, e2fsprogs and qemu-utils.
# Idempotent; run as root (CI is root). Without root it only checks the
# Debian packages and users (pjdfstest installs into ~/.cargo/bin either way).
set -euo pipefail

# Debian packages the tests use as oracles or helpers: fuse3 (fusermount,
# /etc/fuse.conf) and fuse2fs for the host-mount tests and benchmark, attr
# and acl (getfattr/setfattr, getfacl/setfacl), git and tar for real_tools;
# qemu-system-x86 (QEMU 7.2 and its C virtiofsd), busybox-static and cpio
# for the real-guest rig in vmtests/ (it downloads its kernel itself), debootstrap
# for the Debian sid chroot the rig runs QEMU 11 (the DAX window) in.
PACKAGES=(e2fsprogs util-linux tar coreutils acl attr libcap2-bin fuse3 fuse2fs git qemu-system-x86 busybox-static cpio debootstrap)

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
# /dev/fuse for the host-mount tests.
if [ "$(id -u)" -eq 0 ] && [ ! -e /dev/fuse ]; then
    modprobe fuse 2>/dev/null || echo "setup: no fuse driver; host-mount tests will be skipped (they say so)"
fi

# pjdfstest (the POSIX file system test suite, Rust rewrite) for
# backend/tests/pjdfstest.rs. Building it takes about a minute; skipped when
# a 0.2.x is already installed.
PJDFSTEST_VERSION="^0.2"
pjdfstest_bin="${CARGO_HOME:-$HOME/.cargo}/bin/pjdfstest"
if command -v pjdfstest >/dev/null 2>&1; then pjdfstest_bin=$(command -v pjdfstest); fi
if "$pjdfstest_bin" --version 2>/dev/null | grep -q "^pjdfstest 0\.2\."; then
    :
else
    echo "setup: installing pjdfstest $PJDFSTEST_VERSION (cargo install, about a minute)"
    cargo install --quiet --locked pjdfstest --version "$PJDFSTEST_VERSION"
fi

# The dummy users and groups pjdfstest switches to (its configuration in
# backend/tests/pjdfstest.rs names nobody:nogroup and tests:tests).
if ! getent passwd tests >/dev/null || ! getent group tests >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: creating user and group tests for pjdfstest"
        getent group tests >/dev/null || groupadd --system tests
        getent passwd tests >/dev/null || useradd --system --gid tests --no-create-home \
            --home-dir / --shell /usr/sbin/nologin --comment "Dummy user for pjdfstest" tests
    else
        echo "setup: user/group tests missing (run as root to create); pjdfstest will be skipped (it says so)"
    fi
fi
for entry in "passwd nobody" "group nogroup"; do
    # shellcheck disable=SC2086
    getent $entry >/dev/null || { echo "setup: $entry missing (Debian's base-passwd provides it)" >&2; exit 1; }
done
echo "setup: ok"
