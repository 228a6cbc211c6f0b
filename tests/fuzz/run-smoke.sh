#!/usr/bin/env bash
# The CTest case fuzz_link_smoke (tests/fuzz/README.md): builds the libFuzzer
# targets in a clang sub-build and runs each one over its seed corpus, then
# fuzzes it for a short while. Fails on any crash, leak, sanitizer report or
# failed check; exits 77 (reported as skipped) when clang++ or the libFuzzer
# runtime is missing. The sub-build uses -O1 with line tables only and
# without NDEBUG (asserts on): quicker to compile than -O2 -g, as fast to fuzz.
#
#   run-smoke.sh <source dir> <sub-build dir>
#   FERRY_FUZZ_SECONDS   fuzzing time per target (default 20)
#   FERRY_FUZZ_JOBS      parallel compile jobs (default 2)
#   FERRY_FUZZ_CXX       the clang++ to use (default: clang++, else clang++-NN)
set -euo pipefail

src=${1:?usage: run-smoke.sh <source dir> <sub-build dir>}
build=${2:?usage: run-smoke.sh <source dir> <sub-build dir>}
seconds=${FERRY_FUZZ_SECONDS:-20}
jobs=${FERRY_FUZZ_JOBS:-2}
targets=(record_reader_fuzz link_envelope_fuzz stream_log_fuzz)

skip() {
  echo "SKIPPED: $*" >&2
  echo "(scripts/deps installs clang-14 and libclang-rt-14-dev)" >&2
  exit 77
}

cxx=
for candidate in ${FERRY_FUZZ_CXX:-clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14}; do
  if command -v "$candidate" >/dev/null; then
    cxx=$(command -v "$candidate")
    break
  fi
done
[ -n "$cxx" ] || skip "no ${FERRY_FUZZ_CXX:-clang++} found: the fuzz targets need clang's libFuzzer"
cc=${cxx/clang++/clang}
[ -x "$cc" ] || cc=$(command -v "$(basename "$cc")" || true)
if [ -z "$cc" ] || [ ! -x "$cc" ]; then
  skip "found $cxx but not the matching C compiler ${cxx/clang++/clang}"
fi

# The libFuzzer runtime is a separate package on Debian (libclang-rt-NN-dev).
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
  'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' >"$probe/p.cc"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/p.cc" -o "$probe/p" 2>"$probe/err"; then
  sed 's/^/  /' "$probe/err" >&2
  skip "$cxx cannot link a libFuzzer target (is the libFuzzer runtime installed?)"
fi

start=$SECONDS
mkdir -p "$build"
if [ ! -f "$build/build.ninja" ]; then
  echo "== configuring the clang sub-build in $build ($cxx)"
  cmake -S "$src" -B "$build" -G Ninja \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
    -DFERRY_FUZZ=ON -DFERRY_WERROR=ON \
    -DFERRY_BUILD_BENCH=OFF >"$build/configure.log" 2>&1 || {
    cat "$build/configure.log" >&2
    exit 1
  }
fi
echo "== building the fuzz targets (-j$jobs)"
cmake --build "$build" --target ferry_fuzz -j "$jobs"
echo "== built in $((SECONDS - start)) s"

artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
status=0
for t in "${targets[@]}"; do
  corpus=$src/tests/fuzz/corpus/$t
  scratch=$build/fuzz-corpus/$t  # new inputs land here, not in the source tree
  rm -rf "$scratch"
  mkdir -p "$scratch"
  common=(-artifact_prefix="$artifacts/$t-" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1)
  echo "== $t: seed corpus"
  if ! "$build/bin/$t" "${common[@]}" -runs=0 "$corpus" >"$artifacts/$t.seeds.log" 2>&1; then
    tail -n 60 "$artifacts/$t.seeds.log" >&2
    echo "FAILED: $t on its seed corpus (log: $artifacts/$t.seeds.log)" >&2
    status=1
    continue
  fi
  echo "== $t: fuzzing for $seconds s"
  if ! "$build/bin/$t" "${common[@]}" -max_total_time="$seconds" "$scratch" "$corpus" \
    >"$artifacts/$t.fuzz.log" 2>&1; then
    tail -n 60 "$artifacts/$t.fuzz.log" >&2
    echo "FAILED: $t (log: $artifacts/$t.fuzz.log; reproduce: $build/bin/$t <artifact>)" >&2
    status=1
    continue
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$artifacts/$t.fuzz.log" | sed 's/^/   /'
done
echo "== done in $((SECONDS - start)) s"
exit $status
