#!/usr/bin/env bash
# bench/gpu_carry.sh: runs HERE (the development machine), before a GPU session. Packs the normal
# build's cgvlm (build/cgvlm, built with CUDA so that it has the plugin loader) and every shared
# library it needs that is not glibc's own into .gpu-carry/, for bench/gpu_e2e.sh to run on the
# GPU machine, whose image lacks the Debian -dev packages (SQLite, libcurl, cJSON, libpng,
# OpenBLAS) that the full build needs. The device call then names carry [".gpu-carry"].
#
#   .gpu-carry/cgvlm            the binary
#   .gpu-carry/libs.tar.xz      its libraries under their SONAMEs (symlinks resolved)
#   .gpu-carry/libcgvlm_cuda.so this build's plugin, a fallback only: gpu_e2e.sh uses the plugin
#                               that bench/gpu_check.sh built there (build-gpu/min) when it exists
#   .gpu-carry/MANIFEST         what was packed, from which commit, with sizes
#
# Left out: glibc's libraries (libc, libm, libpthread, libdl, librt, libresolv, ..., ld-linux,
# linux-vdso): a binary built against glibc 2.36 runs on the newer glibc there, and a copy of one
# of them would clash with that glibc. The data cgvlm reads at run time (experiments/*.json,
# sweeps/*.json) is in the tree and travels with it; the world is generated, fonts are compiled in.
#
# Environment: CGVLM_BUILD=DIR (default build), CGVLM_CARRY=DIR (default .gpu-carry),
# CGVLM_CARRY_MAX_MIB=N (default 60: the device tool carries 64 MiB in all, the tree included).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${CGVLM_BUILD:-$ROOT/build}
CARRY=${CGVLM_CARRY:-$ROOT/.gpu-carry}
MAX_MIB=${CGVLM_CARRY_MAX_MIB:-60}
BIN=$BUILD/cgvlm

die() {
    echo "gpu_carry: $*" >&2
    exit 1
}

[ -x "$BIN" ] || die "no $BIN: build first (cmake -S . -B build && cmake --build build -j2)"
"$BIN" env 2> /dev/null | grep -q 'CUDA on' ||
    die "$BIN was built without CUDA (cgvlm env says no 'CUDA on'): it could not load the plugin; configure with nvcc on PATH"
command -v ldd > /dev/null || die "ldd not found"
command -v xz > /dev/null || die "xz not found (apt-get install xz-utils)"

# glibc's own libraries (by SONAME stem): never carried
is_glibc() {
    case $1 in
    linux-vdso.so* | linux-gate.so* | ld-linux*.so* | libc.so.* | libm.so.* | libmvec.so.* | \
        libpthread.so.* | libdl.so.* | librt.so.* | libresolv.so.* | libutil.so.* | libanl.so.* | \
        libnsl.so.* | libnss_*.so.* | libBrokenLocale.so.* | libcrypt.so.1 | libthread_db.so.*) return 0 ;;
    esac
    return 1
}

rm -rf "$CARRY"
mkdir -p "$CARRY/libs" || die "cannot create $CARRY"
cp "$BIN" "$CARRY/cgvlm" || die "cannot copy $BIN"
[ -f "$BUILD/libcgvlm_cuda.so" ] && cp "$BUILD/libcgvlm_cuda.so" "$CARRY/libcgvlm_cuda.so"

# "libfoo.so.1 => /lib/.../libfoo.so.1 (0x...)": the SONAME and where it resolves
missing=$(ldd "$BIN" | awk '/not found/ {print $1}')
[ -z "$missing" ] || die "ldd $BIN: not found here: $missing"
n=0
while read -r soname path; do
    is_glibc "$soname" && continue
    [ -f "$path" ] || die "ldd says $soname is $path, which is not a file"
    cp -L "$path" "$CARRY/libs/$soname" || die "cannot copy $path"
    n=$((n + 1))
done < <(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')

# the manifest: enough to tell, on the GPU machine, what was packed
{
    echo "packed: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -n), $(ldd --version | head -1)"
    echo "commit: $(git -C "$ROOT" rev-parse HEAD 2> /dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2> /dev/null || echo ' (+ uncommitted changes)')"
    echo "cgvlm:  $("$BIN" --version 2> /dev/null | head -1)"
    echo "libraries ($n):"
    (cd "$CARRY/libs" && ls -l | awk 'NR > 1 {printf "  %-28s %10d\n", $9, $5}')
} > "$CARRY/MANIFEST"

tar -C "$CARRY/libs" -cJf "$CARRY/libs.tar.xz" . || die "cannot write $CARRY/libs.tar.xz"
raw=$(du -sb "$CARRY/libs" | cut -f1)
rm -rf "$CARRY/libs"

# not committed, not shown by git status; carried because the device call names it. The
# repository's .gitignore already lists it; a checkout without that line gets it in info/exclude.
if git -C "$ROOT" rev-parse --git-dir > /dev/null 2>&1 &&
    ! git -C "$ROOT" check-ignore -q "$CARRY/cgvlm" 2> /dev/null; then
    ex=$(git -C "$ROOT" rev-parse --git-path info/exclude)
    case $ex in /*) ;; *) ex=$ROOT/$ex ;; esac
    mkdir -p "$(dirname "$ex")" && echo "/$(basename "$CARRY")/" >> "$ex" && echo "added /$(basename "$CARRY")/ to $ex"
fi

total=$(du -sb "$CARRY" | cut -f1)
tree=$(git -C "$ROOT" ls-files -z 2> /dev/null | (cd "$ROOT" && xargs -0 du -cb 2> /dev/null) | tail -1 | cut -f1)
mib() { awk "BEGIN {printf \"%.1f\", $1 / 1048576}"; }
echo "gpu_carry: $CARRY: cgvlm + $n libraries ($(mib "$raw") MiB, $(mib "$(stat -c %s "$CARRY/libs.tar.xz")") MiB as libs.tar.xz)$([ -f "$CARRY/libcgvlm_cuda.so" ] && echo " + fallback plugin")"
ls -l "$CARRY" | awk 'NR > 1 {printf "  %-20s %10d\n", $9, $5}'
echo "gpu_carry: total $(mib "$total") MiB (limit $MAX_MIB MiB); the tracked tree is another $(mib "${tree:-0}") MiB"
[ "$total" -le $((MAX_MIB * 1048576)) ] || die "the bundle is over $MAX_MIB MiB"
exit 0
