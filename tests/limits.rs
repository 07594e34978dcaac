//! Resource limits, black-box: for each limit of a profile, a command that
//! breaks it under a tight user profile, and a check from the host that it was
//! stopped and that the host and the session are still usable afterwards.

mod common;

use common::*;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A sandbox and a session started with a user profile holding `limits`
/// (TOML lines of the `[limits]` table; every other key keeps its default).
fn session_with_limits(limits: &str) -> (Sandbox, String) {
    let sb = Sandbox::new();
    let file = profile_file(&sb, "tight.toml", &format!("[limits]\n{limits}\n"));
    let id = sb.start(&["--profile", file.to_str().unwrap()]);
    (sb, id)
}

fn profile_file(sb: &Sandbox, name: &str, text: &str) -> PathBuf {
    let path = sb.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Refuses to go on unless the session's commands really have the process
/// limit: a fork bomb without it takes the whole machine down, not only the
/// test.
fn assert_process_limit(sb: &Sandbox, id: &str, limit: u32) {
    let v = sb.exec(id, "ulimit -u");
    assert_eq!(
        v["stdout"],
        format!("{limit}\n"),
        "the process limit is not in force; not starting the fork bomb: {v}"
    );
}

/// The session still runs ordinary commands, including ones that fork.
fn assert_usable(sb: &Sandbox, id: &str) {
    let v = sb.exec(
        id,
        "echo alive; /bin/echo forked; ls / >/dev/null && echo listed",
    );
    assert_eq!(v["stdout"], "alive\nforked\nlisted\n", "{v}");
    assert_eq!(v["exit_code"], 0, "{v}");
}

#[test]
fn timeout_kills_every_process_of_the_exec_even_setsid_and_term_ignoring() {
    let (sb, id) = session_with_limits("timeout = \"1s\"\nkill_grace = \"500ms\"");
    let [detached, stubborn, plain] = [unique_sleep_arg(), unique_sleep_arg(), unique_sleep_arg()];
    let t = Instant::now();
    let (status, v) = sb.exec_with(
        &id,
        &[],
        &format!(
            "echo started\n\
             setsid sleep {detached} &\n\
             (trap '' TERM; exec sleep {stubborn}) &\n\
             sleep {plain}\n"
        ),
    );
    assert_eq!(status, 124, "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(
        v["stdout"], "started\n",
        "output before the timeout is kept: {v}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    for arg in [&detached, &stubborn, &plain] {
        assert!(
            wait_until(Duration::from_secs(5), || procs_with_marker(arg).is_empty()),
            "sleep {arg} survived the timeout"
        );
    }
    assert_usable(&sb, &id);
}

#[test]
fn cpu_limit_stops_a_busy_loop() {
    let (sb, id) = session_with_limits("cpu = \"1s\"\ntimeout = \"2m\"");
    let (_, v) = sb.exec_with(&id, &[], "while :; do :; done");
    assert_eq!(
        v["timed_out"], false,
        "stopped by the CPU limit, not the clock: {v}"
    );
    // SIGXCPU at the soft limit (exit 128+24); SIGKILL at the hard one.
    let code = v["exit_code"].as_i64().unwrap();
    assert!(code == 152 || code == 137, "{v}");
    assert!(
        v["signal"] == "SIGXCPU" || v["signal"] == "SIGKILL",
        "the signal is reported: {v}"
    );
    assert_usable(&sb, &id);
}

#[test]
fn memory_limit_refuses_a_6_gib_allocation() {
    let (sb, id) = session_with_limits("memory = \"512MiB\"");
    if have_program("python3") {
        let v = sb.exec(
            &id,
            "python3 -c 'b = bytearray(100 * 1024 * 1024); print(\"100 MiB ok\"); \
             b2 = bytearray(6 * 1024**3); print(\"6 GiB ok\")'",
        );
        assert_eq!(v["stdout"], "100 MiB ok\n", "{v}");
        assert!(v["stderr"].as_str().unwrap().contains("MemoryError"), "{v}");
        assert_eq!(v["exit_code"], 1, "{v}");
    }
    // Without python: bash itself runs out of memory building a 6 GiB string.
    let v = sb.exec(
        &id,
        "x=$(head -c 6G /dev/zero | tr '\\0' a); echo survived ${#x}",
    );
    assert_ne!(v["stdout"], format!("survived {}\n", 6u64 << 30), "{v}");
    assert_ne!(v["exit_code"], 0, "{v}");
    assert_eq!(v["timed_out"], false, "{v}");
    assert_usable(&sb, &id);
}

#[test]
fn file_size_limit_stops_a_300_mb_file() {
    let (sb, id) = session_with_limits("file_size = \"100MiB\"");
    let v = sb.exec(&id, "head -c 300M /dev/zero > big; echo status=$?");
    // head is killed by SIGXFSZ (128+25) at the limit.
    assert_eq!(v["stdout"], "status=153\n", "{v}");
    let len = std::fs::metadata(sb.work.join("big")).unwrap().len();
    assert_eq!(len, 100 << 20, "the file stops at the limit");
    // A program that ignores SIGXFSZ gets EFBIG instead.
    let v = sb.exec(
        &id,
        "trap '' XFSZ; head -c 300M /dev/zero > big2; echo status=$?",
    );
    assert_eq!(v["stdout"], "status=1\n", "{v}");
    assert!(
        v["stderr"].as_str().unwrap().contains("File too large"),
        "{v}"
    );
    assert_eq!(
        std::fs::metadata(sb.work.join("big2")).unwrap().len(),
        100 << 20
    );
    assert_usable(&sb, &id);
}

#[test]
fn open_files_limit() {
    let (sb, id) = session_with_limits("open_files = 32");
    let v = sb.exec(
        &id,
        "for i in $(seq 3 60); do eval \"exec $i</dev/null\" || { echo stopped at $i; break; }; done",
    );
    assert_eq!(v["stdout"], "stopped at 32\n", "{v}");
    assert_usable(&sb, &id);
}

#[test]
fn core_dumps_are_off() {
    let sb = Sandbox::new();
    // Start from a caller that allows core dumps, so that only the profile
    // can turn them off.
    let mut c = sb.command();
    c.args(["start"]);
    // SAFETY: the closure only calls getrlimit/setrlimit (async-signal-safe).
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            let mut lim: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_CORE, &mut lim);
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_CORE, &lim);
            Ok(())
        });
    }
    let r = run_command(c, b"");
    assert_eq!(r.status, 0, "{r:?}");
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    let v = sb.exec(&id, "ulimit -c; ulimit -Hc; sh -c 'kill -SEGV $$'; ls");
    assert_eq!(v["stdout"], "0\n0\n", "no core file appears: {v}");
    assert_eq!(sb.end(&id).status, 0);
}

