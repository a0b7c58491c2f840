#!/usr/bin/env bash
# tools/bigendian/run.sh - libheart's wire codec, replay window, failure
# detector and raw-frame C tests (tests/c/test_wire.c, test_replay.c,
# test_detector.c, test_frames.c) on a big-endian Linux target: cross-compiled for s390x and run under qemu-user.
# Also checks that packets sealed on this (little-endian) host and on the
# big-endian target are byte-identical and open on the other side.
#
#   bash tools/bigendian/run.sh        (what `make check-bigendian` runs)
#
# Idempotent.  As root on Debian it installs what is missing (apt-get), and
# fetches OpenSSL's libcrypto for s390x with `apt-get download` into a private
# sysroot under build/bigendian/ (no libssl-dev:s390x is installed, so the
# native libssl-dev is never pinned to the s390x version).  Not root: it says
# what is missing and how to get it, and exits 2.
# Exit status: 0 all passed, 1 a test failed, 2 setup problem.
#
# Environment:
#   HEART_BE_BUILD=DIR    build folder (default: build/bigendian)
#   HEART_BE_SANITIZE=0   build without UndefinedBehaviorSanitizer
set -euo pipefail

t0=$SECONDS
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tools/bigendian

ARCH=s390x                      # Debian architecture (big-endian, 64-bit)
TRIPLET=s390x-linux-gnu
XCC=$TRIPLET-gcc
XREADELF=$TRIPLET-readelf
QEMU=qemu-s390x
TARGET_ROOT=/usr/$TRIPLET       # cross libc (libc6-s390x-cross): qemu's -L prefix
OUT=${HEART_BE_BUILD:-$ROOT/build/bigendian}
SYSROOT=$OUT/sysroot            # libssl3 + libssl-dev for s390x, extracted
XLIBDIR=$SYSROOT/usr/lib/$TRIPLET

# Host packages: the cross compiler and libc, qemu-user, and a native
# compiler + OpenSSL headers for the interop half.
HOST_PKGS=(gcc-$TRIPLET libc6-dev-$ARCH-cross qemu-user gcc libc6-dev libssl-dev)
TARGET_PKGS=(libssl3:$ARCH libssl-dev:$ARCH)
TESTS=(test_wire test_replay test_detector test_frames)
# libheart's sources: the one rule (tools/heart_sources.py) with the none
# backend (hb_eth_open: ENOSYS, for the announcer test_frames links; its
# byte-exact frames need no backend)

say() { printf '[bigendian] %s\n' "$*"; }
setup_fail() {
    printf '[bigendian] cannot run: %s\n' "$*" >&2
    exit 2
}
is_root() { [ "$(id -u)" = 0 ]; }

apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
}

# ------------------------------------------------------------------
# 1. Host tools
# ------------------------------------------------------------------
command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 ||
    setup_fail "this script uses Debian's packages (dpkg, apt-get); on another \
system provide $XCC, $QEMU, an s390x libc in $TARGET_ROOT and s390x OpenSSL \
in $SYSROOT by hand"

sysroot_ok() {
    [ -e "$XLIBDIR/libcrypto.so.3" ] && [ -e "$XLIBDIR/libcrypto.so" ] &&
        [ -e "$SYSROOT/usr/include/openssl/evp.h" ] &&
        [ -e "$SYSROOT/usr/include/$TRIPLET/openssl/configuration.h" ]
}

missing=()
for p in "${HOST_PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# apt must know $ARCH to download libssl for it (only when the sysroot is
# not there yet); nothing of $ARCH gets installed.
need_arch=0
if ! sysroot_ok && ! dpkg --print-foreign-architectures | grep -qx "$ARCH"; then
    need_arch=1
fi

