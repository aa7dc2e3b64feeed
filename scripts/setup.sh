#!/usr/bin/env bash
# setup.sh: install cgvlm's Debian packages (as root, only those missing) and build it with
# warnings as errors into build/. Usage: bash scripts/setup.sh [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config git openssl bc procps
  libsqlite3-dev sqlite3 libcurl4-openssl-dev curl libcjson-dev libopenblas-dev libpng-dev
  gnuplot-nox
  python3 python3-numpy python3-scipy python3-torch   # test oracles, never runtime dependencies
  chromium                                             # report screenshot test
  slurmctld slurmd slurm-client munge                  # the real single-node Slurm of the tests
)

if [ "${1:-}" != "--no-install" ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCGVLM_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built build/cgvlm ($(./build/cgvlm --version))"
