#!/usr/bin/env bash
# Benchmark: `distro sbom` against `cargo cyclonedx` (the published crate) on this workspace.
#
# For each component of the built-in distribution (mesh-proxy, mesh-control, with the `fips`
# feature) it prints, side by side: wall time, components found, and how many of each tool's
# crates are outside the binary's exact graph (`cargo tree -e normal,build` for the host, the
# component's features; everything else is over-reporting).
#
# Usage: bench/sbom/run.sh [RUNS]        (default 3 runs per tool; the best time is reported)
# Needs: cargo, jq, python3; installs cargo-cyclonedx (pinned) with `cargo install` if missing.
set -euo pipefail

RUNS="${1:-3}"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
CCDX_VERSION="0.5.9"

if ! cargo cyclonedx --version >/dev/null 2>&1; then
    echo "installing cargo-cyclonedx ${CCDX_VERSION} (for comparison)" >&2
    cargo install cargo-cyclonedx --locked --version "${CCDX_VERSION}" >&2
fi
# The distro binary to time: $DISTRO, else a release build (built if missing; cargo-cyclonedx is
# a release build too). A debug build spends most of its time validating the document.
if [ -z "${DISTRO:-}" ]; then
    DISTRO="${REPO}/target/release/distro"
    if [ ! -x "$DISTRO" ]; then
        echo "building distro (release; this takes a while the first time)" >&2
        cargo build --release -q -p distro --manifest-path "${REPO}/Cargo.toml"
    fi
fi
echo "distro binary: ${DISTRO}" >&2
# Both tools read the same local registry cache; neither may reach the network.
export CARGO_NET_OFFLINE=true

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT
# cargo-cyclonedx writes its files beside every Cargo.toml: run both tools on a copy.
(cd "${REPO}" && tar --exclude=./target --exclude=./out -cf - .) | (mkdir -p "${WORK}/ws" && cd "${WORK}/ws" && tar -xf -)
WS="${WORK}/ws"
HOST="$(rustc -vV | sed -n 's/^host: //p')"

best() { sort -n | head -1; }
now() { date +%s.%N; }

printf '%-13s %-16s %9s %11s %15s %15s\n' component tool "time(s)" components "outside-graph" "graph-missing"
for comp in mesh-proxy mesh-control; do
    manifest="${WS}/$(cd "${WS}" && cargo metadata --format-version 1 --no-deps --offline \
        | jq -r --arg p "$comp" '.packages[] | select(.name==$p) | .manifest_path' | sed "s|^${WS}/||")"
    # The exact graph, straight from cargo (reference set of name@version).
    (cd "${WS}" && cargo tree -p "$comp" --features fips -e normal,build --target "$HOST" \
        --prefix none --format '{p}' --locked --offline) \
        | sed -E 's/ \(.*//; s/ v/@/' | sort -u | grep -v "^${comp}@" > "${WORK}/${comp}.graph"

    # A binary to hash: the real one when built, else a stand-in (hashing is not what is timed).
    bin="${REPO}/target/release/${comp}"
    [ -f "$bin" ] || bin="${REPO}/target/debug/${comp}"
    [ -f "$bin" ] || { bin="${WORK}/${comp}"; printf 'stand-in\n' > "$bin"; }

    times=()
    for _ in $(seq "$RUNS"); do
        t0=$(now)
        "$DISTRO" -q sbom --binary "$bin" --bin "$comp" --manifest-dir "$WS" --package "$comp" \
            --features fips -o "${WORK}/${comp}.distro.json" --source-date-epoch 0 >/dev/null
        t1=$(now)
        times+=("$(echo "$t1 - $t0" | bc)")
    done
    t_distro=$(printf '%s\n' "${times[@]}" | best)

    times=()
    for _ in $(seq "$RUNS"); do
        rm -f "$(dirname "$manifest")"/*.cdx.json
        t0=$(now)
        (cd "$(dirname "$manifest")" && cargo cyclonedx --format json --features fips -q \
            --override-filename "${comp}.ccdx" >/dev/null 2>&1)
        t1=$(now)
        times+=("$(echo "$t1 - $t0" | bc)")
    done
    t_ccdx=$(printf '%s\n' "${times[@]}" | best)
    cp "$(dirname "$manifest")/${comp}.ccdx.json" "${WORK}/${comp}.ccdx.json"

    for tool in distro ccdx; do
        f="${WORK}/${comp}.${tool}.json"
        jq -r '.components[] | select(.type=="library") | select(.purl != null) | .purl' "$f" \
            | sed -E 's|^pkg:cargo/||; s|\?.*||; s|%2B|+|g' | sort -u > "${WORK}/${comp}.${tool}.set"
        total=$(jq '.components | length' "$f")
        outside=$(comm -23 "${WORK}/${comp}.${tool}.set" "${WORK}/${comp}.graph" | grep -vc '^aws-lc-fips-module' || true)
        missing=$(comm -13 "${WORK}/${comp}.${tool}.set" "${WORK}/${comp}.graph" | wc -l)
        t=$t_distro; name="distro sbom"
        [ "$tool" = ccdx ] && { t=$t_ccdx; name="cargo-cyclonedx"; }
        printf '%-13s %-16s %9.3f %11s %15s %15s\n' "$comp" "$name" "$t" "$total" "$outside" "$missing"
    done
    extra=$(comm -23 "${WORK}/${comp}.ccdx.set" "${WORK}/${comp}.graph" | head -8 | tr '\n' ' ')
    [ -n "$extra" ] && printf '%-13s cargo-cyclonedx lists outside the binary graph, e.g.: %s\n' "$comp" "$extra"
    ratio=$(echo "scale=2; $t_ccdx / $t_distro" | bc)
    printf '%-13s distro sbom is %sx the speed of cargo-cyclonedx\n' "$comp" "$ratio"
done
echo "(graph = cargo tree -p COMPONENT --features fips -e normal,build --target ${HOST}; outside-graph = crates listed that the binary's graph does not contain; graph-missing = crates of the graph not listed)"
