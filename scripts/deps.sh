#!/usr/bin/env bash
# Usage: scripts/deps.sh [--test] [--tidy]
#
# Installs what meterstream needs from Debian 12's packages, idempotently: only
# the packages that `dpkg -s` does not report as installed are installed, and
# nothing at all (not even `apt-get update`) runs when none is missing.
#   (default)  the build: compiler, CMake, Ninja and the libraries
#   --test     also what the tests start: redis-server, python3 with pip,
#              curl, Java 17 and Maven (for the Kafka broker), moto_server
#              (PyPI moto[server]) when it is not on PATH, PyPI confluent-kafka
#              when python3 cannot import it, and the Kafka broker's jars
#              (scripts/kafka-broker fetch, a no-op once they are cached)
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
      sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
  # Java and Maven may come from elsewhere (a JDK of its own, sdkman): only
  # Debian's are installed, and only when the commands are missing.
  command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || packages+=(maven)
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

# pip_install SPEC: installs one PyPI package. A pip of its own (pyenv,
# venv) accepts a plain install; Debian's refuses one into the system Python
# (PEP 668) unless told to.
pip_install() {
  if ! { command -v pip >/dev/null 2>&1 && pip install "$1"; }; then
    if command -v pip3 >/dev/null 2>&1; then
      pip3 install --break-system-packages "$1"
    else
      python3 -m pip install --break-system-packages "$1"
    fi
  fi
}

if ((with_test)) && ! command -v moto_server >/dev/null 2>&1; then
  echo "deps.sh: installing moto[server] from PyPI (moto_server is not on PATH)"
  pip_install 'moto[server]'
  hash -r
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "deps.sh: moto is installed but moto_server is not on PATH;" \
      "scripts/test.sh falls back to 'python3 -m moto.server'" >&2
  fi
fi

if ((with_test)); then
  # tests/e2e/kafka_verify.py: the check of Kafka output independent of
  # librdkafka's C API as meterstream uses it.
  if ! python3 -c 'import confluent_kafka' >/dev/null 2>&1; then
    echo "deps.sh: installing confluent-kafka from PyPI (python3 cannot import it)"
    pip_install confluent-kafka
    python3 -c 'import confluent_kafka' ||
      { echo "deps.sh: confluent-kafka is installed but python3 cannot import it" >&2; exit 1; }
  fi
  # The real Kafka broker of the e2e tests (scripts/kafka-broker).
  "$(dirname "${BASH_SOURCE[0]}")/kafka-broker" fetch
fi
