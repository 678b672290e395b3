#!/usr/bin/env bash
# Runs xfstests (fstests) against our host mount and, in the same run,
# against the kernel's ext4 on loop devices, and writes a table of both.
#
#   XFSTESTS_SRC=/path/to/xfstests-dev scripts/xfstests.sh
#
# xfstests is not packaged in Debian and is never vendored here: whoever runs
# this obtains the tree once (git clone of
# git://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git or a mirror) and points
# XFSTESTS_SRC at it. Needs root (mounts, loop devices, apt-get). CI does not
# run it. Everything it makes lives under $XFSTESTS_WORK (target/xfstests),
# except the mount helper link /sbin/mount.fuse.ext4-virtiofsd (mount(8)
# resets PATH before it looks for helpers), which it removes when done.
#
# Settings (environment):
#   XFSTESTS_SRC      the xfstests source tree (required)
#   XFSTESTS_WORK     work directory (default: target/xfstests)
#   XFSTESTS_TESTS    tests to run, e.g. "generic/001 generic/013"
#                     (default: the generic/quick group, in order)
#   XFSTESTS_FIRST    run only the first N tests of that list
#   XFSTESTS_SIDES    "ours kernel" (default), or only one of them
#   XFSTESTS_TEST_SIZE / XFSTESTS_SCRATCH_SIZE   image sizes (3G / 5G)
#   XFSTESTS_DAEMON   the ext4-virtiofsd binary (default: built here, release)
#   XFSTESTS_DAEMON_ARGS  extra `ext4-virtiofsd mount` options (e.g. --writeback)
#
# Results: $XFSTESTS_WORK/results.md (pass / fail / not run per test and
# side, counts, and every test that passes on the kernel and fails on ours);
# xfstests' own results under $XFSTESTS_WORK/results/<side>/, daemon logs
# under $XFSTESTS_WORK/logs/. Our images are checked with e2fsck -fn at the
# end. This script never calls a global sync (xfstests itself does).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SUBTYPE=ext4-virtiofsd
SBIN_HELPER=/sbin/mount.fuse.$SUBTYPE

die() {
    echo "xfstests.sh: $*" >&2
    exit 1
}

if [ -z "${XFSTESTS_SRC:-}" ]; then
    echo "xfstests.sh: XFSTESTS_SRC is not set. xfstests is not packaged in Debian and not vendored here:" >&2
    echo "  git clone git://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git DIR   (once), then" >&2
    echo "  XFSTESTS_SRC=DIR $0" >&2
    exit 2
fi
XFSTESTS_SRC=$(cd "$XFSTESTS_SRC" && pwd) || die "XFSTESTS_SRC=$XFSTESTS_SRC is not a directory"
[ -x "$XFSTESTS_SRC/check" ] && [ -d "$XFSTESTS_SRC/tests/generic" ] ||
    die "$XFSTESTS_SRC does not look like an xfstests tree (no ./check, no tests/generic)"
[ "$(id -u)" -eq 0 ] || die "must run as root (mounts, loop devices, apt-get)"

WORK=${XFSTESTS_WORK:-$REPO/target/xfstests}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
SIDES=${XFSTESTS_SIDES:-ours kernel}
TEST_SIZE=${XFSTESTS_TEST_SIZE:-3G}
SCRATCH_SIZE=${XFSTESTS_SCRATCH_SIZE:-5G}
BUILD=$WORK/build
for side in $SIDES; do
    case $side in ours | kernel) ;; *) die "XFSTESTS_SIDES: unknown side '$side' (ours, kernel)" ;; esac
done

# --- Debian build and run dependencies -------------------------------------
PACKAGES=(xfslibs-dev uuid-dev libtool-bin libattr1-dev libacl1-dev libaio-dev libgdbm-dev autoconf automake
    make gcc pkg-config xfsprogs e2fsprogs fuse3 attr acl bc psmisc python3 liburing-dev fio)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "xfstests.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -e /dev/fuse ] || modprobe fuse || die "no /dev/fuse"
