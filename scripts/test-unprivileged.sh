#!/usr/bin/env bash
# Runs the compiled test suites as an unprivileged user (uid 65534), the way
# most users run delta-sessions. Needs root to switch users; as a normal user
# `cargo test` already is the unprivileged run, so this does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "test-unprivileged: not root, nothing to do (cargo test already ran unprivileged)"
  exit 0
fi
uid=${UNPRIVILEGED_UID:-65534}
dir=$(mktemp -d /tmp/ds-unpriv.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/tmp"
cargo build --quiet
cp target/debug/delta-sessions "$dir/bin/"
# Integration test binaries (not the unit tests of the lib: they need the source tree).
mapfile -t tests < <(cargo test --no-run --message-format=json 2>/dev/null \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
for t in "${tests[@]}"; do cp "$t" "$dir/bin/"; done
chown -R "$uid:$uid" "$dir"
chmod -R a+rX "$dir"
status=0
for t in "${tests[@]}"; do
  name=$(basename "$t")
  echo "== $name as uid $uid"
  if ! (cd "$dir/tmp" && setpriv --reuid="$uid" --regid="$uid" --clear-groups \
      env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$dir/tmp" \
      DELTA_SESSIONS_BIN="$dir/bin/delta-sessions" DELTA_TEST_TMP="$dir/tmp" \
      "$dir/bin/$name" --test-threads=2); then
    status=1
  fi
done
exit $status
