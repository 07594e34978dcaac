//! `delta-sessions exec`: run one command in a session and collect its result.
//!
//! The flow: validate, lock the session, load its state, hand the command to
//! the jail, copy output into bounded buffers (or stream it with `--raw`)
//! until the command's main process exits, then save the new state,
//! metadata and history line.

pub mod bash_export;
pub mod input;
pub mod output;
pub mod shell;

use crate::jail::{self, Exit, SpawnRequest, WorkerEvent};
use crate::profile::Profile;
use crate::store::{Anchor, HistoryEntry, Metadata, SessionDir, SessionId, State, Status};
use crate::timefmt;
use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use output::CappedBuffer;
use serde::Serialize;
use shell::ShellKind;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub command: Option<String>,
    pub timeout: Option<Duration>,
    pub raw: bool,
}

/// The result printed as JSON (and, with `--raw`, only its exit code is used).
#[derive(Debug, Serialize)]
pub struct ExecResult {
    #[serde(serialize_with = "lossy")]
    pub stdout: Vec<u8>,
    #[serde(serialize_with = "lossy")]
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    pub execution_time_ms: u64,
    pub cwd: PathBuf,
    pub timed_out: bool,
    pub truncated: bool,
    /// Name of the signal that killed the command, if one did.
    pub signal: Option<&'static str>,
    pub stdout_dropped_bytes: u64,
    pub stderr_dropped_bytes: u64,
    /// The jail had died and was rebuilt for this exec (background processes were lost).
    pub jail_restarted: bool,
    /// The saved working directory no longer existed; the command ran in the work dir.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cwd_reset: bool,
    /// Live interpreter sessions only (always present there, absent for
    /// others): the interpreter's state was lost, because this exec had to
    /// kill it (timeout) or because it had died since the previous exec and
    /// this exec ran in a fresh one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter_restarted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Something delta-sessions could not do after the command ran (the
    /// command's own result above is complete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Serializes bytes as a string, replacing invalid UTF-8, without copying valid text.
fn lossy<S: serde::Serializer>(bytes: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

/// Runs one exec. Errors are delta-sessions' own (unknown session, bad input, broken jail).
pub fn run(sessions_dir: &Path, id: &SessionId, opts: ExecOptions) -> Result<ExecResult> {
    let opened = crate::store::open_session(sessions_dir, id)?;
    let session = &opened.session;
    let meta = session.read_metadata()?;
    ensure_active(&meta, id, &opened.control)?;
    let command = input::read_command(opts.command.clone())?;

    let _exec_lock = session.lock_exec()?;
    // Re-read under the lock: an `end` may have happened while we waited.
    let meta = session.read_metadata()?;
    ensure_active(&meta, id, &opened.control)?;
    // The profile given at start, from the trusted record: profile.json is
    // only the readable copy.
    let profile: &Profile = &opened.anchor.profile;
    let state = session.read_state()?;

    let (conn, jail_restarted) = connect_or_restart(&opened)?;
    let kind = ShellKind::of_session(&meta.command, &meta.args);
    let started = Instant::now();
    let timeout = opts
        .timeout
        .unwrap_or(Duration::from_millis(profile.limits.timeout_ms));
    let run = launch(
        &conn,
        opts.raw,
        &opened.anchor,
        &meta,
        &state,
        kind,
        &command,
        timeout,
    )?;
    let started_at = timefmt::now_rfc3339();
    // Counted as the command starts, so that this write overlaps with the
    // command rather than adding to the exec's latency; the count stays
    // pending until the history line is written (see `count_exec`).
    let history_at = count_exec_or_kill(session, &started_at, &conn)?;
    // From here on the command runs: whatever goes wrong on our side is a
    // warning next to its result, never an error that hides what it did.
    let mut warnings: Vec<String> = Vec::new();
    if jail_restarted
        && profile.limits.disk_bytes.is_some()
        && profile.isolation == crate::profile::Isolation::Jail
    {
        // The budgeted /tmp and $HOME were a tmpfs of the jail that died.
        warnings.push(
            "the jail was rebuilt: /tmp and $HOME (a tmpfs sized by limits.disk) start empty; \
             the work dir and the shell's cwd and environment are kept"
                .into(),
        );
    }
    let (collected, report) = collect(&conn, run, profile, &opts, timeout)?;
    let elapsed = started.elapsed();

    // State: only a complete report replaces the previous state.
    let report = match report.map(read_report).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            warnings.push(format!("cannot read the state report: {e:#}"));
            Vec::new()
        }
    };
    let env_complete = matches!(collected.exit, Some(Exit::Code { code: 0 }));
    let captured = if collected.timed_out {
        None
    } else {
        shell::parse_report(&report, kind, env_complete)
    };
    let mut exit_code = match collected.exit {
        Some(Exit::Code { code }) => code,
        Some(Exit::Signal { signal }) => 128 + signal,
        None => 137,
    };
    let mut new_state = state.clone();
    if kind.is_live() {
        // The interpreter keeps its own state; only its cwd is recorded, so
        // that the JSON and a restarted interpreter start from it.
        if let Some(cwd) = collected.cwd.clone().filter(|c| c.is_absolute()) {
            new_state.cwd = cwd;
        } else if collected.cwd_reset {
            new_state.cwd = meta.work_dir.clone();
        }
    } else if let Some(c) = captured {
        // Other shells end with `exec env`, whose status is not the command's.
        if kind == ShellKind::Posix {
            exit_code = c.exit_code;
        }
        new_state.cwd = c.cwd;
        new_state.env = c.env;
        new_state.shell = c.shell;
    } else if collected.cwd_reset {
        new_state.cwd = meta.work_dir.clone();
    }
    if collected.timed_out {
        exit_code = 124;
    }
    // A state no program could start from would break every later exec.
    if let Err(why) = shell::replayable(&new_state.env) {
        warnings.push(format!(
            "the session's state after this exec was not saved ({why}); the next exec starts \
             from the cwd and variables from before it"
        ));
        new_state = state.clone();
    }
    if new_state != state {
        if let Err(e) = session.write_state(&new_state) {
            warnings.push(format!(
                "the session's state after this exec could not be saved ({e:#}); the next exec \
                 starts from the state before it"
            ));
            new_state.cwd = state.cwd.clone();
        }
    }
    if let Err(e) = record_exec(
        session,
        history_at,
        started_at,
        &command,
        exit_code,
        elapsed,
        &new_state.cwd,
        collected.timed_out,
    ) {
        warnings.push(format!(
            "this exec could not be recorded in history.log and execution_count ({e:#})"
        ));
    }