if ! is_root && { [ ${#missing[@]} -gt 0 ] || [ "$need_arch" = 1 ]; }; then
    todo=""
    [ "$need_arch" = 1 ] && todo="dpkg --add-architecture $ARCH && "
    todo="${todo}apt-get update"
    [ ${#missing[@]} -gt 0 ] &&
        todo="$todo && apt-get install --no-install-recommends ${missing[*]}"
    msg="not root, and this machine lacks"
    [ ${#missing[@]} -gt 0 ] && msg="$msg the Debian packages ${missing[*]};"
    [ "$need_arch" = 1 ] &&
        msg="$msg apt's $ARCH architecture (to download libssl3:$ARCH and libssl-dev:$ARCH);"
    setup_fail "${msg%;}.
  as root run:  $todo
  then again:   make check-bigendian"
fi
if [ "$need_arch" = 1 ]; then
    say "dpkg --add-architecture $ARCH (for apt-get download; nothing of $ARCH is installed)"
    dpkg --add-architecture "$ARCH"
fi
if [ ${#missing[@]} -gt 0 ] || [ "$need_arch" = 1 ]; then
    apt_update
fi
if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}"
fi
for c in "$XCC" "$XREADELF" "$QEMU" cc; do
    command -v "$c" >/dev/null 2>&1 || setup_fail "$c not found on PATH"
done
[ -e "$TARGET_ROOT/lib/ld64.so.1" ] ||
    setup_fail "$TARGET_ROOT/lib/ld64.so.1 missing (package libc6-s390x-cross)"

# ------------------------------------------------------------------
# 2. libcrypto for s390x, in a private sysroot
# ------------------------------------------------------------------
if ! sysroot_ok; then
    debs=$OUT/debs
    rm -rf "$debs"
    mkdir -p "$debs"
    dl_opts=()
    is_root && dl_opts=(-o APT::Sandbox::User=root) # _apt cannot write here
    download() { (cd "$debs" && apt-get download -q "${dl_opts[@]}" "${TARGET_PKGS[@]}"); }
    if ! download; then
        # stale package lists (the archive moved on to a newer version)
        if is_root && [ "$apt_updated" = 0 ]; then
            apt_update
            download
        else
            setup_fail "apt-get download ${TARGET_PKGS[*]} failed; as root run: apt-get update"
        fi
    fi
    say "unpacking into $SYSROOT:"
    rm -rf "$SYSROOT.tmp"
    mkdir -p "$SYSROOT.tmp"
    for d in "$debs"/*.deb; do
        printf '  %s %s (%s bytes)\n' "$(dpkg-deb -f "$d" Package)" \
            "$(dpkg-deb -f "$d" Version)" "$(stat -c %s "$d")" |
            tee -a "$SYSROOT.tmp/.packages"
        dpkg-deb -x "$d" "$SYSROOT.tmp"
    done
    rm -rf "$SYSROOT"
    mv "$SYSROOT.tmp" "$SYSROOT"
    sysroot_ok || setup_fail "the unpacked packages lack libcrypto or its headers"
fi

# ------------------------------------------------------------------
# 3. Build (always: the sources may have changed; a few seconds)
# ------------------------------------------------------------------
# The flags of the CMake build (CMakeLists.txt), plus UBSan, whose runtime
# comes with the cross gcc and works under qemu-user.
CFLAGS=(-std=gnu11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -Wshadow
    -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter)
[ "${HEART_BE_SANITIZE:-1}" = 0 ] ||
    CFLAGS+=(-fsanitize=undefined -fno-sanitize-recover=undefined)
INC=(-I"$ROOT/src_c/include" -I"$ROOT/src_c/core" -I"$ROOT/tests/c")
XINC=(-isystem "$SYSROOT/usr/include" -isystem "$SYSROOT/usr/include/$TRIPLET")
# rpath to the private libcrypto, so `qemu-s390x -L /usr/s390x-linux-gnu
# build/bigendian/test_wire` runs a test by hand too
XLD=(-L"$XLIBDIR" -Wl,-rpath,"$XLIBDIR" -lcrypto -lm -lpthread)
lib=()
while read -r s; do
    case "$s" in backend=*) ;; *) lib+=("$ROOT/$s") ;; esac
done < <(python3 "$ROOT/tools/heart_sources.py" --backend none)
[ "${#lib[@]}" -gt 1 ] || { say "tools/heart_sources.py gave no sources"; exit 1; }

mkdir -p "$OUT/native"
say "building with $($XCC --version | sed -n 1p)"
"$XCC" "${CFLAGS[@]}" -o "$OUT/endian_probe" "$HERE/endian_probe.c"
for t in "${TESTS[@]}"; do
    "$XCC" "${CFLAGS[@]}" "${INC[@]}" "${XINC[@]}" -o "$OUT/$t" \
        "$ROOT/tests/c/$t.c" "${lib[@]}" "${XLD[@]}"
done
"$XCC" "${CFLAGS[@]}" "${INC[@]}" "${XINC[@]}" -o "$OUT/interop" \
    "$HERE/interop.c" "${lib[@]}" "${XLD[@]}"
# the same interop program for this host
cc "${CFLAGS[@]}" "${INC[@]}" -o "$OUT/native/interop" "$HERE/interop.c" \
    "${lib[@]}" -lcrypto -lm -lpthread

xrun() { "$QEMU" -L "$TARGET_ROOT" "$@"; }

# ------------------------------------------------------------------
# 4. Is the target really big-endian?
# ------------------------------------------------------------------
set +e
probe=$(xrun "$OUT/endian_probe")
probe_rc=$?
set -e
say "run-time probe under $QEMU: $probe"
elf_data=$("$XREADELF" -h "$OUT/test_wire" | sed -n 's/^ *Data: *//p')
elf_machine=$("$XREADELF" -h "$OUT/test_wire" | sed -n 's/^ *Machine: *//p')
say "ELF header of test_wire: $elf_machine, $elf_data"
machine=$(printf '%s\n' "$probe" | sed -n 's/.*machine=\([^ ]*\).*/\1/p')
if [ "$probe_rc" != 0 ] || [[ "$elf_data" != *"big endian"* ]]; then
    echo "big-endian check FAILED: the target ($machine) is not big-endian"
    exit 1
fi

# ------------------------------------------------------------------
# 5. The C tests on the target
# ------------------------------------------------------------------
# Output goes through a file: a failed CHECK goes to stderr, unbuffered, so it
# can show before the "ok"/"FAIL" lines of stdout, which are buffered.
failed=()
total_checks=0
summary=()
for t in "${TESTS[@]}"; do
    say "---- $t on $machine ($QEMU) ----"
    set +e
    timeout 600 "$QEMU" -L "$TARGET_ROOT" "$OUT/$t" >"$OUT/$t.log" 2>&1
    rc=$?
    set -e
    cat "$OUT/$t.log"
    line=$(grep -E '^[0-9]+ checks, [0-9]+ failed$' "$OUT/$t.log" | tail -n 1 || true)
    if [ "$rc" != 0 ] || [ -z "$line" ]; then
        failed+=("$t (exit $rc${line:+, $line})")
        summary+=("$t: FAILED;")
    else
        total_checks=$((total_checks + ${line%% *}))
        summary+=("$t: $line;")
    fi
done

# ------------------------------------------------------------------
# 6. Interop: this host <-> the big-endian target
# ------------------------------------------------------------------
host=$(uname -m)
say "---- interop: $host <-> $machine ----"
interop_ok=1
set +e
"$OUT/native/interop" seal >"$OUT/interop-$host.txt"; r1=$?
xrun "$OUT/interop" seal >"$OUT/interop-$machine.txt"; r2=$?
set -e
if [ "$r1" != 0 ] || [ "$r2" != 0 ]; then
    echo "interop: sealing failed ($host: exit $r1, $machine: exit $r2)"
    interop_ok=0
elif cmp -s "$OUT/interop-$host.txt" "$OUT/interop-$machine.txt"; then
    echo "interop: the $(wc -l <"$OUT/interop-$host.txt") packets sealed on $host and on $machine are byte-identical"
else
    echo "interop: packets sealed on $host and on $machine DIFFER; first difference:"
    diff "$OUT/interop-$host.txt" "$OUT/interop-$machine.txt" >"$OUT/interop.diff" || true
    head -n 4 "$OUT/interop.diff" | cut -c 1-200
    interop_ok=0
fi
set +e
printf '%s opens packets sealed on %s: ' "$machine" "$host"
xrun "$OUT/interop" open "$OUT/interop-$host.txt" || interop_ok=0
printf '%s opens packets sealed on %s: ' "$host" "$machine"
"$OUT/native/interop" open "$OUT/interop-$machine.txt" || interop_ok=0
set -e
[ "$interop_ok" = 1 ] || failed+=("interop $host <-> $machine")

# ------------------------------------------------------------------
# 7. Verdict
# ------------------------------------------------------------------
secs=$((SECONDS - t0))
joined=$(printf '%s ' "${summary[@]}")
say "results on $machine: ${joined%; }"
if [ ${#failed[@]} -eq 0 ]; then
    echo "big-endian check passed on $machine (big-endian, checked at run time and in the ELF header): ${#TESTS[@]} test programs, $total_checks checks, 0 failed; wire interop with $host byte-identical (${secs}s)"
    exit 0
fi
joined=$(printf '%s; ' "${failed[@]}")
echo "big-endian check FAILED on $machine (big-endian, checked at run time and in the ELF header): ${joined%; } (${secs}s)"
exit 1
