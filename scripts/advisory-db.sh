#!/usr/bin/env bash
# Lays out a local copy of the RustSec advisory database where cargo-deny looks for it
# (<db-path>/advisory-db-<hash of the default URL>), as a git checkout whose commit date is the
# snapshot's date, so `maximum-db-staleness` judges the data by its real age.
#
#   scripts/advisory-db.sh [SNAPSHOT_DIR [DB_PATH]]
#
# SNAPSHOT_DIR: a copy of rustsec/advisory-db (default: patches/advisory-db, the snapshot the
#   repository ships; `distro advisories update` refreshes it).
# DB_PATH: cargo-deny's db-path (default ~/.cargo/advisory-dbs).
set -euo pipefail
src=${1:-$(dirname "$0")/../patches/advisory-db}
db_path=${2:-$HOME/.cargo/advisory-dbs}
# cargo-deny's directory name for https://github.com/rustsec/advisory-db
dest="$db_path/advisory-db-3157b0e258782691"
if [ ! -d "$src/crates" ]; then
  echo "advisory-db.sh: $src does not look like an advisory-db copy (no crates/ folder); the repository ships one at patches/advisory-db" >&2
  exit 2
fi
date=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$src/SNAPSHOT" 2>/dev/null | head -1 || true)
date=${date:-$(date -u +%F)}
if [ -d "$dest/.git" ] && [ "$(git -C "$dest" log -1 --format=%cs 2>/dev/null)" = "$date" ]; then
  exit 0
fi
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
cp -r "$src/." "$dest.tmp/"
(
  cd "$dest.tmp"
  git init -q
  git add -A
  GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
    git -c user.name=snapshot -c user.email=snapshot@invalid commit -q -m "advisory-db snapshot $date"
  git branch -M main
  git update-ref FETCH_HEAD HEAD 2>/dev/null || cp .git/HEAD .git/FETCH_HEAD
)
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "advisory-db.sh: $dest ($date)" >&2
