#!/usr/bin/env bash
# Usage: scripts/demo.sh [smart_meter arguments...]
#
# Installs the build dependencies (scripts/deps.sh), builds the `release`
# preset's smart_meter example and runs build/release/examples/smart_meter
# with the arguments given here. Works from any directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/deps.sh
cmake --preset release
cmake --build --preset release --target smart_meter

exec "$root/build/release/examples/smart_meter" "$@"
