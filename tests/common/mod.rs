//! Shared fixture for the black-box tests: runs the real `delta-sessions` binary
//! the way an agent does (arguments, command on stdin, JSON on stdout).
//!
//! `DELTA_SESSIONS_BIN` overrides the binary (scripts/test-unprivileged.sh copies
//! it somewhere uid 65534 can run it); `DELTA_TEST_TMP` overrides where scratch
//! directories are made (default: the system temp dir).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The kernel's Landlock ABI version (negative when it has none).
pub fn landlock_abi() -> i64 {
    // SAFETY: the version query (NULL attribute, size 0) reads and writes no memory.
    unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    }
}

/// The binary under test.
pub fn bin() -> PathBuf {
    match std::env::var_os("DELTA_SESSIONS_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_delta-sessions")),
    }
}

/// Where scratch directories are made.
pub fn scratch_base() -> PathBuf {
    match std::env::var_os("DELTA_TEST_TMP") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => std::env::temp_dir(),
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when `prog` is an executable file in one of the usual system directories.
pub fn have_program(prog: &str) -> bool {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(prog).is_file())
}

/// A number unique to this test process and call, usable as a `sleep` argument
/// (`sleep 4242.<unique>`) so a test can find exactly its own processes in /proc.
pub fn unique_sleep_arg() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("4242.{}{:03}{:04}", std::process::id(), n, nanos % 10_000)
}

/// Pids of host processes whose command line contains `marker`.
pub fn procs_with_marker(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let text: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
        if String::from_utf8_lossy(&text).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Polls `f` every 20 ms until it is true or `timeout` passes; returns its last value.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start time (field 22 of /proc/PID/stat) of a live process, if any.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    let state = fields.first()?;
    if *state == "Z" || *state == "X" {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// One entry of a directory snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Symlink { target: PathBuf },
    Other { kind: String, mode: u32 },
}

/// Everything below `root`: relative names, kinds, modes and file contents.
/// `None` when `root` does not exist.
pub fn snapshot(root: &Path) -> Option<BTreeMap<PathBuf, Entry>> {
    let md = std::fs::symlink_metadata(root).ok()?;
    let mut map = BTreeMap::new();
    map.insert(
        PathBuf::from("."),
        Entry::Dir {
            mode: md.permissions().mode(),
        },
    );
    walk(root, root, &mut map);
    Some(map)
}

fn walk(root: &Path, dir: &Path, map: &mut BTreeMap<PathBuf, Entry>) {
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("snapshot: read {dir:?}: {e}"));
    for e in rd {
        let e = e.unwrap();
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let md = std::fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let mode = md.permissions().mode();
        let entry = if ft.is_dir() {
            walk(root, &path, map);
            Entry::Dir { mode }
        } else if ft.is_file() {
            Entry::File {
                mode,
                content: std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("snapshot: read {path:?}: {e}")),
            }
        } else if ft.is_symlink() {
            Entry::Symlink {
                target: std::fs::read_link(&path).unwrap(),
            }
        } else {
            let kind = if ft.is_socket() {
                "socket"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "special"
            };
            Entry::Other {
                kind: kind.into(),
                mode,
            }
        };
        map.insert(rel, entry);
    }
}

/// Asserts two snapshots are equal, naming the first difference.
pub fn assert_same(
    before: &Option<BTreeMap<PathBuf, Entry>>,
    after: &Option<BTreeMap<PathBuf, Entry>>,
    what: &str,
) {
    match (before, after) {
        (None, None) => {}
        (Some(_), None) => panic!("{what}: the sessions dir disappeared"),
        (None, Some(a)) => panic!("{what}: the sessions dir was created: {:?}", a.keys()),
        (Some(b), Some(a)) => {
            for (k, v) in b {
                match a.get(k) {
                    None => panic!("{what}: {k:?} was removed"),
                    Some(w) if w != v => panic!(
                        "{what}: {k:?} changed:\nbefore: {}\nafter:  {}",
                        describe(v),
                        describe(w)
                    ),
                    _ => {}
                }
            }
            for k in a.keys() {
                assert!(b.contains_key(k), "{what}: {k:?} was created");
            }
        }
    }
}

