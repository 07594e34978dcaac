//! The holder's side of live interpreter sessions (`start python3`).
//!
//! The interpreter must outlive each exec, so the holder (not a worker, which
//! exits after its exec) forks it as its own child, lazily, when a worker asks
//! for it. The holder keeps one end of a socketpair whose other end is the
//! interpreter's fd [`INTERPRETER_FD`]: no path in any filesystem leads to
//! that channel, so jailed code outside the interpreter cannot reach it.
//!
//! An interpreter that cannot take the exec's descriptors over its channel
//! (node: no dup2, no `SCM_RIGHTS`) gets pipes of the holder as its fds 1 and
//! 2 instead. The holder keeps their read ends: it lends copies to the worker
//! that holds the lease, which relays them into its exec's pipes, and drains
//! and drops what arrives while no worker holds the lease (timers firing
//! between execs), so that node never blocks on a full pipe.
//!
//! The holder also keeps the account that `interpreter_restarted` needs: an
//! interpreter that died without a worker telling its caller (a crash, an
//! out-of-memory kill) makes the next start a *restart*.

use super::protocol::{self, Exit, HolderAsk, HolderReply, SpawnRequest, INTERPRETER_FD};
use super::{rlimits, worker};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// One running (or exited but not yet replaced) interpreter.
struct Live {
    pid: Pid,
    /// The holder's end of the channel.
    channel: UnixStream,
    /// Set once the holder has reaped it.
    exit: Option<Exit>,
    /// Read ends (non-blocking) of its stdout and stderr pipes, for
    /// `output_pipes` interpreters; `None` once at EOF.
    output: [Option<OwnedFd>; 2],
}

/// A worker waiting for the lease, and what it asked with.
struct Waiting {
    id: u64,
    request: SpawnRequest,
    stdio: Vec<OwnedFd>,
}

/// A worker's private channel to the holder.
struct WorkerChannel {
    id: u64,
    chan: UnixStream,
    /// The session id of the command it runs, between `Running` and `Done`.
    running: Option<i32>,
}

/// The interpreter of a session and the workers that may ask for it, as the
/// holder tracks them.
///
/// Only one worker at a time holds the interpreter (the *lease*): execs are
/// serialized by the session's lock, but a worker whose caller was killed may
/// still be interrupting the interpreter when the next exec arrives, and two
/// workers reading one channel would take each other's replies (or tear each
/// other's frames). A worker that asks while another holds the lease gets its
/// answer when that worker exits.
#[derive(Default)]
pub struct Interpreters {
    current: Option<Live>,
    /// Whether an interpreter was ever started in this jail.
    started_before: bool,
    /// The last one was killed by a worker that told its caller so.
    loss_reported: bool,
    workers: Vec<WorkerChannel>,
    next_id: u64,
    /// The worker that holds the interpreter.
    lease: Option<u64>,
    /// Workers waiting for the lease, oldest first, with their requests.
    waiting: VecDeque<Waiting>,
    /// The latest [`HolderAsk::Prestart`] (bash sessions), for the holder to
    /// act on: it arrives on the same worker channels.
    prestart: Option<(SpawnRequest, Vec<OwnedFd>)>,
    /// Commands whose worker went away while they ran: the holder kills them.
    orphaned: Vec<i32>,
}

impl Interpreters {
    /// Called for every child the holder reaps.
    pub fn reaped(&mut self, status: WaitStatus) {
        let (pid, exit) = match status {
            WaitStatus::Exited(pid, code) => (pid, Exit::Code { code }),
            WaitStatus::Signaled(pid, sig, _) => (pid, Exit::Signal { signal: sig as i32 }),
            _ => return,
        };
        if let Some(live) = self.current.as_mut().filter(|l| l.pid == pid) {
            live.exit = Some(exit);
        }
    }

    /// Remembers the holder's end of a new worker's channel.
    pub fn add_worker(&mut self, chan: UnixStream) {
        self.next_id += 1;
        self.workers.push(WorkerChannel {
            id: self.next_id,
            chan,
            running: None,
        });
    }

    /// The worker channels, in the order `serve_ready` expects readiness.
    pub fn channels(&self) -> impl Iterator<Item = &UnixStream> {
        self.workers.iter().map(|w| &w.chan)
    }

    /// Answers the workers whose channels are readable (`ready[i]` for the
    /// i-th of [`channels`](Self::channels)), forgets those that have gone,
    /// and hands a released lease to the next waiting worker.
    pub fn serve_ready(&mut self, ready: &[bool], limits: &[rlimits::RlimitStep]) {
        let ids: Vec<u64> = self
            .workers
            .iter()
            .zip(ready)
            .filter(|(_, &r)| r)
            .map(|(w, _)| w.id)
            .collect();
        for id in ids {
            if !self.answer(id, limits) {
                self.forget(id);
            }
        }
        while self.lease.is_none() {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            if !self.grant(w.id, &w.request, w.stdio, limits) {
                self.forget(w.id);
            }
        }
    }