    let signal = match collected.exit {
        Some(Exit::Signal { signal }) => signal_name(signal),
        None => Some("SIGKILL"),
        _ => None,
    };
    // A rebuilt jail has a fresh interpreter too: its state is lost when an
    // earlier exec had built some.
    let interpreter_restarted = kind
        .is_live()
        .then_some(collected.interpreter_restarted || (jail_restarted && meta.execution_count > 0));
    let (stdout, stdout_dropped) = collected.stdout.finish();
    let (stderr, stderr_dropped) = collected.stderr.finish();
    Ok(ExecResult {
        stdout,
        stderr,
        exit_code,
        execution_time_ms: elapsed.as_millis() as u64,
        cwd: new_state.cwd,
        timed_out: collected.timed_out,
        truncated: stdout_dropped > 0 || stderr_dropped > 0,
        signal,
        stdout_dropped_bytes: stdout_dropped,
        stderr_dropped_bytes: stderr_dropped,
        jail_restarted,
        cwd_reset: collected.cwd_reset,
        interpreter_restarted,
        error: collected.error,
        warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
    })
}

/// Active by its metadata *and* not ended in the state dir (a session whose
/// files left their recorded place is ended there, whatever its metadata
/// says once they are back).
fn ensure_active(
    meta: &Metadata,
    id: &SessionId,
    control: &crate::store::ControlDir,
) -> Result<()> {
    if control.is_ended() {
        bail!("Session {id} has ended; start a new session");
    }
    if meta.status != Status::Active {
        bail!(
            "Session {id} has ended (status {}); start a new session",
            meta.status.as_str()
        );
    }
    Ok(())
}