#[test]
fn process_limit_caps_the_number_of_processes() {
    if !have_program("python3") {
        eprintln!("skipped: needs python3 (bash retries a failed fork for 15 s)");
        return;
    }
    let (sb, id) = session_with_limits("processes = 24");
    assert_process_limit(&sb, &id, 24);
    let arg = unique_sleep_arg();
    let script = format!(
        "import os\n\
         n = 0\n\
         try:\n\
         \x20   while n < 100:\n\
         \x20       if os.fork() == 0:\n\
         \x20           os.execvp('sleep', ['sleep', '{arg}'])\n\
         \x20       n += 1\n\
         except BlockingIOError as e:\n\
         \x20   print('refused after', n, e.strerror)\n"
    );
    std::fs::write(sb.work.join("forks.py"), script).unwrap();
    let v = sb.exec(&id, "python3 forks.py");
    let out = v["stdout"].as_str().unwrap();
    assert!(
        out.starts_with("refused after") && out.contains("Resource temporarily unavailable"),
        "{v}"
    );
    let running = procs_with_marker(&arg).len();
    assert!(running > 0 && running < 24, "{running} sleeps run");
    assert_usable(&sb, &id);
    assert_eq!(sb.end(&id).status, 0);
    assert!(wait_until(Duration::from_secs(5), || procs_with_marker(
        &arg
    )
    .is_empty()));
}

#[test]
fn fork_bomb_ends_with_the_timeout_and_leaves_host_and_session_usable() {
    let (sb, id) = session_with_limits("processes = 64\ntimeout = \"3s\"\nkill_grace = \"200ms\"");
    let other = sb.start(&[]);
    assert_process_limit(&sb, &id, 64);
    let (status, v) = sb.exec_with(&id, &[], "bomb() { bomb | bomb & }; bomb; sleep 60");
    assert_eq!(status, 124, "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    // The host can still start processes, and so can both sessions.
    let out = std::process::Command::new("/bin/true").status().unwrap();
    assert!(out.success());
    assert_usable(&sb, &other);
    assert_usable(&sb, &id);
}

#[test]
fn detached_fork_bomb_stays_inside_the_session_and_ends_with_it() {
    let (sb, id) = session_with_limits("processes = 64\ntimeout = \"5s\"");
    let other = sb.start(&[]);
    assert_process_limit(&sb, &id, 64);
    // The bomb detaches: the exec itself returns, the bomb keeps running.
    let v = sb.exec(&id, ":(){ :|:& };:");
    assert_eq!(v["timed_out"], false, "{v}");
    let holder = sb.holder(&id).unwrap().0;
    std::thread::sleep(Duration::from_millis(500));
    // Host and the other session are untouched.
    assert!(std::process::Command::new("/bin/true")
        .status()
        .unwrap()
        .success());
    assert_usable(&sb, &other);
    // end stops the bomb with the session.
    let t = Instant::now();
    assert_eq!(sb.end(&id).status, 0);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "end took {:?}",
        t.elapsed()
    );
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::metadata(format!("/proc/{holder}")).is_err()
    }));
}

