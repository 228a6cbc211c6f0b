#!/usr/bin/env bash
# The CTest case fuzz_link_smoke (tests/fuzz/README.md): scripts/fuzz with a
# short time per target, in a clang sub-build. It builds the libFuzzer
# targets and runs each one over a copy of its seed corpus, then fuzzes it
# briefly, two at a time. Fails on any crash, leak, sanitizer report or
# failed check; exits 77 (reported as skipped) when clang++ or the libFuzzer
# runtime is missing.
#
#   run-smoke.sh <source dir> <sub-build dir>
#   FERRY_FUZZ_SECONDS   fuzzing time per target (default 10)
#   FERRY_FUZZ_JOBS      compile jobs and targets fuzzed at once (default 2)
#   FERRY_FUZZ_CXX       the clang++ to use (default: clang++, else clang++-NN)
set -euo pipefail

src=${1:?usage: run-smoke.sh <source dir> <sub-build dir>}
build=${2:?usage: run-smoke.sh <source dir> <sub-build dir>}
start=$SECONDS
status=0
"$src/scripts/fuzz" --build-dir "$build" --seconds "${FERRY_FUZZ_SECONDS:-10}" \
  --jobs "${FERRY_FUZZ_JOBS:-2}" || status=$?
echo "== done in $((SECONDS - start)) s"
exit $status
