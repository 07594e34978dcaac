//! Pre-started bash shells: the next exec's `bash` is already running when
//! the exec arrives.
//!
//! Most of an exec's cost on a bash session is starting bash. So when a bash
//! exec ends normally, its worker asks the holder to pre-start the next one
//! ([`HolderAsk::Prestart`], sent before the caller learns the result, so the
//! holder always has it before the next exec connects). The holder forks an
//! *idle worker*, which computes the state the next exec will start from —
//! with the same function `exec` uses to save it
//! ([`next_bash_start`](crate::exec::shell::next_bash_start)) — and starts
//! bash in it: environment, cwd, limits, functions and aliases restored, then
//! blocked on a pipe. The holder hands the next exec's connection to that
//! worker instead of forking a new one.
//!
//! The pre-started shell runs the command only if it is exactly what a fresh
//! shell would be: the request's argv, environment, cwd and prelude equal the
//! ones it was started with, its cwd is still the same directory (not one
//! deleted and made again under the same name), and it is alive. Otherwise the
//! worker kills it and starts bash as usual. `--raw` execs (whose output goes
//! straight to the caller's descriptors) and sessions that set `BASH_ENV` or
//! `ENV` (a file bash reads when it starts, which may change between execs)
//! never use one.
//!
//! The idle worker is forked by the holder, not by the previous worker, so it
//! is not an ancestor of the processes earlier execs left running: a timeout
//! kills only what this exec started, as with a fresh worker.
//!
//! What it costs: one idle worker (a fork of the holder) and one idle bash per
//! bash session between execs.

use super::protocol::{self, HolderAsk, HolderReply, SpawnRequest, WorkerEvent};
use super::{memfd, rlimits, worker};
use crate::exec::shell::{self, BASH_PRESTARTED_WRAPPER, BASH_WRAPPER};
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The largest state report or prelude the idle worker reads.
const MAX_STATE: u64 = 64 << 20;
/// The largest command it copies (`exec` refuses longer ones).
const MAX_COMMAND: u64 = crate::exec::input::MAX_COMMAND_BYTES as u64;

/// Descriptor positions of a bash request (see [`exec::shell`](crate::exec::shell)).
const REPORT: usize = 3;
const COMMAND: usize = 4;
const PRELUDE: usize = 5;

/// Whether `req` is a bash exec that may run in a pre-started shell and
/// leave one for the next exec.
pub fn eligible(req: &SpawnRequest) -> bool {
    req.prestart
        && !req.interpreter
        && req.argv.len() == 4
        && req.argv[1] == "-c"
        && req.argv[2] == BASH_WRAPPER
        && !req.env.iter().any(|e| {
            let name = e.split('=').next().unwrap_or_default();
            STARTUP_ONLY.contains(&name)
        })
}

