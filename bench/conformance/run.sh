#!/usr/bin/env bash
# Benchmark: the whole conformance matrix for one line, timed per profile (bring-up, scenarios
# and tear-down), then the matrix's wall time and the sum of the profiles' times. No assertion:
# the issue's budget is "well under 15 minutes on 2 cores"; compare the last line against it.
#
# Usage: sudo bench/conformance/run.sh [OUT_DIR] [extra `distro conformance` flags...]
#   OUT_DIR  a `distro build` + `distro image` output (default: out/ in the repository)
#   env DISTRO  the distro binary (default: target/release/distro, else target/debug/distro)
#   env JOBS    environments at the same time (default 3)
# Needs: root, iproute2, iptables, curl, openssl, runc, umoci, jq.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${1:-$ROOT/out}
shift || true
JOBS=${JOBS:-3}
DISTRO=${DISTRO:-}
if [ -z "$DISTRO" ]; then
  if [ -x target/release/distro ]; then DISTRO=$ROOT/target/release/distro; else DISTRO=$ROOT/target/debug/distro; fi
fi
[ -x "$DISTRO" ] || { echo "build the CLI first: cargo build -p distro (or set DISTRO)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces): sudo $0" >&2; exit 1; }
command -v jq >/dev/null || { echo "missing jq" >&2; exit 1; }

WORK=$(mktemp -d)
chmod 755 "$WORK"  # the containers run as the images' user (65532) and read their files here
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s.%N)
set +e
"$DISTRO" conformance --line "$OUT" --format json --jobs "$JOBS" --report-dir "$WORK/report" \
  --work-dir "$WORK/envs" --state-dir "$WORK/state" "$@" > "$WORK/summary.json" 2> "$WORK/log"
code=$?
set -e
end=$(date +%s.%N)
if ! jq -e .profiles "$WORK/summary.json" >/dev/null 2>&1; then
  echo "distro conformance printed no summary (exit $code):" >&2
  tail -20 "$WORK/log" >&2
  exit 1
fi
printf '%-30s %10s %8s %8s %12s\n' profile seconds passed failed unsupported
jq -r '.profiles[] | [.name, (.duration_ms/1000), .counts.passed, .counts.failed, .counts.unsupported] | @tsv' \
  "$WORK/summary.json" | while IFS=$'\t' read -r name secs p f u; do
  printf '%-30s %10.1f %8s %8s %12s\n' "$name" "$secs" "$p" "$f" "$u"
done
sum=$(jq '[.profiles[].duration_ms] | add / 1000' "$WORK/summary.json")
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
printf '\nsum of profiles: %.1f s; matrix wall time with %s jobs: %.1f s (budget: 900 s); exit %s\n' \
  "$sum" "$JOBS" "$wall" "$code"
