#!/usr/bin/env bash
# Benchmarks delta-sessions against running commands directly (and against
# bubblewrap), as medians and ratios measured side by side in one run.
#   scripts/bench.sh            full run (several minutes: 1,000 sessions, 5,000 execs)
#   scripts/bench.sh --quick    smaller scale, for a smoke test
#   scripts/bench.sh --only exec,startend
# See docs/performance.md for the method and a recorded run.
set -euo pipefail
cd "$(dirname "$0")/.."
# bubblewrap is the comparison jail; GNU time measures peak RSS from a small launcher.
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ -x /usr/bin/time ] || missing+=(time)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME"), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "user: $(id -un) (uid $(id -u)); bash $(bash -c 'echo $BASH_VERSION'); $(bwrap --version 2>/dev/null || echo 'no bwrap')"
exec python3 scripts/bench.py --bin target/release/delta-sessions "$@"
