#!/usr/bin/env python3
"""Benchmarks of delta-sessions against running commands directly.

Driven by scripts/bench.sh, which builds the release binary first. Every
comparison runs its candidates interleaved (A, B, C, A, B, C, ...) so that
noise from a shared machine hits them alike, and reports medians and ratios.
Nothing here asserts a target: it prints the numbers and whether each target
of SPEC section 7 is met, and docs/performance.md records a run.

Usage: bench.py --bin PATH [--quick] [--json OUT]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEVNULL = subprocess.DEVNULL


def timed(argv, stdin=None, cwd=None):
    """Wall time of one run in milliseconds (spawn to exit), and its stdout."""
    t = time.perf_counter()
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=DEVNULL, cwd=cwd)
    ms = (time.perf_counter() - t) * 1000
    if p.returncode != 0:
        raise SystemExit(f"bench: {argv[:4]} failed with {p.returncode}")
    return ms, p.stdout


def interleave(cands, runs, warmup=5):
    """cands: list of (label, thunk returning ms). Returns {label: [ms...]}."""
    for _ in range(warmup):
        for _, f in cands:
            f()
    out = {label: [] for label, _ in cands}
    for _ in range(runs):
        for label, f in cands:
            out[label].append(f())
    return out


def process_children():
    """Map of pid -> child pids, read from /proc once."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return children


def session_memory(root, children):
    """RSS and PSS in KiB, summed over `root` and its descendants."""
    rss = pss = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def med(xs):
    return statistics.median(xs)