/// Variables that make bash do things when it starts that a pre-started
/// shell would do too early or differently: read a file (`BASH_ENV`, `ENV`),
/// trace or print its own start-up (`SHELLOPTS`, `BASHOPTS` with `xtrace` or
/// `verbose`, `BASH_XTRACEFD`).
const STARTUP_ONLY: &[&str] = &["BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "BASH_XTRACEFD"];

/// What the next pre-started shell is made from: the prelude and the state
/// report of the exec that just ended.
pub struct Carry {
    prelude: OwnedFd,
    report: OwnedFd,
}

impl Carry {
    /// The descriptors of a `prestart_only` request: its prelude and report.
    pub fn from_prestart_only(req: &SpawnRequest, fds: Vec<OwnedFd>) -> Option<Carry> {
        let [prelude, report]: [OwnedFd; 2] = fds.try_into().ok()?;
        (req.prestart_only && eligible(req)).then_some(Carry { prelude, report })
    }

    /// Takes the prelude and report memfds out of a bash request's
    /// descriptors (the command's copies stay with the command).
    pub fn from_request(req: &SpawnRequest, fds: &mut Vec<OwnedFd>) -> Option<Carry> {
        if !eligible(req) || fds.len() <= PRELUDE {
            return None;
        }
        let prelude = fds.remove(PRELUDE);
        let report = fds.remove(REPORT);
        Some(Carry { prelude, report })
    }

    /// Asks the holder to pre-start the shell of the exec after `req`.
    pub fn send(self, holder: &UnixStream, req: &SpawnRequest) {
        let ask = HolderAsk::Prestart {
            request: req.clone(),
        };
        if let Ok(body) = serde_json::to_vec(&ask) {
            let fds = [self.prelude.as_raw_fd(), self.report.as_raw_fd()];
            // Without it the next exec simply starts its own shell.
            let _ = protocol::send_frame(holder, &body, &fds);
        }
    }
}

/// A bash started for the next exec, blocked until it gets the command.
pub struct Prestarted {
    pid: Pid,
    /// Set once it has been reaped (it died before it was needed).
    exited: bool,
    /// What it was started with; the exec's request must say the same.
    argv: Vec<String>,
    env: Vec<String>,
    cwd: PathBuf,
    prelude_text: String,
    /// Device and inode of `cwd` when it started.
    cwd_id: (u64, u64),
    /// Whether `OLDPWD` named a directory when it started: bash unsets an
    /// inherited `OLDPWD` that does not.
    oldpwd_is_dir: bool,
    /// The bash it runs (found on the session's `PATH`), and its device and inode.
    program: PathBuf,
    program_id: (u64, u64),
    /// Write end of its fd 6: a line starts the command, EOF ends the shell.
    go: OwnedFd,
    /// Its fd 4, where the command text goes.
    command: File,
    /// Read ends of its stdout and stderr, for the caller.
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// Its fd 3 (the state report) and fd 5 (the prelude), for the caller and
    /// for the shell after it.
    report: File,
    prelude: File,
}

impl Prestarted {
    /// Whether this shell can run `req` exactly as a fresh shell would.
    pub fn fits(&mut self, req: &SpawnRequest, fds: &[OwnedFd]) -> bool {
        eligible(req)
            && fds.len() > PRELUDE
            && req.argv == self.argv
            && req.env == self.env
            && req.cwd == self.cwd
            && read_at_most(&fds[PRELUDE], MAX_STATE).as_deref()
                == Some(self.prelude_text.as_bytes())
            && self.enters(&req.cwd)
            && oldpwd_is_dir(&req.env, &req.cwd) == self.oldpwd_is_dir
            && worker::resolve_program(req).ok().as_deref() == Some(self.program.as_path())
            && file_id(&self.program) == Some(self.program_id)
            && self.alive()
    }

    /// Whether a fresh shell would run in the same directory: `cwd` can be
    /// entered now (the worker enters it as the shell would) and is the
    /// directory the shell is in. The worker goes back to its own cwd after,
    /// so that relative `PATH` entries resolve as for any worker.
    fn enters(&self, cwd: &Path) -> bool {
        let here = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let Ok(back) = nix::fcntl::open(".", here, nix::sys::stat::Mode::empty()) else {
            return false;
        };
        // SAFETY: `open` just returned this descriptor; nothing else owns it.
        let back = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(back) };
        let same = nix::unistd::chdir(cwd).is_ok() && file_id(Path::new(".")) == Some(self.cwd_id);
        nix::unistd::fchdir(back.as_raw_fd()).is_ok() && same
    }

    fn alive(&mut self) -> bool {
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => true,
            _ => {
                self.exited = true;
                false
            }
        }
    }

    /// Hands the shell the command in `fds[4]` and tells the caller where
    /// its output and report are. Returns the shell's pid and what the shell
    /// after it is made from. On `Err(Some(self))` nothing has started and
    /// the caller may run the command another way.
    pub fn launch(
        mut self,
        conn: &UnixStream,
        fds: &[OwnedFd],
    ) -> Result<(Pid, Carry), Option<Box<Prestarted>>> {
        let Some(text) = read_at_most(&fds[COMMAND], MAX_COMMAND) else {
            return Err(Some(Box::new(self)));
        };
        // The length is set too, so that nothing written to the memfd
        // before (it is the shell's fd 4) can trail the command.
        if self.command.write_all(&text).is_err()
            || self.command.set_len(text.len() as u64).is_err()
            || nix::unistd::write(&self.go, b"\n") != Ok(1)
        {
            return Err(Some(Box::new(self)));
        }
        let started = WorkerEvent::Started {
            pid: self.pid.as_raw(),
            cwd_reset: false,
            prestarted: true,
        };
        let sent = serde_json::to_vec(&started).ok().and_then(|body| {
            let attached = [
                self.stdout.as_raw_fd(),
                self.stderr.as_raw_fd(),
                self.report.as_raw_fd(),
            ];
            protocol::send_frame(conn, &body, &attached).ok()
        });
        if sent.is_none() {
            // The caller is gone: nobody wants this command's result.
            self.discard();
            return Err(None);
        }
        Ok((
            self.pid,
            Carry {
                prelude: self.prelude.into(),
                report: self.report.into(),
            },
        ))
    }

    /// Ends the shell unused and waits for it.
    pub fn discard(self) {
        if !self.exited {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// The holder's handle on an idle worker.
pub struct Idle {
    chan: UnixStream,
}

impl Idle {
    /// Gives the idle worker the exec connection `conn`. On success returns
    /// the holder's end of its channel (it is now an ordinary worker); on
    /// failure (it died) gives `conn` back.
    pub fn hand_over(self, conn: UnixStream) -> Result<UnixStream, UnixStream> {
        let sent = serde_json::to_vec(&HolderReply::Connection)
            .ok()
            .and_then(|body| protocol::send_frame(&self.chan, &body, &[conn.as_raw_fd()]).ok());
        match sent {
            Some(()) => Ok(self.chan),
            None => Err(conn),
        }
    }
}

/// Forks an idle worker that pre-starts the shell of the exec after
/// `request`, from `fds` (the prelude and report of [`HolderAsk::Prestart`]).
/// Called by the holder; `None` if it cannot fork (then execs start their
/// own shells).
pub fn spawn_idle(
    request: &SpawnRequest,
    fds: Vec<OwnedFd>,
    sigchld: &SignalFd,
    limits: &[rlimits::RlimitStep],
) -> Option<Idle> {
    if fds.len() != 2 || !eligible(request) {
        return None;
    }
    let (ours, theirs) = UnixStream::pair().ok()?;
    // SAFETY: the holder is single-threaded, so the child may run ordinary
    // Rust code after fork; it leaves only through `_exit` or exec.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            idle_main(theirs, request, fds, sigchld, limits)
        }
        Ok(ForkResult::Parent { .. }) => Some(Idle { chan: ours }),
        Err(_) => None,
    }
}

