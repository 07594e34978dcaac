#!/usr/bin/env bash
# Compares exec latency of two builds side by side in one run:
#   scripts/compare.sh REV [ROUNDS]
# builds REV (any git revision) in a temporary worktree and the current tree,
# then times `bash -c true`, exec `true` with REV's binary and exec `true`
# with the current binary, interleaved, and prints medians.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/compare.sh REV [ROUNDS]}
rounds=${2:-300}
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add -q --detach "$tmp/old" "$rev"
(cd "$tmp/old" && cargo build -q --release --target-dir "$tmp/target-old")
cargo build -q --release
python3 scripts/compare.py --rounds "$rounds" \
  "$rev=$tmp/target-old/release/delta-sessions" \
  "current=$PWD/target/release/delta-sessions"