/// Reaches the holder, rebuilding the jail from the trusted record if it died.
fn connect_or_restart(opened: &crate::store::Opened) -> Result<(UnixStream, bool)> {
    let session = &opened.session;
    let control = &opened.control;
    if let Some(conn) = jail::connect(control)? {
        return Ok((conn, false));
    }
    let _meta_lock = session.lock_metadata()?;
    let mut meta = session.read_metadata()?;
    ensure_active(&meta, &session.id, control)?;
    if let Some(old) = control.holder()? {
        // A holder that lost its socket but still runs must not linger.
        jail::stop(control, &old)?;
    }
    crate::commands::recheck_layout(&opened.anchor)?;
    let (record, pending) = jail::start(session, control, &opened.anchor)
        .with_context(|| format!("cannot restart the jail of session {}", session.id))?;
    crate::fault::pause("exec:slow-rebuild");
    meta.holder = Some(record.clone());
    meta.jail_restarts += 1;
    let recorded = control
        .write_holder(Some(&record))
        .and_then(|()| session.write_metadata(&meta));
    if let Err(e) = recorded {
        let _ = jail::stop(control, &record);
        return Err(e);
    }
    // An `end` that gave up waiting for our lock marks the session ended
    // and then stops the holder it finds recorded; we recorded ours first
    // and look for its mark now, so one of the two always sees the other.
    // (Ended, or removed with its record by `end --remove`.)
    if control.is_ended() || !matches!(control.anchor(), Ok(Some(_))) {
        let _ = jail::stop(control, &record);
        let _ = control.write_holder(None);
        bail!(
            "Session {} was ended while its jail was being rebuilt",
            session.id
        );
    }
    pending.commit()?;
    let conn = jail::connect(control)?
        .ok_or_else(|| anyhow!("the rebuilt jail of session {} does not answer", session.id))?;
    Ok((conn, true))
}

/// The descriptors and memfds of one run, our side.
struct Launched {
    stdout: OwnedFd,
    stderr: OwnedFd,
    report: Option<File>,
}

#[allow(clippy::too_many_arguments)]
fn launch(
    conn: &UnixStream,
    raw: bool,
    anchor: &Anchor,
    meta: &Metadata,
    state: &State,
    kind: ShellKind,
    command: &str,
    timeout: Duration,
) -> Result<Launched> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // The command's ends must block like ordinary pipes.
    for fd in [&out_w, &err_w] {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
        )?;
    }
    let script = jail::memfd("command")?;
    (&script).write_all(command.as_bytes())?;
    let mut argv: Vec<String> = vec![meta.command.clone()];
    let mut keep = Vec::new();
    let stdin: File;
    let mut extra: Vec<File> = Vec::new();
    let report = match kind {
        ShellKind::Python => {
            // fd 3 of the request is the code; the holder starts the
            // interpreter from argv when none runs.
            argv.extend([
                "-u".to_string(),
                "-c".to_string(),
                shell::PYTHON_DRIVER.to_string(),
                jail::INTERPRETER_FD.to_string(),
            ]);
            (&script).rewind()?;
            stdin = File::open("/dev/null")?;
            extra.push(script);
            None
        }
        ShellKind::Node => {
            // Node cannot receive descriptors: the worker reads the code from
            // fd 3 of the request and sends its text to the driver.
            argv.extend(["-e".to_string(), shell::NODE_DRIVER.to_string()]);
            (&script).rewind()?;
            stdin = File::open("/dev/null")?;
            extra.push(script);
            None
        }
        ShellKind::Script => {
            argv.extend(meta.args.iter().cloned());
            (&script).rewind()?;
            stdin = script;
            None
        }
        ShellKind::Bash | ShellKind::Posix => {
            let wrapper = if kind == ShellKind::Bash {
                shell::BASH_WRAPPER
            } else {
                shell::POSIX_WRAPPER
            };
            argv = shell_argv(&meta.command, wrapper);
            stdin = File::open("/dev/null")?;
            let report = jail::memfd("state")?;
            let prelude = jail::memfd("prelude")?;
            // Only bash reads the prelude's exports back (POSIX shells get
            // their environment as is).
            let exports = if kind == ShellKind::Bash {
                &state.env
            } else {
                &Default::default()
            };
            (&prelude).write_all(shell::bash_prelude(state.shell.as_ref(), exports).as_bytes())?;
            extra.push(report.try_clone()?);
            extra.push(script);
            extra.push(prelude);
            Some(report)
        }
    };
    keep.push(stdin.as_raw_fd());
    keep.push(out_w.as_raw_fd());
    keep.push(err_w.as_raw_fd());
    keep.extend(extra.iter().map(|f| f.as_raw_fd()));

    let req = SpawnRequest {
        interpreter: kind.is_live(),
        output_pipes: kind == ShellKind::Node,
        prestart: kind == ShellKind::Bash && !raw,
        ..spawn_request(kind, argv, state, anchor, timeout)
    };
    jail::spawn(conn, &req, &keep)?;
    Ok(Launched {
        stdout: out_r,
        stderr: err_r,
        report,
    })
}

