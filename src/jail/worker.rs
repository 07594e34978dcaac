//! The per-exec worker: forked by the holder for each connection, inside the
//! jail. It receives one [`SpawnRequest`], starts the command, waits for it,
//! enforces the timeout, and reports how the command ended.
//!
//! The worker is a child subreaper, so every process the command starts —
//! including daemons that `setsid` and double-fork — stays below it until it
//! exits. That makes "kill everything this exec started" exact on timeout.
//! When the command ends normally the worker exits at once and any background
//! processes are adopted by the holder, where they keep running.

use super::prestart::{Carry, Prestarted};
use super::protocol::{self, Exit, HolderAsk, SpawnRequest, WorkerEvent};
use super::{procfs, rlimits};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runs one exec for the connection `conn` and exits the process.
///
/// `holder` is this worker's private channel to the holder (see
/// [`HolderAsk`](super::protocol::HolderAsk)). `prestarted` is the shell an
/// idle worker started for this exec (see [`prestart`](super::prestart)).
pub fn run(
    conn: UnixStream,
    holder: UnixStream,
    sigchld: &SignalFd,
    limits: &[rlimits::RlimitStep],
    prestarted: Option<Prestarted>,
) -> ! {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let code = match serve(&conn, &holder, sigchld, limits, prestarted) {
        Ok(()) => 0,
        Err(message) => {
            let _ = protocol::send_json(&conn, &WorkerEvent::Failed { message });
            1
        }
    };
    let _ = protocol::send_json(&holder, &HolderAsk::Done);
    // SAFETY: leaving the forked worker without running the holder's destructors.
    unsafe { libc::_exit(code) }
}

fn serve(
    conn: &UnixStream,
    holder: &UnixStream,
    sigchld: &SignalFd,
    limits: &[rlimits::RlimitStep],
    mut prestarted: Option<Prestarted>,
) -> Result<(), String> {
    let received = protocol::recv_json::<SpawnRequest>(conn);
    let (req, mut fds) = match received {
        Ok(Some((req, fds))) if !req.prestart_only && fds.len() >= 3 => (req, fds),
        other => {
            if let Some(shell) = prestarted {
                shell.discard();
            }
            return match other {
                Ok(None) => Ok(()),
                // From `start`: pre-start the first exec's shell, reply nothing.
                Ok(Some((req, fds))) if req.prestart_only => {
                    if let Some(carry) = Carry::from_prestart_only(&req, fds) {
                        carry.send(holder, &req);
                    }
                    Ok(())
                }
                Ok(Some(_)) => Err("request without stdin, stdout and stderr".into()),
                Err(e) => Err(format!("cannot read the request: {e}")),
            };
        }
    };
    if let Some(mut shell) = prestarted.take() {
        if shell.fits(&req, &fds) {
            match shell.launch(conn, &fds) {
                Ok((child, carry)) => {
                    // The caller's own pipes go unused: our copies must go.
                    drop(fds);
                    return supervise(conn, holder, sigchld, &req, child, Some(carry));
                }
                Err(None) => return Ok(()),
                Err(Some(shell)) => shell.discard(),
            }
        } else {
            shell.discard();
        }
    }
    if req.interpreter {
        return super::live::serve(conn, holder, &req, fds);
    }
    let (cwd, cwd_reset) = start_dir(&req);
    let program = resolve_program(&req)?;
    let prepared = Prepared::new(&program, &req, cwd)?;

    // SAFETY: the worker is single-threaded (forked from the single-threaded
    // holder), so the child may run ordinary code before exec.
    let child = match unsafe { fork() } {
        Err(e) => return Err(format!("cannot fork: {e}")),
        Ok(ForkResult::Child) => exec_command(&prepared, &fds, limits),
        Ok(ForkResult::Parent { child }) => child,
    };
    // The next exec's shell is made from this one's prelude and report (a
    // reset cwd would not match the saved state, so none then).
    let carry = (!cwd_reset)
        .then(|| Carry::from_request(&req, &mut fds))
        .flatten();
    // Our copies of the pipes must go, or readers would wait for us too.
    drop(fds);
    protocol::send_json(
        conn,
        &WorkerEvent::Started {
            pid: child.as_raw(),
            cwd_reset,
            prestarted: false,
        },
    )
    .map_err(|e| format!("cannot report start: {e}"))?;
    supervise(conn, holder, sigchld, &req, child, carry)
}