[ -e /dev/loop-control ] || modprobe loop || die "no loop devices"

# Users and groups xfstests switches to (tests needing them are "not run"
# otherwise), with home directories (su warns without one, and a test that
# compares su's output then fails).
getent group fsgqa >/dev/null || groupadd fsgqa
for u in fsgqa fsgqa2 123456-fsgqa; do
    getent passwd "$u" >/dev/null || useradd -g fsgqa -m -s /bin/bash "$u"
    home=$(getent passwd "$u" | cut -d: -f6)
    [ -d "$home" ] || { mkdir -p "$home" && chown "$u:fsgqa" "$home"; }
done

# --- Build xfstests in a copy under $WORK (never in its tree or ours) ------
# Rebuilt when the tree's commit changes; a tree without git is built once
# (remove $BUILD to rebuild it).
stamp=$(git -C "$XFSTESTS_SRC" rev-parse HEAD 2>/dev/null || echo unversioned)
if [ ! -x "$BUILD/ltp/fsstress" ] || [ "$(cat "$BUILD/.source-stamp" 2>/dev/null)" != "$XFSTESTS_SRC $stamp" ]; then
    echo "xfstests.sh: building xfstests from $XFSTESTS_SRC in $BUILD"
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    tar -C "$XFSTESTS_SRC" --exclude=.git -cf - . | tar -C "$BUILD" -xf -
    (cd "$BUILD" && nice -n 10 make -j"$(nproc)" >"$WORK/build.log" 2>&1) || die "xfstests build failed: see $WORK/build.log"
    echo "$XFSTESTS_SRC $stamp" >"$BUILD/.source-stamp"
fi

# --- Our daemon ------------------------------------------------------------
if [ -n "${XFSTESTS_DAEMON:-}" ]; then
    DAEMON=$(realpath "$XFSTESTS_DAEMON")
else
    echo "xfstests.sh: building ext4-virtiofsd (release)"
    (cd "$REPO" && nice -n 10 cargo build --quiet --release -p ext4-virtiofsd --bin ext4-virtiofsd)
    DAEMON=$REPO/target/release/ext4-virtiofsd
fi
[ -x "$DAEMON" ] || die "no daemon binary at $DAEMON"

# --- The mount helper --------------------------------------------------------
# `mount -t fuse.ext4-virtiofsd IMG DIR -o OPTS` runs /sbin/mount.fuse.<subtype>
# (mount.fuse3 would run a program named after the subtype the same way, but
# mount(8) gives helpers a fixed PATH, so the helper is found only there). The
# helper starts `ext4-virtiofsd mount --no-subtype` in its own session,
# waits until the mount is in /proc/self/mountinfo and returns, leaving the
# daemon serving until the file system is unmounted. --no-subtype: the
# mount shows as plain `fuse`, the type xfstests' FSTYP=fuse expects (it
# compares df's type column with FSTYP). Like mount.fuse3 as root, it
# mounts dev,suid unless told nodev/nosuid (the daemon alone defaults to
# nodev,nosuid); ro and the atime words (relatime, strictatime, noatime,
# nodiratime) go to the daemon; other generic words are accepted and
# ignored (the daemon always mounts allow_other and checks permissions).
# `-o remount,...` changes the existing mount's flags (mount -i). A second
# mount of an image already mounted binds the existing mount, as the
# kernel shares the super block of a block device mounted twice.
mkdir -p "$WORK/bin" "$WORK/logs" "$WORK/run"
HELPER=$WORK/bin/mount.fuse.$SUBTYPE
cat >"$HELPER" <<EOF
#!/bin/bash
# mount(8) helper for fuse.$SUBTYPE, written by scripts/xfstests.sh.
DAEMON='$DAEMON'
DAEMON_ARGS='${XFSTESTS_DAEMON_ARGS:-}'
RUN='$WORK/run'
LOGS='$WORK/logs'
EOF
cat >>"$HELPER" <<'EOF'
set -u
pos=()
opts=""
while [ $# -gt 0 ]; do
    case $1 in
        -o) opts="$opts,$2"; shift 2 ;;
        -o*) opts="$opts,${1#-o}"; shift ;;
        -t) shift 2 ;;
        -s | -f | -n | -v) shift ;;
        *) pos+=("$1"); shift ;;
    esac
