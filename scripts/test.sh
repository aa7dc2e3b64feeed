#!/usr/bin/env bash
# test.sh: the whole test suite: every test of the normal build, then the quick tests again
# under AddressSanitizer + UndefinedBehaviorSanitizer. GPU tests skip cleanly without a GPU.
# Run after scripts/setup.sh. Usage: bash scripts/test.sh [--no-sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

echo "== tests (build/)"
(cd build && ctest --output-on-failure -j"$JOBS" --timeout 1800)

if [ "${1:-}" != "--no-sanitize" ]; then
  echo "== quick tests under ASan + UBSan (build-asan/)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCGVLM_SANITIZE=ON -DCGVLM_CUDA=OFF -DCGVLM_WERROR=ON >/dev/null
  cmake --build build-asan -j"$JOBS" >/dev/null
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$JOBS" -L quick --timeout 1800)
fi
