#!/usr/bin/env python3
"""Times exec `true` of several delta-sessions binaries against `bash -c true`,
interleaved in one run, and prints medians (see scripts/compare.sh). The
timing and interleaving are bench.py's."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import med, timed  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("binaries", nargs="+", help="LABEL=PATH")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ds-compare-")
    sessions = []
    cands = [("bash -c true", lambda: timed(["bash", "-c", "true"])[0])]
    try:
        for i, item in enumerate(a.binaries):
            label, path = item.split("=", 1)
            # One work dir and sessions dir per build: revisions may keep
            # their records differently, and no jail may see another
            # session's sessions dir.
            own = os.path.join(work, f"b{i}")
            os.makedirs(own)
            sessions_dir = os.path.join(own, ".sessions")
            _, out = timed([path, "--sessions-dir", sessions_dir, "start"], cwd=own)
            sid = json.loads(out)["session_id"]
            sessions.append((path, sid, sessions_dir))
            argv = [path, "--sessions-dir", sessions_dir, "exec", sid, "true"]
            cands.append((f"exec true, {label}", lambda argv=argv: timed(argv)[0]))
        # The order of the builds rotates every round: the one right after
        # another session's exec runs while that session's holder pre-starts
        # its next shell, which costs it 0.5 ms or more on a 2-core host.
        results = {label: [] for label, _ in cands}
        builds = cands[1:]
        for r in range(a.rounds + 10):
            k = r % len(builds)
            for label, f in [cands[0]] + builds[k:] + builds[:k]:
                ms = f()
                if r >= 10:
                    results[label].append(ms)
        base = med(results["bash -c true"])
        print(f"{a.rounds} rounds, interleaved, builds in rotating order")
        for label, xs in results.items():
            print(f"  {label:40s} median {med(xs):6.2f} ms  +{med(xs) - base:5.2f} ms over bash -c true")
    finally:
        for path, sid, sessions_dir in sessions:
            subprocess.run([path, "--sessions-dir", sessions_dir, "end", "--remove", sid],
                           capture_output=True)


if __name__ == "__main__":
    main()