class Bench:
    def __init__(self, binary, quick):
        self.bin = binary
        self.quick = quick
        self.root = tempfile.mkdtemp(prefix="ds-bench-")
        self.work = os.path.join(self.root, "work")
        os.makedirs(self.work)
        self.sessions = os.path.join(self.root, "sessions")
        # default, with the isolation pinned: the jail, or Landlock mode.
        self.jail_profile = os.path.join(self.root, "jail.toml")
        self.landlock_profile = os.path.join(self.root, "landlock.toml")
        for path, mode in ((self.jail_profile, "jail"), (self.landlock_profile, "landlock")):
            with open(path, "w") as f:
                f.write(f'isolation = "{mode}"\n')
        self.rows = []  # (what, value, baseline, target, met)
        self.started = []

    def ds(self, *args, stdin=None, sessions=None):
        argv = [self.bin, "--sessions-dir", sessions or self.sessions, *args]
        return timed(argv, stdin=stdin, cwd=self.work)

    def start(self, *args):
        ms, out = self.ds("start", *args)
        sid = json.loads(out)["session_id"]
        self.started.append(sid)
        return ms, sid

    def end(self, sid):
        ms, _ = self.ds("end", sid)
        self.started.remove(sid)
        return ms

    def row(self, what, value, unit="ms", baseline=None, target=None, met=None):
        self.rows.append((what, value, unit, baseline, target, met))
        b = f"  (baseline {baseline})" if baseline else ""
        t = f"  target {target}: {'met' if met else 'NOT met'}" if target else ""
        print(f"  {what}: {value:.2f} {unit}{b}{t}", flush=True)

    def cleanup(self):
        for sid in list(self.started):
            try:
                self.end(sid)
            except SystemExit:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the measurements -------------------------------------------------

    def exec_latency(self):
        print("exec of `true` on a live session, interleaved with baselines", flush=True)
        _, sid = self.start("--profile", self.jail_profile)
        self.ds("exec", sid, "true")
        # The same exec on a Landlock-mode session (for hosts without user namespaces).
        _, ll_sid = self.start("--profile", self.landlock_profile)
        self.ds("exec", ll_sid, "true")
        bwrap = shutil.which("bwrap")
        cands = [
            ("bash -c true", lambda: timed(["bash", "-c", "true"])[0]),
            ("delta-sessions exec true", lambda: self.ds("exec", sid, "true")[0]),
            ("  same, Landlock mode", lambda: self.ds("exec", ll_sid, "true")[0]),
        ]
        if bwrap:
            # A comparable one-shot jail: new user/mount/pid/net/ipc/uts
            # namespaces, read-only system dirs, the work dir, fresh /proc, /dev, /tmp.
            argv = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr"]
            for d in ("bin", "sbin", "lib", "lib64", "lib32"):
                p = "/" + d
                if os.path.islink(p):
                    argv += ["--symlink", os.readlink(p), p]
                elif os.path.isdir(p):
                    argv += ["--ro-bind", p, p]
            argv += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
                     "--tmpfs", "/tmp", "--bind", self.work, self.work,
                     "--chdir", self.work, "bash", "-c", "true"]
            cands.append(("bwrap bash -c true", lambda: timed(argv)[0]))
        res = interleave(cands, 30 if self.quick else 200)
        base = med(res["bash -c true"])
        ours = med(res["delta-sessions exec true"])
        for label, xs in res.items():
            print(f"    {label:28s} median {med(xs):6.2f} ms  ratio {med(xs) / base:4.2f}", flush=True)
        self.row("exec true, median", ours, baseline=f"bash -c true {base:.2f} ms, +{ours - base:.2f} ms",
                 target="<= bash + 3 ms", met=ours - base <= 3.0)
        ll = med(res["  same, Landlock mode"])
        self.row("exec true, Landlock mode, median", ll, baseline=f"jail {ours:.2f} ms, {ll - ours:+.2f} ms",
                 target="within 1 ms of the jail", met=abs(ll - ours) <= 1.0)
        self.end(ll_sid)
        if bwrap:
            self.row("bwrap bash -c true, median", med(res["bwrap bash -c true"]))
        self.end(sid)

    def start_end(self):
        print("start and end", flush=True)
        for label, profile in (("", self.jail_profile), (", Landlock mode", self.landlock_profile)):
            starts, ends = [], []
            for _ in range(20 if self.quick else 100):
                ms, sid = self.start("--profile", profile)
                starts.append(ms)
                ends.append(self.end(sid))
            self.row(f"start{label}, median", med(starts), target="< 10 ms", met=med(starts) < 10)
            self.row(f"end{label}, median", med(ends), target="< 10 ms", met=med(ends) < 10)

    def list_10k(self):
        print("list with 10,000 sessions on disk", flush=True)
        many = os.path.join(self.root, "many")
        _, sid = self.ds("start", sessions=many)
        sid = json.loads(sid)["session_id"]
        self.ds("exec", sid, "true", sessions=many)
        self.ds("end", sid, sessions=many)
        src = os.path.join(many, sid)
        meta = json.load(open(os.path.join(src, "metadata.json")))
        for i in range(10_000 - 1):
            new = "sess_%012x" % (0xB0000000 + i)
            d = os.path.join(many, new)
            os.mkdir(d, 0o700)
            meta["session_id"] = new
            meta["status"] = "active" if i % 2 else "terminated"
            meta["holder"] = None
            with open(os.path.join(d, "metadata.json"), "w") as f:
                json.dump(meta, f)
        res = interleave([
            ("list", lambda: self.ds("list", sessions=many)[0]),
            ("list --all", lambda: self.ds("list", "--all", sessions=many)[0]),
        ], 5 if self.quick else 15, warmup=2)
        self.row("list (10,000 on disk), median", med(res["list"]), target="< 200 ms", met=med(res["list"]) < 200)
        self.row("list --all (10,000 on disk), median", med(res["list --all"]))
        shutil.rmtree(many, ignore_errors=True)

    def peak_rss(self):
        print("peak RSS of delta-sessions while a command prints 50 MB", flush=True)
        _, sid = self.start()
        argv = [self.bin, "--sessions-dir", self.sessions, "exec", sid,
                "head -c 50000000 /dev/zero | tr '\\0' a; head -c 50000000 /dev/zero | tr '\\0' b >&2"]
        # Linux counts the memory a child had before exec (a copy of its
        # parent) in its peak RSS, so launching from this Python process
        # would report Python's size. GNU time is a small launcher.
        p = subprocess.Popen(["/usr/bin/time", "-f", "DS-MAXRSS %M"] + argv,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.work)
        out, err = p.communicate()
        kib = int(err.decode().rsplit("DS-MAXRSS ", 1)[1].split()[0])
        res = json.loads(out)
        print(f"    stdout kept {len(res['stdout'])} bytes, dropped {res['stdout_dropped_bytes']}", flush=True)
        self.row("peak RSS, 50 MB printed", kib / 1024, unit="MiB", target="< 16 MiB", met=kib < 16 * 1024)
        self.end(sid)

    def history_growth(self):
        n = 500 if self.quick else 5000
        print(f"exec latency at exec 1 and exec {n} of one session", flush=True)
        _, sid = self.start()
        first = [self.ds("exec", sid, "true")[0] for _ in range(20)]
        for _ in range(n - 40):
            self.ds("exec", sid, "true")
        last = [self.ds("exec", sid, "true")[0] for _ in range(20)]
        self.row("exec 1-20, median", med(first))
        self.row(f"exec {n - 19}-{n}, median", med(last), target="no growth (< 1.2x)",
                 met=med(last) < 1.2 * med(first))
        self.end(sid)

    def many_sessions(self):
        n = 100 if self.quick else 1000
        print(f"{n} live sessions", flush=True)
        sids = []
        t = time.perf_counter()
        for _ in range(n):
            sids.append(self.start()[1])
        started = time.perf_counter() - t
        self.row(f"start {n} sessions, total", started, unit="s")
        rss = []
        for sid in sids:
            meta = json.load(open(os.path.join(self.sessions, sid, "metadata.json")))
            pid = meta["holder"]["pid"]
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss.append(int(line.split()[1]))
        self.row("holder RSS per idle session, median", med(rss) / 1024, unit="MiB")
        # The first exec of a session starts its own bash (and leaves the next
        # one pre-started); the second runs in the pre-started one.
        for nth in ("first", "second"):
            lat = [self.ds("exec", sid, "true")[0] for sid in sids]
            self.row(f"{nth} exec true of each of {n} live sessions, median", med(lat))
        # After an exec, a bash session also keeps an idle worker and the
        # pre-started bash of its next exec: count every process of it.
        rss, pss = [], []
        children = process_children()
        for sid in sids:
            meta = json.load(open(os.path.join(self.sessions, sid, "metadata.json")))
            r, p = session_memory(meta["holder"]["pid"], children)
            rss.append(r)
            pss.append(p)
        self.row("idle session after an exec (all its processes), RSS median", med(rss) / 1024, unit="MiB")
        self.row("idle session after an exec (all its processes), PSS median", med(pss) / 1024, unit="MiB")
        t = time.perf_counter()
        for sid in sids:
            self.end(sid)
        self.row(f"end {n} sessions, total", time.perf_counter() - t, unit="s")

    def python_live(self):
        if not shutil.which("python3"):
            return
        print("exec on live python3 and node sessions vs `true` on a bash session", flush=True)
        _, bash_sid = self.start()
        _, py_sid = self.start("python3")
        res = interleave([
            ("bash exec true", lambda: self.ds("exec", bash_sid, "true")[0]),
            ("python3 exec pass", lambda: self.ds("exec", py_sid, stdin=b"pass")[0]),
        ], 30 if self.quick else 200)
        b, p = med(res["bash exec true"]), med(res["python3 exec pass"])
        self.row("python3 exec pass, median", p, baseline=f"bash exec true {b:.2f} ms",
                 target="<= bash exec + 3 ms", met=p - b <= 3.0)
        self.end(bash_sid)
        self.end(py_sid)
        if shutil.which("node"):
            _, bash_sid = self.start()
            _, node_sid = self.start("node")
            res = interleave([
                ("bash exec true", lambda: self.ds("exec", bash_sid, "true")[0]),
                ("node exec 0", lambda: self.ds("exec", node_sid, stdin=b"0")[0]),
            ], 30 if self.quick else 200)
            b, n = med(res["bash exec true"]), med(res["node exec 0"])
            self.row("node exec 0, median", n, baseline=f"bash exec true {b:.2f} ms",
                     target="<= bash exec + 3 ms", met=n - b <= 3.0)
            self.end(bash_sid)
            self.end(node_sid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--quick", action="store_true", help="fewer runs, smaller scale (for a smoke test)")
    ap.add_argument("--only", help="comma-separated subset: exec,startend,list,rss,history,many,python")
    ap.add_argument("--json", help="also write the rows as JSON here")
    a = ap.parse_args()
    b = Bench(os.path.abspath(a.bin), a.quick)
    steps = {
        "exec": b.exec_latency, "startend": b.start_end, "list": b.list_10k, "rss": b.peak_rss,
        "history": b.history_growth, "many": b.many_sessions, "python": b.python_live,
    }
    only = a.only.split(",") if a.only else list(steps)
    try:
        for name in only:
            steps[name]()
    finally:
        b.cleanup()
    print()
    print(f"| measurement | value | baseline | target | met |")
    print(f"|---|---|---|---|---|")
    for what, value, unit, baseline, target, met in b.rows:
        print(f"| {what} | {value:.2f} {unit} | {baseline or ''} | {target or ''} | {'' if target is None else ('yes' if met else 'no')} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump([dict(zip(("what", "value", "unit", "baseline", "target", "met"), r)) for r in b.rows], f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
