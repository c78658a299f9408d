#!/usr/bin/env bash
# Backport benchmark: 50 upstream fixes tried on 6 release lines (300 line attempts, every
# outcome represented: clean, three-way, conflict, not affected, already present), each in its
# own worktree on top of the line's growing queue. Prints the wall time and the outcome counts.
#
#   bench/patches/run.sh            # all 50 fixes in one invocation (builds the debug binary)
#   bench/patches/run.sh --each     # one invocation per fix
#   DISTRO=path/to/distro bench/patches/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [[ -z "${DISTRO:-}" ]]; then
  echo "building distro (cargo build -p distro)" >&2
  cargo build -q -p distro --manifest-path "$repo/Cargo.toml"
  DISTRO="$repo/target/debug/distro"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start_fixture=$EPOCHREALTIME
python3 "$here/make_fixture.py" "$work" > "$work/commits"
fixture_s=$(awk -v a="$start_fixture" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
echo "fixture: 6 lines, $(wc -l < "$work/commits") fixes, built in ${fixture_s}s" >&2

# Exit 2 means some line conflicted: expected for a fifth of the fixes.
start=$EPOCHREALTIME
if [[ "${1:-}" == "--each" ]]; then
  # One invocation per fix (a fresh worktree per line each time).
  while read -r commit; do
    "$DISTRO" --quiet --config "$work/distro/distro.toml" --format json \
      patches backport "$commit" --at 2026-11-28 >> "$work/results.jsonl" || [[ $? -eq 2 ]]
  done < "$work/commits"
else
  # All fixes in one invocation: one worktree per line, fixes stacked in order.
  mapfile -t commits < "$work/commits"
  "$DISTRO" --quiet --config "$work/distro/distro.toml" --format json \
    patches backport "${commits[@]}" --at 2026-11-28 | jq -c '.[]' > "$work/results.jsonl" || [[ ${PIPESTATUS[0]} -eq 2 ]]
fi
elapsed=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
# The queues written must apply: produce every line's patched tree.
start_apply=$EPOCHREALTIME
for line in 0.1 0.2 0.3 0.4 0.5 0.6; do
  n=$("$DISTRO" --quiet --config "$work/distro/distro.toml" --format json \
    patches apply --line "$line" --out "$work/out/$line/src" | jq '.patches | length')
  echo "line $line: series of $n patch(es) applies" >&2
done
apply_s=$(awk -v a="$start_apply" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
echo "patched trees of 6 lines produced in ${apply_s}s" >&2

echo "outcomes (line attempts):"
jq -r '.lines[].outcome' "$work/results.jsonl" | sort | uniq -c
total=$(jq -r '.lines[].outcome' "$work/results.jsonl" | wc -l)
awk -v t="$elapsed" -v n="$total" \
  'BEGIN { printf "backport of 50 patches across 6 lines (%d attempts): %.2f s (%.1f ms per attempt)\n", n, t, t * 1000 / n }'