fn describe(e: &Entry) -> String {
    match e {
        Entry::File { mode, content } => format!(
            "file mode {mode:o}: {:?}",
            String::from_utf8_lossy(&content[..content.len().min(400)])
        ),
        other => format!("{other:?}"),
    }
}

/// Result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    /// Exit status; -1 when killed by a signal.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim_end()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON value ({e}): {:?}\nstderr: {:?}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the shape of an error of delta-sessions itself: exit 1, nothing on
    /// stdout, exactly one line `Error: …` on stderr that contains every one of
    /// `needles` (case-insensitive). Returns the message.
    pub fn assert_error(&self, needles: &[&str]) -> String {
        assert_eq!(
            self.status, 1,
            "expected exit status 1; stdout {:?} stderr {:?}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "nothing on stdout for an error");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stderr must be exactly one line: {:?}",
            self.stderr
        );
        assert!(
            self.stderr.ends_with('\n'),
            "stderr line ends with a newline: {:?}",
            self.stderr
        );
        let line = lines[0];
        assert!(
            line.starts_with("Error: "),
            "stderr starts with `Error: `: {line:?}"
        );
        assert!(
            line.len() > "Error: ".len() + 5,
            "message is not empty: {line:?}"
        );
        let lower = line.to_lowercase();
        for n in needles {
            assert!(
                lower.contains(&n.to_lowercase()),
                "error message {line:?} should mention {n:?}"
            );
        }
        line.to_string()
    }
}

/// A holder process: (pid, start time in clock ticks).
pub type Holder = (i32, u64);

/// A fresh scratch directory with `work/` and the sessions dir `work/.sessions`.
/// Every session started through it is ended when it is dropped.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub work: PathBuf,
    pub sessions: PathBuf,
    started: Mutex<Vec<(String, Option<Holder>)>>,
    /// Every command runs as on a host that blocks user namespaces (see
    /// [`Sandbox::without_user_namespaces`]).
    no_user_namespaces: Option<std::sync::Arc<NoUserNamespaces>>,
}

/// Seccomp filters that make a host without user namespaces the way
/// Docker's default profile does: `unshare` and `clone` with
/// `CLONE_NEWUSER` fail with EPERM, and `clone3` (whose flags seccomp cannot
/// see) with ENOSYS, so that callers fall back to `clone`.
pub struct NoUserNamespaces {
    filters: Vec<Vec<libc::sock_filter>>,
}