/// Runs the binary like `run_command`, returning its peak RSS in KiB too.
// The child is reaped by wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measuring_rss(mut c: std::process::Command, stdin: &[u8]) -> (Run, i64) {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let mut stderr = Vec::new();
    err.read_to_end(&mut stderr).unwrap();
    let stdout = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waits for our own child, which nothing else reaps.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid);
    let status = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let run = Run {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    (run, usage.ru_maxrss)
}

#[test]
fn a_50_mb_print_is_capped_head_and_tail_with_small_memory() {
    let (sb, id) = session_with_limits("output = \"1MiB\"");
    let mut c = sb.command();
    c.args(["exec", &id]);
    let script = "head -c 25000000 /dev/zero | tr '\\0' a; echo; echo END; \
                  head -c 5000000 /dev/zero | tr '\\0' e >&2";
    let (r, peak_kib) = run_measuring_rss(c, script.as_bytes());
    assert_eq!(r.status, 0, "{}", r.stderr);
    let v = r.json();
    let stdout = v["stdout"].as_str().unwrap();
    let stderr = v["stderr"].as_str().unwrap();
    assert_eq!(v["truncated"], true);
    assert!(stdout.starts_with("aaaa"), "head kept");
    assert!(stdout.ends_with("aaaa\nEND\n"), "tail kept");
    assert!(
        stdout.len() < (1 << 20) + 200,
        "{} bytes kept",
        stdout.len()
    );
    let dropped = v["stdout_dropped_bytes"].as_u64().unwrap();
    assert_eq!(
        dropped + (1 << 20),
        25_000_000 + 5,
        "every byte is either kept or counted as dropped"
    );
    assert!(
        stdout.contains(&dropped.to_string()),
        "a marker line says how many bytes were dropped"
    );
    assert!(stderr.starts_with("eeee") && stderr.ends_with("eeee"));
    assert_eq!(v["stderr_dropped_bytes"], 5_000_000 - (1 << 20));
    assert!(peak_kib < 16 * 1024, "peak RSS {peak_kib} KiB");
    assert_usable(&sb, &id);
}

#[test]
fn bad_profile_files_are_refused_with_file_key_and_reason() {
    let sb = Sandbox::new();
    let cases: &[(&str, &[&str])] = &[
        ("limits = [", &["line 1"]),
        ("bogus = 1", &["bogus"]),
        ("[limits]\nmemroy = \"1GiB\"", &["memroy"]),
        ("[filesystem]\nextra = []", &["extra"]),
        ("network = \"wifi\"", &["network", "wifi"]),
        ("isolation = \"maybe\"", &["isolation", "maybe"]),
        ("[limits]\nmemory = \"lots\"", &["limits.memory", "lots"]),
        ("[limits]\nmemory = -5", &["limits.memory"]),
        ("[limits]\ntimeout = \"0s\"", &["limits.timeout"]),
        ("[limits]\ntimeout = \"1 fortnight\"", &["limits.timeout"]),
        ("[limits]\nprocesses = 0", &["limits.processes"]),
        ("[limits]\nopen_files = \"many\"", &["limits.open_files"]),
        ("[limits]\noutput = \"0B\"", &["limits.output"]),
        ("[filesystem]\nwork_dir = \"rwx\"", &["filesystem.work_dir"]),
        (
            "[filesystem]\nread_only = [\"relative/dir\"]",
            &["filesystem.read_only"],
        ),
        (
            "[filesystem]\nread_write = \"/srv\"",
            &["filesystem.read_write"],
        ),
        ("[env]\nset = { \"A=B\" = \"x\" }", &["env.set"]),
        ("[env]\npass = [\"\"]", &["env.pass"]),
        ("hostname = \"not a hostname!\"", &["hostname"]),
        ("description = 5", &["description"]),
    ];
    for (text, needles) in cases {
        let file = profile_file(&sb, "bad.toml", text);
        let f = file.to_str().unwrap();
        let before = sb.snapshot();
        let mut all = vec!["bad.toml"];
        all.extend_from_slice(needles);
        let r = sb.run(&["start", "--profile", f], b"");
        let msg = r.assert_error(&all);
        assert_same(&before, &sb.snapshot(), &format!("start with {text:?}"));
        sb.run(&["profiles", "show", f], b"").assert_error(&all);
        eprintln!("{text:?} -> {msg}");
    }
    let missing = sb.dir.path().join("missing.toml");
    sb.run(&["start", "--profile", missing.to_str().unwrap()], b"")
        .assert_error(&["missing.toml"]);
    sb.run(
        &["start", "--profile", sb.dir.path().to_str().unwrap()],
        b"",
    )
    .assert_error(&["directory"]);
}

