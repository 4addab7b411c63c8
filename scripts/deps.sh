#!/usr/bin/env bash
# Usage: scripts/deps.sh [--test] [--tidy]
#
# Installs what meterstream needs from Debian 12's packages, idempotently: only
# the packages that `dpkg -s` does not report as installed are installed, and
# nothing at all (not even `apt-get update`) runs when none is missing.
#   (default)  the build: compiler, CMake, Ninja and the libraries
#   --test     also what the tests start: redis-server, python3 with pip,
#              curl, and moto_server (PyPI moto[server]) when it is not on PATH
#   --tidy     also clang-tidy (the `tidy` preset)
# Runs as root (apt-get directly), or through sudo when it is there.
set -euo pipefail

with_test=0
with_tidy=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    --tidy) with_tidy=1 ;;
    -h | --help)
      sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "deps.sh: unknown argument: $arg" >&2
      exit 2
      ;;
  esac
done

packages=(
  g++ cmake ninja-build pkg-config make git ca-certificates
  librdkafka-dev librocksdb-dev libabsl-dev libhiredis-dev libfmt-dev catch2
  libcurl4-openssl-dev nlohmann-json3-dev libssl-dev libcpp-httplib-dev
)
if ((with_test)); then
  packages+=(redis-server redis-tools python3 python3-pip curl)
fi
if ((with_tidy)); then
  packages+=(clang-tidy)
fi

as_root=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "deps.sh: run as root (or install sudo) to install packages" >&2
  fi
fi

installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

missing=()
for pkg in "${packages[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  echo "deps.sh: installing ${missing[*]}"
  "${as_root[@]}" apt-get update
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "deps.sh: all ${#packages[@]} Debian packages are installed"
fi

if ((with_test)) && ! command -v moto_server >/dev/null 2>&1; then
  echo "deps.sh: installing moto[server] from PyPI (moto_server is not on PATH)"
  # A pip of its own (pyenv, venv) accepts a plain install; Debian's refuses
  # one into the system Python (PEP 668) unless told to.
  if ! { command -v pip >/dev/null 2>&1 && pip install 'moto[server]'; }; then
    if command -v pip3 >/dev/null 2>&1; then
      pip3 install --break-system-packages 'moto[server]'
    else
      python3 -m pip install --break-system-packages 'moto[server]'
    fi
  fi
  hash -r
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "deps.sh: moto is installed but moto_server is not on PATH;" \
      "scripts/test.sh falls back to 'python3 -m moto.server'" >&2
  fi
fi
