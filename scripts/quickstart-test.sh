#!/usr/bin/env bash
# The README's quickstart, run the way a newcomer runs it: a fresh `git clone` of the commit under
# test into an empty temporary directory (nothing beside it: no ../shared), then the README's
# first command (the first ```sh block under "## Quickstart", read from the README itself, so
# the two cannot drift apart) run there, then a check that the release reached "verified".
#
#   scripts/quickstart-test.sh [COMMIT]        (default: HEAD)
#
# Environment:
#   QUICKSTART_DIR  an empty or absent directory to clone into (default: a new temporary one);
#                   kept afterwards, so later tests can reuse its release output.
#   PORT            port of the local registry the quickstart starts (default: a free one).
#
# stdout: one line, the clone's release output directory (for DISTRO_TEST_OUT); everything else
# goes to stderr. Exit status 0 only when every image of the release was verified.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$here" rev-parse --verify "${1:-HEAD}^{commit}")
log() { echo "[quickstart-test] $*" >&2; }

base=${QUICKSTART_DIR:-$(mktemp -d -t quickstart-XXXXXX)}
mkdir -p "$base"
if [ -n "$(ls -A "$base")" ]; then
  log "QUICKSTART_DIR=$base is not empty; give an empty or absent directory"
  exit 2
fi
base=$(cd "$base" && pwd)
clone=$base/fips-mesh
# $base is empty, so the clone has nothing beside it: no ../shared, no other checkout.

log "cloning $commit of $here into $clone"
git clone --quiet --no-local --no-checkout "$here" "$clone"
git -C "$clone" -c advice.detachedHead=false checkout --quiet "$commit"

readme=$clone/README.md
cmd=$(awk '
  /^## Quickstart/ { q = 1; next }
  q && /^## /      { exit }
  q && /^```sh$/   { b = 1; next }
  b && /^```$/     { exit }
  b                { print }
' "$readme")
if [ -z "$cmd" ]; then
  log "no \`\`\`sh block under \"## Quickstart\" in README.md"
  exit 2
fi

port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
out=$clone/out
stop_registry() {
  if [ -f "$out/registry/registry.pid" ]; then
    kill "$(cat "$out/registry/registry.pid")" 2>/dev/null || true
  fi
}
trap stop_registry EXIT

log "running the README's first command in $clone (PORT=$port):"
log "  $cmd"
started=$(date +%s)
set +e
(cd "$clone" && PORT=$port bash -euo pipefail -c "$cmd") > "$base/quickstart.stdout" 2> >(tee "$base/quickstart.stderr" >&2)
status=$?
set -e
wait
log "took $(( $(date +%s) - started ))s, exit $status; its report:"
cat "$base/quickstart.stdout" >&2
if [ "$status" != 0 ]; then
  log "FAILED: the README's first command exited $status on a fresh clone (output above; logs in $base)"
  exit 1
fi

records=$(ls "$out"/*/release.json 2>/dev/null || true)
if [ -z "$records" ]; then
  log "FAILED: no release.json under $out"
  exit 1
fi
# Every line was published, every image tagged after it verified, no check failed, and the
# report says so for each image.
total=0
for record in $records; do
  images=$(jq '.components | length' "$record")
  tagged=$(jq '[.components[] | select(.pushed.tagged == true)] | length' "$record")
  verified=$(jq '[.checks[] | select((.stage | startswith("verify ")) and .result == "passed")] | length' "$record")
  failed=$(jq '[.checks[] | select(.result == "failed")] | length' "$record")
  state=$(jq -r .state "$record")
  if [ "$images" -lt 1 ] || [ "$tagged" != "$images" ] || [ "$verified" -lt "$images" ] || [ "$failed" != 0 ] || [ "$state" != published ]; then
    log "FAILED: $record: state $state, $images image(s), $tagged tagged, $verified verify check(s) passed, $failed failed check(s)"
    exit 1
  fi
  # As root (CI) the release ran the conformance suite: its summary is in the record, it
  # passed, and verify required the signed test-result attestation on every image.
  if [ "$(id -u)" = 0 ]; then
    conf_failed=$(jq '.conformance.totals.failed // "none"' "$record")
    conf_passed=$(jq '.conformance.totals.passed // 0' "$record")
    test_results=$(jq '[.checks[] | select((.stage | startswith("attest ")) and (.name | contains("test-result")) and .result == "passed")] | length' "$record")
    if [ "$conf_failed" != 0 ] || [ "$conf_passed" -lt 1 ] || [ "$test_results" != "$images" ]; then
      log "FAILED: $record: conformance failed=$conf_failed passed=$conf_passed, $test_results of $images image(s) carry a test-result attestation"
      exit 1
    fi
  fi
  total=$((total + images))
done
if [ "$(grep -c 'signed, attested, verified' "$base/quickstart.stdout")" != "$total" ]; then
  log "FAILED: the release report does not say \"signed, attested, verified\" for each of the $total image(s)"
  exit 1
fi
log "ok: $total image(s) signed, attested, verified, then tagged ($records)"
echo "$out"
