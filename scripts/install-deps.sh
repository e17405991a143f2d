#!/usr/bin/env bash
# Installs the Debian packages attn builds and tests with, skipping those
# already present. Safe to run again; needs root only when something is
# missing.
set -euo pipefail

packages=(
  cmake ninja-build g++ make          # build
  libgtest-dev libgmock-dev           # unit tests
  libbenchmark-dev                    # microbenchmarks
  libhwy-dev                          # SIMD with run-time dispatch
  libcli11-dev libfmt-dev             # command-line tool
  nlohmann-json3-dev                  # safetensors headers
  libopenblas-openmp-dev              # projections (BLAS, OpenMP threads)
  clang libclang-rt-14-dev            # libFuzzer targets
  python3 python3-numpy               # independent NumPy check of attn run
  python3-torch                       # PyTorch parity of the nn modules
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} Debian packages present"
  exit 0
fi

echo "deps: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "deps: error: these packages are missing and installing them needs root:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