/// Waits for the command `child` to end, enforcing the timeout and stopping
/// everything it started if the caller goes away, then reports its end.
/// After a normal end, `carry` asks the holder to pre-start the next shell.
fn supervise(
    conn: &UnixStream,
    holder: &UnixStream,
    sigchld: &SignalFd,
    req: &SpawnRequest,
    child: Pid,
    carry: Option<Carry>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms);
    let grace = Duration::from_millis(req.kill_grace_ms);
    // Should we die, the holder stops the command for us.
    let _ = protocol::send_json(
        holder,
        &HolderAsk::Running {
            pid: child.as_raw(),
        },
    );
    loop {
        let now = Instant::now();
        if now >= deadline {
            let exit = kill_tree(child, grace);
            let _ = protocol::send_json(
                conn,
                &WorkerEvent::Finished {
                    exit,
                    timed_out: true,
                    interpreter_restarted: false,
                    cwd: None,
                },
            );
            return Ok(());
        }
        let wait_ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [
            PollFd::new(conn.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigchld.as_fd(), PollFlags::POLLIN),
        ];
        match poll(
            &mut fds,
            PollTimeout::try_from(wait_ms).unwrap_or(PollTimeout::MAX),
        ) {
            Err(Errno::EINTR) | Ok(0) => continue,
            Err(e) => return Err(format!("poll: {e}")),
            Ok(_) => {}
        }
        if fds[1].any().unwrap_or(false) {
            while let Ok(Some(_)) = sigchld.read_signal() {}
            if let Some(exit) = reap(child) {
                // Before the caller hears of the end, so that the holder has
                // the request before the next exec can connect.
                if let Some(carry) = carry {
                    carry.send(holder, req);
                }
                let _ = protocol::send_json(
                    conn,
                    &WorkerEvent::Finished {
                        exit,
                        timed_out: false,
                        interpreter_restarted: false,
                        cwd: None,
                    },
                );
                return Ok(());
            }
        }
        if fds[0].any().unwrap_or(false) {
            // The caller went away (killed, or gave up): nobody will read the
            // output, so stop everything this exec started.
            let mut probe = [0u8; 1];
            if matches!(
                nix::unistd::read(conn.as_raw_fd(), &mut probe),
                Ok(0) | Err(_)
            ) {
                kill_tree(child, Duration::ZERO);
                return Ok(());
            }
        }
    }
}

/// Everything the child needs, built before fork.
pub(super) struct Prepared {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
}

impl Prepared {
    pub(super) fn new(program: &Path, req: &SpawnRequest, cwd: &Path) -> Result<Prepared, String> {
        let c = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"));
        Ok(Prepared {
            program: c(&program.to_string_lossy())?,
            argv: req.argv.iter().map(|a| c(a)).collect::<Result<_, _>>()?,
            env: req.env.iter().map(|e| c(e)).collect::<Result<_, _>>()?,
            cwd: c(&cwd.to_string_lossy())?,
        })
    }
}

/// Where the command starts: its saved cwd; else the work dir; else `/`,
/// when a command made even the work dir unenterable (`chmod 000` on an
/// ancestor of it in the session's own `/tmp`), so that the next command can
/// still run and undo it. The flag says the saved cwd was not used.
fn start_dir(req: &SpawnRequest) -> (&Path, bool) {
    let saved = Path::new(&req.cwd);
    if usable_dir(saved) {
        (saved, false)
    } else if usable_dir(Path::new(&req.fallback_cwd)) {
        (Path::new(&req.fallback_cwd), true)
    } else {
        (Path::new("/"), true)
    }
}

