#!/usr/bin/env bash
# Usage: scripts/package-test.sh BUILD_DIR
#
# Checks that meterstream works as a package, like fmt's find-package-test:
#   1. installs BUILD_DIR (an already built tree) into a temporary prefix;
#   2. builds and runs tests/package/ against it with find_package();
#   3. builds and runs tests/package/ with add_subdirectory() of the source tree.
# Works from any directory; exits non-zero on the first failure.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="$(cd "$1" && pwd)"
jobs="${MS_JOBS:-2}"
generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/meterstream-package.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "== package-test: install ${build_dir} into ${work}/prefix"
cmake --install "$build_dir" --prefix "$work/prefix"

echo "== package-test: find_package(meterstream) from the install prefix"
cmake -S "$root/tests/package" -B "$work/find-package" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$work/prefix"
cmake --build "$work/find-package" -j "$jobs"
"$work/find-package/consumer"

echo "== package-test: add_subdirectory(meterstream) from the source tree"
cmake -S "$root/tests/package" -B "$work/add-subdirectory" "${generator[@]}" \
  -DMS_PACKAGE_TEST_ADD_SUBDIRECTORY=ON
cmake --build "$work/add-subdirectory" -j "$jobs"
"$work/add-subdirectory/consumer"

echo "== package-test: passed (find_package and add_subdirectory)"