/// `SHELL -c WRAPPER SHELL`: how a shell session runs each exec.
fn shell_argv(shell: &str, wrapper: &str) -> Vec<String> {
    vec![
        shell.to_string(),
        "-c".to_string(),
        wrapper.to_string(),
        shell.to_string(),
    ]
}

/// A request to run `argv` from `state`, with no special mode. A bash
/// session's shell starts without the variables that act at start (see
/// [`shell::bash_env`]); its prelude exports them.
fn spawn_request(
    kind: ShellKind,
    argv: Vec<String>,
    state: &State,
    anchor: &Anchor,
    timeout: Duration,
) -> SpawnRequest {
    let env = if kind == ShellKind::Bash {
        shell::bash_env(&state.env, &state.cwd)
    } else {
        shell::shell_env(&state.env, &state.cwd)
    };
    SpawnRequest {
        argv,
        program: Some(anchor.program.clone()),
        env,
        cwd: state.cwd.clone(),
        fallback_cwd: anchor.work_dir.clone(),
        timeout_ms: timeout.as_millis() as u64,
        kill_grace_ms: anchor.profile.limits.kill_grace_ms,
        interpreter: false,
        output_pipes: false,
        prestart: false,
        prestart_only: false,
    }
}

/// For a new bash session: the request its first exec will send (but for
/// the command), so that `start` can have that exec's shell pre-started.
/// `None` for other kinds of session.
pub fn first_prestart(command: &[String], state: &State, anchor: &Anchor) -> Option<SpawnRequest> {
    let kind = ShellKind::of_session(&command[0], &command[1..]);
    (kind == ShellKind::Bash).then(|| SpawnRequest {
        prestart: true,
        prestart_only: true,
        ..spawn_request(
            kind,
            shell_argv(&command[0], shell::BASH_WRAPPER),
            state,
            anchor,
            Duration::from_millis(anchor.profile.limits.timeout_ms),
        )
    })
}

