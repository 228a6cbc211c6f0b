#!/usr/bin/env bash
# The CTest case sanitizer_subset (docs/reliability.md, "Sanitizers"): the
# unit suites of the libraries that own the on-disk formats and parse most
# untrusted bytes — core and snapshot (stores, packs, manifests, trees,
# keysets, stream logs and batches, capture, restore) — built with
# AddressSanitizer and UndefinedBehaviorSanitizer in a sub-build, and run
# there. Any report fails the test (UBSan does not recover; ASan aborts;
# LeakSanitizer is on). The subset keeps CI under its time budget: the link
# parsers are sanitized by fuzz_link_smoke, and `scripts/test --sanitize`
# (or FERRY_SANITIZE_LABELS='core|snapshot|mirror') runs more by hand.
#
#   run-subset.sh <source dir> <sub-build dir>
#   FERRY_SANITIZE_LABELS  the ctest labels to run (default core|snapshot)
#   FERRY_SANITIZE_JOBS    compile and test jobs (default 2)
set -euo pipefail

src=${1:?usage: run-subset.sh <source dir> <sub-build dir>}
build=${2:?usage: run-subset.sh <source dir> <sub-build dir>}
labels=${FERRY_SANITIZE_LABELS:-core|snapshot}
jobs=${FERRY_SANITIZE_JOBS:-2}
start=$SECONDS

targets=()
for label in ${labels//|/ }; do targets+=("${label}_tests"); done

# Debug (asserts on) at -O1 with line tables only: ASan's recommended level,
# and about half the compile time of -O2 -g.
cmake -S "$src" -B "$build" -G Ninja -DFERRY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
  "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" "-DCMAKE_C_FLAGS_DEBUG=-O1 -g1" \
  -DFERRY_BUILD_BENCH=OFF -DFERRY_FUZZ=OFF -DFERRY_WERROR=ON >/dev/null
echo "== building ${targets[*]} with ASan+UBSan in $build"
cmake --build "$build" -j "$jobs" --target "${targets[@]}"
echo "== built in $((SECONDS - start)) s; running ctest -L '^($labels)\$'"
cd "$build"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest -j "$jobs" -L "^($labels)\$" --output-on-failure --timeout 900
echo "== done in $((SECONDS - start)) s"