/// The idle worker: pre-start the shell, wait for the connection, serve it.
fn idle_main(
    chan: UnixStream,
    previous: &SpawnRequest,
    fds: Vec<OwnedFd>,
    sigchld: &SignalFd,
    limits: &[rlimits::RlimitStep],
) -> ! {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let shell = start_shell(previous, &fds[0], &fds[1], limits);
    drop(fds);
    match protocol::recv_json::<HolderReply>(&chan) {
        Ok(Some((HolderReply::Connection, mut got))) if got.len() == 1 => {
            let conn = UnixStream::from(got.remove(0));
            worker::run(conn, chan, sigchld, limits, shell)
        }
        // The holder replaced us, or is gone.
        _ => {
            if let Some(s) = shell {
                s.discard();
            }
            // SAFETY: leaving the forked process without running the holder's destructors.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Starts bash for the state that follows `previous` and its report.
fn start_shell(
    previous: &SpawnRequest,
    prelude_fd: &OwnedFd,
    report_fd: &OwnedFd,
    limits: &[rlimits::RlimitStep],
) -> Option<Prestarted> {
    let prelude = String::from_utf8(read_at_most(prelude_fd, MAX_STATE)?).ok()?;
    let report = read_at_most(report_fd, MAX_STATE)?;
    let (env, cwd, prelude_text) =
        shell::next_bash_start(&previous.env, &previous.cwd, &prelude, &report);
    let cwd_id = file_id(&cwd).filter(|_| worker::usable_dir(&cwd))?;
    let mut start = previous.clone();
    start.env = env;
    start.cwd = cwd;
    start.argv[2] = BASH_PRESTARTED_WRAPPER.to_string();
    let program = worker::resolve_program(&start).ok()?;
    let program_id = file_id(&program)?;
    let oldpwd_is_dir = oldpwd_is_dir(&start.env, &start.cwd);
    let prepared = worker::Prepared::new(&program, &start, &start.cwd).ok()?;

    let report = memfd("state").ok()?;
    let command = memfd("command").ok()?;
    let mut prelude = memfd("prelude").ok()?;
    prelude.write_all(prelude_text.as_bytes()).ok()?;
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
    // The caller reads until EAGAIN, as from its own pipes.
    for fd in [&out_r, &err_r] {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        )
        .ok()?;
    }
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
    let stdio: Vec<OwnedFd> = vec![
        File::open("/dev/null").ok()?.into(),
        out_w,
        err_w,
        report.try_clone().ok()?.into(),
        command.try_clone().ok()?.into(),
        prelude.try_clone().ok()?.into(),
        go_r,
    ];
    // SAFETY: this worker is single-threaded (forked from the single-threaded
    // holder), so the child may run ordinary code before exec.
    let pid = match unsafe { fork() } {
        Ok(ForkResult::Child) => worker::exec_command(&prepared, &stdio, limits),
        Ok(ForkResult::Parent { child }) => child,
        Err(_) => return None,
    };
    // Only the shell may hold the write ends of its output pipes, or the
    // caller would never see EOF.
    drop(stdio);
    Some(Prestarted {
        pid,
        exited: false,
        argv: previous.argv.clone(),
        env: start.env,
        cwd: start.cwd,
        prelude_text,
        cwd_id,
        program,
        program_id,
        oldpwd_is_dir,
        go: go_w,
        command,
        stdout: out_r,
        stderr: err_r,
        report,
        prelude,
    })
}

/// Reads a whole memfd from offset 0 without moving its offset (the caller
/// of the exec shares it). `None` if it is larger than `max`.
fn read_at_most(fd: &OwnedFd, max: u64) -> Option<Vec<u8>> {
    let file = File::from(fd.try_clone().ok()?);
    let len = file.metadata().ok()?.len();
    if len > max {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(buf)
}

/// Whether the `OLDPWD` in `env` names a directory (relative to `cwd`).
fn oldpwd_is_dir(env: &[String], cwd: &Path) -> bool {
    env.iter()
        .find_map(|e| e.strip_prefix("OLDPWD="))
        .is_some_and(|dir| cwd.join(dir).is_dir())
}

/// Device and inode of a file (following symlinks).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash_request(env: &[&str]) -> SpawnRequest {
        SpawnRequest {
            argv: vec![
                "bash".into(),
                "-c".into(),
                BASH_WRAPPER.into(),
                "bash".into(),
            ],
            program: None,
            env: env.iter().map(|e| e.to_string()).collect(),
            cwd: "/".into(),
            fallback_cwd: "/".into(),
            timeout_ms: 1000,
            kill_grace_ms: 100,
            interpreter: false,
            output_pipes: false,
            prestart: true,
            prestart_only: false,
        }
    }

    #[test]
    fn only_captured_bash_execs_without_startup_files_are_eligible() {
        assert!(eligible(&bash_request(&["A=1", "PWD=/"])));
        assert!(eligible(&bash_request(&["MY_ENV=1", "XSHELLOPTS=1"])));
        let raw = SpawnRequest {
            prestart: false,
            ..bash_request(&[])
        };
        assert!(!eligible(&raw));
        for startup in [
            "BASH_ENV=/x",
            "ENV=/x",
            "SHELLOPTS=xtrace",
            "BASHOPTS=x",
            "BASH_XTRACEFD=2",
        ] {
            assert!(!eligible(&bash_request(&[startup])), "{startup}");
        }
        let mut other = bash_request(&[]);
        other.argv[2] = crate::exec::shell::POSIX_WRAPPER.into();
        assert!(!eligible(&other));
    }

    #[test]
    fn oldpwd_is_judged_like_bash_does() {
        let env = |v: &str| vec![format!("OLDPWD={v}")];
        assert!(oldpwd_is_dir(&env("/"), Path::new("/tmp")));
        assert!(oldpwd_is_dir(&env(".."), Path::new("/tmp")));
        assert!(!oldpwd_is_dir(&env("/no/such/dir"), Path::new("/")));
        assert!(!oldpwd_is_dir(&[], Path::new("/")));
    }
}