    /// The latest request to pre-start the next bash, with its descriptors.
    pub fn take_prestart(&mut self) -> Option<(SpawnRequest, Vec<OwnedFd>)> {
        self.prestart.take()
    }

    /// The output pipes to drain while no worker holds the lease.
    pub fn idle_output(&self) -> Vec<BorrowedFd<'_>> {
        match (&self.current, self.lease) {
            (Some(live), None) => live.output.iter().flatten().map(|f| f.as_fd()).collect(),
            _ => Vec::new(),
        }
    }

    /// Reads and drops what the interpreter printed between execs (`ready[i]`
    /// for the i-th of [`idle_output`](Self::idle_output), which must not
    /// have changed since). A pipe at EOF is closed, so it does not wake the
    /// holder again.
    pub fn drain_idle(&mut self, ready: &[bool]) {
        if self.lease.is_some() {
            return;
        }
        let Some(live) = self.current.as_mut() else {
            return;
        };
        let mut i = 0;
        for slot in live.output.iter_mut() {
            let Some(fd) = slot.as_ref() else {
                continue;
            };
            if ready.get(i).copied().unwrap_or(false) && drain(fd) {
                *slot = None;
            }
            i += 1;
        }
    }

    /// The sessions of commands whose worker died before it was done.
    pub fn take_orphaned(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.orphaned)
    }

    fn forget(&mut self, id: u64) {
        if let Some(sid) = self
            .workers
            .iter()
            .find(|w| w.id == id)
            .and_then(|w| w.running)
        {
            self.orphaned.push(sid);
        }
        self.workers.retain(|w| w.id != id);
        self.waiting.retain(|w| w.id != id);
        if self.lease == Some(id) {
            self.lease = None;
        }
    }

    fn chan(&self, id: u64) -> Option<&UnixStream> {
        self.workers.iter().find(|w| w.id == id).map(|w| &w.chan)
    }

    /// Reads and answers one question of worker `id`. False when the worker
    /// has gone (EOF or a broken message).
    fn answer(&mut self, id: u64, limits: &[rlimits::RlimitStep]) -> bool {
        let Some(chan) = self.chan(id) else {
            return false;
        };
        let (ask, stdio) = match protocol::recv_json::<HolderAsk>(chan) {
            Ok(Some(asked)) => asked,
            Ok(None) | Err(_) => return false,
        };
        match ask {
            HolderAsk::Interpreter { request } => {
                if self.lease.is_some_and(|l| l != id) {
                    self.waiting.push_back(Waiting { id, request, stdio });
                    return true;
                }
                self.grant(id, &request, stdio, limits)
            }
            HolderAsk::Prestart { request } => {
                self.prestart = Some((request, stdio));
                true
            }
            HolderAsk::Running { pid } => {
                if let Some(w) = self.workers.iter_mut().find(|w| w.id == id) {
                    w.running = Some(pid);
                }
                true
            }
            HolderAsk::Done => {
                if let Some(w) = self.workers.iter_mut().find(|w| w.id == id) {
                    w.running = None;
                }
                true
            }
            HolderAsk::Stop { pid, reported } => {
                let reply = if self.lease == Some(id) {
                    self.stop(Pid::from_raw(pid), reported)
                } else {
                    HolderReply::Failed {
                        message: "this worker does not hold the interpreter".into(),
                    }
                };
                self.reply(id, &reply, Vec::new())
            }
        }
    }

    /// Gives worker `id` the interpreter's channel (starting one if needed,
    /// with `stdio`, the exec's stdin, stdout and stderr, as its fds 0-2).
    fn grant(
        &mut self,
        id: u64,
        request: &SpawnRequest,
        stdio: Vec<OwnedFd>,
        limits: &[rlimits::RlimitStep],
    ) -> bool {
        match self.channel_for(request, stdio, limits) {
            Ok((reply, fds)) => {
                self.lease = Some(id);
                self.reply(id, &reply, fds)
            }
            Err(message) => self.reply(id, &HolderReply::Failed { message }, Vec::new()),
        }
    }

    fn reply(&self, id: u64, reply: &HolderReply, fds: Vec<OwnedFd>) -> bool {
        let (Some(chan), Ok(body)) = (self.chan(id), serde_json::to_vec(reply)) else {
            return false;
        };
        let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
        protocol::send_frame(chan, &body, &raw).is_ok()
    }

    /// The running interpreter's channel (and output pipes), starting one
    /// first if needed.
    fn channel_for(
        &mut self,
        request: &SpawnRequest,
        stdio: Vec<OwnedFd>,
        limits: &[rlimits::RlimitStep],
    ) -> Result<(HolderReply, Vec<OwnedFd>), String> {
        if let Some(live) = self.current.as_mut() {
            if live.exit.is_none() {
                // SIGCHLD may not have been handled yet: ask the kernel.
                match waitpid(live.pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {
                        let (output, fds) = live.lend()?;
                        let reply = HolderReply::Interpreter {
                            pid: live.pid.as_raw(),
                            output,
                            restarted: false,
                            cwd_reset: false,
                        };
                        return Ok((reply, fds));
                    }
                    Ok(status) => self.reaped(status),
                    Err(_) => {}
                }
            }
        }
        let restarted = self.started_before && !self.loss_reported;
        let (live, cwd_reset) = spawn(request, stdio, limits)?;
        let (output, fds) = live.lend()?;
        let reply = HolderReply::Interpreter {
            pid: live.pid.as_raw(),
            output,
            restarted,
            cwd_reset,
        };
        self.current = Some(live);
        self.started_before = true;
        self.loss_reported = false;
        Ok((reply, fds))
    }

    /// Kills the interpreter `pid` (if it is ours and still runs) and waits for it.
    fn stop(&mut self, pid: Pid, reported: bool) -> HolderReply {
        let Some(live) = self.current.take().filter(|l| l.pid == pid) else {
            return HolderReply::Failed {
                message: format!("process {pid} is not the session's interpreter"),
            };
        };
        let exit = match live.exit {
            Some(exit) => exit,
            None => {
                let _ = kill(pid, Signal::SIGKILL);
                match waitpid(pid, None) {
                    Ok(WaitStatus::Exited(_, code)) => Exit::Code { code },
                    Ok(WaitStatus::Signaled(_, sig, _)) => Exit::Signal { signal: sig as i32 },
                    _ => Exit::Signal {
                        signal: libc::SIGKILL,
                    },
                }
            }
        };
        self.loss_reported = reported;
        HolderReply::Stopped { exit }
    }
}