done
[ ${#pos[@]} -eq 2 ] || { echo "usage: mount.fuse.ext4-virtiofsd IMAGE DIR [-o OPTS]" >&2; exit 1; }
image=$(realpath "${pos[0]}") || exit 32
dir=$(realpath "${pos[1]}") || exit 32
# As mount(8) for a kernel file system and mount.fuse3 as root: dev and
# suid unless nodev/nosuid; relatime unless another atime word.
args=()
dev=1
suid=1
atime=relatime
nodiratime=""
IFS=, read -ra words <<<"$opts"
for w in "${words[@]}"; do
    case $w in
        ro) args+=(--read-only) ;;
        dev) dev=1 ;;
        nodev) dev=0 ;;
        suid) suid=1 ;;
        nosuid) suid=0 ;;
        relatime | strictatime | noatime) atime=$w ;;
        nodiratime) nodiratime=,nodiratime ;;
        # A remount changes the flags of the mount the daemon serves:
        # mount(8) again, without helpers (-i).
        remount) exec mount -i -o "${opts#,}" "$dir" ;;
        # Generic words mount.fuse3/xfstests pass; the daemon's defaults apply.
        "" | rw | exec | async | auto | noauto | defaults | default_permissions | allow_other | atime | diratime | \
            subtype=* | fsname=* | source=* | context=* | fscontext=* | defcontext=* | rootcontext=*) ;;
        *) echo "mount.fuse.ext4-virtiofsd: ignoring option '$w'" >&2 ;;
    esac
done
[ $dev = 1 ] && args+=(--dev)
[ $suid = 1 ] && args+=(--suid)
args+=(--atime "$atime$nodiratime")
key=$(echo "$image" | tr / _)
pidfile=$RUN/$key.pid
log=$LOGS/daemon$key.log
# The image is already served: like a second mount of a block device
# (the kernel shares its super block), bind the existing mount.
existing=$(awk -v src="$image" '{ for (i = 1; i <= NF; i++) if ($i == "-") break
    if ($(i + 1) == "fuse" && $(i + 2) == src) { print $5; exit } }' /proc/self/mountinfo)
if [ -n "$existing" ]; then
    exec mount --bind "$existing" "$dir"
fi
# The previous daemon of this image may still be closing it (checkpoint
# after umount): wait for it, as the image lock would refuse us.
if [ -f "$pidfile" ]; then
    old=$(cat "$pidfile")
    for _ in $(seq 600); do
        kill -0 "$old" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$old" 2>/dev/null; then
        echo "mount.fuse.ext4-virtiofsd: the daemon $old of $image has not exited 60 s after its unmount" >&2
        exit 32
    fi
fi
echo "=== $(date -u +%FT%TZ) mount $image $dir $DAEMON_ARGS ${args[*]}" >>"$log"
# shellcheck disable=SC2086
setsid "$DAEMON" mount "$image" "$dir" --no-subtype $DAEMON_ARGS "${args[@]}" >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
mounted() {
    awk -v d="$dir" '{ for (i = 1; i <= NF; i++) if ($i == "-") break; if ($5 == d && $(i + 1) == "fuse") f = 1 } END { exit !f }' /proc/self/mountinfo
}
for _ in $(seq 300); do
    if mounted; then exit 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "mount.fuse.ext4-virtiofsd: the daemon exited before mounting:" >&2
        tail -5 "$log" >&2
        exit 32
    fi
    sleep 0.1
done
echo "mount.fuse.ext4-virtiofsd: not mounted after 30 s; stopping the daemon" >&2
kill "$pid"
exit 32
EOF
chmod +x "$HELPER"

# --- Images, loop devices, mount points, configurations ---------------------
MNT=$WORK/mnt
IMAGES=$WORK/images
CONFIGS=$WORK/config
mkdir -p "$MNT" "$IMAGES" "$CONFIGS" "$WORK/results"
LOOPS=()