#[test]
fn profile_binds_must_exist_at_start() {
    let sb = Sandbox::new();
    let file = profile_file(
        &sb,
        "binds.toml",
        "[filesystem]\nread_only = [\"/nonexistent/delta-sessions-test\"]\n",
    );
    let before = sb.snapshot();
    sb.run(&["start", "--profile", file.to_str().unwrap()], b"")
        .assert_error(&["/nonexistent/delta-sessions-test"]);
    assert_same(&before, &sb.snapshot(), "start with a missing bind");
}

#[test]
fn profile_settings_reach_the_jail() {
    let sb = Sandbox::new();
    let extra = sb.dir.path().join("extra-ro");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(extra.join("data"), "shared data\n").unwrap();
    let masked = sb.work.join("private");
    std::fs::create_dir(&masked).unwrap();
    std::fs::write(masked.join("key"), "s3cret\n").unwrap();
    let file = profile_file(
        &sb,
        "settings.toml",
        &format!(
            "hostname = \"builder\"\n\
             [filesystem]\nread_only = [\"{}\"]\nmasked = [\"{}\"]\n\
             [env]\nset = {{ GREETING = \"hello\" }}\npass = [\"DS_TEST_PASSED\"]\n",
            extra.display(),
            masked.display()
        ),
    );
    let mut c = sb.command();
    c.args(["start", "--profile", file.to_str().unwrap()])
        .env("DS_TEST_PASSED", "through")
        .env("DS_TEST_NOT_PASSED", "leak");
    let r = run_command(c, b"");
    assert_eq!(r.status, 0, "{r:?}");
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    let v = sb.exec(
        &id,
        &format!(
            "hostname; echo $GREETING $DS_TEST_PASSED ${{DS_TEST_NOT_PASSED-unset}}; \
             cat {0}/data; echo x > {0}/new 2>/dev/null || echo ro; \
             cat {1}/key 2>/dev/null || echo masked",
            extra.display(),
            masked.display()
        ),
    );
    assert_eq!(
        v["stdout"], "builder\nhello through unset\nshared data\nro\nmasked\n",
        "{v}"
    );
    assert!(!extra.join("new").exists());
    assert_eq!(sb.end(&id).status, 0);
}

/// Whether this test process could make a memory cgroup below its own, the
/// way `start` does; then every session must get one.
fn host_gives_memory_cgroups() -> bool {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let probe = |dir: PathBuf| {
        let d = dir.join(format!("ds-test-probe-{}", std::process::id()));
        let ok = std::fs::create_dir(&d).is_ok();
        let _ = std::fs::remove_dir(&d);
        ok
    };
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next(), parts.next(), parts.next());
        let (Some(list), Some(path)) = (list, path) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if list.split(',').any(|c| c == "memory") {
            return probe(PathBuf::from("/sys/fs/cgroup/memory").join(path));
        }
        if list.is_empty()
            && std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            return probe(PathBuf::from("/sys/fs/cgroup").join(path));
        }
    }
    false
}

#[test]
fn session_memory_is_limited_as_a_whole_where_cgroups_allow() {
    let (sb, id) = session_with_limits("memory = \"300MiB\"");
    let cgroups = sb.metadata(&id)["holder"]["cgroups"].clone();
    if !host_gives_memory_cgroups() {
        eprintln!("skipped: this host gives us no memory cgroup (rlimits only)");
        return;
    }
    assert!(
        cgroups.as_array().is_some_and(|a| !a.is_empty()),
        "the host allows cgroups but the session has none: {cgroups}"
    );
    if !have_program("python3") {
        eprintln!("skipped: needs python3");
        return;
    }
    // Three processes of 160 MiB each: every one is within the per-process
    // limit, together they are not.
    let hog = "python3 -c 'import time; b = bytearray(160 << 20); time.sleep(3); print(\"kept\")'";
    let v = sb.exec(&id, &format!("for i in 1 2 3; do {hog} & done; wait"));
    let kept = v["stdout"].as_str().unwrap().matches("kept").count();
    assert!(
        kept < 3,
        "all three hogs kept 480 MiB in a 300 MiB session: {v}"
    );
    assert_usable(&sb, &id);
    assert_eq!(sb.end(&id).status, 0);
    for dir in cgroups.as_array().unwrap() {
        let dir = PathBuf::from(dir.as_str().unwrap());
        assert!(!dir.exists(), "{} outlived the session", dir.display());
    }
}

