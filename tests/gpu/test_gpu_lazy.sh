#!/usr/bin/env bash
# test_gpu_lazy.sh: the CUDA part is a plugin loaded on first use (kernels/gpu_loader.c): the cgvlm
# binary links no CUDA library and `cgvlm --version` maps none (LD_DEBUG=files lists every object
# the dynamic loader opens); `cgvlm env` loads the plugin in a CUDA build and prints its line
# ("no GPU (...)" without a device); a missing plugin, a library that is not one, or a file that
# is not a library give "no GPU (cannot load libcgvlm_cuda.so: ...)" and exit 0, never a crash.
# A build without CUDA says "built without CUDA" whatever CGVLM_CUDA_PLUGIN says.
# usage: test_gpu_lazy.sh CGVLM_BIN cuda|nocuda
set -u
BIN=$1 FLAVOUR=$2
T=$(mktemp -d /tmp/cgvlm-gpu-lazy.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
CUDA_LIBS='libcu(blas|blasLt|dart)\.so'

# ---- the binary links no CUDA library, and a GPU-less command opens none ----
ldd "$BIN" > "$T/ldd" 2>&1 || bad "ldd $BIN: $(cat "$T/ldd")"
grep -Eq "$CUDA_LIBS" "$T/ldd" && bad "cgvlm links a CUDA library: $(grep -E "$CUDA_LIBS" "$T/ldd")"
LD_DEBUG=files "$BIN" --version > "$T/version" 2> "$T/version.ld" || bad "--version failed"
grep -q '^cgvlm ' "$T/version" || bad "--version printed: $(cat "$T/version")"
grep -q 'file=libc\.so' "$T/version.ld" || bad "LD_DEBUG=files listed nothing (cannot check)"
grep -Eq "$CUDA_LIBS|libcgvlm_cuda" "$T/version.ld" &&
    bad "--version opened: $(grep -Eo "file=[^ ]*($CUDA_LIBS|libcgvlm_cuda)[^ ]*" "$T/version.ld" | sort -u | tr '\n' ' ')"

# ---- cgvlm env with the plugin of this build ----
LD_DEBUG=files "$BIN" env > "$T/env" 2> "$T/env.ld" || bad "env exited $?: $(cat "$T/env")"
line=$(grep '^cuda ' "$T/env")
echo "env: $line"
if [ "$FLAVOUR" = cuda ]; then
    grep -q '^build .*CUDA on' "$T/env" || bad "env does not say CUDA on: $(grep '^build' "$T/env")"
    grep -q 'file=.*libcgvlm_cuda\.so' "$T/env.ld" || bad "env did not load libcgvlm_cuda.so"
    echo "$line" | grep -Eq 'no GPU \(|[0-9]+: ' || bad "env's cuda line: '$line'"
    echo "$line" | grep -q 'cannot load' && bad "the build's plugin did not load: '$line'"
else
    grep -q '^build .*CUDA off' "$T/env" || bad "env does not say CUDA off: $(grep '^build' "$T/env")"
    [ "$line" = "cuda       no GPU (built without CUDA)" ] || bad "env's cuda line: '$line'"
fi

# ---- plugins that do not load: a missing file, a library without the entry point, not a library ----
libm=$(awk '/libm\.so/ {print $3}' "$T/ldd")
[ -f "$libm" ] || bad "no libm in ldd's output"
echo 'not a library' > "$T/junk.so"
for p in "$T/missing/libcgvlm_cuda.so" "$libm" "$T/junk.so"; do
    out=$(CGVLM_CUDA_PLUGIN=$p "$BIN" env 2>&1)
    rc=$?
    line=$(echo "$out" | grep '^cuda ')
    echo "CGVLM_CUDA_PLUGIN=$p: $line"
    [ $rc = 0 ] || bad "env with CGVLM_CUDA_PLUGIN=$p exited $rc: $out"
    if [ "$FLAVOUR" = cuda ]; then
        case $line in
        "cuda       no GPU (cannot load libcgvlm_cuda.so: "*) ;;
        *) bad "CGVLM_CUDA_PLUGIN=$p: cuda line '$line'" ;;
        esac
    else
        [ "$line" = "cuda       no GPU (built without CUDA)" ] || bad "CGVLM_CUDA_PLUGIN=$p: '$line'"
    fi
done
if [ "$FLAVOUR" = cuda ]; then
    CGVLM_CUDA_PLUGIN=$T/missing/libcgvlm_cuda.so "$BIN" env 2>&1 | grep -q "$T/missing" ||
        bad "the missing plugin's path is not named"
    CGVLM_CUDA_PLUGIN=$libm "$BIN" env 2>&1 | grep -q 'not a cgvlm CUDA plugin' ||
        bad "a library without the entry point is not named as such"
    # the build's plugin with its libcublas missing (the name it needs renamed, same length)
    plugin=$(dirname "$BIN")/libcgvlm_cuda.so
    perl -0777 -pe 's/libcublas\.so/libcublax.so/g' < "$plugin" > "$T/nocublas.so"
    out=$(CGVLM_CUDA_PLUGIN=$T/nocublas.so "$BIN" env 2>&1) || bad "env without libcublas failed: $out"
    echo "without libcublas: $(echo "$out" | grep '^cuda ')"
    echo "$out" | grep -q '^cuda       no GPU (cannot load libcgvlm_cuda.so: libcublax\.so' ||
        bad "a plugin whose libcublas is missing: $(echo "$out" | grep '^cuda ')"
fi

[ $fail = 0 ] && echo "gpu_lazy: ok"
exit $fail