# Unmounts every mount of the run and waits for our daemons, which end
# when unmounted and close their image.
unmount_all() {
    local side m pf p
    for side in $SIDES; do
        for m in "$MNT/$side-test" "$MNT/$side-scratch"; do
            if mountpoint -q "$m"; then umount "$m" || umount -l "$m"; fi
        done
    done
    for pf in "$WORK"/run/*.pid; do
        [ -f "$pf" ] || continue
        p=$(cat "$pf")
        for _ in $(seq 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then echo "xfstests.sh: daemon $p still running after its unmount" >&2; fi
    done
}

cleanup() {
    set +e
    unmount_all
    for l in "${LOOPS[@]}"; do losetup -d "$l"; done
    [ -L "$SBIN_HELPER" ] && [ "$(readlink "$SBIN_HELPER")" = "$HELPER" ] && rm -f "$SBIN_HELPER"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -e "$SBIN_HELPER" ] && ! { [ -L "$SBIN_HELPER" ] && [ "$(readlink "$SBIN_HELPER")" = "$HELPER" ]; }; then
    die "$SBIN_HELPER exists and is not ours; remove it first"
fi
ln -sfn "$HELPER" "$SBIN_HELPER"
# Daemon pid files of an earlier run (their numbers may be reused by now).
rm -f "$WORK"/run/*.pid

fresh_image() { # PATH SIZE
    rm -f "$1"
    truncate -s "$2" "$1"
    mke2fs -q -F -t ext4 "$1"
}

write_config() { # SIDE FSTYP TEST_DEV SCRATCH_DEV [extra lines]
    local side=$1
    {
        echo "# written by scripts/xfstests.sh"
        echo "export FSTYP=$2"
        echo "export TEST_DEV=$3"
        echo "export TEST_DIR=$MNT/$side-test"
        echo "export SCRATCH_DEV=$4"
        echo "export SCRATCH_MNT=$MNT/$side-scratch"
        echo "export RESULT_BASE=$WORK/results/$side"
        shift 4
        printf '%s\n' "$@"
    } >"$CONFIGS/$side.config"
}

for side in $SIDES; do
    mkdir -p "$MNT/$side-test" "$MNT/$side-scratch"
    rm -rf "$WORK/results/$side"
    mkdir -p "$WORK/results/$side"
    fresh_image "$IMAGES/$side-test.img" "$TEST_SIZE"
    fresh_image "$IMAGES/$side-scratch.img" "$SCRATCH_SIZE"
    if [ "$side" = ours ]; then
        # FUSE: xfstests never runs mkfs on the scratch device (it empties
        # it instead) and never fsck's; we check the images at the end.
        write_config ours fuse "$IMAGES/ours-test.img" "$IMAGES/ours-scratch.img" \
            "export FUSE_SUBTYP=.$SUBTYPE"
    else
        t=$(losetup -f --show "$IMAGES/kernel-test.img")
        LOOPS+=("$t")
        s=$(losetup -f --show "$IMAGES/kernel-scratch.img")
        LOOPS+=("$s")
        write_config kernel ext4 "$t" "$s"
    fi
done

# --- The test list -------------------------------------------------------------
if [ -n "${XFSTESTS_TESTS:-}" ]; then
    read -ra TESTS <<<"$XFSTESTS_TESTS"
else
    mapfile -t TESTS < <(awk '$0 !~ /^#/ && / quick( |$)/ { print "generic/" $1 }' "$BUILD/tests/generic/group.list")
fi
if [ -n "${XFSTESTS_FIRST:-}" ]; then
    TESTS=("${TESTS[@]:0:$XFSTESTS_FIRST}")
fi
[ ${#TESTS[@]} -gt 0 ] || die "no tests selected"
printf '%s\n' "${TESTS[@]}" >"$WORK/tests.list"
echo "xfstests.sh: ${#TESTS[@]} tests (${TESTS[0]} .. ${TESTS[-1]}) on: $SIDES"

# --- Run both sides at once (each its own ./check, config and results) --------
pids=()
for side in $SIDES; do
    echo "xfstests.sh: $side: log in $WORK/logs/check-$side.log"
    (cd "$BUILD" && HOST_OPTIONS=$CONFIGS/$side.config nice -n 10 ./check "${TESTS[@]}" \
        >"$WORK/logs/check-$side.log" 2>&1) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done

# --- Our images must be clean after the run ---------------------------------------
unmount_all
fsck_report=$WORK/logs/fsck.txt
: >"$fsck_report"
if [[ " $SIDES " == *" ours "* ]]; then
    for img in "$IMAGES/ours-test.img" "$IMAGES/ours-scratch.img"; do
        if e2fsck -fn "$img" >>"$fsck_report" 2>&1; then
            echo "$(basename "$img"): e2fsck -fn clean" >>"$fsck_report"
        else
            echo "$(basename "$img"): e2fsck -fn FOUND PROBLEMS" >>"$fsck_report"
        fi
    done
fi

# --- The table --------------------------------------------------------------------
python3 - "$WORK" "$SIDES" >"$WORK/results.md" <<'EOF'
import re, sys, pathlib
work = pathlib.Path(sys.argv[1])
sides = sys.argv[2].split()
tests = (work / "tests.list").read_text().split()
line_re = re.compile(r"^(generic/\d+)\s+(.*)$")

def outcomes(side):
    """Each test's outcome from ./check's log: pass, fail, not run (with reason)."""
    res = {}
    log = work / "logs" / f"check-{side}.log"
    if not log.exists():
        return res
    for line in log.read_text(errors="replace").splitlines():
        m = line_re.match(line)
        if not m:
            continue
        name, rest = m.groups()
        if "[not run]" in rest:
            res[name] = ("not run", rest.split("[not run]", 1)[1].strip())
        elif "[expunged]" in rest:
            res[name] = ("not run", "expunged")
        elif "[failed" in rest or "output mismatch" in rest or "_check_" in rest:
            res[name] = ("fail", rest.strip())
        elif re.search(r"\d+s", rest):
            res[name] = ("pass", "")
    return res

got = {s: outcomes(s) for s in sides}
print("# xfstests results\n")
print(f"{len(tests)} tests ({tests[0]} .. {tests[-1]}). Sides: " + ", ".join(
    {"ours": "ours = ext4-virtiofsd host mount (FSTYP=fuse)", "kernel": "kernel = the kernel's ext4 on loop devices"}[s]
    for s in sides) + ".\n")
print("| side | pass | fail | not run | not reached |")
print("|---|---|---|---|---|")
for s in sides:
    vals = [got[s].get(t, ("not reached", ""))[0] for t in tests]
    print(f"| {s} | {vals.count('pass')} | {vals.count('fail')} | {vals.count('not run')} | {vals.count('not reached')} |")
if set(sides) == {"ours", "kernel"}:
    diff = [t for t in tests if got["kernel"].get(t, ("",))[0] == "pass" and got["ours"].get(t, ("",))[0] == "fail"]
    print(f"\n## Pass on the kernel, fail on ours ({len(diff)})\n")
    for t in diff:
        print(f"- {t}: {got['ours'][t][1]}")
    only = [t for t in tests if got["kernel"].get(t, ("",))[0] == "pass" and got["ours"].get(t, ("",))[0] == "not run"]
    print(f"\n## Pass on the kernel, not run on ours ({len(only)})\n")
    for t in only:
        print(f"- {t}: {got['ours'][t][1]}")
print("\n## Every test\n")
print("| test | " + " | ".join(sides) + " |")
print("|---|" + "---|" * len(sides))
for t in tests:
    print(f"| {t} | " + " | ".join(got[s].get(t, ("not reached", ""))[0] for s in sides) + " |")
EOF
cat "$fsck_report" | grep -E "e2fsck -fn" || true
echo "xfstests.sh: results in $WORK/results.md"
head -8 "$WORK/results.md"