impl NoUserNamespaces {
    pub fn new() -> Self {
        use seccompiler::{
            SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
            SeccompRule,
        };
        #[cfg(target_arch = "x86_64")]
        let arch = seccompiler::TargetArch::x86_64;
        #[cfg(target_arch = "aarch64")]
        let arch = seccompiler::TargetArch::aarch64;
        let newuser = libc::CLONE_NEWUSER as u64;
        let flag_rule = |arg| {
            SeccompRule::new(vec![SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(newuser),
                newuser,
            )
            .unwrap()])
            .unwrap()
        };
        let eperm = SeccompFilter::new(
            [
                (libc::SYS_unshare, vec![flag_rule(0)]),
                (libc::SYS_clone, vec![flag_rule(0)]),
            ]
            .into_iter()
            .collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .unwrap();
        let enosys = SeccompFilter::new(
            [(libc::SYS_clone3, vec![])].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .unwrap();
        let filters = [eperm, enosys]
            .into_iter()
            .map(|f| {
                let prog: seccompiler::BpfProgram = f.try_into().unwrap();
                prog.iter()
                    .map(|i| libc::sock_filter {
                        code: i.code,
                        jt: i.jt,
                        jf: i.jf,
                        k: i.k,
                    })
                    .collect()
            })
            .collect();
        NoUserNamespaces { filters }
    }

    /// Makes `c` run under the filters.
    pub fn apply(self: &std::sync::Arc<Self>, c: &mut Command) {
        use std::os::unix::process::CommandExt;
        let me = self.clone();
        // SAFETY: between fork and exec only prctl and seccomp are called,
        // on programs built before the fork (async-signal-safe).
        unsafe {
            c.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for f in &me.filters {
                    let prog = libc::sock_fprog {
                        len: f.len() as u16,
                        filter: f.as_ptr() as *mut libc::sock_filter,
                    };
                    if libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0,
                        &prog as *const libc::sock_fprog,
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

impl Default for NoUserNamespaces {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Self::made(None)
    }

    fn made(no_user_namespaces: Option<std::sync::Arc<NoUserNamespaces>>) -> Sandbox {
        let base = scratch_base();
        let dir = tempfile::Builder::new()
            .prefix("ds-test-")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("cannot make a temp dir in {base:?}: {e}"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // Canonical, so paths compare equal to what the binary reports.
        let root = dir.path().canonicalize().unwrap();
        let work = root.join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox {
            dir,
            work: work.clone(),
            sessions: work.join(".sessions"),
            started: Mutex::new(Vec::new()),
            no_user_namespaces,
        }
    }

    /// A sandbox whose every command runs as on a host that blocks user
    /// namespaces (a container under Docker's default seccomp profile).
    pub fn without_user_namespaces() -> Sandbox {
        Self::made(Some(std::sync::Arc::new(NoUserNamespaces::new())))
    }

    pub fn sessions_arg(&self) -> String {
        self.sessions.to_str().unwrap().to_string()
    }

    /// The binary with `--sessions-dir` set, run in the work dir, with a clean
    /// `DELTA_SESSIONS_DIR`.
    pub fn command(&self) -> Command {
        self.command_in(&self.sessions)
    }

    /// [`Sandbox::command`] with another sessions dir.
    pub fn command_in(&self, sessions: &Path) -> Command {
        let mut c = Command::new(bin());
        c.arg("--sessions-dir")
            .arg(sessions)
            .current_dir(&self.work)
            .env_remove("DELTA_SESSIONS_DIR");
        if let Some(filters) = &self.no_user_namespaces {
            filters.apply(&mut c);
        }
        c
    }

    /// Runs `delta-sessions --sessions-dir DIR ARGS…` with `stdin`.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut c = self.command();
        c.args(args);
        run_command(c, stdin)
    }

    /// Like `run` but with the raw `(status, stdout, stderr)`.
    pub fn run3(&self, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        let r = self.run(args, stdin);
        (r.status, r.stdout, r.stderr)
    }

    /// `start ARGS…`, asserting success; returns the whole JSON.
    pub fn start_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["start"];
        full.extend_from_slice(args);
        let r = self.run(&full, b"");
        assert_eq!(r.status, 0, "start {args:?} failed: {r:?}");
        let v = r.json();
        let id = v["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no session_id in {v}"))
            .to_string();
        let holder = self.holder(&id);
        self.started.lock().unwrap().push((id, holder));
        v
    }

    /// `start ARGS…`, asserting success; returns the session id.
    pub fn start(&self, args: &[&str]) -> String {
        self.start_json(args)["session_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `exec ID` with the command on stdin; returns the JSON result and checks
    /// that the exit status equals its exit_code.
    pub fn exec(&self, id: &str, stdin: &str) -> Value {
        self.exec_with(id, &[], stdin).1
    }

    /// `exec ID EXTRA…` with the command on stdin; returns (status, JSON).
    pub fn exec_with(&self, id: &str, extra: &[&str], stdin: &str) -> (i32, Value) {
        let mut args = vec!["exec", id];
        args.extend_from_slice(extra);
        let r = self.run(&args, stdin.as_bytes());
        assert!(
            r.stdout.trim_end().starts_with('{'),
            "exec {stdin:?} printed no JSON: {r:?}"
        );
        let v = r.json();
        let code = v["exit_code"]
            .as_i64()
            .unwrap_or_else(|| panic!("exit_code missing in {v}"));
        assert_eq!(
            r.status as i64,
            code.clamp(0, 255),
            "process exit status equals exit_code: {v}"
        );
        (r.status, v)
    }

    /// Kills the session's holder with SIGKILL (as a crash or a reboot would)
    /// and waits until it is gone. Returns its pid and start time.
    pub fn kill_holder(&self, id: &str) -> (i32, u64) {
        let (pid, st) = self.holder(id).expect("a holder is recorded");
        assert_eq!(proc_start_time(pid), Some(st), "holder {pid} runs");
        // SAFETY: plain kill(2) of the session's holder.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        assert!(
            wait_until(Duration::from_secs(5), || proc_start_time(pid) != Some(st)),
            "holder died"
        );
        (pid, st)
    }

    /// Starts `exec ID` with `command` on its stdin (then closed) and
    /// returns the running caller, for tests that kill it mid-run.
    pub fn spawn_exec(&self, id: &str, command: &str) -> std::process::Child {
        let mut c = self.command();
        c.args(["exec", id])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("spawn exec");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(command.as_bytes())
            .expect("write the command");
        child
    }

    pub fn end(&self, id: &str) -> Run {
        self.run(&["end", id], b"")
    }

    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.sessions.join(id)
    }

    pub fn read_json(&self, id: &str, file: &str) -> Value {
        let p = self.session_dir(id).join(file);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p:?} is not JSON ({e}): {text}"))
    }

    pub fn metadata(&self, id: &str) -> Value {
        self.read_json(id, "metadata.json")
    }

    /// The lines of history.log, each parsed (panics on a line that is not JSON).
    pub fn history(&self, id: &str) -> Vec<Value> {
        let p = self.session_dir(id).join("history.log");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p:?}: {e}"));
        text.lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("history line is not JSON ({e}): {l:?}"))
            })
            .collect()
    }

    /// (pid, start_time) of the session's holder from metadata.json, if readable.
    pub fn holder(&self, id: &str) -> Option<(i32, u64)> {
        let text = std::fs::read_to_string(self.session_dir(id).join("metadata.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        Some((
            v["holder"]["pid"].as_i64()? as i32,
            v["holder"]["start_time"].as_u64()?,
        ))
    }

    pub fn snapshot(&self) -> Option<BTreeMap<PathBuf, Entry>> {
        snapshot(&self.sessions)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let started = std::mem::take(&mut *self.started.lock().unwrap_or_else(|e| e.into_inner()));
        for (id, first_holder) in started {
            // The holder may have been replaced (jail restart): ask metadata first.
            let now_holder = self.holder(&id);
            // Never panic here: a panic while a failed test unwinds aborts
            // the run before the holders below are killed (a fork bomb that
            // exhausts the host's processes makes spawning fail).
            let mut end = self.command();
            end.args(["end", &id]).stdin(Stdio::null());
            let _ = end.output();
            // When `end` could not do it (a test corrupted metadata.json and
            // failed before restoring it), kill the holder we know of, but
            // only if it is still the same process.
            for (pid, st) in [first_holder, now_holder].into_iter().flatten() {
                if proc_start_time(pid) == Some(st) {
                    // SAFETY: plain kill(2).
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        // Last line of defence: any holder still running for a session of this
        // sandbox (its command line names the session id) is a leak.
        let ids: Vec<String> = std::fs::read_dir(&self.sessions)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with("sess_"))
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            let marker = format!("__holder {id}");
            for pid in procs_with_marker(&marker) {
                eprintln!("warning: holder {pid} ({marker}) outlived its test; killing it");
                // SAFETY: plain kill(2) of a holder of our own sandbox's session.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// Runs a prepared command, feeding `stdin` from a thread (the binary may stop
/// reading early, e.g. on a huge command) and collecting its output.
pub fn run_command(mut c: Command, stdin: &[u8]) -> Run {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", bin()));
    let mut pipe = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
        // pipe dropped: EOF
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The PID namespace of a host process (`pid:[…]`), if it can be read.
pub fn pid_namespace(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Asserts that host process `pid` does not run in the test's own PID namespace
/// (it was started inside a jail). Unreadable namespaces (another user's
/// process) are accepted.
pub fn assert_not_in_host_pid_ns(pid: i32) {
    if let (Some(theirs), Some(ours)) =
        (pid_namespace(pid), pid_namespace(std::process::id() as i32))
    {
        assert_ne!(
            theirs, ours,
            "process {pid} runs in the host's PID namespace (not jailed)"
        );
    }
}