/// Whether the command can start in `dir`: it exists and we may enter it
/// (a command that `chmod 000`ed its own cwd must not strand the session).
pub(super) fn usable_dir(dir: &Path) -> bool {
    dir.is_dir() && nix::unistd::access(dir, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// Finds argv[0] on the request's PATH, as the jail sees the filesystem.
pub(super) fn resolve_program(req: &SpawnRequest) -> Result<PathBuf, String> {
    let name = req.argv.first().ok_or("empty command")?;
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let path = req
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    match &req.program {
        Some(found_at_start) => Ok(found_at_start.clone()),
        None => Err(format!("command not found in the session: {name}")),
    }
}

/// The forked child: put the descriptors in place, apply limits, exec.
pub(super) fn exec_command(p: &Prepared, fds: &[OwnedFd], limits: &[rlimits::RlimitStep]) -> ! {
    // SAFETY: only syscalls on descriptors we hold and on prepared C strings;
    // the process image is replaced by execve or left with _exit.
    unsafe {
        libc::setsid();
        // Landlock mode: enter the session's domain (first: it needs the
        // ruleset descriptor, which the close_range below takes away).
        if super::landlock::confine_self().is_err() {
            fail(b"delta-sessions: cannot enter the session's Landlock domain\n");
        }
        // Park every descriptor above the target range first, so that placing
        // fd i never overwrites a source that is still needed.
        let mut parked: Vec<RawFd> = Vec::with_capacity(fds.len());
        for fd in fds {
            parked.push(libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64));
        }
        for (target, &src) in parked.iter().enumerate() {
            if src < 0 || libc::dup2(src, target as RawFd) < 0 {
                fail(b"delta-sessions: cannot set up descriptors\n");
            }
        }
        libc::syscall(libc::SYS_close_range, fds.len() as u32, u32::MAX, 0u32);
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            fail(b"delta-sessions: cannot enter the working directory\n");
        }
        if rlimits::apply(limits).is_err() {
            fail(b"delta-sessions: cannot apply resource limits\n");
        }
        // The holder blocks SIGCHLD and Rust ignores SIGPIPE; neither may leak
        // into the command (a shell that ignores SIGPIPE breaks `yes | head`).
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut env: Vec<*const libc::c_char> = p.env.iter().map(|e| e.as_ptr()).collect();
        env.push(std::ptr::null());
        libc::execve(p.program.as_ptr(), argv.as_ptr(), env.as_ptr());
        fail(b"delta-sessions: cannot execute the session command\n");
    }
}

fn fail(message: &[u8]) -> ! {
    // SAFETY: write to stderr and leave; both are async-signal-safe.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}

/// Reaps every exited child; returns the command's exit once it has ended.
fn reap(command: Pid) -> Option<Exit> {
    let mut result = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => {
                result = Some(Exit::Code { code })
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                result = Some(Exit::Signal { signal: sig as i32 })
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}

/// Stops every process below this worker: SIGTERM, up to `grace` for them to
/// leave, then SIGKILL until none is left. Returns the command's own exit.
fn kill_tree(command: Pid, grace: Duration) -> Exit {
    let me = std::process::id() as i32;
    let mut exit = None;
    let signal_all = |sig: Signal| {
        let pids = procfs::descendants(me);
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), sig);
            if sig == Signal::SIGTERM {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
        }
        pids.len()
    };
    if !grace.is_zero() {
        signal_all(Signal::SIGTERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Some(e) = reap(command) {
                exit = Some(e);
            }
            if procfs::descendants(me).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // A fork bomb keeps making processes; each round kills what exists, and
    // killed processes cannot fork, so the rounds converge.
    for _ in 0..1000 {
        if signal_all(Signal::SIGKILL) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
        if let Some(e) = reap(command) {
            exit = Some(e);
        }
    }
    if let Some(e) = reap(command) {
        exit = Some(e);
    }
    exit.unwrap_or(Exit::Signal {
        signal: libc::SIGKILL,
    })
}
