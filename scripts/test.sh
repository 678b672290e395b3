#!/usr/bin/env bash
# The project's test command (README.md): the style checks, then every unit
# and integration test of the workspace. Tests that need root, loop devices
# or QEMU check for them and print "SKIPPED: ..." lines; this script repeats
# those lines at the end so a skip is never silent.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
export EXT4_SKIP_LOG=$(mktemp)
trap 'rm -f "$log" "$EXT4_SKIP_LOG"' EXIT
status=0
# House style first: formatting (rustfmt.toml) and clippy with warnings as
# errors, over every target of the workspace.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Benchmarks are separate programs (see README); make sure they still build.
cargo bench --workspace --no-run
cargo test --workspace 2>&1 | tee "$log" || status=$?
if [ -s "$EXT4_SKIP_LOG" ] || grep -q "^SKIPPED:" "$log"; then
    echo
    echo "==== Tests that skipped part of their work ===="
    { cat "$EXT4_SKIP_LOG"; grep "^SKIPPED:" "$log" || true; } | sort | uniq -c
fi
exit $status