fn read_report(mut f: File) -> Result<Vec<u8>> {
    const MAX_REPORT: u64 = 64 << 20;
    f.rewind()?;
    let mut buf = Vec::new();
    (&mut f).take(MAX_REPORT).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Where one output stream goes.
enum Sink {
    Capture(CappedBuffer),
    /// `--raw`: straight to our own stdout or stderr.
    Stream(std::io::Stdout),
    StreamErr(std::io::Stderr),
}

impl Sink {
    fn push(&mut self, data: &[u8]) {
        match self {
            Sink::Capture(b) => b.push(data),
            // A closed stdout of ours must not stop the command or lose the state.
            Sink::Stream(s) => {
                let _ = s.write_all(data).and_then(|_| s.flush());
            }
            Sink::StreamErr(s) => {
                let _ = s.write_all(data);
            }
        }
    }
    fn finish(self) -> (Vec<u8>, u64) {
        match self {
            Sink::Capture(b) => {
                let dropped = b.dropped();
                (b.into_bytes(), dropped)
            }
            _ => (Vec::new(), 0),
        }
    }
}

struct Collected {
    stdout: Sink,
    stderr: Sink,
    exit: Option<Exit>,
    timed_out: bool,
    cwd_reset: bool,
    /// Live interpreter sessions: see [`ExecResult::interpreter_restarted`].
    interpreter_restarted: bool,
    /// Live interpreter sessions: the interpreter's cwd after the exec.
    cwd: Option<PathBuf>,
    error: Option<String>,
}

/// Copies output until the worker reports the end of the command's main
/// process. Returns what was collected and the state report to read (which a
/// pre-started shell replaces, with its output pipes).
fn collect(
    conn: &UnixStream,
    run: Launched,
    profile: &Profile,
    opts: &ExecOptions,
    timeout: Duration,
) -> Result<(Collected, Option<File>)> {
    let Launched {
        stdout: mut stdout_r,
        stderr: mut stderr_r,
        mut report,
    } = run;
    let cap = profile.limits.output_bytes as usize;
    let mut c = Collected {
        stdout: if opts.raw {
            Sink::Stream(std::io::stdout())
        } else {
            Sink::Capture(CappedBuffer::new(cap))
        },
        stderr: if opts.raw {
            Sink::StreamErr(std::io::stderr())
        } else {
            Sink::Capture(CappedBuffer::new(cap))
        },
        exit: None,
        timed_out: false,
        cwd_reset: false,
        interpreter_restarted: false,
        cwd: None,
        error: None,
    };
    // The worker enforces the timeout; this backstop only covers a worker that
    // was itself killed or stuck.
    let backstop = Instant::now()
        + timeout
        + Duration::from_millis(profile.limits.kill_grace_ms)
        + Duration::from_secs(5);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out_open = true;
    let mut err_open = true;
    loop {
        let left = backstop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            c.timed_out = true;
            c.error = Some("the session's worker did not report the end of the command".into());
            break;
        }
        let mut fds = vec![PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
        if out_open {
            fds.push(PollFd::new(stdout_r.as_fd(), PollFlags::POLLIN));
        }
        if err_open {
            fds.push(PollFd::new(stderr_r.as_fd(), PollFlags::POLLIN));
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(anyhow!("poll: {e}")),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        let mut i = 1;
        if out_open {
            if ready[i] {
                out_open = drain(&stdout_r, &mut buf, &mut c.stdout);
            }
            i += 1;
        }
        if err_open && ready[i] {
            err_open = drain(&stderr_r, &mut buf, &mut c.stderr);
        }
        if ready[0] {
            match jail::protocol::recv_json::<WorkerEvent>(conn) {
                Ok(Some((
                    WorkerEvent::Started {
                        cwd_reset,
                        prestarted,
                        ..
                    },
                    fds,
                ))) => {
                    c.cwd_reset = cwd_reset;
                    if prestarted {
                        let [out, err, state]: [OwnedFd; 3] = fds
                            .try_into()
                            .map_err(|_| anyhow!("the session's worker sent a malformed start"))?;
                        // Our own pipes are at EOF by now or soon: the
                        // worker dropped their write ends unused.
                        stdout_r = out;
                        stderr_r = err;
                        report = Some(File::from(state));
                        out_open = true;
                        err_open = true;
                    }
                }
                Ok(Some((
                    WorkerEvent::Finished {
                        exit,
                        timed_out,
                        interpreter_restarted,
                        cwd,
                    },
                    _,
                ))) => {
                    c.exit = Some(exit);
                    c.timed_out = timed_out;
                    c.interpreter_restarted = interpreter_restarted;
                    c.cwd = cwd;
                    break;
                }
                Ok(Some((WorkerEvent::Failed { message }, _))) => bail!("{message}"),
                Ok(None) | Err(_) => {
                    c.error = Some("the session's worker ended before the command did (session ended, or the worker was killed)".into());
                    break;
                }
            }
        }
    }
    // Whatever the main process wrote before it exited is in the pipes now;
    // background children may hold them open, so read only what is there.
    if out_open {
        drain(&stdout_r, &mut buf, &mut c.stdout);
    }
    if err_open {
        drain(&stderr_r, &mut buf, &mut c.stderr);
    }
    Ok((c, report))
}

/// Reads what is available; returns false once the pipe is at EOF.
fn drain(fd: &OwnedFd, buf: &mut [u8], sink: &mut Sink) -> bool {
    loop {
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(0) => return false,
            Ok(n) => sink.push(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
}

/// Counts the exec as its command starts. If that fails (a full disk), the
/// command is stopped before it can do anything worth reporting: dropping
/// the connection makes the worker kill what it started.
fn count_exec_or_kill(session: &SessionDir, now: &str, conn: &UnixStream) -> Result<u64> {
    session.count_exec(now).inspect_err(|_| {
        let _ = conn.shutdown(std::net::Shutdown::Both);
    })
}

/// Writes the exec's history line (see [`SessionDir::append_history`]).
#[allow(clippy::too_many_arguments)]
fn record_exec(
    session: &SessionDir,
    history_at: u64,
    started_at: String,
    command: &str,
    exit_code: i32,
    elapsed: Duration,
    cwd: &Path,
    timed_out: bool,
) -> Result<()> {
    const MAX_HISTORY_COMMAND: usize = 64 * 1024;
    let truncated = command.len() > MAX_HISTORY_COMMAND;
    let mut cut = command.len().min(MAX_HISTORY_COMMAND);
    while !command.is_char_boundary(cut) {
        cut -= 1;
    }
    session.append_history(
        history_at,
        &HistoryEntry {
            timestamp: started_at,
            command: command[..cut].to_string(),
            command_truncated: truncated,
            exit_code,
            duration_ms: elapsed.as_millis() as u64,
            cwd: cwd.to_path_buf(),
            timed_out,
        },
    )
}

fn signal_name(sig: i32) -> Option<&'static str> {
    nix::sys::signal::Signal::try_from(sig)
        .ok()
        .map(|s| s.as_str())
}
