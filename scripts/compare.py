#!/usr/bin/env python3
"""Times exec `true` of several delta-sessions binaries against `bash -c true`,
interleaved in one run, and prints medians (see scripts/compare.sh)."""
import argparse
import json
import statistics
import subprocess
import tempfile
import time


def timed(argv):
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("binaries", nargs="+", help="LABEL=PATH")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ds-compare-")
    sessions = {}
    cands = [("bash -c true", ["bash", "-c", "true"])]
    for item in a.binaries:
        label, path = item.split("=", 1)
        out = subprocess.run([path, "start"], cwd=work, capture_output=True, check=True).stdout
        sid = json.loads(out)["session_id"]
        sessions[label] = (path, sid)
        cands.append((f"exec true, {label}", [path, "--sessions-dir", f"{work}/.sessions", "exec", sid, "true"]))
    try:
        for _ in range(10):
            for _, argv in cands:
                timed(argv)
        results = {label: [] for label, _ in cands}
        for _ in range(a.rounds):
            for label, argv in cands:
                results[label].append(timed(argv))
        base = statistics.median(results["bash -c true"])
        print(f"{a.rounds} rounds, interleaved")
        for label, xs in results.items():
            m = statistics.median(xs)
            print(f"  {label:40s} median {m:6.2f} ms  +{m - base:5.2f} ms over bash -c true")
    finally:
        for path, sid in sessions.values():
            subprocess.run([path, "--sessions-dir", f"{work}/.sessions", "end", "--remove", sid],
                           capture_output=True)


if __name__ == "__main__":
    main()
