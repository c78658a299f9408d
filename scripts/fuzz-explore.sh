#!/usr/bin/env bash
# Exploratory fuzzing: every fuzz target with fresh seeds from the clock and a longer budget.
# `cargo test` runs the same targets with a seed fixed per target (reproducible, the CI gate);
# this looks further. A find is saved under target/fuzz-artifacts/<target>/ with a shrunk copy
# and the FUZZ_SEED that reproduces it: fix the parser, then copy the shrunk input into
# fuzz/corpus/<target>/ as a regression input.
#
#   scripts/fuzz-explore.sh [ROUNDS]      (default 3 rounds)
#
# Environment: FUZZ_SECONDS per target and round (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
export FUZZ_SECONDS=${FUZZ_SECONDS:-30} FUZZ_SEED=random
for r in $(seq 1 "$rounds"); do
  echo "=== fuzz round $r of $rounds (FUZZ_SECONDS=$FUZZ_SECONDS per target)" >&2
  cargo test --locked -p distro-fuzz --test targets -- --test-threads=1
  cargo test --locked -p mesh-control --bin mesh-control fuzz_targets -- --test-threads=1
done
echo "=== no finds in $rounds round(s)" >&2