#[test]
fn limits_hold_in_pre_started_shells_and_in_shells_started_for_the_exec() {
    // An exec runs either in the shell pre-started for it or in one it starts
    // itself (`--raw`, or a session exporting BASH_ENV): both must carry the
    // profile's limits, or a check in one exec says nothing of the next.
    let (sb, id) = session_with_limits("open_files = 32\nprocesses = 50");
    let probe = "ulimit -n; ulimit -u";
    let expected = "32\n50\n";
    for round in 0..2 {
        let v = sb.exec(&id, probe);
        assert_eq!(v["stdout"], expected, "captured exec, round {round}: {v}");
        let r = sb.run(&["exec", &id, "--raw"], probe.as_bytes());
        assert_eq!(r.stdout, expected, "--raw exec, round {round}: {r:?}");
    }
    sb.exec(&id, "export BASH_ENV=/dev/null");
    for round in 0..2 {
        let v = sb.exec(&id, probe);
        assert_eq!(
            v["stdout"], expected,
            "BASH_ENV session, round {round}: {v}"
        );
    }
    sb.end(&id);
}

/// Issue 11 item 7: `/tmp` and `$HOME` share one budget (`limits.disk`), a
/// write past it fails with ENOSPC inside the session, nothing of it reaches
/// the sessions dir's filesystem, and the session and its neighbours go on.
#[test]
fn disk_budget_bounds_tmp_and_home_together() {
    let sb = Sandbox::new();
    let file = profile_file(&sb, "small.toml", "[limits]\ndisk = \"16MiB\"\n");
    let id = sb.start(&["--profile", file.to_str().unwrap()]);
    let other = sb.start(&[]);

    let v = sb.exec(&id, "head -c 12M /dev/zero > /tmp/a && echo wrote");
    assert_eq!(v["stdout"], "wrote\n", "{v}");
    let v = sb.exec(&id, "head -c 12M /dev/zero > ~/b; echo rc=$?");
    assert_eq!(v["stdout"], "rc=1\n", "$HOME is not in /tmp's budget: {v}");
    assert!(
        v["stderr"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{v}"
    );
    // Files are bounded too, not only bytes: each costs kernel memory.
    let v = sb.exec(
        &id,
        "rm -f ~/b; for i in $(seq 6000); do : > /tmp/f$i || break; done 2>/dev/null; echo $i",
    );
    let made: u32 = v["stdout"].as_str().unwrap().trim().parse().unwrap();
    assert!(made < 6000, "no bound on the number of files: {v}");

    // Nothing of it is on the host disk, in the session's record.
    let on_disk = std::process::Command::new("du")
        .args(["-sk", sb.session_dir(&id).to_str().unwrap()])
        .output()
        .unwrap();
    let kib: u64 = String::from_utf8_lossy(&on_disk.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(kib < 1024, "{kib} KiB of the private dirs on the host disk");

    // The session that hit its budget and its neighbour both go on.
    let v = sb.exec(&id, "rm -f /tmp/f*; ls /tmp/a; echo fine > ~/c && cat ~/c");
    assert_eq!(v["stdout"], "/tmp/a\nfine\n", "{v}");
    let v = sb.exec(&other, "head -c 12M /dev/zero > /tmp/x && echo other");
    assert_eq!(v["stdout"], "other\n", "{v}");
    assert_eq!(
        sb.exec(&other, "df -k /tmp | tail -1 | awk '{print $2}'")["stdout"],
        "1048576\n",
        "default's budget is 1GiB"
    );

    // A rebuilt jail has a new, empty tmpfs, and the exec says so.
    sb.kill_holder(&id);
    let v = sb.exec(&id, "ls /tmp/a ~/c; ls -A ~; echo done");
    assert_eq!(v["jail_restarted"], true, "{v}");
    assert_eq!(v["stdout"], "done\n", "{v}");
    assert!(
        v["warning"].as_str().unwrap_or("").contains("limits.disk"),
        "{v}"
    );
    assert_eq!(sb.end(&id).status, 0);
    assert_eq!(sb.end(&other).status, 0);
}