impl Live {
    /// Copies of the channel and of the open output pipes for a worker, and
    /// which streams (1, 2) those pipes are.
    fn lend(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), String> {
        let lent = |e: std::io::Error| format!("cannot lend the interpreter's descriptors: {e}");
        let mut fds: Vec<OwnedFd> = vec![self.channel.try_clone().map_err(lent)?.into()];
        let mut streams = Vec::new();
        for (stream, fd) in (1u8..).zip(&self.output) {
            if let Some(fd) = fd {
                fds.push(fd.try_clone().map_err(lent)?);
                streams.push(stream);
            }
        }
        Ok((streams, fds))
    }
}

/// Reads a non-blocking pipe until it is empty. True at EOF.
fn drain(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 16 << 10];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => return true,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Pipes for the interpreter's fds 1 and 2: (read ends, non-blocking, for the
/// holder; write ends for the interpreter).
fn output_pipes() -> Result<([Option<OwnedFd>; 2], [OwnedFd; 2]), String> {
    let pipe = || -> Result<(OwnedFd, OwnedFd), String> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("cannot make the interpreter's output pipes: {e}"))?;
        nix::fcntl::fcntl(
            r.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| format!("cannot make the interpreter's output pipes non-blocking: {e}"))?;
        Ok((r, w))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok(([Some(out_r), Some(err_r)], [out_w, err_w]))
}

/// Forks and executes the interpreter with its channel on [`INTERPRETER_FD`]
/// and fds 0-2 on `stdio` (the first exec's stdin, stdout and stderr, so that
/// a failure to start shows in that exec's output; the driver points them at
/// /dev/null after each exec), or /dev/null when not given. An `output_pipes`
/// interpreter gets /dev/null and the holder's output pipes instead.
fn spawn(
    request: &SpawnRequest,
    stdio: Vec<OwnedFd>,
    limits: &[rlimits::RlimitStep],
) -> Result<(Live, bool), String> {
    let cwd_reset = !Path::new(&request.cwd).is_dir();
    let cwd = if cwd_reset {
        &request.fallback_cwd
    } else {
        &request.cwd
    };
    let program = worker::resolve_program(request)?;
    let prepared = worker::Prepared::new(&program, request, cwd)?;
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot make the interpreter's channel: {e}"))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null in the jail: {e}"))?;
    let null: OwnedFd = null.into();
    let mut fds = Vec::with_capacity(INTERPRETER_FD as usize + 1);
    let mut output = [None, None];
    if request.output_pipes {
        let (ours, [out_w, err_w]) = output_pipes()?;
        output = ours;
        fds.push(null.try_clone().map_err(|e| e.to_string())?);
        fds.push(out_w);
        fds.push(err_w);
    } else if stdio.len() == INTERPRETER_FD as usize {
        fds.extend(stdio);
    } else {
        for _ in 0..INTERPRETER_FD {
            fds.push(null.try_clone().map_err(|e| e.to_string())?);
        }
    }
    fds.push(theirs.into());
    // SAFETY: the holder is single-threaded, so the child may run ordinary
    // code until it executes the interpreter.
    match unsafe { fork() } {
        Err(e) => Err(format!("cannot fork the interpreter: {e}")),
        Ok(ForkResult::Child) => worker::exec_command(&prepared, &fds, limits),
        Ok(ForkResult::Parent { child }) => {
            // `fds` (the interpreter's end among them) are closed here, so the
            // channel reaches EOF as soon as the interpreter is gone.
            drop(fds);
            Ok((
                Live {
                    pid: child,
                    channel: ours,
                    exit: None,
                    output,
                },
                cwd_reset,
            ))
        }
    }
}
